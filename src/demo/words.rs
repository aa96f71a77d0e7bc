//! words: how the demo names its nodes and counts things in what it prints: the node names
//! (psa to psz), a counted noun ("1 kill", "2 peers"), and a list of node names.

/// psa, psb, ... (`n` at most [`super::MAX_NODES`]).
pub(super) fn node_names(n: usize) -> Vec<String> {
    (b'a'..=b'z').take(n).map(|c| format!("ps{}", c as char)).collect()
}

/// "1 kill", "2 kills", "0 merges".
pub(super) fn count(n: u64, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

/// The names of `nodes` (indices into `names`), in the order given, joined by `separator`.
pub(super) fn join(names: &[String], nodes: &[usize], separator: &str) -> String {
    nodes.iter().map(|&i| names[i].as_str()).collect::<Vec<_>>().join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_lists_read_as_english() {
        assert_eq!(
            [count(0, "merge"), count(1, "kill"), count(2, "peer")],
            ["0 merges", "1 kill", "2 peers"]
        );
        let names = node_names(4);
        assert_eq!(join(&names, &[0, 2], ", "), "psa, psc");
        assert_eq!(join(&names, &[1, 3], ","), "psb,psd");
        assert_eq!(join(&names, &[], ","), "");
    }
}
