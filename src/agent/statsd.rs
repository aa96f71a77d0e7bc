//! statsd: the metric sink. Two cadence clients share one buffered sink (UDP
//! `host:port` or a Unix datagram socket): one with `[statsd] prefix` for
//! `herd.*` metrics, one without for the bare `baton` gauge (the name the
//! Elixir relay herd replaces sent, so its dashboards keep working). Every
//! metric carries `host:<node>` (unless `[statsd] host_tag = false`: then the
//! Datadog Agent files it under its own hostname) and the constant `[statsd]
//! tags`; with `flavor = "statsd"` there are no tags and the host goes into the
//! name (`herd.psa.members`, `baton.psa`), again unless `host_tag = false`.
//!
//! Contract: recording a metric never blocks and never fails the caller. The
//! sockets are non-blocking; lines are batched up to `max_packet_size` and
//! sent when a batch is full or at [`Metrics::flush`] (the runtime calls it
//! every `flush_interval`). Send failures (server down, socket missing) are
//! counted and logged at most once per 10 s; the batch that failed is
//! dropped, as the network would have. A batch buffered before the process
//! stalled is dropped unsent ([`Metrics::discard`]): StatsD stamps a line
//! when it arrives, so lines sent seconds late would read as current.
//!
//! Counters are summed by the reporter (report.rs) and sent at each flush, so
//! a relay doing tens of thousands of passes per second sends one `passes`
//! line per second, not one per pass; the baton gauge goes out at every pass,
//! as the Elixir relay's did.
//!
//! The sink is a cadence [`MetricSink`], so tests hand [`Metrics::with_sink`]
//! cadence's `SpyMetricSink` and read the exact bytes.
//!
//! The baton gauge, sent at every pass, is the one line on the hot path: its
//! text around the counter is formatted once, by cadence, when the metrics
//! are built ([`BatonLine`]), and each pass writes only the digits into a
//! buffer kept for it (no allocation, no formatting machinery).

use std::io;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::panic::RefUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cadence::prelude::*;
use cadence::{MetricSink, StatsdClient};
use tracing::warn;

use crate::config::{Flavor, StatsdAddress, StatsdSection};
use crate::core::limit::LogLimiter;

const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// One sink shared by both clients, so their lines share batches and a flush.
#[derive(Clone)]
struct SharedSink(Arc<dyn MetricSink + Send + Sync + RefUnwindSafe>);

impl MetricSink for SharedSink {
    fn emit(&self, metric: &str) -> std::io::Result<usize> {
        self.0.emit(metric)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Where a batch goes.
enum Dest {
    /// Connected, so the kernel reports the server's "port unreachable" as
    /// ECONNREFUSED on a later send: a StatsD server that is down is then
    /// logged, not silently missed.
    Udp(UdpSocket),
    /// Unbound, each batch sent to the path: a socket that is missing now
    /// (the Datadog Agent not started yet) works once it appears.
    Unix(UnixDatagram, PathBuf),
}

/// Lines batched into datagrams of at most `cap` bytes, each line ended by a
/// newline (the format of cadence's buffered sinks, which this replaces for
/// one thing they lack: a batch dropped unsent, [`Batch::discard`]). A line
/// longer than `cap` goes alone, without the newline.
struct Batch {
    dest: Dest,
    cap: usize,
    buf: Mutex<Vec<u8>>,
}

impl Batch {
    fn new(dest: Dest, cap: usize) -> Batch {
        Batch { dest, cap, buf: Mutex::new(Vec::with_capacity(cap)) }
    }

    fn send(&self, bytes: &[u8]) -> io::Result<usize> {
        match &self.dest {
            Dest::Udp(sock) => sock.send(bytes),
            Dest::Unix(sock, path) => sock.send_to(bytes, path),
        }
    }

    /// Sends what is buffered and empties the buffer, sent or not.
    fn send_buffered(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let sent = self.send(buf);
        buf.clear();
        sent.map(drop)
    }

    /// Drops the lines buffered, unsent; returns how many.
    fn discard(&self) -> usize {
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        let lines = buf.iter().filter(|&&b| b == b'\n').count();
        buf.clear();
        lines
    }
}

impl MetricSink for Batch {
    fn emit(&self, line: &str) -> io::Result<usize> {
        let line = line.as_bytes();
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        if line.len() + 1 > self.cap {
            self.send_buffered(&mut buf)?;
            return self.send(line);
        }
        let sent = if buf.len() + line.len() + 1 > self.cap { self.send_buffered(&mut buf) } else { Ok(()) };
        buf.extend_from_slice(line);
        buf.push(b'\n');
        sent.map(|()| line.len())
    }

    fn flush(&self) -> io::Result<()> {
        self.send_buffered(&mut self.buf.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The baton gauge's line: the text before and after the counter, as
/// cadence formats it (name, `|g`, tags), and the buffer each line is
/// written into.
struct BatonLine {
    head: String,
    tail: String,
    buf: String,
}

impl BatonLine {
    /// From cadence's line for the counter 0: `<head>0<tail>`, the head
    /// being `<metric>:`.
    fn new(template: &str, metric: &str) -> BatonLine {
        let head = format!("{metric}:");
        let tail = template
            .strip_prefix(&head)
            .and_then(|rest| rest.strip_prefix('0'))
            .expect("cadence writes a gauge as <name>:<value><type and tags>")
            .to_owned();
        BatonLine { head, tail, buf: String::with_capacity(template.len() + 20) }
    }

    fn line(&mut self, counter: u64) -> &str {
        self.buf.clear();
        self.buf.push_str(&self.head);
        self.buf.push_str(itoa::Buffer::new().format(counter));
        self.buf.push_str(&self.tail);
        &self.buf
    }
}

/// A sink that keeps the last line: how [`BatonLine`] learns cadence's
/// formatting.
#[derive(Default)]
struct Capture(Mutex<String>);

impl Capture {
    fn take(&self) -> String {
        self.0.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }
}

impl MetricSink for Capture {
    fn emit(&self, metric: &str) -> std::io::Result<usize> {
        if let Ok(mut last) = self.0.lock() {
            metric.clone_into(&mut last);
        }
        Ok(metric.len())
    }
}

#[derive(Default)]
struct Errors {
    count: AtomicU64,
    last: Mutex<Option<String>>,
}

impl Errors {
    fn record(&self, e: impl std::fmt::Display) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(e.to_string());
        }
    }
}

pub struct Metrics {
    prefixed: StatsdClient,
    baton: BatonLine,
    sink: SharedSink,
    /// The batch under `sink` (none with a test's spy sink).
    batch: Option<Arc<Batch>>,
    errors: Arc<Errors>,
    reported_errors: u64,
    error_log: LogLimiter,
    address: StatsdAddress,
    flavor: Flavor,
}

impl Metrics {
    /// The sink of `[statsd] address`, batched up to `max_packet_size`.
    pub fn new(cfg: &StatsdSection, host: &str, baton_metric: &str) -> Result<Metrics> {
        let dest = match &cfg.address {
            StatsdAddress::Udp(addr) => {
                let sock = UdpSocket::bind("0.0.0.0:0").context("cannot open the StatsD socket")?;
                sock.connect(addr.as_str()).with_context(|| {
                    format!("cannot resolve the StatsD address {addr} ([statsd] address)")
                })?;
                sock.set_nonblocking(true)?;
                Dest::Udp(sock)
            }
            StatsdAddress::Unix(path) => {
                let sock = UnixDatagram::unbound().context("cannot open a Unix datagram socket")?;
                sock.set_nonblocking(true)?;
                Dest::Unix(sock, path.clone())
            }
        };
        let batch = Arc::new(Batch::new(dest, cfg.max_packet_size));
        let mut m = Metrics::with_sink(cfg, host, baton_metric, batch.clone());
        m.batch = Some(batch);
        Ok(m)
    }

    /// The clients of `cfg` (prefix, tags, flavor) over any sink.
    pub fn with_sink(
        cfg: &StatsdSection,
        host: &str,
        baton_metric: &str,
        sink: Arc<dyn MetricSink + Send + Sync + RefUnwindSafe>,
    ) -> Metrics {
        let sink = SharedSink(sink);
        let errors = Arc::new(Errors::default());
        let (prefix, baton_prefix) = match cfg.flavor {
            Flavor::DogStatsd => (cfg.prefix.clone(), String::new()),
            Flavor::Statsd if cfg.host_tag => (join(&cfg.prefix, host), String::new()),
            Flavor::Statsd => (cfg.prefix.clone(), String::new()),
        };
        let build = |prefix: &str, sink: SharedSink| {
            let errors = errors.clone();
            let mut b = StatsdClient::builder(prefix, sink).with_error_handler(move |e| errors.record(e));
            if cfg.flavor == Flavor::DogStatsd {
                if cfg.host_tag {
                    b = b.with_tag("host", host);
                }
                for tag in &cfg.tags {
                    b = match tag.split_once(':') {
                        Some((k, v)) => b.with_tag(k, v),
                        None => b.with_tag_value(tag),
                    };
                }
            }
            b.build()
        };
        let baton_metric = match cfg.flavor {
            Flavor::Statsd if cfg.host_tag => join(baton_metric, host),
            _ => baton_metric.to_owned(),
        };
        let template = Arc::new(Capture::default());
        let _ = build(&baton_prefix, SharedSink(template.clone())).gauge(&baton_metric, 0u64);
        let baton = BatonLine::new(&template.take(), &baton_metric);
        Metrics {
            prefixed: build(&prefix, sink.clone()),
            baton,
            sink,
            batch: None,
            errors,
            reported_errors: 0,
            error_log: LogLimiter::new(ERROR_LOG_EVERY),
            address: cfg.address.clone(),
            flavor: cfg.flavor,
        }
    }

    /// `baton:<counter>|g|#host:<node>`, at every pass.
    pub fn baton(&mut self, counter: u64) {
        let line = self.baton.line(counter);
        if let Err(e) = self.sink.emit(line) {
            self.errors.record(e);
        }
    }

    pub fn gauge(&self, name: &str, value: f64) {
        let _ = self.prefixed.gauge(name, value);
    }

    /// A gauge with one more tag (`sensor:`, `peer:`). Plain StatsD has no
    /// tags, so there the value goes into the name: `link.rtt_ms.psb`.
    pub fn gauge_tagged(&self, name: &str, value: f64, tag: (&str, &str)) {
        match self.flavor {
            Flavor::DogStatsd => {
                let _ = self.prefixed.gauge_with_tags(name, value).with_tag(tag.0, tag.1).try_send();
            }
            Flavor::Statsd => {
                let _ = self.prefixed.gauge(&format!("{name}.{}", graphite_safe(tag.1)), value);
            }
        }
    }

    pub fn histogram_ms(&self, name: &str, ms: f64, sample_rate: f64) {
        let mut b = self.prefixed.histogram_with_tags(name, ms);
        if sample_rate < 1.0 {
            b = b.with_sampling_rate(sample_rate);
        }
        let _ = b.try_send();
    }

    /// A counter: `n` more since the previous flush.
    pub fn count(&self, name: &str, n: u64) {
        let _ = self.prefixed.count(name, n as i64);
    }

    /// A counter with one more tag (`reason:`); in plain StatsD the value
    /// goes into the name, as for [`Metrics::gauge_tagged`].
    pub fn count_tagged(&self, name: &str, n: u64, tag: (&str, &str)) {
        match self.flavor {
            Flavor::DogStatsd => {
                let _ = self.prefixed.count_with_tags(name, n as i64).with_tag(tag.0, tag.1).try_send();
            }
            Flavor::Statsd => {
                let _ = self.prefixed.count(&format!("{name}.{}", graphite_safe(tag.1)), n as i64);
            }
        }
    }

    /// Drops the lines buffered since the last flush, unsent, and returns
    /// how many: after this process was not running for a while, their
    /// values are stale (a baton gauge the cluster has passed), and StatsD
    /// would take them as current.
    pub fn discard(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.discard())
    }

    /// Sends every buffered line; logs send failures (at most once per 10 s).
    pub fn flush(&mut self, now: Instant) {
        if let Err(e) = self.sink.flush() {
            self.errors.record(e);
        }
        let total = self.errors.count.load(Ordering::Relaxed);
        if total > self.reported_errors && self.error_log.allow(now).is_some() {
            let last = self.errors.last.lock().ok().and_then(|l| l.clone()).unwrap_or_default();
            warn!(
                address = %self.address,
                failed = total - self.reported_errors,
                error = %last,
                "cannot send metrics; the agent keeps running and retries"
            );
            self.reported_errors = total;
        }
    }
}

/// A tag value as one Graphite path segment: no dots or StatsD separators.
fn graphite_safe(v: &str) -> String {
    v.chars().map(|c| if matches!(c, '.' | ':' | '|' | '@' | '#' | ',' | ' ') { '_' } else { c }).collect()
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}.{b}"),
    }
}

/// A spy of the exact bytes each metric line has (cadence's `SpyMetricSink`,
/// one line per emit). Shared by the tests of statsd, telemetry and report.
#[cfg(test)]
pub(crate) mod spy {
    use std::sync::Arc;

    use cadence::SpyMetricSink;

    use super::Metrics;
    use crate::config::Config;

    /// Metrics as `config` would send them from `host`, and a reader of the
    /// lines sent so far.
    pub fn metrics(config: &Config, host: &str) -> (Metrics, impl Fn() -> Vec<String> + use<>) {
        let (rx, sink) = SpyMetricSink::new();
        let m = Metrics::with_sink(&config.statsd, host, &config.baton.metric, Arc::new(sink));
        (m, move || rx.try_iter().map(|b| String::from_utf8(b).expect("UTF-8 line")).collect())
    }

    pub fn config(text: &str) -> Config {
        Config::from_toml_str(text, "spy.toml").expect("valid config")
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use cadence::MetricSink;

    use super::{Batch, Dest, spy};

    /// A batch to a loopback socket, and that socket.
    fn batch(cap: usize) -> (Batch, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.connect(server.local_addr().expect("addr")).expect("connect");
        (Batch::new(Dest::Udp(sock), cap), server)
    }

    fn datagrams(server: &UdpSocket) -> Vec<String> {
        let mut buf = [0u8; 2048];
        std::iter::from_fn(|| {
            server.recv(&mut buf).ok().map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .collect()
    }

    #[test]
    fn lines_are_batched_up_to_the_packet_size_and_sent_at_a_flush() {
        let (b, server) = batch(24);
        for line in ["baton:1|g", "baton:2|g", "baton:3|g", &"x".repeat(30), "baton:4|g"] {
            b.emit(line).expect("emit");
        }
        b.flush().expect("flush");
        b.flush().expect("an empty flush sends nothing");
        assert_eq!(
            datagrams(&server),
            ["baton:1|g\nbaton:2|g\n", "baton:3|g\n", &"x".repeat(30), "baton:4|g\n"],
            "two lines fill 20 of 24 bytes, a third starts the next batch; a line longer than a \
             batch goes alone, after what was buffered"
        );
    }

    #[test]
    fn a_discarded_batch_is_never_sent() {
        let (b, server) = batch(512);
        b.emit("baton:41|g").expect("emit");
        b.emit("herd.members:3|g").expect("emit");
        assert_eq!(b.discard(), 2);
        b.emit("baton:97|g").expect("emit");
        b.flush().expect("flush");
        assert_eq!(datagrams(&server), ["baton:97|g\n"]);
    }

    #[test]
    fn a_batch_that_cannot_be_sent_is_dropped_and_the_error_returned() {
        let gone = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.connect(gone.local_addr().expect("addr")).expect("connect");
        drop(gone);
        let b = Batch::new(Dest::Udp(sock), 512);
        b.emit("baton:1|g").expect("emit");
        // The first send reaches no port; the kernel reports it on the next.
        let _ = b.flush();
        b.emit("baton:2|g").expect("emit");
        assert!(b.flush().is_err(), "ECONNREFUSED from the closed port");
        assert_eq!(b.discard(), 0, "the failed batch is not kept for later");
    }

    #[test]
    fn dogstatsd_lines_carry_the_host_and_the_constant_tags() {
        let config = spy::config("[statsd]\ntags = [\"env:lab\", \"rack\"]\n");
        let (mut m, lines) = spy::metrics(&config, "psa");
        m.baton(42);
        m.gauge("members", 3.0);
        m.gauge_tagged("link.rtt_ms", 1.25, ("peer", "psb"));
        m.count("baton.passes", 7);
        m.histogram_ms("baton.hop_ms", 0.5, 1.0);
        m.histogram_ms("baton.hop_ms", 0.5, 0.01);
        assert_eq!(
            lines(),
            [
                "baton:42|g|#host:psa,env:lab,rack",
                "herd.members:3|g|#host:psa,env:lab,rack",
                "herd.link.rtt_ms:1.25|g|#host:psa,env:lab,rack,peer:psb",
                "herd.baton.passes:7|c|#host:psa,env:lab,rack",
                "herd.baton.hop_ms:0.5|h|#host:psa,env:lab,rack",
                "herd.baton.hop_ms:0.5|h|@0.01|#host:psa,env:lab,rack",
            ]
        );
    }

    #[test]
    fn host_tag_false_leaves_the_host_to_the_agent() {
        let config = spy::config("[statsd]\nhost_tag = false\ntags = [\"env:lab\"]\n");
        let (mut m, lines) = spy::metrics(&config, "psa");
        m.baton(42);
        m.gauge("members", 3.0);
        m.gauge_tagged("link.rtt_ms", 1.25, ("peer", "psb"));
        assert_eq!(
            lines(),
            ["baton:42|g|#env:lab", "herd.members:3|g|#env:lab", "herd.link.rtt_ms:1.25|g|#env:lab,peer:psb"]
        );
        let config = spy::config("[statsd]\nhost_tag = false\n");
        let (mut m, lines) = spy::metrics(&config, "psa");
        m.baton(42);
        m.gauge("members", 3.0);
        assert_eq!(lines(), ["baton:42|g", "herd.members:3|g"]);
        let config = spy::config("[statsd]\nhost_tag = false\nflavor = \"statsd\"\n");
        let (mut m, lines) = spy::metrics(&config, "psa");
        m.baton(42);
        m.gauge("members", 3.0);
        assert_eq!(lines(), ["baton:42|g", "herd.members:3|g"]);
    }

    #[test]
    fn plain_statsd_puts_host_and_tag_values_in_the_name() {
        let config =
            spy::config("[statsd]\nflavor = \"statsd\"\nprefix = \"\"\n[baton]\nmetric = \"relay.n\"\n");
        let (mut m, lines) = spy::metrics(&config, "psa");
        m.baton(7);
        m.gauge("members", 2.0);
        m.gauge_tagged("cpu.temperature", 48.5, ("sensor", "cpu-thermal.0 x"));
        assert_eq!(
            lines(),
            ["relay.n.psa:7|g", "psa.members:2|g", "psa.cpu.temperature.cpu-thermal_0_x:48.5|g"]
        );
    }
}
