//! The baton relay on the simulator, as the relay tests (relay.rs,
//! relay_faults.rs, stall.rs) build on it: a cluster whose relay is running, the
//! check that no node's counter goes back, and a random run that upsets the
//! cluster turn after turn.
//!
//! Must not: check anything of its own in a random run: [`Sim::chaos`]
//! hands each kill and each calm spell to the test, which asserts.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use herd::core::baton::BatonEvent;
use rand::RngExt;

use super::{SECOND, Sim};

/// `n` nodes, all started within a heartbeat, run until the baton moves.
pub fn relay(n: usize, seed: u64, hold: Duration) -> Sim {
    let mut sim = Sim::new(n, seed).with_baton(hold);
    sim.start_all_within(sim.template.tuning.heartbeat_interval);
    sim.run_for(5 * SECOND);
    assert!(!sim.passes().is_empty(), "the baton started");
    sim
}

/// Each node's own gauge values strictly increase.
pub fn assert_monotonic_per_node(sim: &Sim) {
    let mut last: BTreeMap<usize, u64> = BTreeMap::new();
    for (at, node, counter) in sim.passes() {
        if let Some(prev) = last.insert(node, counter) {
            assert!(counter > prev, "node {node} went from {prev} to {counter} at {at:?}");
        }
    }
}

/// The baton events since `t0` that `f` picks, as (time, observer, event).
pub fn events_since(
    sim: &Sim,
    t0: Duration,
    f: impl Fn(&BatonEvent) -> bool,
) -> Vec<(Duration, usize, BatonEvent)> {
    sim.baton_events().into_iter().filter(|(at, _, e)| *at >= t0 && f(e)).collect()
}

/// The regenerations since `t0`, as (time, regenerator, event).
pub fn regenerated_since(sim: &Sim, t0: Duration) -> Vec<(Duration, usize, BatonEvent)> {
    events_since(sim, t0, |e| matches!(e, BatonEvent::Regenerated { .. }))
}

/// One upset of a [`Sim::chaos`] run. Each leaves the cluster whole again:
/// every node running, no partition, no loss.
pub enum Upset {
    /// Kill a node ([`Sim::pick_victim`]), run `down`, start it again.
    Kill { down: Duration, holder_first: bool },
    /// Stop any node gracefully, run `down`, start it again.
    Stop { down: Duration },
    /// Two sides (each node draws one) for a random number of seconds in
    /// `secs`, then heal.
    Partition { secs: Range<u64> },
    /// `loss` of every delivery for a random number of seconds in `secs`.
    Loss { loss: f64, secs: Range<u64> },
}

/// A kill of a [`Sim::chaos`] run, shown to the test after the node's
/// `down` time and before it starts again.
pub struct Killed {
    #[allow(dead_code)] // for a test's messages; none prints it today
    pub node: usize,
    /// When it was killed.
    pub at: Duration,
    /// Whether it held the baton still ([`Sim::pick_victim`]).
    pub holder: bool,
    /// When the upset before it ended (or the run began).
    pub calm_since: Duration,
}

/// How many of each upset a [`Sim::chaos`] run made.
#[derive(Debug, Default)]
pub struct Tally {
    pub kills: u32,
    pub stops: u32,
    pub heals: u32,
    pub loss_periods: u32,
}

impl Sim {
    /// A node to upset, and whether it is the first node holding the baton
    /// still: with `holder_first` that node half the time (when there is
    /// one), otherwise any node.
    pub fn pick_victim(&mut self, holder_first: bool) -> (usize, bool) {
        let n = self.nodes.len();
        let holder = self.holders().into_iter().find(|h| h.3).map(|h| h.0);
        let victim = match holder {
            Some(h) if holder_first && self.rng().random_bool(0.5) => h,
            _ => self.rng().random_range(0..n),
        };
        (victim, Some(victim) == holder)
    }

    /// Runs turns for `length`: each turn draws one of `upsets` or a calm
    /// spell, a quarter each. A calm spell is the test's: `calm(sim,
    /// calm_since)` runs as long as it likes and checks what it likes, with
    /// `calm_since` when the last upset ended. `killed` is shown every kill
    /// before the node starts again.
    pub fn chaos(
        &mut self,
        length: Duration,
        upsets: &[Upset; 3],
        mut killed: impl FnMut(&Sim, Killed),
        mut calm: impl FnMut(&mut Sim, Duration),
    ) -> Tally {
        let n = self.nodes.len();
        let end = self.elapsed() + length;
        let mut calm_since = self.elapsed();
        let mut tally = Tally::default();
        while self.elapsed() < end {
            let pick: i32 = self.rng().random_range(0..4);
            let Some(upset) = upsets.get(pick as usize) else {
                calm(self, calm_since);
                continue;
            };
            match upset {
                Upset::Kill { down, holder_first } => {
                    let (node, holder) = self.pick_victim(*holder_first);
                    if !self.is_running(node) {
                        continue;
                    }
                    let at = self.elapsed();
                    self.kill(node);
                    tally.kills += 1;
                    self.run_for(*down);
                    killed(self, Killed { node, at, holder, calm_since });
                    self.start(node);
                }
                Upset::Stop { down } => {
                    let node = self.rng().random_range(0..n);
                    self.stop(node);
                    tally.stops += 1;
                    self.run_for(*down);
                    self.start(node);
                }
                Upset::Partition { secs } => {
                    let groups: Vec<u8> = (0..n).map(|_| self.rng().random_range(0..2)).collect();
                    self.partition(&groups);
                    let d = Duration::from_secs(self.rng().random_range(secs.clone()));
                    self.run_for(d);
                    self.heal();
                    tally.heals += 1;
                }
                Upset::Loss { loss, secs } => {
                    self.loss = *loss;
                    let d = Duration::from_secs(self.rng().random_range(secs.clone()));
                    self.run_for(d);
                    self.loss = 0.0;
                    tally.loss_periods += 1;
                }
            }
            calm_since = self.elapsed();
        }
        tally
    }
}
