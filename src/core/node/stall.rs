//! stall: what a node does when its own turn comes far later than the
//! deadline it asked for. The process was not running (a worn SD card
//! blocking every process for seconds, SIGSTOP, a paused VM); the node can
//! tell only by its clock, and must not act on what it missed as if it had
//! been listening:
//! - the baton held or being passed here may have been regenerated or
//!   passed on meanwhile: it is neither passed nor gauged before the
//!   cluster's views are in (see `Relay::stalled`), and nothing is
//!   regenerated before then either;
//! - peers it could not hear are not suspected for it: the deadlines of
//!   the member table's suspects and of the failure detector move on by the
//!   frozen span and one heartbeat interval more (for the datagrams queued
//!   meanwhile to be read and a probe to be answered);
//! - it heartbeats soon, so peers that marked it down see it back at once;
//! - until the relay has settled it answers one queued ping per source:
//!   peers' checks of it piled up pings while it was frozen, and answering
//!   them all at once would be a burst that pushes its ask for views out of
//!   the peers' replay windows (any one datagram of it ends their checks).
//!   Ping requests (checks of a third node) are all served.
//!
//! Peers that kept running rightly saw it silent; that is theirs to judge.
//! Must not: read a clock (the stall is measured from the `now` handed in).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::Node;

impl<R: Rng> Node<R> {
    /// A late turn of at least this is a stall: half a heartbeat interval,
    /// or of `regenerate_after` if that is shorter. The loop checks the
    /// deadline after every input, so a running agent is late by scheduling
    /// delays (milliseconds, even on a loaded Pi); half an interval late, it
    /// was not running, and may have missed a heartbeat that mattered. A
    /// false alarm costs little (a short wait of the baton, a later verdict
    /// on a peer), a missed stall a stale gauge or a false "down".
    pub(super) fn stall_after(&self) -> Duration {
        (self.tuning.heartbeat_interval.min(self.tuning.baton.regenerate_after) / 2)
            .max(Duration::from_millis(10))
    }

    /// Called first by `handle` and `handle_timeout`: compares `now` with
    /// the deadline the node gave before this call (its state has not moved
    /// since the previous call, so `poll_timeout` says what it said then).
    /// A turn is due at that deadline, or at the previous call if later; the
    /// time past it is the frozen span.
    pub(super) fn notice_stall(&mut self, now: Instant) {
        let previous = self.last_turn.replace(now.max(self.last_turn.unwrap_or(now)));
        let Some(previous) = previous else { return };
        let threshold = self.stall_after();
        // Cheap test first: a turn soon after the previous one is no stall.
        if now.saturating_duration_since(previous) < threshold {
            return;
        }
        let Some(due) = self.poll_timeout() else { return };
        let late = now.saturating_duration_since(due.max(previous));
        if late >= threshold {
            self.stalled(now, late);
        }
    }

    fn stalled(&mut self, now: Instant, late: Duration) {
        self.stalls += 1;
        self.last_stall = Some(late);
        let credit = late + self.tuning.heartbeat_interval;
        self.members.credit(now, credit);
        self.prober.credit(now, credit);
        let timings = self.tuning.timings();
        // The views asked for come within a round trip.
        let wait = timings.probe_every;
        self.relay.stalled(now, wait, &mut self.effects);
        self.settle = Some((now + wait, Vec::new()));
        self.heartbeat_soon(now);
        self.drain(now);
    }

    /// Whether a ping from `src` goes unanswered: while settling after a
    /// stall, from a source already answered. At most `max_members`
    /// sources are remembered (spoofed ones cannot grow it); past that,
    /// every ping is answered.
    pub(super) fn settling_answered(&mut self, now: Instant, src: SocketAddr) -> bool {
        let cap = self.identity.max_members;
        let Some((until, answered)) = self.settle.as_mut() else { return false };
        if now >= *until {
            self.settle = None;
            return false;
        }
        if answered.contains(&src) {
            return true;
        }
        if answered.len() < cap {
            answered.push(src);
        }
        false
    }

    /// Stalls noticed in this life, and the last one's length past its
    /// deadline.
    pub fn stalls(&self) -> (u64, Option<Duration>) {
        (self.stalls, self.last_stall)
    }
}
