//! timings: the deadlines a node derives from its heartbeat interval instead
//! of taking them from the config. One definition, for the node (probing a
//! suspect, waiting out a stall) and the baton relay (when a fresh node may
//! start the first baton, how often it looks again), in the shell and the
//! simulator alike.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How often a suspect member is probed directly.
    pub probe_every: Duration,
    /// How long a fresh node listens before it may start the first baton (two
    /// heartbeats), so it hears about an existing one first.
    pub start_after: Duration,
    /// How often a node that is due to start or regenerate the baton, but is
    /// not the one chosen to, looks again.
    pub recheck: Duration,
}

impl Timings {
    pub fn from_heartbeat(interval: Duration) -> Timings {
        let floor = Duration::from_millis(10);
        Timings {
            probe_every: (interval / 4).max(floor),
            start_after: interval * 2,
            recheck: (interval / 10).max(floor),
        }
    }
}
