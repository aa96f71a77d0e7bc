//! relay: the node's side of the baton relay (`core::baton`): the relay
//! borrowed with its context, the holder's announcements, answers to a peer
//! that asks for views, who holds the baton, and counter reservations
//! (`core::reserve`).

use std::time::Instant;

use rand::Rng;

use super::Node;
use crate::core::baton::{Relay, RelayCtx};
use crate::core::membership::MemberState;
use crate::core::wire;

impl<R: Rng> Node<R> {
    /// Who holds the baton as far as this node knows at `now`: itself, or the
    /// alive member whose heartbeat said so within the last two heartbeat
    /// intervals; `None` if unknown.
    pub fn holder(&self, now: Instant) -> Option<&str> {
        if self.relay.holding().is_some() {
            return Some(&self.identity.name);
        }
        let (name, at) = self.holder_hint.as_ref()?;
        let recent = now.saturating_duration_since(*at) <= self.tuning.heartbeat_interval * 2;
        let alive = self.members.get(name).is_some_and(|m| m.state == MemberState::Alive);
        (recent && alive).then_some(name.as_str())
    }

    /// This node knows the baton better than `theirs` (a peer asking before
    /// it regenerates): it holds it, knows a greater one or a higher
    /// counter, or saw it alive a quarter interval more recently.
    pub(super) fn has_fresher_view(&self, now: Instant, theirs: Option<wire::BatonView>) -> bool {
        let Some(mine) = self.relay.view(now) else { return false };
        let Some(theirs) = theirs else { return true };
        let slack = self.tuning.heartbeat_interval.as_millis() as u32 / 4;
        mine.holding
            || mine.id > theirs.id
            || mine.counter > theirs.counter
            || (mine.id == theirs.id && mine.age_ms.saturating_add(slack) < theirs.age_ms)
    }

    /// The relay and its context, borrowed apart from the rest of the node.
    pub(super) fn relay_ctx(&mut self, now: Instant) -> (&mut Relay, RelayCtx<'_, R>) {
        let ctx = RelayCtx { now, members: &self.members, rng: &mut self.rng, out: &mut self.effects };
        (&mut self.relay, ctx)
    }

    /// After the relay's requests are carried out: the heartbeat that asks
    /// for views (`ask_views`), or the holder's announcement when it `took`
    /// the baton; and a counter reservation, if one is due.
    pub(super) fn after_relay(&mut self, now: Instant, ask_views: bool, took: bool) {
        if ask_views {
            self.send_heartbeat_as(now, None, true);
        } else if took && self.relay.holding().is_some() {
            // The holder tells the cluster the baton lives, about once an
            // interval whoever holds it: the views regeneration relies on.
            let quiet = self.last_view_heard.is_none_or(|t| now >= t + self.tuning.heartbeat_interval);
            if quiet {
                self.send_heartbeat(now);
            }
        }
        self.reserve_ahead(now);
    }

    /// Asks for a new ceiling when the highest counter known comes within
    /// half a range of the written one (after every change of it: the relay
    /// changes it only in calls whose effects end in `after_relay`).
    fn reserve_ahead(&mut self, now: Instant) {
        let Some(r) = self.reservations.as_mut() else { return };
        if let Some(up_to) = r.due(now, self.relay.high()) {
            self.reserve = Some(up_to);
        }
    }

    /// A counter ceiling to write to the state file (write, fsync, rename)
    /// before the next [`Node::poll_transmit`], then confirm with
    /// [`Node::reserved`]. It is asked for half a range before counters
    /// reach the written one (`core::reserve`), and taken before this turn's
    /// datagrams go out, so no counter is sent above a written ceiling.
    pub fn poll_reserve(&mut self) -> Option<u64> {
        self.reserve.take()
    }

    /// The state file holds `up_to` now (`ok`), or writing it failed
    /// (asked again [`crate::core::reserve::RETRY`] later).
    pub fn reserved(&mut self, now: Instant, up_to: u64, ok: bool) {
        if let Some(r) = self.reservations.as_mut() {
            if ok { r.written(up_to) } else { r.failed(now) }
        }
    }
}
