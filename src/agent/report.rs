//! report: turns what the core reports into logs and metrics, and is the one
//! place that counts. Passes, retransmits, regenerations and member ups and
//! downs are counted here once, since start ([`Totals`], which the status
//! endpoint shows); the StatsD counters are the growth of those totals since
//! the previous flush, so the two can never disagree. The datagrams the
//! driver sends and receives ([`Traffic`]) and the sends that fail are
//! counted here too, as the driver hands them over.
//!
//! It owns the metric sink, created lazily: a StatsD host name that does not
//! resolve yet (DNS not up at boot) is retried at every flush instead of
//! failing the agent. A quiet reporter (`herd ping`) counts but reports
//! nothing: no event is logged, no metric is sent.
//!
//! Must not: touch the core's state (it is handed events and figures) or
//! wait on anything (recording a metric never blocks, see statsd.rs).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use super::statsd::Metrics;
use crate::config::{Config, RENAME_HINT};
use crate::core::baton::BatonEvent;
use crate::core::conflict::Heard;
use crate::core::limit::LogLimiter;
use crate::core::membership::{Change, MemberEvent};
use crate::core::node::{Event, Reason, Rejections};
use crate::core::wire::WireError;

/// What this agent did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub passes: u64,
    pub retransmits: u64,
    pub regenerated: u64,
    pub member_up: u64,
    pub member_down: u64,
    /// Members turned suspect: flaps, when they come back alive.
    pub member_suspect: u64,
}

impl Totals {
    /// Each total under its StatsD counter name (after `[statsd] prefix`).
    fn counters(&self) -> [(&'static str, u64); 6] {
        [
            ("baton.passes", self.passes),
            ("baton.retransmits", self.retransmits),
            ("baton.regenerated", self.regenerated),
            ("member.up", self.member_up),
            ("member.down", self.member_down),
            ("member.suspect", self.member_suspect),
        ]
    }
}

/// UDP traffic of the gossip and data sockets since start, as the driver
/// sent and received it (the status endpoint's `traffic`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub sent_datagrams: u64,
    pub sent_bytes: u64,
    pub received_datagrams: u64,
    pub received_bytes: u64,
    /// Of those bytes, the health and links in heartbeats (their
    /// extensions' bytes), sent and received: what the cluster view costs.
    #[serde(default)]
    pub health_sent_bytes: u64,
    #[serde(default)]
    pub health_received_bytes: u64,
}

/// At most one "cannot send datagram" warning per this long.
const SEND_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Reporter {
    /// Counts only: events and metrics are dropped (`herd ping`).
    quiet: bool,
    metrics: Option<Metrics>,
    config: Config,
    /// The sink failed to open once (logged once, then retried quietly).
    failed_once: bool,
    /// `herd.baton.hop_ms` is sampled when the relay runs unpaced, so a fast
    /// relay does not send one histogram line per pass.
    hop_sample_rate: f64,
    totals: Totals,
    /// `totals` as of the previous flush.
    flushed: Totals,
    /// The core's rejection counts as of the previous flush.
    flushed_rejections: Rejections,
    traffic: Traffic,
    send_errors: u64,
    send_log: LogLimiter,
}

impl Reporter {
    /// Opens the sink of `[statsd] address` (or logs why not, and retries).
    pub fn new(config: &Config) -> Reporter {
        let mut r = Reporter::build(config, None);
        r.connect();
        r
    }

    /// Counts traffic and send errors, and reports nothing (`herd ping`,
    /// which must not send metrics): events are dropped, no sink is opened.
    pub fn quiet(config: &Config) -> Reporter {
        Reporter { quiet: true, ..Reporter::build(config, None) }
    }

    /// A reporter whose metrics go to `metrics` (tests: a spy sink).
    #[cfg(test)]
    pub fn with_metrics(config: &Config, metrics: Metrics) -> Reporter {
        Reporter::build(config, Some(metrics))
    }

    fn build(config: &Config, metrics: Option<Metrics>) -> Reporter {
        let hop_sample_rate = if config.baton.hold >= Duration::from_millis(1) { 1.0 } else { 0.01 };
        Reporter {
            quiet: false,
            metrics,
            config: config.clone(),
            failed_once: false,
            hop_sample_rate,
            totals: Totals::default(),
            flushed: Totals::default(),
            flushed_rejections: Rejections::default(),
            traffic: Traffic::default(),
            send_errors: 0,
            send_log: LogLimiter::new(SEND_ERROR_LOG_EVERY),
        }
    }

    /// For a reloaded `config` (another address, prefix, tags, flavour or
    /// pace): a new sink, every count kept, so counters go on from where
    /// they were. A quiet reporter stays quiet.
    pub fn reconfigure(&mut self, config: &Config) {
        if self.quiet {
            return;
        }
        // What the old sink still buffers goes out first.
        if let Some(m) = self.metrics.as_mut() {
            m.flush(Instant::now());
        }
        let old = std::mem::replace(self, Reporter::build(config, None));
        self.totals = old.totals;
        self.flushed = old.flushed;
        self.flushed_rejections = old.flushed_rejections;
        self.traffic = old.traffic;
        self.send_errors = old.send_errors;
        self.send_log = old.send_log;
        self.connect();
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The datagrams sent and received since start.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// A datagram of `bytes` received on either socket.
    pub fn received(&mut self, bytes: usize) {
        self.traffic.received_datagrams += 1;
        self.traffic.received_bytes += bytes as u64;
    }

    /// A datagram of `bytes` sent.
    pub fn sent(&mut self, bytes: usize) {
        self.traffic.sent_datagrams += 1;
        self.traffic.sent_bytes += bytes as u64;
    }

    /// A send to `to` that failed. `no_network`: the network is gone and the
    /// agent already said it waits for one, so this is a debug line; else a
    /// warning with the total, at most one per 10 s.
    pub fn send_failed(&mut self, to: SocketAddr, error: &io::Error, no_network: bool) {
        self.send_errors += 1;
        if no_network {
            debug!(%to, %error, "cannot send: no network");
        } else if self.send_log.allow(Instant::now()).is_some() {
            warn!(%to, %error, total = self.send_errors, "cannot send datagram");
        }
    }

    /// The sink, if it is open (telemetry sends through it).
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    fn connect(&mut self) {
        if self.quiet || self.metrics.is_some() {
            return;
        }
        match Metrics::new(&self.config.statsd, &self.config.node.name, &self.config.baton.metric) {
            Ok(m) => {
                if self.failed_once {
                    info!(address = %self.config.statsd.address, "metrics sink ready");
                }
                self.metrics = Some(m);
            }
            Err(e) if !self.failed_once => {
                self.failed_once = true;
                warn!("{e:#}; metrics are dropped until it works (retried every flush_interval)");
            }
            Err(_) => {}
        }
    }

    /// Every `flush_interval`: the `members` gauge, the counters' growth since
    /// the previous flush (with `gossip.rejected`, tagged by reason, from the
    /// core's `rejections`), and every buffered line. While the sink cannot be
    /// opened the interval's counts are dropped, as its lines are.
    pub fn flush(&mut self, cluster_size: usize, rejections: Rejections, now: Instant) {
        if self.quiet {
            return;
        }
        self.connect();
        let (totals, flushed) = (self.totals.counters(), self.flushed.counters());
        let before = std::mem::replace(&mut self.flushed_rejections, rejections);
        self.flushed = self.totals;
        let Some(m) = self.metrics.as_mut() else { return };
        m.gauge("members", cluster_size as f64);
        for ((name, total), (_, before)) in totals.into_iter().zip(flushed) {
            if total > before {
                m.count(name, total - before);
            }
        }
        for ((reason, total), (_, before)) in rejections.iter().zip(before.iter()) {
            if total > before {
                m.count_tagged("gossip.rejected", total - before, ("reason", reason));
            }
        }
        m.flush(now);
    }

    /// One event of the core; `cluster_size` is the core's after it (read
    /// for member events only).
    pub fn event(&mut self, ev: Event, cluster_size: usize) {
        if self.quiet {
            return;
        }
        match ev {
            Event::Baton(ev) => self.baton(ev),
            Event::Member(ev) => {
                self.count_member(&ev.change);
                log_member(&ev, cluster_size);
            }
            Event::Rejected { source, reason, suppressed, total } => {
                if matches!(reason, Reason::Wire(WireError::OtherCluster)) {
                    info!(%source, %reason, suppressed, total, "datagram rejected");
                } else {
                    warn!(%source, %reason, suppressed, total, "datagram rejected");
                }
            }
            Event::NameConflict(heard) => log_name_conflict(&self.config.node.name, &heard),
            Event::NameConflictOver { incarnation, addr } => info!(
                other = %addr, incarnation,
                "name conflict over: the other node using this node's name left the cluster"
            ),
        }
    }

    /// The last line of a run: every rejection class, by the core's list.
    pub fn left(&self, rejections: Rejections) {
        if self.quiet {
            return;
        }
        let classes: Vec<String> = rejections.iter().map(|(class, n)| format!("{class}={n}")).collect();
        info!("left the cluster rejected={} {}", rejections.total(), classes.join(" "));
    }

    fn count_member(&mut self, change: &Change) {
        let t = &mut self.totals;
        match change {
            Change::Up => t.member_up += 1,
            Change::Restarted { .. } => {
                t.member_down += 1;
                t.member_up += 1;
            }
            Change::Down { .. } | Change::Left => t.member_down += 1,
            Change::Suspect { .. } => t.member_suspect += 1,
            Change::Alive => {}
        }
    }

    fn baton(&mut self, ev: BatonEvent) {
        let m = self.metrics.as_ref();
        match ev {
            // Per pass: debug level only (tests use it to find the holder).
            BatonEvent::Taken { id, counter } => debug!(epoch = id.epoch, counter, "baton taken"),
            BatonEvent::Passed { counter } => {
                self.totals.passes += 1;
                if let Some(m) = self.metrics.as_mut() {
                    m.baton(counter);
                }
            }
            BatonEvent::Acked { hop } => {
                if let Some(m) = m {
                    m.histogram_ms("baton.hop_ms", hop.as_micros() as f64 / 1000.0, self.hop_sample_rate);
                }
            }
            BatonEvent::Retransmit { to } => {
                self.totals.retransmits += 1;
                debug!(to = %to, "baton pass resent");
            }
            BatonEvent::Skipped { to } => {
                info!(peer = %to, "baton: peer skipped for this lap (no ack, refused, or gone)")
            }
            BatonEvent::Started { id, counter } => info!(epoch = id.epoch, counter, "baton started"),
            BatonEvent::Regenerated { id, counter } => {
                self.totals.regenerated += 1;
                info!(epoch = id.epoch, counter, "baton regenerated (none seen for regenerate_after)");
            }
            BatonEvent::Dropped { id, counter, why } => {
                info!(epoch = id.epoch, counter, why, "baton dropped")
            }
        }
    }
}

/// An error, not a warning: nodes that share a name refuse each other until
/// an operator renames one, so the line says which node and how.
fn log_name_conflict(name: &str, c: &Heard) {
    error!(
        other = %c.addr, source = %c.source, incarnation = c.incarnation, nodes = c.others,
        suppressed = c.suppressed,
        "name conflict: the node at {} also runs as {name:?}, so this node refuses its datagrams and neither \
         joins the other's cluster (repeated every minute while it lasts). Give each node its own name: {RENAME_HINT}",
        c.addr
    );
}

fn log_member(ev: &MemberEvent, members: usize) {
    let (name, addr, inc) = (&ev.name, ev.addr, ev.incarnation);
    match &ev.change {
        Change::Up => info!(member = %name, %addr, incarnation = inc, members, "member up"),
        Change::Restarted { old_incarnation } => {
            info!(member = %name, %addr, incarnation = inc, old_incarnation, members, "member restarted")
        }
        Change::Suspect { silent_for } => {
            warn!(member = %name, %addr, silent_ms = silent_for.as_millis() as u64, members, "member suspect")
        }
        Change::Alive => info!(member = %name, %addr, members, "member alive again"),
        Change::Down { silent_for } => {
            warn!(member = %name, %addr, silent_ms = silent_for.as_millis() as u64, members, "member down")
        }
        Change::Left => info!(member = %name, %addr, members, "member left"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::agent::statsd::spy;

    fn member(change: Change) -> Event {
        let addr: SocketAddr = "10.0.0.2:45893".parse().unwrap();
        Event::Member(MemberEvent { name: "psb".into(), incarnation: 1, addr, change })
    }

    #[test]
    fn counters_are_the_growth_of_the_totals_since_the_previous_flush() {
        let config = spy::config("[baton]\nhold = \"10ms\"\n");
        let (m, lines) = spy::metrics(&config, "psa");
        let mut r = Reporter::with_metrics(&config, m);
        let t0 = Instant::now();
        for counter in [5, 6, 7] {
            r.event(Event::Baton(BatonEvent::Passed { counter }), 2);
        }
        r.event(Event::Baton(BatonEvent::Acked { hop: Duration::from_micros(1250) }), 2);
        r.event(Event::Baton(BatonEvent::Retransmit { to: "psb".into() }), 2);
        r.event(member(Change::Up), 2);
        r.event(member(Change::Restarted { old_incarnation: 0 }), 2);
        r.flush(2, Rejections::default(), t0);
        assert_eq!(
            lines(),
            [
                "baton:5|g|#host:psa",
                "baton:6|g|#host:psa",
                "baton:7|g|#host:psa",
                "herd.baton.hop_ms:1.25|h|#host:psa",
                "herd.members:2|g|#host:psa",
                "herd.baton.passes:3|c|#host:psa",
                "herd.baton.retransmits:1|c|#host:psa",
                "herd.member.up:2|c|#host:psa",
                "herd.member.down:1|c|#host:psa",
            ]
        );
        r.event(Event::Baton(BatonEvent::Passed { counter: 8 }), 1);
        r.event(member(Change::Suspect { silent_for: Duration::from_secs(3) }), 1);
        r.event(member(Change::Alive), 1);
        r.event(member(Change::Left), 1);
        let rejections = Rejections { auth: 2, stale: 1, ..Rejections::default() };
        r.flush(1, rejections, t0);
        assert_eq!(
            lines(),
            [
                "baton:8|g|#host:psa",
                "herd.members:1|g|#host:psa",
                "herd.baton.passes:1|c|#host:psa",
                "herd.member.down:1|c|#host:psa",
                "herd.member.suspect:1|c|#host:psa",
                "herd.gossip.rejected:2|c|#host:psa,reason:auth",
                "herd.gossip.rejected:1|c|#host:psa,reason:stale",
            ]
        );
        // Only the growth: nothing new, no line.
        r.flush(1, rejections, t0);
        assert!(!lines().iter().any(|l| l.contains("rejected")), "{:?}", lines());
        // What the status endpoint shows: since start.
        let want = Totals {
            passes: 4,
            retransmits: 1,
            regenerated: 0,
            member_up: 2,
            member_down: 2,
            member_suspect: 1,
        };
        assert_eq!(*r.totals(), want);
    }

    /// Traffic is counted here whether the reporter reports or not (`herd
    /// ping`'s is quiet), and a reload's new sink keeps every count.
    #[test]
    fn traffic_is_counted_quietly_and_counts_survive_a_reload() {
        let config = spy::config("[node]\nname = \"psa\"\n");
        let mut quiet = Reporter::quiet(&config);
        quiet.sent(100);
        quiet.sent(20);
        quiet.received(7);
        quiet.event(Event::Baton(BatonEvent::Passed { counter: 1 }), 2);
        quiet.flush(2, Rejections::default(), Instant::now());
        let want = Traffic {
            sent_datagrams: 2,
            sent_bytes: 120,
            received_datagrams: 1,
            received_bytes: 7,
            ..Traffic::default()
        };
        assert_eq!(quiet.traffic(), want);
        assert_eq!(quiet.totals().passes, 0, "a quiet reporter drops events");
        assert!(quiet.metrics().is_none(), "and opens no sink");

        let (m, _) = spy::metrics(&config, "psa");
        let mut r = Reporter::with_metrics(&config, m);
        r.sent(5);
        r.event(Event::Baton(BatonEvent::Passed { counter: 1 }), 2);
        r.reconfigure(&spy::config("[node]\nname = \"psa\"\n[statsd]\ntags = [\"env:lab\"]\n"));
        assert_eq!((r.traffic().sent_bytes, r.totals().passes), (5, 1));
    }

    #[test]
    fn an_unpaced_relay_samples_the_hop_histogram() {
        let config = spy::config("[baton]\nhold = \"0ms\"\n");
        let (m, lines) = spy::metrics(&config, "psa");
        let mut r = Reporter::with_metrics(&config, m);
        r.event(Event::Baton(BatonEvent::Acked { hop: Duration::from_micros(300) }), 2);
        let sent = lines();
        // Sampled at 1 %: a line, if any, says so.
        assert!(sent.iter().all(|l| l == "herd.baton.hop_ms:0.3|h|@0.01|#host:psa"), "{sent:?}");
    }
}
