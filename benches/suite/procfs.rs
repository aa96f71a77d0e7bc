//! Per-process figures from /proc: CPU time and memory.

/// CPU time a process has used, in nanoseconds: the first field of
/// /proc/<pid>/task/*/schedstat (exact), else utime + stime of /proc/<pid>/stat (in
/// 10 ms ticks, too coarse for an idle agent over a minute). 0 once it is gone.
pub fn cpu_ns(pid: u32) -> u64 {
    // schedstat is per thread: sum every thread's (herd has one, a Go
    // program such as node_exporter has many).
    let exact = std::fs::read_dir(format!("/proc/{pid}/task")).ok().map(|tasks| {
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum::<u64>()
    });
    exact.unwrap_or_else(|| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        (get(11) + get(12)) * 10_000_000
    })
}

/// `ns` of CPU time over `secs` of wall time, as percent of one core.
pub fn cpu_pct(ns: u64, secs: f64) -> f64 {
    ns as f64 / 1e9 / secs * 100.0
}

/// A KiB field of /proc/<pid>/status, e.g. `RssAnon` (private memory: what
/// the process alone costs, unlike VmRSS, which also counts the pages of the
/// binary and shared libraries it shares with others).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
