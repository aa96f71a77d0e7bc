//! `[links]`: the probes (one peer per interval, in turn: the failure
//! detector's, see `core::probe`) and what is reported of each link.

use std::time::Duration;

use super::key::{Key, Section, choice, duration, int, integer, span, text};

/// Which per-peer link gauges go to StatsD. Every peer's are N−1 series per
/// host, so (N−1)·N across a cluster: 32 Pis send 3,968 link series, above
/// what Datadog's plans include per host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerMetrics {
    /// One series per peer, tagged `peer:`.
    #[default]
    All,
    /// No peer tag: the link gauges as the mean over peers under the same
    /// names, the worst peer's RTT and loss (`link.worst_rtt_ms`,
    /// `link.worst_loss_pct`), and `clock.offset_ms` as the offset of the
    /// peer farthest off (a mean of offsets says nothing).
    Summary,
    /// No link gauges (the status endpoint still has them).
    None,
}

impl PeerMetrics {
    const ALL: [PeerMetrics; 3] = [PeerMetrics::All, PeerMetrics::Summary, PeerMetrics::None];

    pub fn as_str(self) -> &'static str {
        match self {
            PeerMetrics::All => "all",
            PeerMetrics::Summary => "summary",
            PeerMetrics::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinksSection {
    pub probe_interval: Duration,
    pub window: usize,
    pub peer_metrics: PeerMetrics,
}

const PROBE_INTERVAL: Key<LinksSection> = Key::live(
    "probe_interval",
    || text("1s"),
    |l, v| duration(v, Duration::from_millis(10)).map(|d| l.probe_interval = d),
    |l| span(l.probe_interval),
);
const WINDOW: Key<LinksSection> = Key::live(
    "window",
    || integer(60),
    |l, v| int(v, 1, 10_000).map(|n| l.window = n as usize),
    |l| integer(l.window as i64),
);

const PEER_METRICS: Key<LinksSection> = Key::live(
    "peer_metrics",
    || text("all"),
    |l, v| choice(v, &PeerMetrics::ALL, PeerMetrics::as_str).map(|m| l.peer_metrics = m),
    |l| text(l.peer_metrics.as_str()),
);

impl Section for LinksSection {
    const NAME: &'static str = "links";
    const KEYS: &'static [Key<Self>] = &[PROBE_INTERVAL, WINDOW, PEER_METRICS];
}

impl LinksSection {
    /// The rule with `[gossip]`: the probes are how members are checked, so a
    /// member must be probed at least twice before it can be suspected.
    pub(super) fn check(&self, suspect_after: Duration, p: &mut Vec<super::Problem>) {
        if self.probe_interval * 2 > suspect_after {
            let allowed = format!(
                "must be at most half of gossip.suspect_after ({}): members are checked by these probes",
                super::format_duration(suspect_after)
            );
            p.push(PROBE_INTERVAL.problem(self, allowed));
        }
    }
}
