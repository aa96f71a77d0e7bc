//! reload: what a config file re-read while the agent runs (SIGHUP,
//! `systemctl reload herd`) may change. Keys that fix this life of the agent
//! (its name and cluster, its sockets and how it finds peers, the status
//! endpoint's address, the member table's size) need a restart: a reload
//! keeps their running values and names them. Everything else applies live.
//! A file that does not pass `herd check` changes nothing (the caller keeps
//! the config it had).
//!
//! Must not: touch the running agent (the shell applies the plan).

use toml::Value;

use super::key::{Key, Section};
use super::{Config, GossipSection, NodeSection, StatusSection};

/// Keys a reload cannot change, by section.
const NODE: &[&str] = &["name", "cluster", "state_dir"];
const GOSSIP: &[&str] = &[
    "strategy",
    "port",
    "if_addr",
    "multicast_if",
    "multicast_addr",
    "multicast_ttl",
    "broadcast_only",
    "hosts",
    "dns_name",
    "data_port",
    "max_members",
];
const STATUS: &[&str] = &["listen"];

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
    keep::<NodeSection>(&running.node, &mut wanted.node, NODE, &mut held);
    keep::<GossipSection>(&running.gossip, &mut wanted.gossip, GOSSIP, &mut held);
    keep::<StatusSection>(&running.status, &mut wanted.status, STATUS, &mut held);
    (wanted, held)
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

fn keep<S: Section>(running: &S, wanted: &mut S, names: &[&str], held: &mut Vec<Held>) {
    let kept: Vec<(&Key<S>, Value, Value)> = S::KEYS
        .iter()
        .filter(|k| names.contains(&k.name))
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
