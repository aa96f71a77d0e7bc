//! baton: the relay state machine, made to survive failures.
//!
//! One counter travels the cluster. Its holder waits `hold`, increments it
//! (reporting [`BatonEvent::Passed`], which the shell turns into the
//! `baton:<counter>|g` gauge), and passes it to the next node of a shuffled lap
//! over all live relaying members, self included; a new lap is shuffled when
//! the list runs out. Passes are acknowledged; an unacknowledged pass is resent
//! every `pass_timeout`, `max_retries` times, then that peer is skipped.
//!
//! Exactly one baton:
//! - Batons are ordered by [`BatonId`] `(epoch, origin)`. Heartbeats carry each
//!   node's [`BatonView`]; a node that learns of a greater baton adopts it and
//!   drops a lesser one, so after a partition heals one baton survives within
//!   a heartbeat.
//! - Counters are global: `high` is the highest counter seen of any baton, and
//!   a pass sets `max(counter, high) + 1`, so the counter never goes backwards
//!   and the survivor of a heal continues above both sides.
//! - Duplicates of one baton (a pass resent after its ack was lost, when it
//!   had arrived) are told apart by counters *of that baton*: `best_settled`
//!   is the highest known to have arrived (taken or acknowledged); a pass not
//!   above it is refused as stale, and a holder that sees a higher counter of
//!   its own baton drops its copy (or, if it was passing it, takes that as the
//!   ack). Counters in flight do not count against a pass: a heartbeat can
//!   overtake the pass it describes. These per-baton figures restart when a
//!   greater baton is adopted, so a heal never judges the winner by the
//!   loser's counters.
//! - If nobody has known the greatest baton alive for `regenerate_after`
//!   (views carry how long ago their sender last did), the lowest-named alive
//!   relaying member regenerates it with `epoch + 1`, starting a margin above
//!   `high`: a dead holder may have emitted counters nobody heard of. Views
//!   are not heartbeated every interval (the holder announces one about once
//!   an interval, see `core::node`), so it first asks the cluster for fresher
//!   views and waits a quarter interval: the holder answers if the baton
//!   lives, the last holders with the highest counters if it does not.
//! - The first baton is started by `main_node` (however late it comes up) or,
//!   leaderless, by the lowest live name; if `main_node` is not up, the lowest
//!   starts one after `regenerate_after`.
//!
//! `enabled` (live: a reload changes it) takes a node in or out of the relay.
//! Out of it, a node starts, regenerates and takes no baton (a pass is
//! refused), and one it holds goes on to a relaying peer at its next turn,
//! never to itself; if no peer relays, or the pass is refused, it keeps the
//! baton until a peer that relays appears or it is back in the relay (the
//! baton is not lost, so nobody regenerates it, and the counter goes on from
//! it). Back in, a holder passes at its next turn and a node holding none
//! checks at once whether to start or regenerate one, by the rules above.
//! Who relays comes from the members' heartbeats; a change of it is a change
//! of membership to the relay ([`Relay::on_members_changed`]).
//!
//! Timers are data: each state carries its own deadline, and a stale deadline
//! is simply recomputed. Must not: do I/O or read a clock.
//!
//! Files: this one holds the relay's state, what it learns from views and
//! its deadlines; `pass` the baton passed on, taken and handed off;
//! `start` a first or regenerated baton.

mod pass;
mod start;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::effects::{Effect, Effects, Unicast};
use super::membership::{MemberState, Members};
use super::timings::Timings;
use super::wire::{BatonId, BatonView, Lap, LapName, PassAck};

/// What the relay reports (defined with every machine's outputs in
/// `core::effects`).
pub use super::effects::BatonEvent;

#[derive(Debug, Clone)]
pub struct BatonConfig {
    pub enabled: bool,
    /// Starts the first baton; empty = leaderless (the lowest live name).
    pub main_node: String,
    pub hold: Duration,
    pub pass_timeout: Duration,
    pub max_retries: u32,
    pub regenerate_after: Duration,
}

/// What every relay call borrows from its node: the clock reading, the
/// member table, the RNG (lap shuffles) and the queue its passes, acks,
/// events and asks for views go on (`core::effects`).
pub struct RelayCtx<'a, R> {
    pub now: Instant,
    pub members: &'a Members,
    pub rng: &'a mut R,
    pub out: &'a mut Effects,
}

#[derive(Debug, Clone)]
enum Holding {
    /// Took the baton; passes it on at `until`.
    Waiting { until: Instant },
    /// Sent it to `to`; waiting for the ack until `deadline`.
    /// `asked`: views were asked for before giving up on `to` (see
    /// `handle_timeout`).
    Passing {
        to: LapName,
        addr: SocketAddr,
        first_sent: Instant,
        attempt: u32,
        deadline: Instant,
        asked: bool,
    },
    /// Nobody else alive relays (or, out of the relay, the pass was
    /// refused): keep it until a peer that relays appears, or until this
    /// node is back in the relay.
    Alone,
}

#[derive(Debug, Clone)]
struct Held {
    id: BatonId,
    /// The counter as received (Waiting, Alone) or as sent (Passing).
    counter: u64,
    /// Names still to visit in this lap, front first.
    lap: Lap,
    state: Holding,
}

#[derive(Debug)]
pub struct Relay {
    cfg: BatonConfig,
    /// `start_after` and `recheck` (see [`Timings`]).
    timings: Timings,
    me: String,
    origin: u64,
    started: Instant,
    /// The greatest baton known anywhere.
    best: Option<BatonId>,
    /// The highest counter seen, of any baton: new counters start above it.
    high: u64,
    /// Counters possibly sent before a restart (see [`Relay::raise_floor`]).
    floor: u64,
    /// Of the `best` baton only (reset when a greater one is adopted, so a
    /// heal never pits the winner against the loser's counters): the highest
    /// counter seen, some perhaps still in flight...
    best_high: u64,
    /// ...and the highest known to have arrived (taken, or acknowledged): a
    /// pass of `best` at or below it is a lagging duplicate.
    best_settled: u64,
    /// When `best` was last known alive (a pass, an ack, a holder's heartbeat,
    /// or a peer's own such evidence, aged, from its heartbeat).
    last_seen: Instant,
    held: Option<Held>,
    /// The last pass taken, to re-ack resends without taking it twice.
    last_taken: Option<(BatonId, u64)>,
    /// When a node that is not holding next checks whether to start or regenerate.
    next_check: Instant,
    /// How long a `Taken` ack may wait: zero when paced; when unpaced, long
    /// enough that the baton usually comes back to the sender first (which
    /// acknowledges the pass implicitly), short enough that the sender never
    /// resends for want of it.
    ack_delay: Duration,
    /// Delayed acks: (to, ack, since), at most one per peer (the newest).
    pending_acks: Vec<(SocketAddr, PassAck, Instant)>,
    /// `last_seen` when views were last asked for: asked once per quiet spell.
    asked_at: Option<Instant>,
    /// After a stall of this node ([`Relay::stalled`]): no pass, gauge or
    /// regeneration before this instant.
    settle_until: Option<Instant>,
}

/// Upper bound of the delayed ack (`pass_timeout` / 5 if smaller).
const MAX_ACK_DELAY: Duration = Duration::from_millis(25);

impl Relay {
    /// A new pace, timeouts and starter (a reload) at `now`: the baton, its
    /// counter and the lap in progress are kept; the new values apply from
    /// the next pass, retransmit or check on. Taken into or out of the relay
    /// (`enabled`), a baton held still is passed on at the next turn (see the
    /// module doc), and a node holding none checks at once.
    pub fn set_config(&mut self, cfg: BatonConfig, timings: Timings, now: Instant) {
        let toggled = cfg.enabled != self.cfg.enabled;
        self.cfg = cfg;
        self.timings = timings;
        if !toggled {
            return;
        }
        match self.held.as_mut().map(|h| &mut h.state) {
            // Held alone has no deadline: without this it would wait for a
            // change of membership, however long that takes.
            Some(state @ (Holding::Waiting { .. } | Holding::Alone)) => {
                *state = Holding::Waiting { until: now }
            }
            Some(Holding::Passing { .. }) => {}
            None => self.next_check = now,
        }
    }

    /// Counters at or below `floor` may have been sent before a restart (a
    /// node's state file, or a peer's heartbeat saying so: see
    /// `core::reserve`). A baton started with none known anywhere starts
    /// above it; a baton that is running, or one regenerated after a known
    /// baton was lost, is not moved by it (its counters are all known).
    pub fn raise_floor(&mut self, floor: u64) {
        self.floor = self.floor.max(floor);
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn new(cfg: BatonConfig, timings: Timings, me: &str, now: Instant) -> Relay {
        Relay {
            timings,
            origin: name_hash(me),
            me: me.to_owned(),
            started: now,
            best: None,
            high: 0,
            floor: 0,
            best_high: 0,
            best_settled: 0,
            last_seen: now,
            held: None,
            last_taken: None,
            next_check: now,
            ack_delay: if cfg.hold.is_zero() {
                (cfg.pass_timeout / 5).min(MAX_ACK_DELAY)
            } else {
                Duration::ZERO
            },
            pending_acks: Vec::new(),
            asked_at: None,
            settle_until: None,
            cfg,
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// What this node's heartbeats say about the baton, at `now`.
    pub fn view(&self, now: Instant) -> Option<BatonView> {
        self.best.map(|id| {
            let holding = self.held.as_ref().is_some_and(|h| h.id == id);
            let age = if holding { Duration::ZERO } else { now.saturating_duration_since(self.last_seen) };
            BatonView {
                id,
                counter: self.high,
                baton_counter: self.best_high,
                settled: self.best_settled,
                age_ms: age.as_millis().min(u32::MAX as u128) as u32,
                holding,
            }
        })
    }

    /// The baton this node holds (or is passing), with its counter.
    pub fn holding(&self) -> Option<(BatonId, u64)> {
        self.held.as_ref().map(|h| (h.id, h.counter))
    }

    /// Holds it and is not in the middle of a pass (simulator invariant).
    pub fn holding_still(&self) -> bool {
        self.held.as_ref().is_some_and(|h| !matches!(h.state, Holding::Passing { .. }))
    }

    pub fn best(&self) -> Option<BatonId> {
        self.best
    }

    pub fn high(&self) -> u64 {
        self.high
    }

    /// This node was not running for a while (a stall: see `core::node`),
    /// and the cluster may have moved on without it: regenerated the baton
    /// held here, or passed it further than this node knows. Until `now +
    /// wait` nothing is passed, no gauge is emitted and nothing is
    /// regenerated, and the cluster's views are asked for meanwhile. Views that show it superseded drop it (`on_view`);
    /// otherwise it goes on after the wait, its counter above everything
    /// heard. `wait` must cover the answers (a round trip).
    pub fn stalled(&mut self, now: Instant, wait: Duration, out: &mut Effects) {
        if !self.cfg.enabled && self.held.is_none() {
            return;
        }
        let until = now + wait;
        self.settle_until = Some(until);
        match self.held.as_mut().map(|h| &mut h.state) {
            None => self.next_check = self.next_check.max(until),
            Some(Holding::Waiting { until: u }) => *u = (*u).max(until),
            Some(Holding::Passing { deadline, .. }) => *deadline = (*deadline).max(until),
            Some(Holding::Alone) => {}
        }
        // Asked even when holding nothing: a pass queued during the stall
        // is taken next, and only fresher views show it was given up on.
        out.push(Effect::AskViews);
    }

    /// Still settling after a stall at `now` (see [`Relay::stalled`]).
    fn settling(&self, now: Instant) -> Option<Instant> {
        self.settle_until.filter(|&t| now < t)
    }

    /// A heartbeat's view from a peer.
    pub fn on_view(&mut self, now: Instant, view: BatonView, out: &mut Effects) {
        let seen_at = now.checked_sub(Duration::from_millis(view.age_ms.into())).unwrap_or(now);
        if self.best.is_none_or(|b| view.id > b) {
            self.adopt(view.id, seen_at, out);
        }
        if Some(view.id) == self.best {
            self.best_high = self.best_high.max(view.baton_counter);
            self.best_settled = self.best_settled.max(view.settled);
            self.last_seen = self.last_seen.max(seen_at);
            if let Some(h) = &self.held
                && h.id == view.id
                && view.baton_counter > h.counter
            {
                self.superseded(out);
            }
        }
        self.high = self.high.max(view.counter);
    }

    /// `id` is the greatest baton now: start its own counters afresh and
    /// drop any lesser baton held here.
    fn adopt(&mut self, id: BatonId, seen_at: Instant, out: &mut Effects) {
        self.best = Some(id);
        self.best_high = 0;
        self.best_settled = 0;
        self.last_seen = seen_at;
        // Its regeneration deadline replaces whatever this node was waiting for.
        self.next_check = self.next_check.min(seen_at);
        self.drop_older(id, out);
    }

    /// Our copy of the baton is behind another: if we were passing it, the
    /// pass evidently arrived (the baton moved on), so this is an implicit
    /// ack; otherwise a duplicate dies here.
    fn superseded(&mut self, out: &mut Effects) {
        match self.held.as_ref().map(|h| &h.state) {
            Some(Holding::Passing { .. }) => self.held = None,
            _ => self.drop_held("a copy of this baton is ahead", out),
        }
    }

    /// Membership changed, or who relays: resume a baton held alone, skip a
    /// target that is down or gone.
    pub fn on_members_changed<R: Rng>(&mut self, ctx: &mut RelayCtx<'_, R>) {
        let Some(h) = &self.held else { return };
        match &h.state {
            Holding::Alone if self.has_peer(ctx.members) => self.pass_on(ctx),
            // Down: skip it now. Left: it acks what it took before leaving, and
            // that ack may come after its leave, so wait for the deadline
            // (without resending, see `handle_timeout`).
            Holding::Passing { to, .. }
                if ctx.members.get(to.as_str()).is_none_or(|m| m.state == MemberState::Down) =>
            {
                ctx.out.push(Effect::Baton(BatonEvent::Skipped { to: to.as_str().to_owned() }));
                self.skip_to_next(ctx);
            }
            _ => {}
        }
    }

    /// Does what is due at `ctx.now`: pass after a hold, resend or skip, start
    /// or regenerate (only in the relay).
    pub fn handle_timeout<R: Rng>(&mut self, ctx: &mut RelayCtx<'_, R>) {
        let now = ctx.now;
        self.flush_acks(now, false, ctx.out);
        let Some(h) = &mut self.held else {
            if self.cfg.enabled {
                self.start_or_regenerate(ctx);
            }
            return;
        };
        match &mut h.state {
            Holding::Waiting { until } if *until <= now => self.pass_on(ctx),
            Holding::Passing { to, addr, attempt, deadline, asked, .. } if *deadline <= now => {
                let gone = !ctx.members.get(to.as_str()).is_some_and(|m| m.state.is_live());
                if *attempt >= self.cfg.max_retries && !*asked {
                    // Giving up makes this copy a new pass; if the baton went
                    // on without our ack (the target passed it, then died),
                    // the holder's answer shows it ahead and this copy dies
                    // instead (`on_view`). Without heartbeats each interval,
                    // nobody would tell us otherwise.
                    *asked = true;
                    *deadline = now + self.timings.probe_every;
                    ctx.out.push(Effect::AskViews);
                } else if *attempt < self.cfg.max_retries && !gone {
                    *attempt += 1;
                    *deadline = now + self.cfg.pass_timeout;
                    ctx.out.push(Effect::Baton(BatonEvent::Retransmit { to: to.as_str().to_owned() }));
                    let lap = h.lap.clone();
                    ctx.out.send(*addr, Unicast::Pass { id: h.id, counter: h.counter, lap });
                } else {
                    ctx.out.push(Effect::Baton(BatonEvent::Skipped { to: to.as_str().to_owned() }));
                    self.skip_to_next(ctx);
                }
            }
            _ => {}
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = match &self.held {
            None if !self.cfg.enabled => None,
            None => Some(self.next_check),
            Some(h) => match &h.state {
                Holding::Waiting { until } => Some(*until),
                Holding::Passing { deadline, .. } => Some(*deadline),
                Holding::Alone => None,
            },
        };
        let acks = self.pending_acks.iter().map(|(_, _, since)| *since + self.ack_delay).min();
        [own, acks].into_iter().flatten().min()
    }

    fn has_peer(&self, members: &Members) -> bool {
        members.iter().any(|m| m.state == MemberState::Alive && m.relays)
    }

    fn drop_older(&mut self, best: BatonId, out: &mut Effects) {
        if self.held.as_ref().is_some_and(|h| h.id < best) {
            self.drop_held("a newer baton exists", out);
        }
    }

    fn drop_held(&mut self, why: &'static str, out: &mut Effects) {
        if let Some(h) = self.held.take() {
            out.push(Effect::Baton(BatonEvent::Dropped { id: h.id, counter: h.counter, why }));
        }
    }
}

/// FNV-1a: a stable 64-bit hash of a node name for [`BatonId::origin`].
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
