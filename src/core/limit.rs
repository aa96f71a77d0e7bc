//! limit: "log this at most once per period", without a clock. The caller
//! passes `now`, so the core can rate-limit its rejection events and the
//! shell its send-error, metrics-error and status-endpoint warnings with the
//! same rule (one helper per idea).
//!
//! Must not: read a clock or log anything itself.

use std::time::{Duration, Instant};

/// One kind of line, allowed at most once per `every`. The first line is
/// always allowed; the next one allowed says how many were held back since.
#[derive(Debug, Clone, Copy)]
pub struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl LogLimiter {
    pub const fn new(every: Duration) -> LogLimiter {
        LogLimiter { every, last: None, held: 0 }
    }

    /// `Some(lines held back since the last one allowed)` when a line may be
    /// logged at `now`; otherwise `None`, and this line counts as held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }

    /// The period since the last line allowed is over: the next line will be
    /// allowed, so forgetting this limiter loses only its held-back count.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.last.is_none_or(|last| now.saturating_duration_since(last) >= self.every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_the_next_counts_what_was_held_back() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = LogLimiter::new(Duration::from_secs(10));
        assert!(l.is_idle(t0));
        assert_eq!(l.allow(t0), Some(0));
        assert!(!l.is_idle(t0 + s));
        assert_eq!(l.allow(t0 + s), None);
        assert_eq!(l.allow(t0 + 9 * s), None);
        assert!(l.is_idle(t0 + 10 * s));
        assert_eq!(l.allow(t0 + 10 * s), Some(2));
        assert_eq!(l.allow(t0 + 11 * s), None);
        assert_eq!(l.allow(t0 + 25 * s), Some(1));
        // A clock that steps back is treated as no time passed.
        assert_eq!(l.allow(t0), None);
    }
}
