//! start: a baton started where none is known, or regenerated where the
//! greatest one known has not been seen alive for `regenerate_after`, by
//! the one node chosen to (see the module doc of `core::baton`).

use rand::Rng;

use super::{BatonEvent, Relay, RelayCtx};
use crate::core::effects::Effect;
use crate::core::membership::{MemberState, Members};
use crate::core::wire::{BatonId, Lap};

/// A regenerated baton starts this far above the highest counter known: a
/// holder that died may have emitted up to three counters nobody heard of
/// (two passes to itself across a lap boundary, then a pass that was lost).
/// Gaps in the gauge are harmless; a repeated value is not.
const REGENERATE_MARGIN: u64 = 3;

impl Relay {
    /// Not holding: start the first baton or regenerate a lost one, if due and
    /// this node is the one to do it.
    pub(super) fn start_or_regenerate<R: Rng>(&mut self, ctx: &mut RelayCtx<'_, R>) {
        let now = ctx.now;
        if now < self.next_check {
            return;
        }
        if let Some(until) = self.settling(now) {
            self.next_check = until;
            return;
        }
        let main = self.cfg.main_node.as_str();
        let starter = match main {
            "" => self.lowest_alive(ctx.members),
            main => main == self.me,
        };
        // The configured main node is up and relays: leave the first baton to
        // it, however late it came, and look again later.
        let main_is_up = !main.is_empty() && main != self.me && is_alive_relay(ctx.members, main);
        let due = match self.best {
            None if starter => self.started + self.timings.start_after,
            None if main_is_up => now + self.timings.recheck,
            // No baton heard of, and the starter has not started one.
            None => self.started + self.cfg.regenerate_after,
            Some(_) => self.last_seen + self.cfg.regenerate_after,
        };
        if now < due {
            self.next_check = due;
            return;
        }
        let chosen = (self.best.is_none() && starter) || self.lowest_alive(ctx.members);
        if !chosen || !self.has_peer(ctx.members) {
            self.next_check = now + self.timings.recheck;
            return;
        }
        if self.best.is_some() && self.asked_at != Some(self.last_seen) {
            // Answers that show it alive move `last_seen`, and with it `due`.
            self.asked_at = Some(self.last_seen);
            ctx.out.push(Effect::AskViews);
            self.next_check = now + self.timings.probe_every;
            return;
        }
        let id = BatonId { epoch: self.best.map_or(1, |b| b.epoch + 1), origin: self.origin };
        let (counter, event): (u64, fn(BatonId, u64) -> BatonEvent) = match self.best {
            None => (self.high.max(self.floor), |id, counter| BatonEvent::Started { id, counter }),
            Some(_) => (self.high + REGENERATE_MARGIN, |id, counter| BatonEvent::Regenerated { id, counter }),
        };
        ctx.out.push(Effect::Baton(event(id, counter + 1)));
        self.adopt(id, now, ctx.out);
        self.take(ctx, id, counter, Lap::default());
    }

    /// Whether this node has the lowest name among itself and the alive
    /// (not suspect) relaying members: the one that starts or regenerates.
    fn lowest_alive(&self, members: &Members) -> bool {
        !members.iter().any(|m| m.state == MemberState::Alive && m.relays && m.name < self.me)
    }
}

fn is_alive_relay(members: &Members, name: &str) -> bool {
    members.get(name).is_some_and(|m| m.state == MemberState::Alive && m.relays)
}
