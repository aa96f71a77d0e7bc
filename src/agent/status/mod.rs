//! status: the local status endpoint (`[status] listen`) and its client,
//! `herd status`.
//!
//! The endpoint serves three read-only views of one [`Snapshot`], asked fresh
//! from the event loop for every request:
//! - `GET /status`: the snapshot as JSON (what `herd status` reads);
//! - `GET /`: a self-contained HTML page (inline CSS, SVG and JS, no
//!   external assets): the whole cluster (a card per node, the link matrix as
//!   a heat map, charts of the last 15 minutes), then this node. The server
//!   renders the whole page, so a client without JS (curl, a DOM dump) sees
//!   everything; the script swaps in the same markup from `GET /app` (the
//!   page's body alone) every second;
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
use crate::core::limit::LogLimiter;

mod client;
mod cluster;
mod format;
mod page;
mod prometheus;
#[cfg(test)]
mod tests;

pub use client::{View, client};
use format::*;
use page::*;
use prometheus::*;

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
    } else if !matches!(path.as_str(), "/" | "/app" | "/status" | "/metrics") {
        reply(StatusCode::NOT_FOUND, TEXT, "not found: try /, /app, /status or /metrics\n")
    } else {
        match snapshot(requests, limits.snapshot_timeout).await {
            None => {
                let mut r =
                    reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "the agent's event loop is not answering\n");
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Some(s) => match path.as_str() {
                "/app" => {
                    let mut r = reply(StatusCode::OK, HTML, page::app(&s));
                    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
                    r
                }
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

/// One kind of warning, logged at most once per [`WARN_EVERY`] (shared by
/// the connection tasks, hence the lock).
struct RateLimit(Mutex<LogLimiter>);

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit(Mutex::new(LogLimiter::new(WARN_EVERY)))
    }
}

impl RateLimit {
    /// `Some(held back since the last line)` when a line may be logged now.
    fn allow(&self) -> Option<u64> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).allow(Instant::now())
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
