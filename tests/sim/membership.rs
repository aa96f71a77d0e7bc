//! Membership on the simulator: joins, crashes, loss, partitions, leaves,
//! restarts, clock offsets, shared names and hostile datagrams, all on a
//! virtual clock with the real core.

use std::time::Duration;

use herd::core::membership::{Change, MemberState};
use herd::core::node::{Dest, Event, Reason, Via};
use herd::core::wire::WireError;

use crate::harness::{self, DATA_PORT, GOSSIP_PORT, HEARTBEAT, SECOND, Sim, addr};

fn up(c: &Change) -> bool {
    matches!(c, Change::Up)
}
fn down(c: &Change) -> bool {
    matches!(c, Change::Down { .. })
}

fn formed(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(n, seed);
    sim.start_all_within(HEARTBEAT);
    sim.run_for(2 * SECOND);
    for a in 0..n {
        for b in 0..n {
            if a != b {
                assert_eq!(sim.state(a, b), Some(MemberState::Alive), "{a} sees {b}");
            }
        }
    }
    sim
}

#[test]
fn a_new_node_is_seen_by_all_within_one_heartbeat_and_sees_all() {
    let mut worst = Duration::ZERO;
    for seed in 0..20 {
        let mut sim = formed(5, seed);
        let newcomer = 4;
        sim.kill(newcomer);
        sim.run_for(10 * SECOND);
        let t0 = sim.elapsed();
        sim.start(newcomer);
        sim.run_for(2 * SECOND);
        for other in 0..4 {
            let seen = sim.first(other, newcomer, t0, up).expect("others see the newcomer");
            let sees = sim.first(newcomer, other, t0, up).expect("the newcomer sees the others");
            worst = worst.max(seen - t0).max(sees - t0);
        }
    }
    println!("worst join latency over 20 seeds: {worst:?}");
    assert!(worst <= HEARTBEAT + Duration::from_millis(100), "join took {worst:?}");
}

#[test]
fn a_crashed_node_is_marked_down_by_all_within_down_after_plus_one_heartbeat() {
    let mut worst = Duration::ZERO;
    for seed in 0..20 {
        let mut sim = formed(5, 100 + seed);
        sim.run_for(5 * SECOND);
        let t0 = sim.elapsed();
        sim.kill(2);
        sim.run_for(10 * SECOND);
        for other in [0, 1, 3, 4] {
            let at = sim.first(other, 2, t0, down).expect("crash detected");
            worst = worst.max(at - t0);
        }
    }
    println!("worst crash detection over 20 seeds: {worst:?}");
    assert!(worst <= Duration::from_secs(5) + HEARTBEAT, "detection took {worst:?}");
}

#[test]
fn no_false_down_in_a_simulated_hour_at_20_percent_loss() {
    let mut sim = formed(5, 7);
    let t0 = sim.elapsed();
    sim.loss = 0.20;
    sim.run_for(Duration::from_secs(3600));
    let downs = sim.member_events(down).into_iter().filter(|(at, ..)| *at >= t0).count();
    let suspects = sim.member_events(|c| matches!(c, Change::Suspect { .. })).len();
    println!("5 nodes, 1 h at 20 % loss: {downs} false downs, {suspects} suspicions");
    assert_eq!(downs, 0);
    for a in 0..5 {
        for b in 0..5 {
            if a != b {
                assert!(sim.state(a, b).unwrap().is_live());
            }
        }
    }
}

#[test]
fn a_partition_heals_on_its_own() {
    let mut sim = formed(6, 11);
    sim.partition(&[0, 0, 0, 1, 1, 1]);
    sim.run_for(20 * SECOND);
    assert_eq!(sim.state(0, 4), Some(MemberState::Down));
    assert_eq!(sim.state(4, 0), Some(MemberState::Down));
    assert_eq!(sim.state(0, 1), Some(MemberState::Alive));
    sim.heal();
    let t0 = sim.elapsed();
    sim.run_for(3 * SECOND);
    let mut worst = Duration::ZERO;
    for a in 0..6 {
        for b in 0..6 {
            if a != b {
                assert_eq!(sim.state(a, b), Some(MemberState::Alive), "{a} sees {b} after heal");
                if (a < 3) != (b < 3) {
                    let at = sim.first(a, b, t0, up).expect("up again after heal");
                    worst = worst.max(at - t0);
                }
            }
        }
    }
    println!("partition healed in {worst:?}");
    assert!(worst <= HEARTBEAT + Duration::from_millis(100));
}

#[test]
fn a_graceful_leave_is_seen_at_once() {
    let mut sim = formed(4, 3);
    let t0 = sim.elapsed();
    sim.stop(1);
    sim.run_for(SECOND);
    for other in [0, 2, 3] {
        let at = sim.first(other, 1, t0, |c| matches!(c, Change::Left)).expect("leave seen");
        assert!(at - t0 < Duration::from_millis(10), "leave took {:?}", at - t0);
        assert_eq!(sim.state(other, 1), Some(MemberState::Left));
    }
    // ...and no later "down" for a node that left.
    sim.run_for(10 * SECOND);
    assert!(sim.member_events(down).is_empty());
}

#[test]
fn a_restart_is_a_new_life_not_the_old_self() {
    let mut sim = formed(3, 5);
    let t0 = sim.elapsed();
    sim.kill(2);
    sim.run_for(SECOND);
    sim.start(2);
    sim.run_for(2 * SECOND);
    for other in [0, 1] {
        assert!(sim.first(other, 2, t0, |c| matches!(c, Change::Restarted { .. })).is_some());
        let m = sim.node(other).members().get("psc").unwrap();
        assert_eq!(m.incarnation, sim.nodes[2].incarnation);
        assert_eq!(m.state, MemberState::Alive);
    }
    // After being down, a restart is simply "up" again.
    sim.kill(2);
    sim.run_for(8 * SECOND);
    let t1 = sim.elapsed();
    sim.start(2);
    sim.run_for(2 * SECOND);
    assert!(sim.first(0, 2, t1, up).is_some());
}

#[test]
fn a_node_whose_clock_went_backwards_can_rejoin_once_down() {
    let mut sim = formed(3, 9);
    let old = sim.nodes[2].incarnation;
    sim.kill(2);
    sim.run_for(8 * SECOND);
    assert_eq!(sim.state(0, 2), Some(MemberState::Down));
    let t0 = sim.elapsed();
    sim.start_with_incarnation(2, old / 2);
    sim.run_for(2 * SECOND);
    assert!(sim.first(0, 2, t0, up).is_some());
    assert_eq!(sim.state(0, 2), Some(MemberState::Alive));
}

fn rejections(sim: &Sim, observer: usize) -> Vec<Reason> {
    sim.log
        .iter()
        .filter(|s| s.observer == observer)
        .filter_map(|s| match &s.event {
            Event::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn replayed_altered_and_foreign_datagrams_change_nothing() {
    let mut sim = formed(3, 13);
    sim.capture = Some(Vec::new());
    // A heartbeat goes out at least every 10 intervals.
    sim.run_for(11 * SECOND);
    let captured = sim.capture.take().unwrap();
    let (from, _, hb) = captured.iter().find(|(_, d, _)| *d == Dest::Group).cloned().unwrap();
    let to = (from + 1) % 3;
    let before = sim.node(to).rejections();

    // Replay: the same heartbeat again.
    sim.inject(to, Via::Gossip, addr(from, GOSSIP_PORT), hb.clone());
    // Altered: one bit flipped anywhere in the sealed part.
    for bit in [40usize, 8 * (hb.len() - 1), 8 * (hb.len() / 2) + 3] {
        let mut bad = hb.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        sim.inject(to, Via::Gossip, addr(from, GOSSIP_PORT), bad);
    }
    // Garbage and truncation.
    sim.inject(to, Via::Data, addr(from, DATA_PORT), b"HD".to_vec());
    sim.inject(to, Via::Data, addr(from, DATA_PORT), vec![0xff; 3000]);
    sim.run_for(Duration::from_millis(10));
    let after = sim.node(to).rejections();
    assert_eq!(after.replay - before.replay, 1);
    assert_eq!(after.auth - before.auth, 3);
    assert_eq!(after.malformed - before.malformed, 2);
    // Logged once per source per 10 s: the first of each burst.
    let reasons = rejections(&sim, to);
    assert!(reasons.contains(&Reason::Replay), "{reasons:?}");
    assert!(reasons.len() <= 2, "rate limit per source IP: {reasons:?}");
    assert_eq!(sim.node(to).members().live().count(), 2);
}

#[test]
fn a_node_with_the_wrong_secret_never_joins_and_is_counted() {
    let mut sim = Sim::new(3, 17);
    sim.nodes[2].keys = vec![b"not the secret".to_vec()];
    sim.start_all_within(HEARTBEAT);
    sim.run_for(10 * SECOND);
    for good in [0, 1] {
        assert_eq!(sim.state(good, 2), None, "intruder admitted by {good}");
        // Its three heartbeats of the start, an interval apart, at least.
        assert!(sim.node(good).rejections().auth >= 3);
        // Its datagrams name the key its secret derives, which they lack.
        let unknown = |r: &Reason| matches!(r, Reason::Wire(WireError::UnknownKey(_)));
        assert!(rejections(&sim, good).iter().any(unknown), "{:?}", rejections(&sim, good));
    }
    assert_eq!(sim.node(2).members().len(), 0);
    // An unauthenticated node is refused too.
    let mut sim = Sim::new(2, 18);
    sim.nodes[1].keys = Vec::new();
    sim.start_all_within(HEARTBEAT);
    sim.run_for(5 * SECOND);
    assert_eq!(sim.state(0, 1), None);
    assert!(sim.node(0).rejections().auth > 0);
    assert_eq!(sim.state(1, 0), None);
}

#[test]
fn the_member_table_is_capped() {
    let mut sim = Sim::new(8, 21);
    sim.template.identity.max_members = 3;
    sim.start_all_within(HEARTBEAT);
    sim.run_for(5 * SECOND);
    for i in 0..8 {
        assert_eq!(sim.node(i).members().len(), 3);
        assert!(sim.node(i).rejections().table_full > 0);
    }
}

#[test]
fn the_simulation_is_deterministic() {
    let run = |seed| {
        let mut sim = formed(4, seed);
        sim.loss = 0.3;
        sim.run_for(60 * SECOND);
        sim.kill(1);
        sim.run_for(10 * SECOND);
        sim.log.iter().map(|s| format!("{:?} {} {:?}", s.at, s.observer, s.event)).collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
}

#[test]
fn each_node_estimates_every_peers_clock_offset_within_a_millisecond() {
    // Skewed wall clocks (one a second and a half behind, as a Pi that has
    // not synced yet), a symmetric link of 1-2 ms each way: every node's
    // estimate of every peer's offset is within 1 ms of the true one.
    let skews_us: [i64; 4] = [0, 250_000, -1_500_000, 12_345];
    let mut sim = Sim::new(4, 17);
    for (i, skew) in skews_us.iter().enumerate() {
        sim.nodes[i].clock_skew_us = *skew;
    }
    sim.start_all_within(HEARTBEAT);
    sim.run_for(30 * SECOND);
    let mut worst: f64 = 0.0;
    for (i, own) in skews_us.iter().enumerate() {
        let stats = sim.node(i).link_stats(sim.now);
        assert_eq!(stats.len(), 3, "node {i} measures its 3 peers: {stats:?}");
        for s in &stats {
            let j = (0..4).find(|&j| harness::name(j) == s.peer).expect("a sim node");
            let truth = (skews_us[j] - own) as f64 / 1000.0;
            let estimate =
                s.clock_offset_ms.unwrap_or_else(|| panic!("node {i} has no offset for {}", s.peer));
            let error = (estimate - truth).abs();
            worst = worst.max(error);
            assert!(error < 1.0, "node {i} on {}: estimate {estimate} ms, truth {truth} ms", s.peer);
        }
    }
    println!("clock offsets: worst error {:.3} ms over 12 estimates", worst);
    herd_report(&format!(
        "SIM | clock offset | 4 nodes, skews 0, +250, -1500, +12.345 ms, 1-2 ms each way | worst error {worst:.3} ms"
    ));
}

#[test]
fn a_node_without_a_wall_clock_gives_and_gets_no_offset() {
    // Node 0 is handed no wall clock (as a core driven by a shell that has
    // none): its acks carry none, so its peers have no offset for it, and it
    // has none for them.
    let mut sim = Sim::new(3, 5);
    sim.nodes[0].no_wall_clock = true;
    sim.start_all_within(HEARTBEAT);
    sim.run_for(10 * SECOND);
    for s in sim.node(0).link_stats(sim.now) {
        assert!(s.rtt_ms.is_some() && s.clock_offset_ms.is_none(), "{s:?}");
    }
    for i in 1..3 {
        for s in sim.node(i).link_stats(sim.now) {
            assert!(s.rtt_ms.is_some(), "{s:?}");
            assert_eq!(s.clock_offset_ms.is_some(), s.peer != "psa", "node {i}: {s:?}");
        }
    }
}

fn herd_report(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The `NameConflict` events node `observer` reported, as (time, other's address).
fn conflict_lines(sim: &Sim, observer: usize) -> Vec<(Duration, std::net::IpAddr)> {
    sim.log
        .iter()
        .filter(|s| s.observer == observer)
        .filter_map(|s| match &s.event {
            Event::NameConflict(heard) => Some((s.at, heard.addr)),
            _ => None,
        })
        .collect()
}

/// The addresses node `i` currently records as using its name, sorted.
fn conflicts_of(sim: &Sim, i: usize) -> Vec<std::net::IpAddr> {
    let mut addrs: Vec<_> = sim.node(i).name_conflicts(sim.now).iter().map(|c| c.addr()).collect();
    addrs.sort();
    addrs
}

#[test]
fn nodes_sharing_a_name_record_each_other_until_one_leaves_or_falls_silent() {
    // Three Pis still named `raspberrypi`, and one renamed.
    let mut sim = Sim::new(4, 21);
    for i in 0..3 {
        sim.nodes[i].name = "raspberrypi".into();
    }
    sim.start_all_within(HEARTBEAT);
    sim.run_for(3 * SECOND);
    let ip = |i: usize| addr(i, 0).ip();
    for i in 0..3 {
        let others: Vec<_> = (0..3).filter(|&j| j != i).map(ip).collect();
        assert_eq!(conflicts_of(&sim, i), others, "node {i} records the other two");
        // One line per other node at once, not one per datagram.
        let lines = conflict_lines(&sim, i);
        assert_eq!(lines.iter().map(|(_, a)| *a).collect::<std::collections::BTreeSet<_>>().len(), 2);
        assert_eq!(lines.len(), 2, "node {i}: {lines:?}");
        assert!(sim.node(i).rejections().name_conflict >= 2);
        assert_eq!(sim.node(i).cluster_size(), 2, "node {i} sees only the renamed node");
    }
    // The renamed node has no conflict of its own.
    assert!(conflicts_of(&sim, 3).is_empty());
    assert_eq!(sim.node(0).conflict_window(), Duration::from_secs(60));

    // A conflict that goes on is logged again, once a minute at most.
    sim.run_for(150 * SECOND);
    let lines = conflict_lines(&sim, 0);
    let to_1: Vec<Duration> = lines.iter().filter(|(_, a)| *a == ip(1)).map(|(t, _)| *t).collect();
    assert!((3..=4).contains(&to_1.len()), "about one line a minute: {to_1:?}");
    assert!(to_1.windows(2).all(|w| w[1] - w[0] >= 60 * SECOND), "{to_1:?}");
    assert_eq!(conflicts_of(&sim, 0), [ip(1), ip(2)], "still current between heartbeats");

    // Node 2 leaves (to be renamed): over at once for the other two.
    sim.stop(2);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(conflicts_of(&sim, 0), [ip(1)]);
    assert_eq!(conflicts_of(&sim, 1), [ip(0)]);
    let over = sim.log.iter().filter(|s| matches!(s.event, Event::NameConflictOver { .. })).count();
    assert_eq!(over, 2, "each says once that it is over");
    // Node 1 crashes: it falls silent, and is forgotten after the window.
    sim.kill(1);
    // Heard at most a refresh period (10 s) before the crash.
    sim.run_for(40 * SECOND);
    assert_eq!(conflicts_of(&sim, 0), [ip(1)], "within the window: still shown");
    sim.run_for(30 * SECOND);
    assert!(conflicts_of(&sim, 0).is_empty(), "silent for the window: over");
}
