//! pass: the baton passed on. A holder waits `hold`, increments the counter
//! and passes it to the next of its lap (a shuffled list of the live
//! relaying members, self included, cut to fit one datagram); the receiver
//! takes it and acknowledges (at once when paced, a little later when not,
//! so the baton usually comes back first); the sender resends an
//! unacknowledged pass and skips a peer that never answers. A leaving
//! holder hands the baton off.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::SliceRandom;

use super::{BatonEvent, Held, Holding, Relay, RelayCtx};
use crate::core::effects::{Effect, Effects, Unicast};
use crate::core::membership::{MemberState, Members};
use crate::core::wire::{self, BatonId, Lap, LapName, PassAck, PassVerdict};

/// Most bytes of names a pass carries (keeps it inside one datagram).
const LAP_BUDGET: usize = 1000;

impl Relay {
    /// A pass (already authenticated) that arrived from `src`.
    pub fn on_pass<R: Rng>(
        &mut self,
        ctx: &mut RelayCtx<'_, R>,
        src: SocketAddr,
        id: BatonId,
        counter: u64,
        lap: &Lap,
    ) {
        let ack = |verdict| Unicast::PassAck(PassAck { id: Some(id), counter, verdict, delay_us: 0 });
        if self.last_taken == Some((id, counter)) {
            // A resend whose first ack was lost; also out of the relay since,
            // or its sender would skip us and pass a second baton.
            ctx.out.send(src, ack(PassVerdict::Taken));
            return;
        }
        if !self.cfg.enabled {
            ctx.out.send(src, ack(PassVerdict::Refused));
            return;
        }
        let older = self.best.is_some_and(|b| id < b);
        let lagging = self.best == Some(id) && counter <= self.best_settled;
        self.high = self.high.max(counter);
        if older || lagging {
            ctx.out.send(src, ack(PassVerdict::Stale));
            return;
        }
        if self.best != Some(id) {
            self.adopt(id, ctx.now, ctx.out);
        }
        if self.held.is_some() {
            // Our copy of this baton is behind the one just received.
            self.superseded(ctx.out);
        }
        self.best_high = self.best_high.max(counter);
        self.best_settled = self.best_settled.max(counter);
        self.last_seen = ctx.now;
        self.last_taken = Some((id, counter));
        ctx.out.push(Effect::Baton(BatonEvent::Taken { id, counter }));
        self.take(ctx, id, counter, lap.clone());
        // The ack goes after the onward pass: at full speed the next holder is
        // on the critical path and the previous one is not.
        let taken = PassAck { id: Some(id), counter, verdict: PassVerdict::Taken, delay_us: 0 };
        if self.ack_delay.is_zero() {
            ctx.out.send(src, Unicast::PassAck(taken));
        } else {
            self.pending_acks.retain(|(to, ..)| *to != src);
            self.pending_acks.push((src, taken, ctx.now));
        }
    }

    /// Sends the delayed acks that are due (all of them with `all`).
    pub(super) fn flush_acks(&mut self, now: Instant, all: bool, out: &mut Effects) {
        let delay = self.ack_delay;
        self.pending_acks.retain(|(to, ack, since)| {
            let due = all || now >= *since + delay;
            if due {
                let held = now.saturating_duration_since(*since).as_micros();
                let ack = PassAck { delay_us: held.min(u32::MAX as u128) as u32, ..*ack };
                out.send(*to, Unicast::PassAck(ack));
            }
            !due
        });
    }

    /// An answer from `from` to one of our passes: the one with its counter
    /// (and baton, when the ack names it).
    pub fn on_ack<R: Rng>(&mut self, ctx: &mut RelayCtx<'_, R>, from: &str, ack: PassAck) {
        let Some(h) = &self.held else { return };
        let Holding::Passing { to, first_sent, .. } = &h.state else {
            return;
        };
        if to.as_str() != from || ack.id.is_some_and(|id| id != h.id) || h.counter != ack.counter {
            return;
        }
        let id = h.id;
        match ack.verdict {
            PassVerdict::Taken => {
                let delay = Duration::from_micros(ack.delay_us.into());
                let hop = ctx.now.saturating_duration_since(*first_sent).saturating_sub(delay);
                if self.best == Some(id) {
                    self.best_settled = self.best_settled.max(ack.counter);
                }
                ctx.out.push(Effect::Baton(BatonEvent::Acked { hop }));
                self.last_seen = ctx.now;
                self.held = None;
            }
            PassVerdict::Stale => self.drop_held("the receiver knows a newer baton or counter", ctx.out),
            PassVerdict::Refused => {
                ctx.out.push(Effect::Baton(BatonEvent::Skipped { to: from.to_owned() }));
                if self.cfg.enabled {
                    self.skip_to_next(ctx);
                } else if let Some(h) = self.held.as_mut() {
                    // Out of the relay there is no pass to itself between two
                    // offers, so the next laps would offer it to the refuser
                    // again and again (unpaced, thousands of gauges a second)
                    // until its heartbeat says it no longer relays: keep it
                    // until that heartbeat, or another change of members,
                    // resumes it.
                    h.state = Holding::Alone;
                }
            }
        }
    }

    /// Graceful leave: hand a held baton to another live member at once
    /// (twice, as nobody will resend it). Returns whether one was handed off.
    pub fn hand_off<R: Rng>(&mut self, ctx: &mut RelayCtx<'_, R>) -> bool {
        // Owed acks go now, or their senders would resend to a node that left.
        self.flush_acks(ctx.now, true, ctx.out);
        let Some(mut h) = self.held.take() else {
            return false;
        };
        let target = match &h.state {
            // In flight: the target may have it already; the same pass again
            // is taken at most once.
            Holding::Passing { to, addr, .. } if is_alive(ctx.members, to.as_str()) => Some(*addr),
            Holding::Passing { .. } => self.next_target(&mut h.lap, ctx, false).map(|(_, addr)| addr),
            Holding::Waiting { .. } | Holding::Alone => {
                let target = self.next_target(&mut h.lap, ctx, false).map(|(_, addr)| addr);
                // Settling after a stall, the baton may be superseded: it
                // goes as it came, without a gauge; its receiver refuses it
                // if the cluster has moved past it.
                if target.is_some() && self.settling(ctx.now).is_none() {
                    self.increment(&mut h);
                    ctx.out.push(Effect::Baton(BatonEvent::Passed { counter: h.counter }));
                }
                target
            }
        };
        let Some(addr) = target else { return false };
        let send = Unicast::Pass { id: h.id, counter: h.counter, lap: h.lap.clone() };
        ctx.out.send(addr, send.clone());
        ctx.out.send(addr, send);
        true
    }

    pub(super) fn take<R: Rng>(&mut self, ctx: &mut RelayCtx<'_, R>, id: BatonId, counter: u64, lap: Lap) {
        let until = (ctx.now + self.cfg.hold).max(self.settling(ctx.now).unwrap_or(ctx.now));
        self.held = Some(Held { id, counter, lap, state: Holding::Waiting { until } });
        if until <= ctx.now {
            self.pass_on(ctx);
        }
    }

    /// Increments the held counter and passes it to the next of the lap. A
    /// pass to self (self is in every lap) increments again, after another
    /// `hold`; out of the relay, it goes to a peer or stays here, alone.
    pub(super) fn pass_on<R: Rng>(&mut self, ctx: &mut RelayCtx<'_, R>) {
        let Some(mut h) = self.held.take() else { return };
        let now = ctx.now;
        if let Some(until) = self.settling(now) {
            // Every way to a pass comes here: none before the views are in.
            h.state = Holding::Waiting { until };
            self.held = Some(h);
            return;
        }
        if !self.has_peer(ctx.members) {
            h.state = Holding::Alone;
            self.held = Some(h);
            return;
        }
        loop {
            self.increment(&mut h);
            ctx.out.push(Effect::Baton(BatonEvent::Passed { counter: h.counter }));
            let Some((to, addr)) = self.next_target(&mut h.lap, ctx, self.cfg.enabled) else {
                h.state = Holding::Alone;
                break;
            };
            if to.as_str() == self.me {
                // Passed to ourselves: arrived.
                self.best_settled = self.best_settled.max(h.counter);
                if self.cfg.hold.is_zero() {
                    continue;
                }
                h.state = Holding::Waiting { until: now + self.cfg.hold };
                break;
            }
            let lap = h.lap.clone();
            ctx.out.send(addr, Unicast::Pass { id: h.id, counter: h.counter, lap });
            let deadline = now + self.cfg.pass_timeout;
            h.state = Holding::Passing { to, addr, first_sent: now, attempt: 0, deadline, asked: false };
            break;
        }
        self.last_seen = now;
        self.held = Some(h);
    }

    /// Sets the held counter above every counter seen, of any baton.
    fn increment(&mut self, h: &mut Held) {
        h.counter = h.counter.max(self.high) + 1;
        self.high = h.counter;
        if self.best == Some(h.id) {
            self.best_high = self.best_high.max(h.counter);
        }
    }

    /// The current target is skipped (no ack after all retries, refused, or
    /// gone): pass on to the next of the lap at once. This is a new pass, with
    /// a new counter: the old one may have reached the skipped peer, and the
    /// rest of the cluster may have seen it in our heartbeats.
    pub(super) fn skip_to_next<R: Rng>(&mut self, ctx: &mut RelayCtx<'_, R>) {
        if self.held.is_some() {
            self.pass_on(ctx);
        }
    }

    /// Pops the lap until a live relaying member (or self, if `allow_self`);
    /// shuffles a new lap when it runs out. `None` if nobody else relays.
    fn next_target<R: Rng>(
        &self,
        lap: &mut Lap,
        ctx: &mut RelayCtx<'_, R>,
        allow_self: bool,
    ) -> Option<(LapName, SocketAddr)> {
        if !self.has_peer(ctx.members) {
            return None;
        }
        for fresh in [false, true] {
            if fresh {
                *lap = self.new_lap(ctx.members, ctx.rng);
            }
            while let Some(name) = lap.pop_front() {
                if name.as_str() == self.me {
                    if allow_self {
                        return Some((name, SocketAddr::from(([0, 0, 0, 0], 0))));
                    }
                    continue;
                }
                if let Some(m) = ctx.members.get(name.as_str())
                    && m.state == MemberState::Alive
                    && m.relays
                {
                    return Some((name, m.data_addr));
                }
            }
        }
        None
    }

    /// All alive relaying members and self, shuffled, cut to fit one datagram.
    fn new_lap<R: Rng>(&self, members: &Members, rng: &mut R) -> Lap {
        let mut names: Vec<&str> = members
            .iter()
            .filter(|m| m.state == MemberState::Alive && m.relays)
            .map(|m| m.name.as_str())
            .chain(std::iter::once(self.me.as_str()))
            .collect();
        names.shuffle(rng);
        let mut budget = LAP_BUDGET;
        Lap::from_names(names.into_iter().take(wire::MAX_LAP).take_while(|n| {
            let fits = n.len() < budget;
            budget = budget.saturating_sub(n.len() + 1);
            fits
        }))
    }
}

fn is_alive(members: &Members, name: &str) -> bool {
    members.get(name).is_some_and(|m| m.state == MemberState::Alive)
}
