//! compat: the previous release (wire version [`MIN_VERSION`]) behind one
//! seam. This module alone knows whether the cluster is *mixed* (a live
//! member does not understand this release's [`VERSION`]) and what that
//! changes; the rest of the node asks it at the points named below.
//!
//! A node of the previous release fails members by silence: every node
//! heartbeats every interval, with sightings of the members it hears, and
//! nobody probes, sends news, asks for baton views or gossips health and
//! links. While one is live, every node of this release goes back to those
//! ways: a mixed cluster is one cluster, at the old cost.
//!
//! The points, each a method here, and who asks:
//! - [`Node::recheck_mixed`] (`inbound`, after a sender was admitted with
//!   news; `effects`, after any member change): the switch, the one place
//!   that tells the machines.
//! - [`Compat::heartbeats_each_interval`]: `heartbeat` (every interval, not
//!   a refresh every 10 intervals or N / 2), `effects` (a newcomer greeted
//!   by the next group heartbeat, brought forward, not a unicast welcome),
//!   `inbound` (no early heartbeat for a down member heard again), `relay`
//!   (no holder announcements), `stall` (views waited for an interval
//!   more).
//! - [`Compat::heartbeat_extensions`] and [`Compat::sightings`]: `heartbeat`
//!   (sightings instead of health, links and asks for views).
//! - [`Node::on_sightings`]: `inbound` (sightings heard are liveness
//!   evidence, mixed or not).
//! - [`Compat::fails_by_silence`]: `detector` (no checks started, no news
//!   sent, a suspect due a check pinged directly).
//!
//! What the machines do differently is switched here and nowhere else: the
//! member table's silence deadlines (`Members::set_silence`), the relay's
//! asking for views (`Relay::set_ask_first`). Which wire version goes to
//! whom is not this module's: that is per member, and stays when the next
//! release drops version 2 (see `outbound`).
//!
//! Dropping wire 2 (when [`MIN_VERSION`] is 3): delete this module and, at
//! each call site above, keep this release's branch; then the member table's
//! silence mode and `Members::sighted`, the relay's `set_ask_first` and the
//! failure detector's `Ring::detect`, which nothing else uses.
//!
//! [`MIN_VERSION`]: crate::core::wire::MIN_VERSION

use std::time::{Duration, Instant};

use rand::Rng;

use super::Node;
use crate::core::membership::Members;
use crate::core::wire::{self, Sighting, VERSION};

/// Whether the cluster is mixed, and what its heartbeats owe the previous
/// release.
#[derive(Debug, Default)]
pub(super) struct Compat {
    /// A live member does not understand [`VERSION`].
    mixed: bool,
    /// Rotates which members a heartbeat's sightings start from, for clusters
    /// too big to mention everyone in one datagram.
    sighting_cursor: usize,
}

impl Compat {
    /// Every node heartbeats to the whole cluster every interval, with its
    /// baton view: how the previous release learns that members and the
    /// baton live. Then a newcomer learns the cluster from the next group
    /// heartbeat (brought forward) rather than a welcome, a healed partition
    /// from the next heartbeat, the baton's views from everyone's heartbeats
    /// (no holder announcements), and a stalled node waits an interval for
    /// them.
    pub(super) fn heartbeats_each_interval(&self) -> bool {
        self.mixed
    }

    /// Members fail by silence (the member table's deadlines, from sightings
    /// and datagrams), as in the previous release: the failure detector
    /// starts no checks and its news is not sent, and a suspect due a check
    /// is pinged directly instead.
    pub(super) fn fails_by_silence(&self) -> bool {
        self.mixed
    }

    /// Heartbeats carry this release's extensions (health, links, asks
    /// for views): not while the cluster is mixed, when they carry
    /// sightings instead.
    pub(super) fn heartbeat_extensions(&self) -> bool {
        !self.mixed
    }

    /// The sightings a heartbeat carries: while the cluster is mixed, the
    /// live members as many as fit, starting where the previous heartbeat
    /// stopped (how the previous release learns who is alive); none
    /// otherwise.
    pub(super) fn sightings<'m>(&mut self, now: Instant, members: &'m Members) -> Vec<Sighting<'m>> {
        let mut sightings = Vec::new();
        if !self.mixed {
            return sightings;
        }
        let live: Vec<_> = members.live().collect();
        if live.is_empty() {
            return sightings;
        }
        let mut budget = wire::SIGHTINGS_BUDGET;
        let start = self.sighting_cursor % live.len();
        for m in live.iter().cycle().skip(start).take(live.len()) {
            let len = wire::sighting_len(&m.name);
            if len > budget || sightings.len() == u8::MAX as usize {
                break;
            }
            budget -= len;
            let age = now.saturating_duration_since(m.last_heard).as_millis();
            sightings.push(Sighting {
                name: &m.name,
                incarnation: m.incarnation,
                age_ms: age.min(u32::MAX as u128) as u32,
            });
        }
        self.sighting_cursor = start + sightings.len();
        sightings
    }
}

impl<R: Rng> Node<R> {
    /// Looks again whether the cluster is mixed, after a datagram's sender
    /// was admitted with news (a newer version learnt) and after any member
    /// change (up, down, gone, restarted): on a switch, the member table
    /// fails members by silence or not, the relay asks for views or not, and
    /// a switch to the old ways heartbeats at once. A node's first
    /// heartbeats go out in the previous release's wire (it knows no member
    /// that understands more), so a node killed before its next one is
    /// taken for the previous release's: its going down ends the mixed
    /// cluster at once.
    pub(super) fn recheck_mixed(&mut self, now: Instant) {
        let mixed = self.members.live().any(|m| m.wire < VERSION);
        if mixed != self.compat.mixed {
            self.compat.mixed = mixed;
            self.members.set_silence(now, mixed);
            self.relay.set_ask_first(!mixed);
            if mixed {
                self.next_heartbeat = self.next_heartbeat.min(now);
            }
        }
    }

    /// Sightings in a heartbeat (the previous release's, or one of this
    /// release's while the cluster is mixed): liveness evidence of the
    /// members named, as their sender heard them.
    pub(super) fn on_sightings(&mut self, now: Instant, sightings: &[Sighting<'_>]) {
        for s in sightings {
            if s.name != self.identity.name {
                let age = Duration::from_millis(s.age_ms.into());
                self.members.sighted(now, s.name, s.incarnation, age, &mut self.effects);
            }
        }
    }
}
