//! The baton relay on the simulator: laps, exactly one baton, failover,
//! partitions, hand-off, power cuts, and a long random run with kills,
//! restarts, loss and partitions, checked against the exactly-one-baton rules
//! (docs/design.md).

use std::collections::BTreeSet;
use std::time::Duration;

use herd::core::baton::BatonEvent;
use rand::RngExt;

use crate::harness::relay::{Killed, Tally, Upset, assert_monotonic_per_node, regenerated_since, relay};
use crate::harness::{HEARTBEAT, REGENERATE_AFTER, SECOND, Sim};

#[test]
fn the_baton_starts_by_itself_and_each_lap_visits_every_member_once() {
    let mut sim = relay(5, 1, Duration::from_millis(20));
    sim.run_for(30 * SECOND);
    let passes = sim.passes();
    // One baton: the counters are exactly 1, 2, 3, ... in time order.
    for (i, (_, _, counter)) in passes.iter().enumerate() {
        assert_eq!(*counter, i as u64 + 1);
    }
    // The starter is the lowest name (leaderless), and after its first pass the
    // passers come in laps of 5 in which every member appears once.
    assert_eq!(passes[0].1, 0, "psa starts");
    let passers: Vec<usize> = passes.iter().map(|p| p.1).collect();
    let laps = passers[1..].chunks_exact(5);
    assert!(laps.len() > 100);
    for lap in laps {
        let set: BTreeSet<_> = lap.iter().collect();
        assert_eq!(set.len(), 5, "lap {lap:?}");
    }
    assert!(sim.baton_events().iter().all(|(_, _, e)| !matches!(e, BatonEvent::Regenerated { .. })));
}

#[test]
fn main_node_starts_the_baton() {
    let mut sim = Sim::new(4, 2).with_baton(Duration::from_millis(50));
    sim.template.tuning.baton.main_node = "psc".into();
    sim.start_all_within(HEARTBEAT);
    sim.run_for(5 * SECOND);
    let started: Vec<_> =
        sim.baton_events().into_iter().filter(|(_, _, e)| matches!(e, BatonEvent::Started { .. })).collect();
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].1, 2);
}

#[test]
fn nodes_with_the_baton_disabled_are_left_out() {
    let mut sim = Sim::new(5, 3).with_baton(Duration::from_millis(20));
    sim.nodes[0].relays = Some(false);
    sim.nodes[3].relays = Some(false);
    sim.start_all_within(HEARTBEAT);
    sim.run_for(20 * SECOND);
    let passers: BTreeSet<usize> = sim.passes().iter().map(|p| p.1).collect();
    assert_eq!(passers, BTreeSet::from([1, 2, 4]));
    assert!(sim.passes().len() > 100);
}

#[test]
fn a_killed_holder_is_replaced_within_bound_by_one_node_and_the_counter_goes_on() {
    let mut worst = Duration::ZERO;
    for seed in 0..10 {
        let mut sim = relay(5, 10 + seed, Duration::from_millis(500));
        let wait = Duration::from_millis(sim.rng().random_range(0..2000));
        sim.run_for(wait);
        let holder = loop {
            let still: Vec<_> = sim.holders().into_iter().filter(|h| h.3).collect();
            if let [h] = still.as_slice() {
                break h.0;
            }
            sim.run_for(Duration::from_millis(10));
        };
        let before = sim.passes().iter().map(|p| p.2).max().unwrap();
        let t0 = sim.elapsed();
        sim.kill(holder);
        sim.run_for(10 * SECOND);
        let regen = regenerated_since(&sim, t0);
        assert_eq!(regen.len(), 1, "seed {seed}: regenerated once, by one node: {regen:?}");
        let next = sim.passes().into_iter().find(|p| p.0 >= t0).expect("relay resumed");
        assert!(next.2 > before, "counter went on: {} after {before}", next.2);
        // The new holder holds it like any other before its first pass.
        assert!(next.0 <= regen[0].0 + Duration::from_millis(510));
        worst = worst.max(regen[0].0 - t0);
    }
    println!("holder kill → regenerated, worst of 10: {worst:?}");
    assert!(worst <= REGENERATE_AFTER + HEARTBEAT, "{worst:?}");
}

#[test]
fn a_graceful_leave_hands_the_baton_off() {
    let mut sim = relay(4, 5, Duration::from_millis(300));
    let holder = loop {
        if let Some(h) = sim.holders().into_iter().find(|h| h.3) {
            break h.0;
        }
        sim.run_for(Duration::from_millis(10));
    };
    let t0 = sim.elapsed();
    sim.stop(holder);
    sim.run_for(5 * SECOND);
    let next = sim.passes().into_iter().find(|p| p.0 > t0 && p.1 != holder).expect("relay went on");
    assert!(next.0 - t0 < Duration::from_millis(400), "resumed after {:?}", next.0 - t0);
    assert!(sim.baton_events().iter().all(|(_, _, e)| !matches!(e, BatonEvent::Regenerated { .. })));
}

#[test]
fn a_partition_keeps_a_baton_on_each_side_and_healing_leaves_one() {
    let mut sim = relay(6, 6, Duration::from_millis(50));
    sim.partition(&[0, 0, 0, 1, 1, 1]);
    sim.run_for(20 * SECOND);
    let sides: BTreeSet<bool> = sim.holders().iter().map(|h| h.0 < 3).collect();
    assert_eq!(sides.len(), 2, "each side has a baton: {:?}", sim.holders());
    let before = sim.passes().iter().map(|p| p.2).max().unwrap();
    sim.heal();
    let t0 = sim.elapsed();
    sim.run_for(2 * HEARTBEAT);
    for _ in 0..200 {
        sim.run_for(Duration::from_millis(10));
        assert!(
            sim.holders().iter().filter(|h| h.3).count() <= 1,
            "two batons after heal: {:?}",
            sim.holders()
        );
    }
    let after: Vec<_> = sim.passes().into_iter().filter(|p| p.0 >= t0 + 2 * HEARTBEAT).collect();
    assert!(after.len() > 10);
    assert!(after.iter().all(|p| p.2 > before), "counters never go back after a heal");
    assert_monotonic_per_node(&sim);
}

#[test]
fn lost_passes_are_resent_and_the_relay_survives_loss() {
    let mut sim = relay(4, 7, Duration::from_millis(20));
    sim.loss = 0.3;
    sim.run_for(60 * SECOND);
    let retransmits =
        sim.baton_events().iter().filter(|(_, _, e)| matches!(e, BatonEvent::Retransmit { .. })).count();
    assert!(retransmits > 10, "{retransmits}");
    let late = sim.passes().into_iter().filter(|p| p.0 > 55 * SECOND).count();
    assert!(late > 0, "still moving at the end");
    assert_monotonic_per_node(&sim);
}

/// Thousands of virtual seconds of random kills, restarts, loss and
/// partitions. Invariants: every node's counter only grows; whenever the
/// cluster has been connected and loss-free for two heartbeats there is at
/// most one baton; after a holder kill in a calm cluster the relay resumes
/// within `regenerate_after` + one heartbeat.
#[test]
fn exactly_one_baton_through_random_chaos() {
    for seed in [101, 202, 303] {
        chaos(seed, Duration::from_secs(1500));
    }
}

fn chaos(seed: u64, length: Duration) {
    let n = 6;
    let mut sim = relay(n, seed, Duration::from_millis(50));
    let mut checked_samples = 0;
    let mut worst_resume = Duration::ZERO;
    let upsets = [
        // Kill a random node (the holder half the time), restart it later.
        Upset::Kill { down: Duration::from_secs(8), holder_first: true },
        // Partition into two random sides, then heal.
        Upset::Partition { secs: 5..30 },
        // A period of 20 % loss.
        Upset::Loss { loss: 0.2, secs: 5..30 },
    ];
    let killed = |sim: &Sim, k: Killed| {
        let calm = k.at >= k.calm_since + 2 * HEARTBEAT;
        if k.holder && calm {
            let t0 = k.at;
            let next = sim.passes().into_iter().find(|p| p.0 >= t0).expect("relay resumed");
            worst_resume = worst_resume.max(next.0 - t0);
            assert!(
                next.0 - t0 <= REGENERATE_AFTER + HEARTBEAT,
                "seed {seed}: resumed after {:?}",
                next.0 - t0
            );
        }
    };
    // Calm: sample the one-baton invariant every 20 ms.
    let calm = |sim: &mut Sim, calm_since: Duration| {
        let d = sim.rng().random_range(5..20);
        for _ in 0..d * 50 {
            sim.run_for(Duration::from_millis(20));
            if sim.elapsed() >= calm_since + 2 * HEARTBEAT {
                let still = sim.holders().into_iter().filter(|h| h.3).count();
                assert!(still <= 1, "seed {seed} at {:?}: {:?}", sim.elapsed(), sim.holders());
                checked_samples += 1;
            }
        }
    };
    let Tally { kills, heals, loss_periods, .. } = sim.chaos(length, &upsets, killed, calm);
    assert_monotonic_per_node(&sim);
    println!(
        "seed {seed}: {:?} simulated, {} passes, {kills} kills, {heals} partitions healed, {loss_periods} loss periods, \
         {checked_samples} one-baton samples, worst holder-kill resume {worst_resume:?}",
        length,
        sim.passes().len()
    );
    assert!(kills > 5 && heals > 5 && loss_periods > 5 && checked_samples > 5_000);
}

/// Unpaced (`hold = 0`), acks are delayed and mostly implied by the baton
/// coming back; the relay must still be exactly one baton with no resends, and
/// survive loss.
#[test]
fn unpaced_relay_with_delayed_acks() {
    let mut sim = relay(4, 8, Duration::ZERO);
    sim.run_for(5 * SECOND);
    let passes = sim.passes();
    assert!(passes.len() > 5_000, "{}", passes.len());
    for (i, (_, _, counter)) in passes.iter().enumerate() {
        assert_eq!(*counter, i as u64 + 1, "one baton, no gaps");
    }
    let events = sim.baton_events();
    let count = |f: fn(&BatonEvent) -> bool| events.iter().filter(|(_, _, e)| f(e)).count();
    assert_eq!(count(|e| matches!(e, BatonEvent::Retransmit { .. })), 0);
    assert_eq!(count(|e| matches!(e, BatonEvent::Dropped { .. })), 0);
    assert_eq!(count(|e| matches!(e, BatonEvent::Regenerated { .. })), 0);
    // With loss, lost passes are resent and the relay goes on.
    sim.loss = 0.1;
    sim.run_for(20 * SECOND);
    // Each lost pass costs a `pass_timeout` (250 ms): expect tens per second.
    let late = sim.passes().into_iter().filter(|p| p.0 > sim.elapsed() - 5 * SECOND).count();
    let events = sim.baton_events();
    let regenerated = events.iter().filter(|(_, _, e)| matches!(e, BatonEvent::Regenerated { .. })).count();
    println!("10 % loss: {late} passes in the last 5 s, {regenerated} regenerations");
    assert!(late > 50, "still moving: {late} passes in the last 5 s");
    assert_eq!(regenerated, 0, "lost passes are resent, not regenerated");
    assert_monotonic_per_node(&sim);
}

/// A power cut of the whole cluster, over many seeds: every node has a state
/// file (`[node] state_dir`), all are killed at one random instant and
/// started again from their files, in a random order within a second. The
/// first counter sent after the cut is above every counter sent before it;
/// without state files it starts again from 1.
#[test]
fn after_a_power_cut_the_counter_continues_from_the_state_files() {
    let mut jumps = Vec::new();
    for seed in 0..16 {
        let mut sim = Sim::new(5, 500 + seed).with_baton(Duration::from_millis(100));
        for n in &mut sim.nodes {
            n.state = Some(0);
        }
        sim.start_all_within(HEARTBEAT);
        // Up to 40 minutes: several reservations each, the last at any point of its range.
        let uptime = Duration::from_millis(sim.rng().random_range(3_000..2_400_000));
        sim.run_for(uptime);
        let before = sim.passes().iter().map(|p| p.2).max().expect("passes before the cut");
        let files: Vec<u64> = sim.nodes.iter().map(|n| n.state.unwrap_or(0)).collect();
        assert!(files.iter().all(|f| *f > before), "seed {seed}: every file above {before}: {files:?}");
        for i in 0..5 {
            sim.kill(i);
        }
        let t0 = sim.elapsed();
        // Power back after up to 5 s; the Pis boot within a second of each other.
        let off = Duration::from_millis(sim.rng().random_range(0..5_000));
        sim.run_for(off);
        let mut order: Vec<(u64, usize)> = (0..5).map(|i| (sim.rng().random_range(0..1000), i)).collect();
        order.sort();
        let mut at = 0;
        for (ms, i) in order {
            sim.run_for(Duration::from_millis(ms - at));
            at = ms;
            sim.start(i);
        }
        sim.run_for(10 * SECOND);
        let first = sim.passes().into_iter().find(|p| p.0 >= t0).expect("the relay starts again");
        assert!(first.2 > before, "seed {seed}: first after the cut {} is not above {before}", first.2);
        assert_monotonic_per_node(&sim);
        jumps.push((before, first.2));
    }
    println!("power cut, 16 seeds, 5 nodes at hold 100ms: (highest before, first after) {jumps:?}");
    // The control: without state files the counter starts again low.
    let mut sim = relay(5, 499, Duration::from_millis(100));
    sim.run_for(10 * SECOND);
    let before = sim.passes().iter().map(|p| p.2).max().unwrap();
    for i in 0..5 {
        sim.kill(i);
    }
    let t0 = sim.elapsed();
    for i in 0..5 {
        sim.start(i);
    }
    sim.run_for(10 * SECOND);
    let first = sim.passes().into_iter().find(|p| p.0 >= t0).unwrap();
    assert!(first.2 <= before, "without state files: {} after {before}", first.2);
}
