//! `[links]`: link-health probes to every peer.

use std::time::Duration;

use super::key::{Key, Section, duration, int, integer, span, text};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinksSection {
    pub probe_interval: Duration,
    pub window: usize,
}

const PROBE_INTERVAL: Key<LinksSection> = Key::new(
    "probe_interval",
    || text("1s"),
    |l, v| duration(v, Duration::from_millis(10)).map(|d| l.probe_interval = d),
    |l| span(l.probe_interval),
);
const WINDOW: Key<LinksSection> = Key::new(
    "window",
    || integer(60),
    |l, v| int(v, 1, 10_000).map(|n| l.window = n as usize),
    |l| integer(l.window as i64),
);

impl Section for LinksSection {
    const NAME: &'static str = "links";
    const KEYS: &'static [Key<Self>] = &[PROBE_INTERVAL, WINDOW];
}
