//! The exactly-one-baton rules (docs/design.md) under adversarial faults on
//! the simulator: a heal, a graceful leave or a kill at full speed, a holder
//! crashed and restarted at once, a regenerated counter after a self-pass, a
//! main node that comes up last, is down or does not relay, the relay turned
//! off and on by reloads, two nodes, one relaying node. The first seven once
//! broke the rules (a heal that left no baton, a graceful leave at full
//! speed that made a second one, late regeneration after a quick restart of
//! the holder, a regenerated counter equal to the dead holder's last gauge,
//! main_node pre-empted when it starts last, a relay turned off and on that
//! never went on, and a holder turned off that stopped the relay); they stay
//! as regression tests.

use std::collections::BTreeSet;
use std::time::Duration;

use herd::core::baton::BatonEvent;
use herd::core::node::Event;
use rand::RngExt;

use crate::harness::relay::{Upset, assert_monotonic_per_node, events_since, regenerated_since, relay};
use crate::harness::{HEARTBEAT, REGENERATE_AFTER, SECOND, Sim, ms};

/// A `Passed` event: (time, passer, counter).
type Pass = (Duration, usize, u64);

/// With one baton, every pass increments the one counter: in time order the
/// `Passed` counters of the whole cluster strictly increase. Returns the
/// pairs of consecutive passes that break this (a second baton, or a counter
/// that went back).
fn global_regressions(sim: &Sim, t0: Duration) -> Vec<(Pass, Pass)> {
    let p: Vec<_> = sim.passes().into_iter().filter(|p| p.0 >= t0).collect();
    p.windows(2).filter(|w| w[1].2 <= w[0].2).map(|w| (w[0], w[1])).collect()
}

/// Longest time without any pass in [t0, end].
fn longest_stall(sim: &Sim, t0: Duration) -> Duration {
    let mut last = t0;
    let mut worst = Duration::ZERO;
    for (at, _, _) in sim.passes().into_iter().filter(|p| p.0 >= t0) {
        worst = worst.max(at - last);
        last = at;
    }
    worst.max(sim.elapsed() - last)
}

/// Runs until node `i` holds the baton and is not mid-pass.
fn until_holding_still(sim: &mut Sim, i: usize) {
    for _ in 0..200_000 {
        if sim.holders().iter().any(|h| h.0 == i && h.3) {
            return;
        }
        sim.run_for(ms(1));
    }
    panic!("node {i} never held the baton");
}

// ---------------------------------------------------------------------------
// Cases that once broke the rules (regression tests)
// ---------------------------------------------------------------------------

/// After a 3|3 partition heals, the two batons collapse to one within two
/// heartbeats, not to none. One side keeps the old baton, the other
/// regenerates a greater one (epoch + 1) 3 s later, so the *losing* baton has
/// the higher counters. The bug: after the heal the losing side's nodes
/// adopted the greater id but kept advertising their (global)
/// `high`/`settled`; the winner's holder saw `view.id == its id &&
/// view.counter > its counter` and dropped its copy as "a copy of this baton
/// is ahead" (or its next pass was refused as Stale because `counter <=
/// settled`). Both batons died and one was regenerated `regenerate_after`
/// later: zero batons for ~3 s.
#[test]
fn a_heal_collapses_duplicates_to_one_baton_not_to_none() {
    let mut failures = Vec::new();
    for seed in 0..10 {
        let mut sim = relay(6, 600 + seed, ms(50));
        sim.partition(&[0, 0, 0, 1, 1, 1]);
        sim.run_for(20 * SECOND);
        let t0 = sim.elapsed();
        sim.heal();
        sim.run_for(6 * SECOND);
        let regen = regenerated_since(&sim, t0);
        let stall = longest_stall(&sim, t0);
        if !regen.is_empty() || stall > 2 * HEARTBEAT {
            let dropped = events_since(&sim, t0, |e| matches!(e, BatonEvent::Dropped { .. }));
            failures.push(format!(
                "seed {seed}: no pass for {stall:?}; dropped {dropped:?}; regenerated {regen:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{} of 10 heals lost both batons:\n{}", failures.len(), failures.join("\n"));
}

/// A graceful leave at full speed makes no second baton. Unpaced (`hold =
/// 0`) acks are delayed up to 25 ms, so at any moment several peers are still
/// `Passing` to a node that has long taken their pass. When that node leaves
/// gracefully, its `Leave` (gossip and data socket) can arrive before its
/// flushed acks. The bug: an ack from a member already `Left` was ignored by
/// `Node::handle` (Admit::Ignored), so each such peer "skipped" the leaver in
/// `on_members_changed` and forwarded a *new* pass: a second (third...) baton
/// in a connected cluster, and the cluster's gauge went back (e.g. 2703 then
/// 2699).
#[test]
fn a_graceful_leave_at_full_speed_makes_no_second_baton() {
    let mut failures = Vec::new();
    for seed in 0..20 {
        let mut sim = relay(4, 900 + seed, Duration::ZERO);
        // The node holding the highest counter: the one the baton is at.
        let leaver = sim.holders().into_iter().max_by_key(|h| h.2).expect("a holder").0;
        let t0 = sim.elapsed();
        sim.stop(leaver);
        sim.run_for(3 * SECOND);
        let bad = global_regressions(&sim, t0);
        if !bad.is_empty() {
            let skipped = events_since(&sim, t0, |e| matches!(e, BatonEvent::Skipped { .. }));
            failures.push(format!("seed {seed}: leaver {leaver}: {bad:?}; skipped {skipped:?}"));
        }
        assert_monotonic_per_node(&sim);
    }
    assert!(
        failures.is_empty(),
        "{} of 20 leaves made extra batons:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The holder psa (the lowest name, hence the regenerator) crashes and is
/// restarted 2.5 s later (systemd): the baton is regenerated within
/// `regenerate_after` + one heartbeat (4 s) of the crash. Its peers never
/// regenerate: psa is alive again in their tables, so they are not the
/// lowest. The bug: the new psa adopted the dead baton from the first
/// heartbeat view and `on_view` set `last_seen = now` on adoption, so psa
/// regenerated `regenerate_after` after its *restart*: ~5.5 s after the
/// crash.
#[test]
fn a_crashed_and_restarted_holder_is_replaced_within_bound() {
    let mut failures = Vec::new();
    for seed in 0..5 {
        let mut sim = relay(4, 1000 + seed, ms(100));
        until_holding_still(&mut sim, 0);
        let t0 = sim.elapsed();
        sim.kill(0);
        sim.run_for(ms(2500));
        sim.start(0);
        sim.run_for(10 * SECOND);
        let regen = regenerated_since(&sim, t0);
        match regen.first() {
            Some((at, _, _)) if *at - t0 <= REGENERATE_AFTER + HEARTBEAT => {}
            other => failures
                .push(format!("seed {seed}: regenerated {:?} after the crash", other.map(|r| r.0 - t0))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A regenerated baton's first gauge is above every counter any node
/// emitted, also when the dead holder had just passed to itself. With `hold >
/// 0`, a holder whose lap runs out may pass to itself: it emits `Passed { c +
/// 1 }` and holds again, and nobody else learns c + 1 until its next
/// heartbeat. The bug: killed then, the regenerator's `high` was c and the
/// regenerated baton's first gauge was c + 1 again, the same value from two
/// hosts. (Same for a pass that is lost and whose sender dies before
/// resending.)
#[test]
fn a_regenerated_baton_continues_above_the_dead_holders_last_gauge() {
    let mut failures = Vec::new();
    for seed in 0..5 {
        let mut sim = relay(4, 800 + seed, ms(500));
        // Run until a node has just passed to itself: its newest `Passed`
        // equals the counter it holds still.
        let (victim, emitted) = 'found: loop {
            let mark = sim.log.len();
            sim.run_for(ms(1));
            for s in &sim.log[mark..] {
                if let Event::Baton(BatonEvent::Passed { counter }) = s.event
                    && sim.holders().iter().any(|h| h.0 == s.observer && h.2 == counter && h.3)
                {
                    break 'found (s.observer, counter);
                }
            }
        };
        let t0 = sim.elapsed();
        sim.kill(victim);
        sim.run_for(10 * SECOND);
        let next = sim.passes().into_iter().find(|p| p.0 >= t0).expect("relay resumed");
        if next.2 <= emitted {
            failures.push(format!(
                "seed {seed}: node {victim} emitted {emitted} and died; node {} regenerated and emitted {}",
                next.1, next.2
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `main_node = "psd"`, and psd's agent comes up 0.9 to 2.5 s after the
/// others (Pis rarely boot together): psd starts the baton, and only psd. The
/// bug: the others' fallback in `check()` fired at `started +
/// regenerate_after` whether or not psd was alive, so psa started the baton
/// at 3 s and psd, which had heard of it by its own `started + start_after`,
/// never did. (With psd 0.9-1.0 s late both started one: two batons.)
#[test]
fn main_node_starts_the_baton_even_if_it_comes_up_last() {
    let mut failures = Vec::new();
    for late in [900, 1000, 1500, 2500] {
        let mut sim = Sim::new(4, 70 + late).with_baton(ms(50));
        sim.template.tuning.baton.main_node = "psd".into();
        for i in 0..3 {
            sim.start(i);
        }
        sim.run_for(ms(late));
        sim.start(3);
        sim.run_for(10 * SECOND);
        let started = events_since(&sim, Duration::ZERO, |e| matches!(e, BatonEvent::Started { .. }));
        let starters: Vec<usize> = started.iter().map(|s| s.1).collect();
        if starters != [3] {
            failures.push(format!("psd {late} ms late: started by {starters:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `[baton] enabled = false` reloaded into every node, then `true` again (a
/// reload each, the holder's first or last, at once or spread out; paced
/// and unpaced): while off, no node passes after its reload and none starts
/// or regenerates a baton, and the baton is kept, not lost; back on, the
/// same baton goes on at once, above its last counter, with no
/// regeneration. The bugs: a holder that found no peer relaying (its own
/// reload came first, or the peers' flags had not changed back yet) held it
/// alone, and only a change of membership resumed a baton held alone, not a
/// peer's relay flag coming back: the relay stopped for good (`holding 1`
/// and the same last gauge, until a restart of another node). And a node
/// out of the relay whose pass was refused passed again at once, to itself
/// and to the refuser: unpaced, thousands of gauges until the refuser's
/// heartbeat came.
#[test]
fn the_baton_goes_on_when_the_relay_is_turned_off_and_on_again() {
    for (case, (n, hold, holder_first, gap)) in [2, 3]
        .into_iter()
        .flat_map(|n| [ms(100), ms(0)].map(|hold| (n, hold)))
        .flat_map(|(n, hold)| [true, false].map(|h| (n, hold, h)))
        .flat_map(|(n, hold, h)| [ms(0), ms(300), 2 * HEARTBEAT].map(|g| (n, hold, h, g)))
        .enumerate()
    {
        let mut sim = relay(n, 1400 + case as u64, hold);
        let holder = if hold.is_zero() {
            sim.holders().first().expect("a holder").0
        } else {
            let holder = sim.holders().first().map_or(0, |h| h.0);
            until_holding_still(&mut sim, holder);
            holder
        };
        let mut order: Vec<usize> = (0..n).filter(|&i| i != holder).collect();
        if holder_first {
            order.insert(0, holder);
        } else {
            order.push(holder);
        }
        let first = if holder_first { "first" } else { "last" };
        let what = format!("{n} nodes, hold {hold:?}, holder reloaded {first}, {gap:?} apart");

        let mut off_at = vec![Duration::ZERO; n];
        for &i in &order {
            sim.set_relaying(i, false);
            off_at[i] = sim.elapsed();
            sim.run_for(gap);
        }
        let t_off = sim.elapsed();
        sim.run_for(10 * SECOND);
        // After its own reload a node may still offer a baton it was
        // passing when it went out of the relay (to a peer it has not yet
        // heard go out too); every such offer is refused. Nobody takes a
        // baton while out of the relay.
        let late: Vec<Pass> = sim.passes().into_iter().filter(|p| p.0 > off_at[p.1]).collect();
        let events = sim.baton_events();
        let refused = |p: &Pass| {
            events.iter().any(|(at, o, e)| *o == p.1 && *at >= p.0 && matches!(e, BatonEvent::Skipped { .. }))
        };
        let taken: Vec<_> = events
            .iter()
            .filter(|(at, o, e)| *at > off_at[*o] && matches!(e, BatonEvent::Taken { .. }))
            .collect();
        assert!(taken.is_empty(), "{what}: taken after the node's own reload: {taken:?}");
        assert!(late.iter().all(refused), "{what}: passes after the node's own reload: {late:?}");
        assert!(late.len() < n, "{what}: more offers than peers after the reload: {late:?}");
        let started = events_since(&sim, off_at[order[0]], |e| {
            matches!(e, BatonEvent::Started { .. } | BatonEvent::Regenerated { .. })
        });
        assert!(started.is_empty(), "{what}: {started:?}");
        assert_eq!(sim.holders().len(), 1, "{what}: the baton is kept while off");
        let last = sim.passes().last().copied().expect("passes");

        for &i in &order {
            sim.set_relaying(i, true);
            sim.run_for(gap);
        }
        let t_on = sim.elapsed();
        sim.run_for(10 * SECOND);
        let after: Vec<Pass> = sim.passes().into_iter().filter(|p| p.0 >= t_on).collect();
        assert!(after.len() > 80, "{what}: {} passes in 10 s back on, last {last:?}", after.len());
        assert!(
            after[0].0 - t_on < ms(200),
            "{what}: first pass {:?} after the last reload",
            after[0].0 - t_on
        );
        assert!(longest_stall(&sim, t_on) < ms(300), "{what}");
        let passers: BTreeSet<usize> = after.iter().map(|p| p.1).collect();
        assert_eq!(passers.len(), n, "{what}: every node relays again");
        assert!(global_regressions(&sim, Duration::ZERO).is_empty(), "{what}: one baton, never back");
        let started = events_since(&sim, t_off, |e| {
            matches!(e, BatonEvent::Started { .. } | BatonEvent::Regenerated { .. })
        });
        assert!(started.is_empty(), "{what}: the same baton goes on: {started:?}");
    }
}

/// The holder alone is taken out of the relay by a reload (paced or not):
/// it passes the baton on at once (its last pass) and never again, and the
/// others relay on without a regeneration; back in, it is in the laps
/// again. The bug: it
/// kept the baton, and its heartbeats said so, so nobody regenerated it:
/// the whole relay stopped until the node was restarted.
#[test]
fn a_holder_taken_out_of_the_relay_passes_the_baton_on() {
    for seed in 0..8 {
        let n = 3 + seed as usize % 2;
        let hold = if seed < 4 { ms(100) } else { ms(0) };
        let mut sim = relay(n, 1500 + seed, hold);
        let wait = ms(sim.rng().random_range(0..300));
        sim.run_for(wait);
        let holder = sim.holders().into_iter().max_by_key(|h| h.2).expect("a holder").0;
        let t0 = sim.elapsed();
        sim.set_relaying(holder, false);
        sim.run_for(10 * SECOND);
        let by_it: Vec<Pass> = sim.passes().into_iter().filter(|p| p.0 > t0 && p.1 == holder).collect();
        assert!(by_it.is_empty(), "seed {seed}: passes after its reload: {by_it:?}");
        assert!(longest_stall(&sim, t0) < ms(300), "seed {seed}");
        assert!(regenerated_since(&sim, t0).is_empty(), "seed {seed}");
        let passers: BTreeSet<usize> =
            sim.passes().iter().filter(|p| p.0 > t0 + ms(500)).map(|p| p.1).collect();
        assert_eq!(passers, (0..n).filter(|&i| i != holder).collect(), "seed {seed}");

        let t1 = sim.elapsed();
        sim.set_relaying(holder, true);
        sim.run_for(10 * SECOND);
        assert!(sim.passes().iter().any(|p| p.0 > t1 && p.1 == holder), "seed {seed}: back in the laps");
        assert!(global_regressions(&sim, Duration::ZERO).is_empty(), "seed {seed}");
        assert!(regenerated_since(&sim, t0).is_empty(), "seed {seed}");
    }
}

// ---------------------------------------------------------------------------
// Cases that have always held (coverage)
// ---------------------------------------------------------------------------

/// `main_node` names a node that is down: the lowest live node starts the
/// baton after `regenerate_after`, and when main_node comes up later it joins
/// the relay without starting a second baton.
#[test]
fn a_down_main_node_does_not_stop_the_relay_and_joins_it_later() {
    let mut sim = Sim::new(4, 21).with_baton(ms(50));
    sim.template.tuning.baton.main_node = "psd".into();
    for i in 0..3 {
        sim.start(i);
    }
    sim.run_for(10 * SECOND);
    let started = events_since(&sim, Duration::ZERO, |e| matches!(e, BatonEvent::Started { .. }));
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].1, 0, "the lowest live node starts it");
    assert!(started[0].0 <= REGENERATE_AFTER + HEARTBEAT);
    let t0 = sim.elapsed();
    sim.start(3);
    sim.run_for(20 * SECOND);
    let extra = events_since(&sim, t0, |e| {
        matches!(e, BatonEvent::Started { .. } | BatonEvent::Regenerated { .. } | BatonEvent::Dropped { .. })
    });
    assert!(extra.is_empty(), "{extra:?}");
    assert!(sim.passes().iter().any(|p| p.0 > t0 && p.1 == 3), "psd relays");
    assert!(global_regressions(&sim, Duration::ZERO).is_empty());
}

/// `main_node` names a node with the baton disabled: the others start it.
#[test]
fn a_main_node_with_the_baton_disabled_does_not_stop_the_relay() {
    let mut sim = Sim::new(4, 22).with_baton(ms(50));
    sim.template.tuning.baton.main_node = "psa".into();
    sim.nodes[0].relays = Some(false);
    sim.start_all_within(HEARTBEAT);
    sim.run_for(15 * SECOND);
    let passers: BTreeSet<usize> = sim.passes().iter().map(|p| p.1).collect();
    assert_eq!(passers, BTreeSet::from([1, 2, 3]));
    assert!(global_regressions(&sim, Duration::ZERO).is_empty());
}

/// Two nodes, unpaced: every lap is a permutation of both (self-passes
/// included), one baton, no resend, no drop, despite delayed acks.
#[test]
fn two_nodes_unpaced_relay_with_delayed_acks() {
    for n in [2, 3] {
        let mut sim = relay(n, 30 + n as u64, Duration::ZERO);
        sim.run_for(5 * SECOND);
        let passes = sim.passes();
        assert!(passes.len() > 1000, "{}", passes.len());
        for (i, p) in passes.iter().enumerate() {
            assert_eq!(p.2, i as u64 + 1, "one baton, no gaps");
        }
        for lap in passes[1..].chunks_exact(n) {
            let set: BTreeSet<_> = lap.iter().map(|p| p.1).collect();
            assert_eq!(set.len(), n, "lap {lap:?}");
        }
        let bad = events_since(&sim, Duration::ZERO, |e| {
            matches!(
                e,
                BatonEvent::Retransmit { .. }
                    | BatonEvent::Dropped { .. }
                    | BatonEvent::Skipped { .. }
                    | BatonEvent::Regenerated { .. }
            )
        });
        assert!(bad.is_empty(), "{n} nodes: {bad:?}");
    }
}

/// Unpaced, with two nodes that do not relay: they never get a pass (no
/// Refused → Skipped), and the three others make full laps.
#[test]
fn unpaced_relay_skips_disabled_nodes_without_asking_them() {
    let mut sim = Sim::new(5, 40).with_baton(Duration::ZERO);
    sim.nodes[0].relays = Some(false);
    sim.nodes[3].relays = Some(false);
    sim.start_all_within(HEARTBEAT);
    sim.run_for(10 * SECOND);
    let passes = sim.passes();
    assert!(passes.len() > 1000);
    let passers: BTreeSet<usize> = passes.iter().map(|p| p.1).collect();
    assert_eq!(passers, BTreeSet::from([1, 2, 4]));
    for lap in passes[1..].chunks_exact(3) {
        let set: BTreeSet<_> = lap.iter().map(|p| p.1).collect();
        assert_eq!(set.len(), 3, "lap {lap:?}");
    }
    let bad = events_since(&sim, Duration::ZERO, |e| {
        matches!(e, BatonEvent::Retransmit { .. } | BatonEvent::Skipped { .. } | BatonEvent::Dropped { .. })
    });
    assert!(bad.is_empty(), "{bad:?}");
}

/// Unpaced, the node the baton is at is killed (its ack to the previous
/// holder still delayed): the previous holder does not forward a second
/// baton (the baton coming back acknowledges it), and the counter goes on.
#[test]
fn a_kill_at_full_speed_makes_no_second_baton() {
    for seed in 0..10 {
        let mut sim = relay(4, 900 + seed, Duration::ZERO);
        let victim = sim.holders().into_iter().max_by_key(|h| h.2).expect("a holder").0;
        let t0 = sim.elapsed();
        sim.kill(victim);
        sim.run_for(8 * SECOND);
        let bad = global_regressions(&sim, t0);
        assert!(bad.is_empty(), "seed {seed}: {bad:?}");
        assert!(sim.passes().iter().any(|p| p.0 > t0 + 7 * SECOND), "seed {seed}: still moving");
        assert_monotonic_per_node(&sim);
    }
}

/// Paced, the holder leaves gracefully at random moments (holding still or
/// mid-pass): no second baton, no regeneration, and the relay goes on at
/// once.
#[test]
fn paced_graceful_leaves_hand_off_one_baton() {
    for seed in 0..10 {
        let mut sim = relay(4, 1100 + seed, ms(100));
        let wait = ms(sim.rng().random_range(0..300));
        sim.run_for(wait);
        let leaver = sim.holders().into_iter().max_by_key(|h| h.2).expect("a holder").0;
        let t0 = sim.elapsed();
        sim.stop(leaver);
        sim.run_for(5 * SECOND);
        assert!(global_regressions(&sim, t0).is_empty(), "seed {seed}");
        assert!(regenerated_since(&sim, t0).is_empty(), "seed {seed}");
        assert!(longest_stall(&sim, t0) < ms(400), "seed {seed}");
    }
}

/// Two nodes: the peer of the holder dies; the survivor keeps the baton
/// (Alone, no passes to nobody, no regeneration) and resumes above its last
/// counter when the peer is back.
#[test]
fn two_nodes_survivor_keeps_the_baton_until_its_peer_is_back() {
    let mut sim = relay(2, 50, ms(100));
    until_holding_still(&mut sim, 0);
    let t0 = sim.elapsed();
    sim.kill(1);
    sim.run_for(10 * SECOND);
    let last = sim.passes().last().copied().expect("passes");
    // A few passes while psa retries psb, then nothing until psb is back.
    assert!(last.0 < t0 + 4 * SECOND, "psa stopped passing: last {last:?}");
    assert_eq!(sim.holders().len(), 1);
    assert!(regenerated_since(&sim, t0).is_empty());
    let t1 = sim.elapsed();
    sim.start(1);
    sim.run_for(5 * SECOND);
    let after: Vec<_> = sim.passes().into_iter().filter(|p| p.0 >= t1).collect();
    assert!(after.len() > 10);
    assert!(after[0].2 > last.2);
    assert!(
        events_since(&sim, t1, |e| matches!(e, BatonEvent::Started { .. } | BatonEvent::Regenerated { .. }))
            .is_empty()
    );
    assert_monotonic_per_node(&sim);
}

/// Only one node relays: no baton starts (it needs a peer),
/// nothing spins; a second relaying node starts it.
#[test]
fn a_single_relaying_node_waits_for_a_peer() {
    let mut sim = Sim::new(3, 60).with_baton(ms(50));
    sim.nodes[1].relays = Some(false);
    sim.nodes[2].relays = Some(false);
    sim.start_all_within(HEARTBEAT);
    sim.run_for(20 * SECOND);
    assert!(sim.baton_events().is_empty(), "{:?}", sim.baton_events());
    sim.nodes[1].relays = Some(true);
    sim.kill(1);
    sim.start(1);
    sim.run_for(10 * SECOND);
    let passers: BTreeSet<usize> = sim.passes().iter().map(|p| p.1).collect();
    assert_eq!(passers, BTreeSet::from([0, 1]));
}

/// The holder is killed at random moments, including mid-pass: one node
/// regenerates, within bound, and (killed while holding still, not after a
/// self-pass) above every counter emitted.
#[test]
fn holder_kills_regenerate_once_within_bound() {
    for seed in 0..10 {
        let mut sim = relay(5, 1200 + seed, ms(200));
        let wait = ms(sim.rng().random_range(0..1000));
        sim.run_for(wait);
        let holder = sim.holders().into_iter().max_by_key(|h| h.2).expect("a holder").0;
        let t0 = sim.elapsed();
        sim.kill(holder);
        sim.run_for(10 * SECOND);
        let regen = regenerated_since(&sim, t0);
        assert!(regen.len() <= 1, "seed {seed}: {regen:?}");
        if let Some((at, _, _)) = regen.first() {
            assert!(*at - t0 <= REGENERATE_AFTER + HEARTBEAT, "seed {seed}: {:?}", *at - t0);
        }
        assert!(longest_stall(&sim, t0) <= REGENERATE_AFTER + HEARTBEAT + ms(200), "seed {seed}");
        assert_monotonic_per_node(&sim);
    }
}

/// Random graceful stops and restarts of any node (the holder half the time)
/// with loss-free links: never more than one baton held still, never a
/// regeneration, the relay never stalls for long.
#[test]
fn random_graceful_restarts_keep_one_baton() {
    let mut sim = relay(5, 77, ms(50));
    let t_start = sim.elapsed();
    for _ in 0..60 {
        let (victim, _) = sim.pick_victim(true);
        sim.stop(victim);
        for _ in 0..100 {
            sim.run_for(ms(20));
            assert!(sim.holders().iter().filter(|h| h.3).count() <= 1, "{:?}", sim.holders());
        }
        sim.start(victim);
        for _ in 0..150 {
            sim.run_for(ms(20));
            assert!(sim.holders().iter().filter(|h| h.3).count() <= 1, "{:?}", sim.holders());
        }
    }
    assert!(regenerated_since(&sim, t_start).is_empty());
    assert!(longest_stall(&sim, t_start) < SECOND, "{:?}", longest_stall(&sim, t_start));
    assert_monotonic_per_node(&sim);
}

/// The lowest node (psa), the regenerator, holds and is killed: psb
/// regenerates once, within bound.
#[test]
fn a_killed_lowest_holder_is_replaced_by_the_next_lowest() {
    for seed in 0..5 {
        let mut sim = relay(4, 1400 + seed, ms(200));
        until_holding_still(&mut sim, 0);
        let t0 = sim.elapsed();
        sim.kill(0);
        sim.run_for(8 * SECOND);
        let regen = regenerated_since(&sim, t0);
        assert_eq!(regen.len(), 1, "seed {seed}: {regen:?}");
        assert_eq!(regen[0].1, 1, "seed {seed}: psb regenerates");
        assert!(regen[0].0 - t0 <= REGENERATE_AFTER + HEARTBEAT, "seed {seed}: {:?}", regen[0].0 - t0);
        assert_monotonic_per_node(&sim);
    }
}

/// Unpaced relay (delayed and implicit acks) through random kills, graceful
/// stops, restarts and 10 % loss periods, but no partitions (a partition has
/// a baton on each side until the heal, see the first case above): once
/// things have been calm for `regenerate_after` + 2 heartbeats, one baton
/// (the cluster's counters strictly increase, pass after pass) that never
/// stalls longer than one skip (4 × `pass_timeout`).
#[test]
fn unpaced_relay_through_kills_stops_and_loss() {
    for seed in [5u64, 6, 7] {
        let mut sim = relay(5, seed, Duration::ZERO);
        let mut checked = 0;
        let upsets = [
            Upset::Kill { down: Duration::from_secs(8), holder_first: false },
            Upset::Stop { down: Duration::from_secs(3) },
            Upset::Loss { loss: 0.1, secs: 5..20 },
        ];
        let calm = |sim: &mut Sim, calm_since: Duration| {
            let t = sim.elapsed();
            let d = Duration::from_secs(sim.rng().random_range(8..20));
            sim.run_for(d);
            let from = t.max(calm_since + REGENERATE_AFTER + 2 * HEARTBEAT);
            if sim.elapsed() > from {
                let bad = global_regressions(sim, from);
                assert!(bad.is_empty(), "seed {seed}: {bad:?}");
                let stall = longest_stall(sim, from);
                assert!(stall <= ms(1100), "seed {seed} from {from:?}: no pass for {stall:?}");
                checked += 1;
            }
        };
        sim.chaos(Duration::from_secs(500), &upsets, |_, _| {}, calm);
        assert!(checked > 5, "seed {seed}: {checked} calm windows checked");
        assert_monotonic_per_node(&sim);
    }
}
