//! A stalled node on the simulator: a node frozen for seconds (SIGSTOP,
//! a worn SD card blocking every process) at a random instant, often the
//! baton's holder, resuming as the agent's loop does: its queued datagrams
//! one turn at a time, with its late timer after the first (`Sim::freeze`).
//! Invariants: no gauge anywhere below (or equal to) the highest gauge sent
//! before it; one baton within two heartbeats of the resume; no member
//! marked down by the frozen node on waking; the frozen node relays again.

use std::collections::BTreeSet;
use std::time::Duration;

use herd::core::baton::BatonEvent;
use herd::core::membership::Change;
use rand::RngExt;

use crate::harness::relay::{assert_monotonic_per_node, relay};
use crate::harness::{HEARTBEAT, SECOND};

const SEEDS: u64 = 200;

/// What one seed's run showed.
#[derive(Default)]
struct Run {
    holder_frozen: bool,
    /// Gauges not above the highest sent before them (cluster-wide).
    stale: usize,
    /// Samples after resume + two heartbeats with more than one baton.
    doubled: usize,
    /// Members the frozen node marked down, or suspect, after it froze.
    downs: usize,
    suspects: usize,
    /// Batons the frozen node dropped on waking (superseded meanwhile).
    dropped: usize,
    /// Resume → the frozen node's next gauge.
    next_gauge: Option<Duration>,
}

fn run(seed: u64) -> Run {
    let n = 4;
    let mut sim = relay(n, 7000 + seed, Duration::from_millis(100));
    let wait = Duration::from_millis(sim.rng().random_range(0..3000));
    sim.run_for(wait);
    // The holder (still or mid-pass) two times in three, else any node.
    let holders: Vec<usize> = sim.holders().iter().map(|h| h.0).collect();
    let pick_holder = !holders.is_empty() && sim.rng().random_range(0..3) < 2;
    let victim = if pick_holder {
        holders[sim.rng().random_range(0..holders.len())]
    } else {
        sim.rng().random_range(0..n)
    };
    let frozen_for = Duration::from_millis(sim.rng().random_range(2000..8000));
    let t0 = sim.elapsed();
    sim.freeze(victim, frozen_for);
    sim.run_for(frozen_for);
    let resumed = sim.elapsed();
    assert!(!sim.is_frozen(victim));

    // One baton from two heartbeats after the resume on, sampled every 10 ms.
    let mut doubled = 0;
    sim.run_for(2 * HEARTBEAT);
    for _ in 0..800 {
        sim.run_for(Duration::from_millis(10));
        let holders = sim.holders();
        let batons: BTreeSet<_> = holders.iter().map(|h| h.1).collect();
        let still = holders.iter().filter(|h| h.3).count();
        if batons.len() > 1 || still > 1 {
            doubled += 1;
        }
    }

    let mut r = Run { holder_frozen: pick_holder, doubled, ..Run::default() };
    let mut highest = 0;
    for (at, node, counter) in sim.passes() {
        if counter <= highest {
            r.stale += 1;
            eprintln!(
                "seed {seed}: {node} sent {counter} at {at:?} after {highest} (froze {victim} at {t0:?})"
            );
        }
        highest = highest.max(counter);
    }
    let by_victim = |pred: fn(&Change) -> bool| {
        sim.member_events(pred).into_iter().filter(|(at, o, _)| *o == victim && *at >= t0).count()
    };
    r.downs = by_victim(|c| matches!(c, Change::Down { .. }));
    r.suspects = by_victim(|c| matches!(c, Change::Suspect { .. }));
    r.dropped = sim
        .baton_events()
        .iter()
        .filter(|(at, o, e)| *o == victim && *at >= resumed && matches!(e, BatonEvent::Dropped { .. }))
        .count();
    r.next_gauge = sim.passes().into_iter().find(|p| p.0 >= resumed && p.1 == victim).map(|p| p.0 - resumed);
    assert!(sim.passes().iter().any(|p| p.0 >= sim.elapsed() - SECOND), "seed {seed}: the relay moves");
    assert_monotonic_per_node(&sim);
    r
}

#[test]
fn a_frozen_node_sends_no_stale_gauge_no_second_baton_and_no_false_down() {
    let runs: Vec<Run> = (0..SEEDS).map(run).collect();
    let sum = |f: fn(&Run) -> usize| runs.iter().map(f).sum::<usize>();
    let (stale, doubled, downs, suspects) =
        (sum(|r| r.stale), sum(|r| r.doubled), sum(|r| r.downs), sum(|r| r.suspects));
    let holders = runs.iter().filter(|r| r.holder_frozen).count();
    let dropped = sum(|r| r.dropped);
    let mut next: Vec<Duration> = runs.iter().filter_map(|r| r.next_gauge).collect();
    next.sort();
    let back = next.len();
    let (median, worst) =
        (next.get(back / 2).copied().unwrap_or_default(), next.last().copied().unwrap_or_default());
    println!(
        "SIM | stall | {SEEDS} seeds, 4 nodes, a node frozen 2-8 s ({holders} holders) | stale gauges {stale} | \
         samples with 2 batons after resume + 2 heartbeats {doubled} | downs by the frozen node {downs}, \
         suspects {suspects} | batons dropped on waking {dropped} | frozen node's next gauge in {back}/{SEEDS} \
         runs: median {median:?}, worst {worst:?}"
    );
    assert_eq!(stale, 0, "gauges at or below the highest sent before them");
    assert_eq!(doubled, 0, "two batons after resume + two heartbeats");
    assert_eq!(downs, 0, "members marked down by the frozen node");
    assert_eq!(back as u64, SEEDS, "the frozen node relays again within 10 s");
}
