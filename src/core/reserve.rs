//! reserve: counter reservations, so the baton's counter survives a power cut
//! of the whole cluster. A node with a state directory writes a ceiling to
//! its state file before any counter it knows of comes near it: every counter
//! sent anywhere in the cluster stays below every live node's ceiling. After
//! a cut each node starts from its file's ceiling as its floor, advertises it
//! (the heartbeat's floor extension), and a baton started with no baton known
//! anywhere starts above the highest floor heard (see `baton::Relay`).
//!
//! Sizing: a new ceiling is `high + range`, written when `high` is within half
//! a range of the old one, so one write covers half a range of passes. The
//! range is the counter's measured growth over [`COVER`] (twice the longest
//! time one write should cover), so a node writes about once per
//! [`COVER`]/2 at any steady pace: ten minutes. At full speed a range
//! reserves millions of counters; a gap that size after a cut is the price
//! of writing rarely (gaps in the gauge are harmless; a repeat or a step back
//! is not).
//!
//! Must not: do I/O or read a clock (the node asks with `now`; the shell
//! writes and confirms).

use std::time::{Duration, Instant};

/// Twice the time one reservation should last at a steady pace.
pub const COVER: Duration = Duration::from_secs(20 * 60);
/// How long after a failed write the next is tried.
pub const RETRY: Duration = Duration::from_secs(10);
/// The smallest range: a slow or idle relay still writes rarely.
pub const MIN_RANGE: u64 = 1024;
/// The range before the pace is known, for an unpaced relay: about a
/// minute of one at full speed.
pub const UNPACED_RANGE: u64 = 1 << 21;

#[derive(Debug, Clone)]
pub struct Reservations {
    /// The ceiling the state file holds (confirmed written), 0 before any.
    ceiling: u64,
    /// A ceiling asked for and not yet confirmed.
    pending: Option<u64>,
    /// After a failed write: not before then.
    retry_at: Option<Instant>,
    /// `high` and the time at the last reservation asked for: the pace.
    last: Option<(Instant, u64)>,
    /// The range while the pace is not measured yet: [`COVER`] at one pass
    /// per `hold` (the configured pace), or [`UNPACED_RANGE`].
    first_range: u64,
}

impl Reservations {
    /// Reservations continuing from the file's `ceiling` (0: none), for a
    /// relay paced at `hold` (`[baton] hold`).
    pub fn new(ceiling: u64, hold: Duration) -> Reservations {
        let first_range = if hold.is_zero() {
            UNPACED_RANGE
        } else {
            ((COVER.as_secs_f64() / hold.as_secs_f64()) as u64).max(MIN_RANGE)
        };
        Reservations { ceiling, pending: None, retry_at: None, last: None, first_range }
    }

    /// The confirmed ceiling.
    pub fn ceiling(&self) -> u64 {
        self.ceiling
    }

    /// With `high` the highest counter known now: the new ceiling to write,
    /// if one is due (at most one outstanding).
    pub fn due(&mut self, now: Instant, high: u64) -> Option<u64> {
        if self.pending.is_some() || self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        let range = self.range(now, high);
        if high.saturating_add(range / 2) <= self.ceiling {
            return None;
        }
        let up_to = high.saturating_add(range);
        self.pending = Some(up_to);
        self.last = Some((now, high));
        Some(up_to)
    }

    /// The state file holds `up_to` now.
    pub fn written(&mut self, up_to: u64) {
        self.ceiling = self.ceiling.max(up_to);
        self.pending = None;
    }

    /// Writing failed: asked again [`RETRY`] after `now`.
    pub fn failed(&mut self, now: Instant) {
        self.pending = None;
        self.retry_at = Some(now + RETRY);
    }

    /// The counter's growth over [`COVER`] at the pace since the last
    /// reservation, at least [`MIN_RANGE`].
    fn range(&self, now: Instant, high: u64) -> u64 {
        let Some((at, was)) = self.last else { return self.first_range };
        let elapsed = now.saturating_duration_since(at).as_secs_f64().max(1.0);
        let rate = high.saturating_sub(was) as f64 / elapsed;
        ((rate * COVER.as_secs_f64()) as u64).max(MIN_RANGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes in an hour of a steady relay at `per_s` passes a second, and
    /// whether every counter stayed below the confirmed ceiling.
    fn hour_at(per_s: u64, hold: Duration) -> (usize, bool) {
        let t0 = Instant::now();
        let mut r = Reservations::new(0, hold);
        let (mut writes, mut covered) = (0, true);
        for tenth in 0..36_000u64 {
            let now = t0 + Duration::from_millis(tenth * 100);
            let high = tenth * per_s / 10;
            if let Some(up_to) = r.due(now, high) {
                r.written(up_to);
                writes += 1;
            }
            covered &= high < r.ceiling();
        }
        (writes, covered)
    }

    #[test]
    fn a_steady_relay_writes_about_every_ten_minutes_and_stays_covered() {
        // The shipped pace (hold 100ms: about 10 passes a second), and a
        // full-speed relay (tens of thousands).
        // The footprint budget: at most one write per 10 minutes at the
        // default pace (and the first), at most one a minute at full speed.
        for (per_s, hold, most) in [(10, Duration::from_millis(100), 7), (30_000, Duration::ZERO, 60)] {
            let (writes, covered) = hour_at(per_s, hold);
            assert!(covered, "{per_s}/s: a counter above the written ceiling");
            assert!(writes <= most, "{per_s}/s: {writes} writes in an hour");
            println!("{per_s} passes/s: {writes} state file writes in an hour");
        }
        // Idle (no baton): one write, then none.
        assert_eq!(hour_at(0, Duration::from_millis(100)).0, 1);
    }

    #[test]
    fn a_restart_continues_from_the_file() {
        let t0 = Instant::now();
        let mut r = Reservations::new(50_000, Duration::from_millis(100));
        assert_eq!(r.due(t0, 100), None, "far below the file's ceiling: nothing to write");
        let up_to = r.due(t0, 45_000).expect("near it: a new ceiling");
        assert!(up_to > 50_000);
        assert_eq!(r.due(t0, 45_001), None, "one at a time");
        r.failed(t0);
        assert_eq!(r.due(t0 + Duration::from_secs(1), 45_001), None, "not at once after a failure");
        assert!(r.due(t0 + RETRY, 49_900).is_some(), "asked again after a failure");
    }
}
