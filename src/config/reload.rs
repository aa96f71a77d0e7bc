//! reload: what a config file re-read while the agent runs (SIGHUP,
//! `systemctl reload herd`) may change. Each key's declaration says
//! ([`Applies`], in the section's file): keys that fix this life of the agent
//! (its name and cluster, its sockets and how it finds peers, the status
//! endpoint's address, the member table's size) need a restart, and a reload
//! keeps their running values and names them; every other key applies live.
//! The restart-only list is derived from those declarations, never written
//! out. A file that does not pass `herd check` changes nothing (the caller
//! keeps the config it had).
//!
//! Must not: touch the running agent (the shell applies the plan).

use toml::Value;

pub use super::key::Applies;
use super::key::{Key, Section};
use super::{
    BatonSection, Config, GossipSection, LinksSection, LogSection, NodeSection, StatsdSection, StatusSection,
    TelemetrySection,
};

/// A key whose new value waits for a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// `<section>.<key>`.
    pub path: String,
    /// The value the agent keeps running with.
    pub running: Value,
    /// The value in the file.
    pub wanted: Value,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {} (file: {})", self.path, self.running, self.wanted)
    }
}

/// The config to run with after a reload from `wanted` (a validated file),
/// and the keys whose change needs a restart (kept at `running`'s values).
pub fn plan(running: &Config, mut wanted: Config) -> (Config, Vec<Held>) {
    let mut held = Vec::new();
    let h = &mut held;
    keep(&running.node, &mut wanted.node, h);
    keep(&running.gossip, &mut wanted.gossip, h);
    keep(&running.baton, &mut wanted.baton, h);
    keep(&running.statsd, &mut wanted.statsd, h);
    keep(&running.telemetry, &mut wanted.telemetry, h);
    keep(&running.links, &mut wanted.links, h);
    keep(&running.status, &mut wanted.status, h);
    keep(&running.log, &mut wanted.log, h);
    (wanted, held)
}

/// Every key as `<section>.<key>` with when it applies, in the documented
/// order: what the declarations say, for the restart-only list and its
/// checks.
pub fn every_key() -> Vec<(String, Applies)> {
    fn of<S: Section>() -> impl Iterator<Item = (String, Applies)> {
        S::KEYS.iter().map(|k| (k.path(), k.applies))
    }
    of::<NodeSection>()
        .chain(of::<GossipSection>())
        .chain(of::<BatonSection>())
        .chain(of::<StatsdSection>())
        .chain(of::<TelemetrySection>())
        .chain(of::<LinksSection>())
        .chain(of::<StatusSection>())
        .chain(of::<LogSection>())
        .collect()
}

/// The keys a reload holds back until a restart, as `<section>.<key>`.
pub fn restart_only() -> Vec<String> {
    every_key().into_iter().filter(|(_, a)| *a == Applies::Restart).map(|(path, _)| path).collect()
}

/// The keys whose values differ between two configs, as paths: what a
/// reload applied (for its log line).
pub fn changed(before: &Config, after: &Config) -> Vec<String> {
    let mut paths = Vec::new();
    diff(&before.node, &after.node, &mut paths);
    diff(&before.gossip, &after.gossip, &mut paths);
    diff(&before.baton, &after.baton, &mut paths);
    diff(&before.statsd, &after.statsd, &mut paths);
    diff(&before.telemetry, &after.telemetry, &mut paths);
    diff(&before.links, &after.links, &mut paths);
    diff(&before.status, &after.status, &mut paths);
    diff(&before.log, &after.log, &mut paths);
    // The keyring prints redacted: compare the keys themselves.
    if before.gossip.keys != after.gossip.keys && !paths.iter().any(|p| p.starts_with("gossip.secret")) {
        paths.push("gossip.secret_file (keys)".to_owned());
    }
    paths
}

fn diff<S: Section>(before: &S, after: &S, paths: &mut Vec<String>) {
    paths.extend(S::KEYS.iter().filter(|k| k.value(before) != k.value(after)).map(Key::path));
}

/// Restores `running`'s value of each restart-only key of `S` that `wanted`
/// changes, and names it in `held`.
fn keep<S: Section>(running: &S, wanted: &mut S, held: &mut Vec<Held>) {
    let kept: Vec<(&Key<S>, Value, Value)> = S::KEYS
        .iter()
        .filter(|k| k.applies == Applies::Restart)
        .map(|k| (k, k.value(running), k.value(wanted)))
        .filter(|(_, was, now)| was != now)
        .collect();
    // Twice, as `key::read` sets values: a check may read a key restored
    // after it (`multicast_addr` reads `broadcast_only`).
    for (k, was, _) in &kept {
        let _ = k.restore(wanted, was);
    }
    for (k, was, now) in kept {
        if let Err(e) = k.restore(wanted, &was) {
            unreachable!("{} refused its running value {was}: {e}", k.path());
        }
        held.push(Held { path: k.path(), running: was, wanted: now });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::known_keys;

    /// Each key is declared live or restart-only (`Key::live`,
    /// `Key::restart`: a declaration that says neither does not compile),
    /// and the declarations cover exactly the keys the validator knows.
    /// The restart-only list is pinned: moving a key from one kind to the
    /// other changes what a reload does, which operators rely on
    /// (docs/configuration.md).
    #[test]
    fn every_key_says_when_it_applies_and_the_restart_list_names_real_keys() {
        let known: Vec<String> = known_keys()
            .into_iter()
            .flat_map(|(s, keys)| keys.into_iter().map(move |k| format!("{s}.{k}")))
            .collect();
        let declared: Vec<String> = every_key().into_iter().map(|(path, _)| path).collect();
        assert_eq!(declared, known, "every known key declares when it applies, and only those");
        let restart = restart_only();
        for path in &restart {
            assert!(known.contains(path), "{path} is not a key");
        }
        assert_eq!(
            restart,
            [
                "node.name",
                "node.cluster",
                "node.state_dir",
                "gossip.strategy",
                "gossip.port",
                "gossip.if_addr",
                "gossip.multicast_if",
                "gossip.multicast_addr",
                "gossip.multicast_ttl",
                "gossip.broadcast_only",
                "gossip.hosts",
                "gossip.dns_name",
                "gossip.data_port",
                "gossip.max_members",
                "status.listen",
            ]
        );
        let live = every_key().into_iter().filter(|(_, a)| *a == Applies::Live).count();
        assert_eq!(live + restart.len(), known.len(), "no key is neither, none is both");
    }
}
