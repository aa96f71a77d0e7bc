//! status: the local status endpoint (`[status] listen`) and its client,
//! `herd status`.
//!
//! The endpoint serves three read-only views of one [`Snapshot`], asked fresh
//! from the event loop for every request:
//! - `GET /status`: the snapshot as JSON (what `herd status` reads);
//! - `GET /`: a self-contained HTML page (inline CSS and JS, no external
//!   assets). The server renders the whole page, so a client without JS (curl,
//!   a DOM dump) sees every member; the script then re-renders the same markup
//!   from `fetch('/status')` every second;
//! - `GET /metrics`: Prometheus text exposition format 0.0.4.
//!
//! `HEAD` is answered like `GET` without the body; any other method gets 405
//! with `Allow`, any other path 404.
//!
//! Contract: the endpoint never changes the agent's state and never makes the
//! event loop wait (a request is one message on a bounded channel; the loop
//! answers when it gets to it, and a request not answered within 1 s gets 503).
//! Everything a client can make it hold is bounded: at most 16 connections
//! (more are answered 503 and closed at once), an 8 KiB request head (431),
//! no request bodies (413), 5 s to send a complete request head (which also
//! closes idle keep-alive connections), and 60 s per connection. Rejections for
//! these limits are logged as warnings, at most one per kind per 10 s; every
//! request is logged at debug.
//!
//! The client, [`client`] (`herd status`), is a blocking HTTP/1.0 GET of
//! `/status` over a std socket, 2 s for the whole exchange: the agent's binary
//! carries one HTTP stack (hyper's server), not two.
//!
//! Must not: bind the socket (the runtime does, and decides what a bind failure
//! means), read the agent's state other than through a [`SnapshotRequest`],
//! serve anything from disk or the network, or load anything external into the
//! page (it must work on a Pi with no Internet access).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use http_body_util::Full;
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::snapshot::{MemberStatus, Snapshot, SnapshotRequest};

/// What a client can make the endpoint hold, and for how long.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Open connections; beyond this a new one is answered 503 and closed.
    connections: usize,
    /// Request line and headers, in bytes (hyper's minimum is 8 KiB).
    head_bytes: usize,
    /// From connecting, or from the previous response, to a complete request head.
    head_timeout: Duration,
    /// A connection's whole life; then it is closed after its current request.
    lifetime: Duration,
    /// How long a request waits for the event loop's snapshot.
    snapshot_timeout: Duration,
}

const LIMITS: Limits = Limits {
    connections: 16,
    head_bytes: 8 * 1024,
    head_timeout: Duration::from_secs(5),
    lifetime: Duration::from_secs(60),
    snapshot_timeout: Duration::from_secs(1),
};

/// Headers per request (a browser sends about 15).
const MAX_HEADERS: usize = 64;
/// A connection past its lifetime gets this long to finish its current response.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// At most one warning per kind in this time.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// `herd status`: the whole exchange, connect included.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// `herd status`: the largest answer it reads (a full member table is ~100 KiB).
const CLIENT_MAX_BODY: usize = 4 << 20;
/// What `herd status` suggests when nothing answers.
const NOT_RUNNING_HINT: &str = "is `herd run` running, and is [status] listen set?";

const ALLOW: &str = "GET, HEAD";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
/// The page's scripts and styles are inline; it may only fetch from its own origin.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

/// Serves until the task is aborted. Each request asks the event loop for a
/// fresh snapshot over `requests` (send a `oneshot::Sender<Snapshot>`, await
/// the reply; if the loop is gone or does not answer within 1 s → 503).
/// Aborting this task also closes every connection it opened.
pub async fn serve(listener: TcpListener, requests: mpsc::Sender<SnapshotRequest>) {
    serve_with(listener, requests, LIMITS).await;
}

async fn serve_with(listener: TcpListener, requests: mpsc::Sender<SnapshotRequest>, limits: Limits) {
    // The runtime logs the address it bound; this only says serving began.
    debug!(addr = ?listener.local_addr().ok(), "status endpoint serving");
    let warnings = Arc::new(Warnings::default());
    // Owned here, so aborting `serve` aborts every connection task with it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if connections.len() >= limits.connections => {
                    refuse(stream, peer, limits.connections, &warnings.connections);
                }
                Ok((stream, peer)) => {
                    let (requests, warnings) = (requests.clone(), Arc::clone(&warnings));
                    connections.spawn(connection(stream, peer, requests, warnings, limits));
                }
                Err(e) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    if let Some(suppressed) = warnings.accept.allow() {
                        warn!(error = %e, suppressed, "status endpoint cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Answers a connection over the limit with a 503 if the socket takes it
/// without blocking, then closes it: nothing is kept for it.
fn refuse(stream: TcpStream, peer: SocketAddr, max: usize, limit: &RateLimit) {
    if let Some(suppressed) = limit.allow() {
        warn!(%peer, max, suppressed, "status endpoint: too many connections, refusing one");
    }
    let body = "too many connections\n";
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
         Content-Type: {TEXT}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(reply.as_bytes());
}

/// Serves one connection within `limits`; errors end it and are logged here.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    requests: mpsc::Sender<SnapshotRequest>,
    warnings: Arc<Warnings>,
    limits: Limits,
) {
    let read = Arc::new(AtomicU64::new(0));
    let read_at_request = Arc::new(AtomicU64::new(0));
    let service = {
        let (read, read_at_request, warnings) = (read.clone(), read_at_request.clone(), warnings.clone());
        service_fn(move |req| {
            read_at_request.store(read.load(Ordering::Relaxed), Ordering::Relaxed);
            let (requests, warnings) = (requests.clone(), warnings.clone());
            async move { Ok::<_, Infallible>(respond(req, peer, &requests, &warnings, limits).await) }
        })
    };
    let io = TokioIo::new(Metered { stream, read: read.clone() });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.head_bytes)
        .max_header_size(limits.head_bytes)
        .max_headers(MAX_HEADERS)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = tokio::time::sleep(limits.lifetime) => {
            debug!(%peer, "status connection reached its lifetime; closing it");
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(CLOSE_GRACE, conn).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    let Err(e) = result else { return };
    if e.is_parse_too_large() {
        if let Some(suppressed) = warnings.head.allow() {
            let max = limits.head_bytes;
            warn!(%peer, max, suppressed, "status endpoint: request head too large (431)");
        }
    } else if e.is_timeout() {
        // The timer runs from the connection's start or its previous response:
        // with no bytes since, the connection was merely idle (keep-alive, a
        // browser's spare connection); with some, a client is too slow.
        if read.load(Ordering::Relaxed) > read_at_request.load(Ordering::Relaxed) {
            if let Some(suppressed) = warnings.slow.allow() {
                let timeout = humantime::format_duration(limits.head_timeout).to_string();
                warn!(%peer, %timeout, suppressed, "status endpoint: slow request head; connection closed");
            }
        } else {
            debug!(%peer, "idle status connection closed");
        }
    } else {
        debug!(%peer, error = %e, "status connection ended");
    }
}

/// The answer to one request.
async fn respond(
    req: Request<Incoming>,
    peer: SocketAddr,
    requests: &mpsc::Sender<SnapshotRequest>,
    warnings: &Warnings,
    limits: Limits,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let resp = if method != Method::GET && method != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "read-only: GET or HEAD\n");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(ALLOW));
        close(r)
    } else if !req.body().is_end_stream() {
        if let Some(suppressed) = warnings.body.allow() {
            warn!(%peer, %method, %path, suppressed, "status endpoint: request with a body refused (413)");
        }
        close(reply(StatusCode::PAYLOAD_TOO_LARGE, TEXT, "requests must not have a body\n"))
    } else if !matches!(path.as_str(), "/" | "/status" | "/metrics") {
        reply(StatusCode::NOT_FOUND, TEXT, "not found: try /, /status or /metrics\n")
    } else {
        match snapshot(requests, limits.snapshot_timeout).await {
            None => {
                let mut r =
                    reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "the agent's event loop is not answering\n");
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Some(s) => match path.as_str() {
                "/status" => {
                    // Cannot fail: plain values and string-keyed maps only.
                    let mut json = serde_json::to_vec(&s).unwrap_or_default();
                    json.push(b'\n');
                    reply(StatusCode::OK, JSON, json)
                }
                "/metrics" => reply(StatusCode::OK, PROMETHEUS, metrics(&s)),
                _ => {
                    let mut r = reply(StatusCode::OK, HTML, page(&s));
                    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
                    r
                }
            },
        }
    };
    debug!(
        %peer, %method, %path, status = resp.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3, "status request"
    );
    resp
}

/// Asks the event loop for a snapshot; `None` if it is gone or silent for `within`.
async fn snapshot(requests: &mpsc::Sender<SnapshotRequest>, within: Duration) -> Option<Snapshot> {
    let ask = async {
        let (tx, rx) = oneshot::channel();
        requests.send(tx).await.ok()?;
        rx.await.ok()
    };
    tokio::time::timeout(within, ask).await.ok().flatten()
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// Marks a response as the connection's last (its request body, if any, is never read).
fn close(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A connection's stream, counting the bytes read, so that a header timeout can
/// tell a slow client (bytes since the last request) from an idle connection.
struct Metered {
    stream: TcpStream,
    read: Arc<AtomicU64>,
}

impl AsyncRead for Metered {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.read.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Metered {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// One kind of warning, logged at most once per [`WARN_EVERY`]; the next line
/// logged says how many were held back.
#[derive(Default)]
struct RateLimit(Mutex<(Option<Instant>, u64)>);

impl RateLimit {
    /// `Some(held back since the last line)` when a line may be logged now.
    fn allow(&self) -> Option<u64> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < WARN_EVERY => {
                state.1 += 1;
                None
            }
            _ => {
                state.0 = Some(now);
                Some(std::mem::take(&mut state.1))
            }
        }
    }
}

#[derive(Default)]
struct Warnings {
    connections: RateLimit,
    head: RateLimit,
    slow: RateLimit,
    body: RateLimit,
    accept: RateLimit,
}

// ---------------------------------------------------------------------------
// Prometheus

/// The snapshot in the Prometheus text exposition format 0.0.4: one
/// HELP/TYPE block per family, followed by its samples. A family with no
/// sample (a sensor this machine lacks, a link not measured yet) is left out
/// entirely, never reported as zero.
fn metrics(s: &Snapshot) -> String {
    let mut p = Prometheus::default();
    let one = |v: bool| if v { 1.0 } else { 0.0 };
    p.gauge("herd_up", "1: the agent answered.", [(vec![], 1.0)]);
    p.gauge(
        "herd_info",
        "Always 1; labels name the node, its cluster and the agent's version.",
        [(vec![("node", s.node.as_str()), ("cluster", &s.cluster), ("version", &s.version)], 1.0)],
    );
    p.gauge(
        "herd_incarnation",
        "Start time of this agent run, as gossiped.",
        [(vec![], s.incarnation as f64)],
    );
    p.gauge("herd_uptime_seconds", "Seconds since the agent started.", [(vec![], s.uptime_s)]);
    p.gauge("herd_members", "Live members, this node included.", [(vec![], s.live_members as f64)]);
    let members = &s.members;
    p.gauge(
        "herd_member_up",
        "1 if the member is alive, else 0; label state is alive, suspect, down or left.",
        members
            .iter()
            .map(|m| (vec![("member", m.name.as_str()), ("state", &m.state)], one(m.state == "alive"))),
    );
    p.gauge(
        "herd_member_last_heard_seconds",
        "Seconds since this node last heard of the member.",
        members.iter().map(|m| (vec![("member", m.name.as_str())], m.last_heard_ms as f64 / 1e3)),
    );
    let links: [(&str, &str, LinkValue); 4] = [
        ("herd_link_rtt_ms", "Probe round-trip time to the peer, ms, over the probe window.", |m| m.rtt_ms),
        ("herd_link_jitter_ms", "Probe round-trip time jitter to the peer, ms.", |m| m.jitter_ms),
        ("herd_link_loss_pct", "Probes to the peer lost, percent of the window.", |m| m.loss_pct),
        (
            "herd_link_heartbeat_loss_pct",
            "Heartbeats of the peer missed, percent (from sequence gaps).",
            |m| m.heartbeat_loss_pct,
        ),
    ];
    for (name, help, value) in links {
        p.gauge(
            name,
            help,
            members.iter().filter_map(|m| Some((vec![("peer", m.name.as_str())], value(m)?))),
        );
    }
    let b = &s.baton;
    p.gauge(
        "herd_baton_enabled",
        "1 if this node takes part in the baton relay.",
        [(vec![], one(b.enabled))],
    );
    p.gauge(
        "herd_baton_epoch",
        "Epoch of the newest baton this node knows.",
        b.epoch.map(|e| (vec![], e as f64)),
    );
    p.gauge("herd_baton_counter", "Highest baton counter this node has seen.", [(vec![], b.counter as f64)]);
    p.gauge("herd_baton_holding", "1 while this node holds the baton.", [(vec![], one(b.holding))]);
    p.counter("herd_baton_passes_total", "Passes made by this node.", [(vec![], b.passes as f64)]);
    p.counter(
        "herd_baton_regenerated_total",
        "Batons this node regenerated.",
        [(vec![], b.regenerated as f64)],
    );
    let t = &s.sensors;
    p.gauge(
        "herd_cpu_temperature_celsius",
        "Temperature by sensor (thermal zone or hwmon label), degrees Celsius.",
        t.temperatures.iter().map(|(label, c)| (vec![("sensor", label.as_str())], *c)),
    );
    p.gauge("herd_cpu_freq_mhz", "Current frequency of CPU 0, MHz.", t.cpu_freq_mhz.map(|v| (vec![], v)));
    p.gauge("herd_cpu_usage_pct", "CPU usage, percent.", t.cpu_usage_pct.map(|v| (vec![], v)));
    p.gauge("herd_load_1", "Load average over 1 minute.", t.load_1.map(|v| (vec![], v)));
    p.gauge("herd_mem_used_pct", "Memory used, percent.", t.mem_used_pct.map(|v| (vec![], v)));
    p.gauge(
        "herd_throttle",
        "Raspberry Pi firmware throttled word: 1 if the flag is set (*_occurred: since boot).",
        t.throttle.iter().flatten().map(|(flag, set)| (vec![("flag", flag.as_str())], one(*set))),
    );
    let net = t.net.as_ref();
    let nic = |v: f64| net.map(|n| (vec![("interface", n.interface.as_str())], v));
    p.gauge("herd_net_up", "1 if the gossip interface is up.", net.and_then(|n| nic(one(n.up))));
    p.counter(
        "herd_net_rx_errors_total",
        "Receive errors of the gossip interface.",
        net.and_then(|n| nic(n.rx_errors as f64)),
    );
    p.counter(
        "herd_net_tx_errors_total",
        "Transmit errors of the gossip interface.",
        net.and_then(|n| nic(n.tx_errors as f64)),
    );
    p.gauge(
        "herd_net_wifi_signal_dbm",
        "Wi-Fi signal level of the gossip interface, dBm.",
        net.and_then(|n| nic(n.wifi_signal_dbm?)),
    );
    p.counter(
        "herd_rejected_total",
        "Datagrams refused, by class (auth, replay, other_cluster, malformed, ...).",
        s.rejected.iter().map(|(class, n)| (vec![("class", class.as_str())], *n as f64)),
    );
    p.out
}

/// One per-peer link measurement of a member.
type LinkValue = fn(&MemberStatus) -> Option<f64>;

type Labels<'a> = Vec<(&'static str, &'a str)>;

#[derive(Default)]
struct Prometheus {
    out: String,
}

impl Prometheus {
    fn gauge<'a>(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels<'a>, f64)>) {
        self.family(name, "gauge", help, samples);
    }

    fn counter<'a>(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels<'a>, f64)>) {
        self.family(name, "counter", help, samples);
    }

    fn family<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        let out = &mut self.out;
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for (labels, value) in samples {
            out.push_str(name);
            for (i, (key, value)) in labels.iter().enumerate() {
                out.push(if i == 0 { '{' } else { ',' });
                let _ = write!(out, "{key}=\"{}\"", label_value(value));
            }
            if !labels.is_empty() {
                out.push('}');
            }
            let _ = writeln!(out, " {}", prometheus_value(value));
        }
    }
}

/// A label value escaped as the text format requires: `\`, `"` and newline.
fn label_value(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

fn prometheus_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        v.to_string()
    }
}

// ---------------------------------------------------------------------------
// Shared formatting (the page's script has the same rules)

/// "45s", "2m 03s", "1h 02m", "3d 04h".
fn uptime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, x) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{x}s"),
        (0, 0, _) => format!("{m}m {x:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h:02}h"),
    }
}

/// "312 ms", "4.2 s".
fn ago(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1e3) }
}

fn num(v: Option<f64>, decimals: usize, unit: &str, none: &str) -> String {
    v.map_or_else(|| none.to_owned(), |v| format!("{v:.decimals$}{unit}"))
}

/// The set throttle flags, "none", or `None` when the machine has no throttle file.
fn throttle_flags(s: &Snapshot) -> Option<String> {
    let flags = s.sensors.throttle.as_ref()?;
    let set: Vec<&str> = flags.iter().filter(|(_, set)| **set).map(|(f, _)| f.as_str()).collect();
    Some(if set.is_empty() { "none".into() } else { set.join(", ") })
}

fn net_line(s: &Snapshot) -> Option<String> {
    let n = s.sensors.net.as_ref()?;
    let mut line = format!(
        "{} {} · rx errors {} · tx errors {}",
        n.interface,
        if n.up { "up" } else { "down" },
        n.rx_errors,
        n.tx_errors
    );
    if let Some(dbm) = n.wifi_signal_dbm {
        let _ = write!(line, " · Wi-Fi {dbm:.0} dBm");
    }
    Some(line)
}

/// The sensor rows shown by the page and `herd status`, in display order.
fn sensor_rows(s: &Snapshot) -> Vec<(String, String)> {
    let t = &s.sensors;
    let mut rows: Vec<(String, String)> =
        t.temperatures.iter().map(|(label, c)| (label.clone(), format!("{c:.1} °C"))).collect();
    let optional = [
        ("CPU frequency", t.cpu_freq_mhz, 0, " MHz"),
        ("CPU usage", t.cpu_usage_pct, 1, " %"),
        ("load (1 min)", t.load_1, 2, ""),
        ("memory used", t.mem_used_pct, 1, " %"),
    ];
    for (label, value, decimals, unit) in optional {
        if value.is_some() {
            rows.push((label.into(), num(value, decimals, unit, "")));
        }
    }
    rows.extend(throttle_flags(s).map(|f| ("throttle".into(), f)));
    rows.extend(net_line(s).map(|n| ("net".into(), n)));
    rows
}

fn baton_rows(s: &Snapshot) -> Vec<(String, String)> {
    let b = &s.baton;
    let mut rows = Vec::new();
    if !b.enabled {
        rows.push(("relay".into(), "disabled on this node".into()));
    }
    rows.push(("epoch".into(), b.epoch.map_or_else(|| "no baton seen yet".into(), |e| e.to_string())));
    rows.push(("counter".into(), b.counter.to_string()));
    let holder = match (&b.holder, b.holding) {
        (Some(h), true) => format!("{h} (this node)"),
        (Some(h), false) => h.clone(),
        (None, _) => "unknown".into(),
    };
    rows.push(("holder".into(), holder));
    rows.push(("passes".into(), format!("{} by this node, {} regenerated", b.passes, b.regenerated)));
    rows
}

fn rejected_rows(s: &Snapshot) -> Vec<(String, String)> {
    s.rejected.iter().filter(|(_, n)| **n > 0).map(|(class, n)| (class.clone(), n.to_string())).collect()
}

// ---------------------------------------------------------------------------
// HTML

/// The page: the server renders the same markup the script renders, so it is
/// complete before (or without) the first refresh.
fn page(s: &Snapshot) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\"><title>herd · {node}</title>\n<style>{STYLE}</style></head>\n\
         <body><main id=\"app\">{app}</main>\n\
         <footer><span id=\"live\" data-source=\"server\">rendered by the agent; refreshing every second</span></footer>\n\
         <script>{SCRIPT}</script></body></html>\n",
        node = esc(&s.node),
        app = app(s),
    )
}

/// The part of the page the script replaces at every refresh.
fn app(s: &Snapshot) -> String {
    let mut h = format!(
        "<header><h1>herd · <span class=\"node\">{}</span></h1><p class=\"muted\">cluster <b>{}</b> · up {} · \
         <b>{}</b> live members · incarnation {} · {}</p></header>",
        esc(&s.node),
        esc(&s.cluster),
        uptime(s.uptime_s),
        s.live_members,
        s.incarnation,
        esc(&s.version)
    );
    h.push_str(
        "<h2>Members</h2><table id=\"members\"><thead><tr><th>node</th><th>state</th><th>address</th>\
         <th class=\"n\">last heard</th><th class=\"n\">RTT</th><th class=\"n\">loss</th></tr></thead><tbody>",
    );
    h.push_str(&member_row(&s.node, "self", "—", "—", "—", "—"));
    for m in &s.members {
        h.push_str(&member_row(
            &m.name,
            &m.state,
            &m.addr,
            &ago(m.last_heard_ms),
            &num(m.rtt_ms, 3, " ms", "—"),
            &num(m.loss_pct, 1, " %", "—"),
        ));
    }
    h.push_str("</tbody></table>");
    h.push_str(&section("Baton", "baton", &baton_rows(s)));
    let sensors = sensor_rows(s);
    if sensors.is_empty() {
        h.push_str("<h2>Sensors</h2><p id=\"sensors\" class=\"muted\">no sensor reading yet</p>");
    } else {
        h.push_str(&section("Sensors", "sensors", &sensors));
    }
    let rejected = rejected_rows(s);
    if !rejected.is_empty() {
        h.push_str(&section("Rejected datagrams", "rejected", &rejected));
    }
    h
}

fn member_row(name: &str, state: &str, addr: &str, heard: &str, rtt: &str, loss: &str) -> String {
    let class = if state == "self" { "alive" } else { state };
    format!(
        "<tr data-member=\"{n}\"><td>{n}</td><td class=\"state {}\">{}</td><td>{}</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
        esc(class),
        esc(state),
        esc(addr),
        esc(heard),
        esc(rtt),
        esc(loss),
        n = esc(name),
    )
}

fn section(title: &str, id: &str, rows: &[(String, String)]) -> String {
    let mut h = format!("<h2>{title}</h2><dl id=\"{id}\">");
    for (k, v) in rows {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    h.push_str("</dl>");
    h
}

/// Text and attribute values escaped for HTML (as the script's `E`).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&#38;"),
            '<' => out.push_str("&#60;"),
            '>' => out.push_str("&#62;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1d232a;--muted:#69727d;--bg:#fbfbfa;--line:#dfe2e6;\
--ok:#1f8a4c;--warn:#b7791f;--bad:#c53030}\
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--muted:#9aa3ad;--bg:#14171a;--line:#2c3137}}\
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1.5rem;\
background:var(--bg);color:var(--fg)}\
h1{font-size:1.4rem;margin:0}h2{font-size:1rem;margin:1.5rem 0 .4rem}.muted,dt,footer{color:var(--muted)}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;\
border-bottom:1px solid var(--line)}th{font-weight:600}.n{text-align:right;font-variant-numeric:tabular-nums}\
.state{font-weight:600}.alive{color:var(--ok)}.suspect{color:var(--warn)}.down,.left{color:var(--bad)}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1.2rem;margin:0}dd{margin:0}\
footer{margin-top:2rem;font-size:.85rem}#live.err{color:var(--bad)}";

/// Re-renders `#app` from `/status` every second with the same markup as
/// [`app`]; on failure keeps the last view and says so in the footer.
const SCRIPT: &str = r#"
"use strict";
const E = s => String(s).replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
const D = "\u2014";
const num = (v, d, u, none) => v == null ? none : v.toFixed(d) + u;
const ago = ms => ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s";
function uptime(t) {
  const s = Math.max(0, Math.floor(t)), p = n => String(n).padStart(2, "0");
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), x = s % 60;
  return d ? d + "d " + p(h) + "h" : h ? h + "h " + p(m) + "m" : m ? m + "m " + p(x) + "s" : x + "s";
}
function row(name, state, addr, heard, rtt, loss) {
  const cls = state === "self" ? "alive" : state;
  return '<tr data-member="' + E(name) + '"><td>' + E(name) + '</td><td class="state ' + E(cls) + '">' +
    E(state) + "</td><td>" + E(addr) + '</td><td class="n">' + E(heard) + '</td><td class="n">' + E(rtt) +
    '</td><td class="n">' + E(loss) + "</td></tr>";
}
function section(title, id, rows) {
  return "<h2>" + title + '</h2><dl id="' + id + '">' +
    rows.map(([k, v]) => "<dt>" + E(k) + "</dt><dd>" + E(v) + "</dd>").join("") + "</dl>";
}
function render(s) {
  let h = '<header><h1>herd · <span class="node">' + E(s.node) + '</span></h1><p class="muted">cluster <b>' +
    E(s.cluster) + "</b> · up " + uptime(s.uptime_s) + " · <b>" + s.live_members + "</b> live members · incarnation " +
    s.incarnation + " · " + E(s.version) + "</p></header>";
  h += '<h2>Members</h2><table id="members"><thead><tr><th>node</th><th>state</th><th>address</th>' +
    '<th class="n">last heard</th><th class="n">RTT</th><th class="n">loss</th></tr></thead><tbody>';
  h += row(s.node, "self", D, D, D, D);
  for (const m of s.members) {
    h += row(m.name, m.state, m.addr, ago(m.last_heard_ms), num(m.rtt_ms, 3, " ms", D), num(m.loss_pct, 1, " %", D));
  }
  h += "</tbody></table>";
  const b = s.baton, baton = [];
  if (!b.enabled) baton.push(["relay", "disabled on this node"]);
  baton.push(["epoch", b.epoch == null ? "no baton seen yet" : b.epoch]);
  baton.push(["counter", b.counter]);
  baton.push(["holder", b.holder == null ? "unknown" : b.holding ? b.holder + " (this node)" : b.holder]);
  baton.push(["passes", b.passes + " by this node, " + b.regenerated + " regenerated"]);
  h += section("Baton", "baton", baton);
  const t = s.sensors, sensors = Object.entries(t.temperatures).map(([k, c]) => [k, c.toFixed(1) + " °C"]);
  for (const [k, v, d, u] of [["CPU frequency", t.cpu_freq_mhz, 0, " MHz"], ["CPU usage", t.cpu_usage_pct, 1, " %"],
                              ["load (1 min)", t.load_1, 2, ""], ["memory used", t.mem_used_pct, 1, " %"]]) {
    if (v != null) sensors.push([k, num(v, d, u, "")]);
  }
  if (t.throttle) {
    const set = Object.keys(t.throttle).filter(f => t.throttle[f]);
    sensors.push(["throttle", set.length ? set.join(", ") : "none"]);
  }
  if (t.net) {
    const n = t.net;
    let line = n.interface + " " + (n.up ? "up" : "down") + " · rx errors " + n.rx_errors + " · tx errors " + n.tx_errors;
    if (n.wifi_signal_dbm != null) line += " · Wi-Fi " + n.wifi_signal_dbm.toFixed(0) + " dBm";
    sensors.push(["net", line]);
  }
  h += sensors.length ? section("Sensors", "sensors", sensors)
                      : '<h2>Sensors</h2><p id="sensors" class="muted">no sensor reading yet</p>';
  const rejected = Object.entries(s.rejected).filter(([, n]) => n > 0);
  if (rejected.length) h += section("Rejected datagrams", "rejected", rejected);
  return h;
}
const live = document.getElementById("live");
async function refresh() {
  try {
    const r = await fetch("/status", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    const s = await r.json();
    document.getElementById("app").innerHTML = render(s);
    document.title = "herd · " + s.node;
    live.textContent = "live · updated " + new Date().toLocaleTimeString();
    live.dataset.source = "live";
    live.className = "";
  } catch (e) {
    live.textContent = "agent not answering (" + e.message + "); showing the last view";
    live.dataset.source = "error";
    live.className = "err";
  }
}
refresh();
setInterval(refresh, 1000);
"#;

// ---------------------------------------------------------------------------
// Client

/// `herd status [--json] [--addr A]`: GETs `http://A/status` (2 s for the
/// whole exchange) and returns the text to print as is (it ends with a newline):
/// with `json` the JSON as received, pretty-printed; else a human view (node,
/// cluster, uptime, live members; the member table; the baton; sensors).
/// `Err` carries one complete line for the operator, e.g. "no herd agent
/// answers at 127.0.0.1:45894 (is `herd run` running, and is [status] listen
/// set?): connection refused". Blocking.
pub fn client(addr: &str, json: bool) -> anyhow::Result<String> {
    let addr = addr.trim().trim_start_matches("http://").trim_end_matches('/');
    let body = fetch(addr, Instant::now() + CLIENT_TIMEOUT)?;
    if json {
        let text = std::str::from_utf8(&body)
            .ok()
            .filter(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok())
            .ok_or_else(|| anyhow!("the answer of {addr} is not JSON (is it a herd agent?)"))?;
        Ok(pretty(text) + "\n")
    } else {
        let snapshot: Snapshot = serde_json::from_slice(&body)
            .map_err(|e| anyhow!("the answer of {addr} is not a herd status (another version?): {e}"))?;
        Ok(human(&snapshot))
    }
}

/// The body of a successful `GET /status`, by `deadline`.
///
/// A plain HTTP/1.0 exchange over a blocking socket: the request asks for no
/// keep-alive and no chunked encoding, so the answer is the bytes up to the
/// server's close (checked against `Content-Length` when there is one). This
/// keeps a second HTTP stack (hyper's client) out of the agent's binary.
fn fetch(addr: &str, deadline: Instant) -> anyhow::Result<Vec<u8>> {
    let not_running = |why: String| anyhow!("no herd agent answers at {addr} ({NOT_RUNNING_HINT}): {why}");
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let targets: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| not_running(reason(&e)))?.collect();
    let mut failure = None;
    let stream = targets.iter().find_map(|target| {
        std::net::TcpStream::connect_timeout(target, left()).map_err(|e| failure = Some(e)).ok()
    });
    let mut stream =
        stream.ok_or_else(|| not_running(failure.map_or("no address".into(), |e| reason(&e))))?;
    let request = format!(
        "GET /status HTTP/1.0\r\nHost: {addr}\r\nAccept: {JSON}\r\nUser-Agent: herd/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let timed_out = || {
        let within = humantime::format_duration(CLIENT_TIMEOUT);
        anyhow!("the agent at {addr} did not answer within {within}")
    };
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let exchange = (|| -> io::Result<()> {
        stream.set_write_timeout(Some(left()))?;
        stream.write_all(request.as_bytes())?;
        loop {
            stream.set_read_timeout(Some(left()))?;
            let n = stream.read(&mut chunk)?;
            if n == 0 || answer.len() > CLIENT_MAX_BODY {
                return Ok(());
            }
            answer.extend_from_slice(&chunk[..n]);
        }
    })();
    match exchange {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            return Err(timed_out());
        }
        Err(e) => bail!("the agent at {addr} closed the connection without answering: {}", reason(&e)),
    }
    if answer.len() > CLIENT_MAX_BODY {
        bail!("the answer of {addr} is larger than {} MiB", CLIENT_MAX_BODY >> 20);
    }
    let (head, body) = split_answer(&answer)
        .ok_or_else(|| anyhow!("the agent at {addr} did not answer HTTP (is it a herd agent?)"))?;
    if let Some(length) = head.content_length
        && length != body.len()
    {
        bail!("the answer of {addr} was cut short ({} of {length} bytes)", body.len());
    }
    if !(200..300).contains(&head.code) {
        let text = String::from_utf8_lossy(body);
        bail!("the agent at {addr} answered {} {}: {}", head.code, head.reason, text.trim());
    }
    Ok(body.to_vec())
}

/// What `herd status` needs of a response head.
struct Head {
    code: u16,
    reason: String,
    content_length: Option<usize>,
}

/// The head and body of an HTTP/1.x response; `None` if it is not one.
fn split_answer(answer: &[u8]) -> Option<(Head, &[u8])> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    let rest = status.strip_prefix("HTTP/1.")?.get(2..)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let content_length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok());
    let head = Head { code: code.parse().ok()?, reason: reason.to_owned(), content_length };
    Some((head, &answer[end + 4..]))
}

/// Valid JSON re-indented by two spaces, keys and numbers left exactly as
/// they are (a `serde_json::Value` would sort the keys).
fn pretty(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', depth * 2));
    };
    let mut chars = json.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// "connection refused" rather than "Connection refused (os error 111)".
fn reason(e: &io::Error) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut | HostUnreachable
        | NetworkUnreachable | AddrNotAvailable => e.kind().to_string(),
        _ => e.to_string(),
    }
}

/// The human view of `herd status`.
fn human(s: &Snapshot) -> String {
    let mut out = format!(
        "{} · cluster {} · up {} · {} live members\nincarnation {} · herd {}\n\n",
        s.node,
        s.cluster,
        uptime(s.uptime_s),
        s.live_members,
        s.incarnation,
        s.version
    );
    let mut rows = vec![["NODE", "STATE", "ADDR", "LAST HEARD", "RTT", "LOSS"].map(String::from)];
    rows.push([s.node.clone(), "self".into(), "-".into(), "-".into(), "-".into(), "-".into()]);
    for m in &s.members {
        rows.push([
            m.name.clone(),
            m.state.clone(),
            m.addr.clone(),
            ago(m.last_heard_ms),
            num(m.rtt_ms, 3, " ms", "-"),
            num(m.loss_pct, 1, " %", "-"),
        ]);
    }
    out.push_str(&columns(&rows));
    let mut block = |title: &str, rows: Vec<(String, String)>| {
        if rows.is_empty() {
            return;
        }
        let _ = write!(out, "\n{title}\n");
        let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
    };
    block("baton", baton_rows(s));
    let sensors = sensor_rows(s);
    if sensors.is_empty() {
        block("sensors", vec![("-".into(), "no sensor reading yet".into())]);
    } else {
        block("sensors", sensors);
    }
    block("rejected datagrams", rejected_rows(s));
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// Left-aligned columns two spaces apart, one line per row.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    //! Renderers on a hand-made snapshot, and the server's limits against a
    //! fake event loop (a task answering snapshot requests), with short
    //! limits so the timeouts take milliseconds.

    use std::collections::BTreeMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::agent::snapshot::{BatonStatus, NetStatus, SensorStatus};

    fn member(name: &str, state: &str, rtt: Option<f64>) -> MemberStatus {
        MemberStatus {
            name: name.into(),
            state: state.into(),
            addr: "127.0.0.1:40001".into(),
            incarnation: 7,
            last_heard_ms: 312,
            relays: true,
            rtt_ms: rtt,
            jitter_ms: rtt.map(|r| r / 10.0),
            loss_pct: rtt.map(|_| 0.0),
            heartbeat_loss_pct: rtt.map(|_| 1.5),
        }
    }

    fn sample() -> Snapshot {
        Snapshot {
            node: "psa".into(),
            cluster: "lab".into(),
            incarnation: 1_732_000_000_123,
            version: "0.1.0 (x86_64-unknown-linux-gnu, git abc1234)".into(),
            uptime_s: 3723.4,
            live_members: 3,
            members: vec![
                member("psb", "alive", Some(0.372)),
                member("psc", "alive", Some(0.696)),
                member("psd", "down", None),
            ],
            baton: BatonStatus {
                enabled: true,
                epoch: Some(3),
                counter: 1841,
                holding: false,
                holder: Some("psb".into()),
                passes: 120,
                regenerated: 1,
            },
            sensors: SensorStatus {
                temperatures: [("cpu-thermal".to_owned(), 48.312)].into(),
                cpu_freq_mhz: Some(1500.0),
                cpu_usage_pct: Some(1.97),
                load_1: Some(0.84),
                mem_used_pct: Some(2.245),
                throttle: Some(
                    [("under_voltage", true), ("throttled", true), ("freq_capped", false)]
                        .map(|(k, v)| (k.to_owned(), v))
                        .into(),
                ),
                net: Some(NetStatus {
                    interface: "eth0".into(),
                    up: true,
                    rx_errors: 3,
                    tx_errors: 0,
                    wifi_signal_dbm: Some(-52.0),
                }),
            },
            rejected: [("auth", 3), ("replay", 0)].map(|(k, v)| (k.to_owned(), v)).into(),
        }
    }

    /// No sensors at all and no link measurements: what a fresh agent in a
    /// container reports.
    fn bare() -> Snapshot {
        let mut s = sample();
        s.sensors = SensorStatus::default();
        s.members = vec![member("psb", "alive", None)];
        s.baton.epoch = None;
        s.baton.holder = None;
        s.rejected = BTreeMap::new();
        s
    }

    fn scrape(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parse")
    }

    fn value(scrape: &prometheus_parse::Scrape, metric: &str, label: Option<(&str, &str)>) -> Option<f64> {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))?;
        match sample.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => Some(v),
            ref other => panic!("{metric}: untyped or histogram sample {other:?}"),
        }
    }

    /// Every sample's family has exactly one HELP and one TYPE line, before
    /// its samples, and a family's samples are contiguous.
    fn assert_well_formed(text: &str) {
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(seen.insert(name.clone()), "family {name} twice");
                current = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert_eq!(rest.split(' ').next().unwrap(), current, "TYPE without HELP: {line}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "sample outside its family: {line}");
            }
        }
    }

    #[test]
    fn metrics_are_parsed_by_a_prometheus_parser() {
        let text = metrics(&sample());
        assert_well_formed(&text);
        let m = scrape(&text);
        assert_eq!(value(&m, "herd_up", None), Some(1.0));
        assert_eq!(value(&m, "herd_members", None), Some(3.0));
        assert_eq!(value(&m, "herd_uptime_seconds", None), Some(3723.4));
        assert_eq!(value(&m, "herd_member_up", Some(("member", "psb"))), Some(1.0));
        assert_eq!(value(&m, "herd_member_up", Some(("member", "psd"))), Some(0.0));
        assert_eq!(value(&m, "herd_member_last_heard_seconds", Some(("member", "psc"))), Some(0.312));
        assert_eq!(value(&m, "herd_link_rtt_ms", Some(("peer", "psb"))), Some(0.372));
        assert_eq!(value(&m, "herd_link_rtt_ms", Some(("peer", "psc"))), Some(0.696));
        assert_eq!(value(&m, "herd_link_rtt_ms", Some(("peer", "psd"))), None, "no fake zero for psd");
        assert_eq!(value(&m, "herd_link_heartbeat_loss_pct", Some(("peer", "psb"))), Some(1.5));
        assert_eq!(value(&m, "herd_baton_counter", None), Some(1841.0));
        assert_eq!(value(&m, "herd_baton_epoch", None), Some(3.0));
        assert_eq!(value(&m, "herd_baton_holding", None), Some(0.0));
        assert_eq!(value(&m, "herd_baton_passes_total", None), Some(120.0));
        assert_eq!(value(&m, "herd_baton_regenerated_total", None), Some(1.0));
        assert_eq!(value(&m, "herd_cpu_temperature_celsius", Some(("sensor", "cpu-thermal"))), Some(48.312));
        assert_eq!(value(&m, "herd_throttle", Some(("flag", "under_voltage"))), Some(1.0));
        assert_eq!(value(&m, "herd_throttle", Some(("flag", "freq_capped"))), Some(0.0));
        assert_eq!(value(&m, "herd_net_up", Some(("interface", "eth0"))), Some(1.0));
        assert_eq!(value(&m, "herd_net_rx_errors_total", Some(("interface", "eth0"))), Some(3.0));
        assert_eq!(value(&m, "herd_net_wifi_signal_dbm", None), Some(-52.0));
        assert_eq!(value(&m, "herd_rejected_total", Some(("class", "auth"))), Some(3.0));
        assert!(text.contains("# TYPE herd_baton_passes_total counter\n"), "{text}");
        assert!(text.contains("# TYPE herd_members gauge\n"), "{text}");
    }

    #[test]
    fn metrics_leave_out_what_the_snapshot_lacks() {
        let text = metrics(&bare());
        assert_well_formed(&text);
        for absent in [
            "herd_cpu_temperature_celsius",
            "herd_cpu_freq_mhz",
            "herd_load_1",
            "herd_throttle",
            "herd_net_up",
            "herd_net_wifi_signal_dbm",
            "herd_link_rtt_ms",
            "herd_baton_epoch",
            "herd_rejected_total",
        ] {
            assert!(!text.contains(absent), "{absent} present without data:\n{text}");
        }
        assert!(text.contains("herd_member_up{member=\"psb\",state=\"alive\"} 1\n"), "{text}");
    }

    #[test]
    fn metric_label_values_are_escaped() {
        let mut s = bare();
        s.members[0].name = "a\"b\\c\nd".into();
        let text = metrics(&s);
        assert!(text.contains(r#"herd_member_up{member="a\"b\\c\nd",state="alive"} 1"#), "{text}");
        assert_eq!(prometheus_value(f64::NAN), "NaN");
        assert_eq!(prometheus_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(prometheus_value(0.5), "0.5");
    }

    #[test]
    fn page_is_complete_before_its_script_runs_and_has_no_external_assets() {
        let mut s = sample();
        s.members.push(member("<b>evil</b>", "alive", None));
        let html = page(&s);
        for name in ["psa", "psb", "psc", "psd"] {
            assert!(html.contains(&format!("<tr data-member=\"{name}\"><td>{name}</td>")), "{name}:\n{html}");
        }
        assert!(html.contains("&#60;b&#62;evil&#60;/b&#62;") && !html.contains("<b>evil"), "not escaped");
        assert!(
            html.contains("<dt>epoch</dt><dd>3</dd><dt>counter</dt><dd>1841</dd><dt>holder</dt><dd>psb</dd>")
        );
        assert!(html.contains("<dt>throttle</dt><dd>throttled, under_voltage</dd>"), "{html}");
        assert!(html.contains("<dt>cpu-thermal</dt><dd>48.3 °C</dd>"), "{html}");
        assert!(html.contains("fetch(\"/status\""));
        for external in ["src=", "href=\"http", "url(", "@import"] {
            assert!(!html.contains(external), "external asset ({external})");
        }
    }

    #[test]
    fn human_view_has_the_member_table_baton_and_sensors() {
        let text = human(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "psa · cluster lab · up 1h 02m · 3 live members");
        assert!(text.contains("NODE  STATE  ADDR             LAST HEARD  RTT       LOSS\n"), "{text}");
        assert!(text.contains("psb   alive  127.0.0.1:40001  312 ms      0.372 ms  0.0 %\n"), "{text}");
        assert!(text.contains("psd   down   127.0.0.1:40001  312 ms      -         -\n"), "{text}");
        assert!(text.contains("  holder   psb\n"), "{text}");
        assert!(text.contains("  passes   120 by this node, 1 regenerated\n"), "{text}");
        assert!(text.contains("  throttle       throttled, under_voltage\n"), "{text}");
        assert!(
            text.contains("  net            eth0 up · rx errors 3 · tx errors 0 · Wi-Fi -52 dBm\n"),
            "{text}"
        );
        assert!(text.ends_with("  auth  3\n"), "{text}");
        let bare = human(&bare());
        assert!(
            bare.contains("  epoch    no baton seen yet\n") && bare.contains("  holder   unknown\n"),
            "{bare}"
        );
        assert!(bare.ends_with("no sensor reading yet\n"), "{bare}");
    }

    #[test]
    fn pretty_keeps_order_and_strings() {
        let json = r#"{"node":"p{s,a}:\"x\"","b":[ ],"c":{},"d":[1,{"e":null}],"f":-1.5e3}"#;
        let want = "{\n  \"node\": \"p{s,a}:\\\"x\\\"\",\n  \"b\": [],\n  \"c\": {},\n  \"d\": [\n    1,\n    {\n      \
                    \"e\": null\n    }\n  ],\n  \"f\": -1.5e3\n}";
        assert_eq!(pretty(json), want);
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&pretty(json)).unwrap(), v);
    }

    #[test]
    fn formats() {
        assert_eq!(uptime(45.9), "45s");
        assert_eq!(uptime(123.0), "2m 03s");
        assert_eq!(uptime(3723.0), "1h 02m");
        assert_eq!(uptime(3.0 * 86400.0 + 4.0 * 3600.0), "3d 04h");
        assert_eq!(ago(999), "999 ms");
        assert_eq!(ago(4230), "4.2 s");
    }

    const FAST: Limits = Limits {
        connections: 4,
        head_bytes: 8 * 1024,
        head_timeout: Duration::from_millis(400),
        lifetime: Duration::from_secs(30),
        snapshot_timeout: Duration::from_millis(200),
    };

    /// An event loop that answers every request with `s`.
    fn fake_loop(s: Snapshot) -> mpsc::Sender<SnapshotRequest> {
        let (tx, mut rx) = mpsc::channel::<SnapshotRequest>(8);
        tokio::spawn(async move {
            while let Some(reply) = rx.recv().await {
                let _ = reply.send(s.clone());
            }
        });
        tx
    }

    async fn start(requests: mpsc::Sender<SnapshotRequest>, limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_with(listener, requests, limits));
        addr
    }

    /// Sends `request` as is and reads until the server closes (or 3 s pass,
    /// or the connection is reset); what arrived, as text.
    async fn raw(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        read_all(&mut s).await
    }

    async fn read_all(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
    }

    fn body(resp: &str) -> &str {
        resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    #[tokio::test]
    async fn serves_json_html_and_metrics() {
        let addr = start(fake_loop(sample()), FAST).await;
        let resp = raw(addr, &get("/status")).await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.contains("content-type: application/json\r\n"), "{resp}");
        let back: Snapshot = serde_json::from_str(body(&resp)).unwrap();
        assert_eq!(back, sample());

        let resp = raw(addr, &get("/metrics")).await;
        assert!(resp.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{resp}");
        assert_eq!(body(&resp), metrics(&sample()));

        let resp = raw(addr, &get("/")).await;
        assert!(resp.contains("content-type: text/html; charset=utf-8\r\n"), "{resp}");
        assert!(resp.contains("content-security-policy: default-src 'none';"), "{resp}");
        assert!(body(&resp).contains("<tr data-member=\"psc\">"));

        let resp = raw(addr, b"HEAD /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n") && body(&resp).is_empty(), "{resp}");

        let resp = raw(addr, &get("/status?pretty=1")).await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "query strings are ignored: {resp}");
        let resp = raw(addr, &get("/nope")).await;
        assert!(resp.starts_with("HTTP/1.1 404 Not Found\r\n"), "{resp}");
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_on_one_connection() {
        let addr = start(fake_loop(sample()), FAST).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        for _ in 0..3 {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
            let mut buf = vec![0; 64 * 1024];
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
        }
    }

    #[tokio::test]
    async fn refuses_other_methods_and_bodies() {
        let addr = start(fake_loop(sample()), FAST).await;
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let req = format!("{method} /status HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
            let resp = raw(addr, req.as_bytes()).await;
            assert!(resp.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{method}: {resp}");
            assert!(resp.contains("allow: GET, HEAD\r\n"), "{resp}");
        }
        let resp = raw(addr, b"GET /status HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello").await;
        assert!(resp.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{resp}");
        let chunked =
            b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let resp = raw(addr, chunked).await;
        assert!(resp.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{resp}");
    }

    #[tokio::test]
    async fn refuses_an_oversized_request_head() {
        let addr = start(fake_loop(sample()), FAST).await;
        let big = format!("GET /status HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
        let resp = raw(addr, big.as_bytes()).await;
        assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 431 "), "{resp}");
        // Just under the limit is fine.
        let fits = format!(
            "GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(7000)
        );
        assert!(raw(addr, fits.as_bytes()).await.starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[tokio::test]
    async fn answers_503_when_the_loop_is_gone_or_silent() {
        let (gone, rx) = mpsc::channel::<SnapshotRequest>(1);
        drop(rx);
        let addr = start(gone, FAST).await;
        let resp = raw(addr, &get("/status")).await;
        assert!(resp.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{resp}");

        let (silent, _rx) = mpsc::channel::<SnapshotRequest>(8);
        let addr = start(silent, FAST).await;
        let t = Instant::now();
        let resp = raw(addr, &get("/metrics")).await;
        assert!(resp.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{resp}");
        let waited = t.elapsed();
        assert!(waited >= FAST.snapshot_timeout && waited < FAST.snapshot_timeout * 5, "{waited:?}");
    }

    #[tokio::test]
    async fn connection_limit_refuses_extra_connections_until_slots_free_up() {
        let addr = start(fake_loop(sample()), FAST).await;
        let mut idle = Vec::new();
        for _ in 0..FAST.connections {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let resp = raw(addr, &get("/status")).await;
        assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{resp}");
        // The idle ones are closed by the head timeout, which frees their slots.
        for s in &mut idle {
            assert_eq!(read_all(s).await, "", "idle connection closed without an answer");
        }
        let resp = raw(addr, &get("/status")).await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    }

    #[tokio::test]
    async fn a_slow_request_head_is_cut_off() {
        let addr = start(fake_loop(sample()), FAST).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /status HTTP/1.1\r\nHost: t\r\n").await.unwrap();
        let t = Instant::now();
        assert_eq!(read_all(&mut s).await, "");
        assert!(t.elapsed() < FAST.head_timeout * 3, "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn a_connection_is_closed_after_its_lifetime() {
        let limits = Limits { lifetime: Duration::from_millis(500), ..FAST };
        let addr = start(fake_loop(sample()), limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let t = Instant::now();
        let mut served = 0;
        let mut buf = vec![0; 64 * 1024];
        while t.elapsed() < Duration::from_secs(3) {
            if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => served += 1,
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served >= 2, "served {served}");
        assert!(t.elapsed() < Duration::from_secs(2), "still open after {:?}", t.elapsed());
    }

    /// Runs a server on its own thread (the client makes its own runtime).
    fn server_thread(s: Snapshot) -> SocketAddr {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let addr = start(fake_loop(s), FAST).await;
                tx.send(addr).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    }

    #[test]
    fn client_prints_json_and_the_human_view() {
        let addr = server_thread(sample()).to_string();
        let json = client(&addr, true).unwrap();
        assert!(json.starts_with("{\n  \"node\": \"psa\",\n"), "{json}");
        assert!(json.ends_with("\n}\n"), "{json}");
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), sample());
        assert_eq!(client(&format!("http://{addr}/"), false).unwrap(), human(&sample()));
    }

    #[test]
    fn client_says_clearly_when_nothing_listens() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = client(&format!("127.0.0.1:{port}"), false).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "no herd agent answers at 127.0.0.1:{port} (is `herd run` running, and is [status] listen set?): \
                 connection refused"
            )
        );
    }

    /// A one-shot TCP server on loopback: reads its first client's request,
    /// sends `answer` and closes.
    fn canned(answer: &'static str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            let (mut s, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = s.read(&mut request);
            let _ = s.write_all(answer.as_bytes());
        });
        addr
    }

    #[test]
    fn client_refuses_what_is_not_a_herd_status() {
        let addr = canned("SSH-2.0-OpenSSH_9.2\r\n");
        let err = client(&addr, false).unwrap_err().to_string();
        assert_eq!(err, format!("the agent at {addr} did not answer HTTP (is it a herd agent?)"));
        let addr = canned("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        let err = client(&addr, true).unwrap_err().to_string();
        assert_eq!(err, format!("the answer of {addr} is not JSON (is it a herd agent?)"));
        let addr = canned("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}");
        let err = client(&addr, true).unwrap_err().to_string();
        assert_eq!(err, format!("the answer of {addr} was cut short (2 of 50 bytes)"));
        let addr = canned("HTTP/1.0 200 OK\r\n\r\n{\"node\":1}");
        let err = client(&addr, false).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("the answer of {addr} is not a herd status (another version?): ")),
            "{err}"
        );
    }

    #[test]
    fn client_reports_an_agent_that_cannot_answer() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let (silent, _rx) = mpsc::channel::<SnapshotRequest>(8);
                tx.send(start(silent, FAST).await).unwrap();
                std::future::pending::<()>().await;
            });
        });
        let addr = rx.recv().unwrap();
        let err = client(&addr.to_string(), true).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "the agent at {addr} answered 503 Service Unavailable: the agent's event loop is not answering"
            )
        );
    }
}
