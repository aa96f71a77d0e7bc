//! Scenario 1: discovery across hosts, by each strategy. Five hosts start
//! together; every agent must log `member up` for each of the other four,
//! and each host's status endpoint must count five live members.

use std::time::{Duration, Instant};

use crate::common::{Agent, member, toml_str, wait_until};
use crate::harness::{GOSSIP_PORT, Lab, report};

const HOSTS: usize = 5;

/// Starts five agents configured by `f`, asserts full discovery, reports the
/// time from the last start to the last `member up`.
fn discover(tag: &str, f: impl Fn(&Lab, usize, crate::common::Spec) -> crate::common::Spec) {
    let Some(lab) = Lab::new(tag, HOSTS) else { return };
    let agents: Vec<Agent> = lab.start_all(HOSTS, |i, spec| f(&lab, i, spec));
    let last_start = agents.iter().map(|a| a.spawned).max().unwrap();
    let mut worst = Duration::ZERO;
    for a in &agents {
        for b in agents.iter().filter(|b| b.name != a.name) {
            let at: Instant = a.expect(&member("up", &b.name), Duration::from_secs(5));
            worst = worst.max(at.saturating_duration_since(last_start));
        }
    }
    let all: Vec<usize> = (1..=HOSTS).collect();
    assert!(
        wait_until(Duration::from_secs(3), || {
            let s = lab.statuses(&all);
            s.len() == HOSTS && s.values().all(|s| s.live_members == HOSTS)
        }),
        "every status endpoint should count {HOSTS} live members: {:?}",
        lab.statuses(&all).iter().map(|(i, s)| (i, s.live_members)).collect::<Vec<_>>()
    );
    report(
        &format!("1. discovery ({tag})"),
        &format!(
            "{HOSTS} hosts, each logs `member up` for the other {} and /status counts {HOSTS} live",
            HOSTS - 1
        ),
        &format!("all {} pairs joined {} ms after the last start", HOSTS * (HOSTS - 1), worst.as_millis()),
    );
}

#[test]
fn multicast_finds_every_host() {
    discover("multicast", |_, _, spec| spec);
}

#[test]
fn static_hosts_find_every_host() {
    discover("static", |lab, _, spec| {
        let hosts: Vec<String> =
            (1..=HOSTS).map(|j| toml_str(&format!("{}:{GOSSIP_PORT}", lab.addr(j)))).collect();
        spec.gossip("strategy", &toml_str("static")).gossip("hosts", &format!("[{}]", hosts.join(", ")))
    });
}

#[test]
fn broadcast_finds_every_host() {
    discover("broadcast", |_, _, spec| {
        spec.gossip("broadcast_only", "true").gossip("multicast_addr", &toml_str("10.77.0.255"))
    });
}
