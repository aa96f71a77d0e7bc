//! runtime: the one event loop. It owns the core [`Node`] and both sockets,
//! and waits on (polled in place, in a fixed order, each turn): shutdown,
//! datagrams on either socket, one timer at the earliest of the core's next
//! deadline and the periodic jobs (StatsD flush, telemetry, re-checking a
//! derived IP), new heartbeat targets from the resolver, and snapshot
//! requests from the status endpoint. After every input it sends what the
//! core queued and logs what the core reported. No task per timer, no locks
//! (STYLE.md 4).
//!
//! On shutdown it announces the leave, flushes, logs a summary and returns, so
//! `herd run` exits well within 2 s of SIGTERM.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use rand::rngs::SmallRng;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::net::{self, Sockets};
use super::snapshot::{self, SnapshotRequest, Totals, Traffic};
use super::statsd::Metrics;
use super::status;
use super::telemetry::Telemetry;
use crate::config::{Config, Strategy};
use crate::core::baton::{BatonConfig, BatonEvent};
use crate::core::links::LinkConfig;
use crate::core::membership::{Change, MemberEvent};
use crate::core::node::{Dest, Event, Fanout, Node, NodeConfig, Reason, Via};
use crate::core::wire::WireError;

/// Datagrams larger than this are truncated by the kernel and then refused by
/// the codec as oversized; 64 KiB covers any UDP payload.
const RECV_BUF: usize = 65536;
const SEND_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);
/// Most data-socket datagrams handled in one turn of the loop before the
/// other sources get a look in.
const DRAIN: usize = 64;
/// How often a derived advertised IP is checked again (see `net::own_ip`).
const OWN_IP_EVERY: Duration = Duration::from_secs(30);

/// Runs the agent until `shutdown` completes, then leaves the cluster.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let g = &config.gossip;
    let sockets = net::bind(g)?;
    let data_port = sockets.data.local_addr()?.port();
    let node_cfg = node_config(&config, data_port);
    let how = match (g.strategy, g.broadcast_only) {
        (Strategy::Multicast, false) => format!("multicast {}:{}", g.multicast_addr, g.port),
        (Strategy::Multicast, true) => format!("broadcast {}:{}", g.multicast_addr, g.port),
        (Strategy::Static, _) => format!("static hosts {}", g.hosts.join(", ")),
        (Strategy::Dns, _) => format!("dns {}:{}", g.dns_name, g.port),
    };
    info!(
        node = %node_cfg.name,
        cluster = %node_cfg.cluster,
        incarnation = node_cfg.incarnation,
        gossip = %how,
        data = %sockets.data.local_addr()?,
        version = crate::VERSION,
        "herd started"
    );
    if node_cfg.secret.is_none() {
        warn!(
            "no [gossip] secret or secret_file set: datagrams are neither authenticated nor encrypted, \
             and anyone on the network can join or disturb this cluster"
        );
    }

    let (seed_tx, seed_rx) = mpsc::channel(1);
    let resolver = (node_cfg.fanout == Fanout::Unicast)
        .then(|| tokio::spawn(net::resolve_seeds(g.clone(), g.heartbeat_interval, seed_tx)));
    // Only with a resolver: otherwise the sender is gone and it would wake every turn.
    let mut seed_rx = resolver.is_some().then_some(seed_rx);
    let mut seeds = Vec::new();

    let mut node = Node::new(node_cfg, rand::make_rng::<SmallRng>(), Instant::now());
    let mut io = Io::new(sockets);
    let mut sink = Sink::new(&config);
    let mut telemetry = Telemetry::new(&config);
    let started = Instant::now();
    let mut ticks = Ticks::new(&config, started);
    let (status_tx, status_rx) = mpsc::channel::<SnapshotRequest>(16);
    let status_task = match config.status.listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                info!(%addr, "status endpoint listening (GET /, /status, /metrics)");
                Some(tokio::spawn(status::serve(listener, status_tx)))
            }
            Err(e) => {
                warn!(%addr, error = %e, "cannot listen for the status endpoint; running without it ([status] listen)");
                None
            }
        },
        None => None,
    };
    // Without the server its sender is gone, and it would wake every turn.
    let mut status_rx = status_task.is_some().then_some(status_rx);
    // systemd (Type=notify): the sockets are bound, peers can find us. Without
    // $NOTIFY_SOCKET this does nothing.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        debug!(error = %e, "sd_notify READY failed");
    }
    let mut gbuf = vec![0u8; RECV_BUF];
    let mut dbuf = vec![0u8; RECV_BUF];
    // Its own task, so the loop polls a oneshot (an atomic load) per turn,
    // not the signal machinery.
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let stopper = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });
    // One timer for the core's deadlines and the periodic work (not one per
    // purpose, nor a new one per turn).
    let sleep = tokio::time::sleep_until(ticks.next(node.poll_timeout()).into());
    tokio::pin!(sleep);

    loop {
        // The timer is moved only when the deadline comes earlier, or after
        // it fired: at full speed every pass moves the core's deadline later
        // (`pass_timeout` after the pass), and re-arming it every turn cost
        // more than the spurious wake-up (at most one per `pass_timeout`).
        let deadline = ticks.next(node.poll_timeout()).into();
        if deadline < sleep.deadline() || sleep.is_elapsed() {
            sleep.as_mut().reset(deadline);
        }
        // Every source is polled in place (no future built and dropped per
        // turn, which `select!` did and which cost a tenth of the relay's
        // CPU). Fixed order, the data socket last: a flood on it cannot keep
        // any other source from being seen.
        let wake = poll_fn(|cx| {
            if Pin::new(&mut stop_rx).poll(cx).is_ready() {
                return Poll::Ready(Wake::Shutdown);
            }
            if let Poll::Ready(r) = recv(&io.sockets.gossip, cx, &mut gbuf) {
                return Poll::Ready(Wake::Gossip(r));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Deadline);
            }
            if let Some(Poll::Ready(Some(s))) = seed_rx.as_mut().map(|rx| rx.poll_recv(cx)) {
                return Poll::Ready(Wake::Seeds(s));
            }
            if let Some(Poll::Ready(Some(reply))) = status_rx.as_mut().map(|rx| rx.poll_recv(cx)) {
                return Poll::Ready(Wake::Status(reply));
            }
            recv(&io.sockets.data, cx, &mut dbuf).map(Wake::Data)
        })
        .await;
        match wake {
            Wake::Shutdown => break,
            Wake::Gossip(Ok((n, src))) => {
                io.received(n);
                node.handle(Instant::now(), Via::Gossip, src, &mut gbuf[..n]);
            }
            Wake::Gossip(Err(e)) => debug!(error = %e, "gossip socket receive error"),
            Wake::Data(mut r) => {
                // The baton's path: send what each datagram caused at once, and
                // take whatever else is queued before going back to epoll.
                for _ in 0..DRAIN {
                    match r {
                        Ok((n, src)) => {
                            io.received(n);
                            node.handle(Instant::now(), Via::Data, src, &mut dbuf[..n]);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            debug!(error = %e, "data socket receive error");
                            break;
                        }
                    }
                    io.flush(&mut node);
                    r = io.sockets.data.try_recv_from(&mut dbuf);
                }
            }
            Wake::Deadline => {}
            Wake::Seeds(s) => {
                seeds = s;
                node.set_ip(net::own_ip(g, &seeds));
                node.set_seeds(Instant::now(), seeds.clone());
            }
            Wake::Status(reply) => {
                let inputs = snapshot::Inputs {
                    node: &node,
                    now: Instant::now(),
                    started,
                    reading: telemetry.last.as_ref(),
                    totals: sink.totals,
                    traffic: io.traffic,
                    heartbeat_interval: config.gossip.heartbeat_interval,
                };
                let _ = reply.send(snapshot::build(inputs));
            }
        }
        // Timers are checked after every input too, so a busy socket cannot
        // starve them.
        let now = Instant::now();
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
        }
        if ticks.flush.due(now) {
            sink.flush(&node);
        }
        if ticks.telemetry.due(now) {
            let links = node.link_stats(now);
            telemetry.report(&links, sink.metrics.as_ref());
        }
        // A derived address can change under us (DHCP).
        if ticks.own_ip.as_mut().is_some_and(|t| t.due(now)) {
            node.set_ip(net::own_ip(g, &seeds));
        }
        io.flush(&mut node);
        report(&mut node, &mut sink);
    }

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    node.leave(Instant::now());
    io.flush(&mut node);
    report(&mut node, &mut sink);
    sink.flush(&node);
    for task in [resolver, status_task, Some(stopper)].into_iter().flatten() {
        task.abort();
    }
    let r = node.rejections();
    info!(
        rejected = r.total(),
        auth = r.auth,
        replay = r.replay,
        other_cluster = r.other_cluster,
        malformed = r.malformed,
        table_full = r.table_full,
        "left the cluster"
    );
    Ok(())
}

/// What ended one wait of the loop.
enum Wake {
    Shutdown,
    Gossip(std::io::Result<(usize, SocketAddr)>),
    Data(std::io::Result<(usize, SocketAddr)>),
    /// The core's deadline or a periodic job (see [`Ticks`]) may be due.
    Deadline,
    Seeds(Vec<SocketAddr>),
    Status(SnapshotRequest),
}

/// The loop's periodic jobs. Each runs at most once per period; a late turn
/// delays the next run rather than bunching runs up.
struct Ticks {
    flush: Every,
    telemetry: Every,
    /// Only when the advertised IP is derived (see `net::own_ip`).
    own_ip: Option<Every>,
}

struct Every {
    period: Duration,
    next: Instant,
}

impl Every {
    /// The first run is at `now`, as with `tokio::time::interval`.
    fn new(period: Duration, now: Instant) -> Every {
        Every { period, next: now }
    }

    fn due(&mut self, now: Instant) -> bool {
        let due = now >= self.next;
        if due {
            self.next = now + self.period;
        }
        due
    }
}

impl Ticks {
    fn new(config: &Config, now: Instant) -> Ticks {
        Ticks {
            flush: Every::new(config.statsd.flush_interval, now),
            telemetry: Every::new(config.telemetry.interval, now),
            own_ip: net::derives_ip(&config.gossip).then(|| Every::new(OWN_IP_EVERY, now + OWN_IP_EVERY)),
        }
    }

    /// When the loop must next wake: the earliest of the jobs and the core's
    /// deadline (`None` after the core left).
    fn next(&self, core: Option<Instant>) -> Instant {
        let jobs = [Some(self.flush.next), Some(self.telemetry.next), self.own_ip.as_ref().map(|t| t.next)];
        jobs.into_iter().chain([core]).flatten().min().unwrap_or(self.flush.next)
    }
}

/// One datagram, if there is one, into `buf`; registers for the next otherwise.
fn recv(
    sock: &UdpSocket,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<std::io::Result<(usize, SocketAddr)>> {
    let mut rb = ReadBuf::new(buf);
    sock.poll_recv_from(cx, &mut rb).map_ok(|src| (rb.filled().len(), src))
}

/// The core's configuration from the validated config; `data_port` is the
/// port the data socket actually got (the config may say 0).
pub(crate) fn node_config(config: &Config, data_port: u16) -> NodeConfig {
    let g = &config.gossip;
    let fanout = match (g.strategy, g.broadcast_only) {
        (Strategy::Multicast, _) => Fanout::Group,
        _ => Fanout::Unicast,
    };
    NodeConfig {
        name: config.node.name.clone(),
        cluster: config.node.cluster.clone(),
        incarnation: incarnation(),
        secret: g.secret.as_ref().map(|s| s.0.clone()),
        heartbeat_interval: g.heartbeat_interval,
        suspect_after: g.suspect_after,
        down_after: g.down_after,
        max_members: g.max_members,
        data_port,
        ip: net::own_ip(g, &[]),
        gossip_port: g.port,
        fanout,
        baton: BatonConfig {
            enabled: config.baton.enabled,
            main_node: config.baton.main_node.clone(),
            hold: config.baton.hold,
            pass_timeout: config.baton.pass_timeout,
            max_retries: config.baton.max_retries,
            regenerate_after: config.baton.regenerate_after,
            start_after: g.heartbeat_interval * 2,
            recheck: (g.heartbeat_interval / 10).max(Duration::from_millis(10)),
        },
        links: LinkConfig { probe_interval: config.links.probe_interval, window: config.links.window },
    }
}

/// This life's incarnation: milliseconds since the Unix epoch at start, so a
/// restarted node is newer than its previous life (see membership.rs for
/// clocks that go backwards).
pub(crate) fn incarnation() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1)
}

pub(crate) struct Io {
    pub(crate) sockets: Sockets,
    pub(crate) traffic: Traffic,
    send_errors: u64,
    last_send_error_log: Option<Instant>,
}

impl Io {
    pub(crate) fn new(sockets: Sockets) -> Io {
        Io { sockets, traffic: Traffic::default(), send_errors: 0, last_send_error_log: None }
    }

    /// Sends everything the core queued. Never waits: a full socket buffer
    /// drops the datagram, as the network could have.
    pub(crate) fn flush<R: rand::Rng>(&mut self, node: &mut Node<R>) {
        while let Some(t) = node.poll_transmit() {
            let (sock, addr) = match t.dest {
                Dest::Group => (&self.sockets.gossip, self.sockets.group),
                Dest::Gossip(a) => (&self.sockets.gossip, a),
                Dest::Data(a) => (&self.sockets.data, a),
            };
            match sock.try_send_to(&t.payload, addr) {
                Ok(n) => {
                    self.traffic.sent_datagrams += 1;
                    self.traffic.sent_bytes += n as u64;
                }
                Err(e) => self.send_error(addr, e),
            }
        }
    }

    pub(crate) fn received(&mut self, bytes: usize) {
        self.traffic.received_datagrams += 1;
        self.traffic.received_bytes += bytes as u64;
    }

    fn send_error(&mut self, addr: SocketAddr, e: std::io::Error) {
        self.send_errors += 1;
        let now = Instant::now();
        if self.last_send_error_log.is_none_or(|t| now.duration_since(t) >= SEND_ERROR_LOG_EVERY) {
            self.last_send_error_log = Some(now);
            warn!(to = %addr, error = %e, total = self.send_errors, "cannot send datagram");
        }
    }
}

/// The metric sink, created lazily: a StatsD host name that does not resolve
/// yet (DNS not up at boot) is retried at every flush instead of failing.
struct Sink {
    metrics: Option<Metrics>,
    config: Config,
    failed_once: bool,
    /// `herd.baton.hop_ms` is sampled when the relay runs unpaced, so a fast
    /// relay does not send one histogram line per pass.
    hop_sample_rate: f64,
    /// Since start, for the status endpoint.
    totals: Totals,
}

impl Sink {
    fn new(config: &Config) -> Sink {
        let hop_sample_rate = if config.baton.hold >= Duration::from_millis(1) { 1.0 } else { 0.01 };
        let mut sink = Sink {
            metrics: None,
            config: config.clone(),
            failed_once: false,
            hop_sample_rate,
            totals: Totals::default(),
        };
        sink.connect();
        sink
    }

    fn connect(&mut self) {
        if self.metrics.is_some() {
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

    fn flush<R: rand::Rng>(&mut self, node: &Node<R>) {
        self.connect();
        if let Some(m) = self.metrics.as_mut() {
            m.gauge("members", (node.members().live().count() + 1) as f64);
            m.flush(Instant::now());
        }
    }
}

fn report<R: rand::Rng>(node: &mut Node<R>, sink: &mut Sink) {
    while let Some(ev) = node.poll_event() {
        match ev {
            Event::Baton(ev) => baton_event(ev, sink),
            Event::Member(ev) => {
                let live = node.members().live().count() + 1;
                log_member(&ev, live);
                if let Some(m) = sink.metrics.as_mut() {
                    let c = &mut m.counts;
                    match ev.change {
                        Change::Up => c.member_up += 1,
                        Change::Restarted { .. } => {
                            c.member_down += 1;
                            c.member_up += 1;
                        }
                        Change::Down { .. } | Change::Left => c.member_down += 1,
                        Change::Suspect { .. } | Change::Alive => {}
                    }
                }
            }
            Event::Rejected { source, reason, suppressed, total } => {
                if matches!(reason, Reason::Wire(WireError::OtherCluster)) {
                    info!(%source, %reason, suppressed, total, "datagram rejected");
                } else {
                    warn!(%source, %reason, suppressed, total, "datagram rejected");
                }
            }
        }
    }
}

fn baton_event(ev: BatonEvent, sink: &mut Sink) {
    let rate = sink.hop_sample_rate;
    match &ev {
        BatonEvent::Passed { .. } => sink.totals.passes += 1,
        BatonEvent::Regenerated { .. } => sink.totals.regenerated += 1,
        _ => {}
    }
    let m = sink.metrics.as_mut();
    match ev {
        // Per pass: debug level only (tests use it to find the holder).
        BatonEvent::Taken { id, counter } => debug!(epoch = id.epoch, counter, "baton taken"),
        BatonEvent::Passed { counter } => {
            if let Some(m) = m {
                m.baton(counter);
                m.counts.passes += 1;
            }
        }
        BatonEvent::Acked { hop } => {
            if let Some(m) = m {
                m.histogram_ms("baton.hop_ms", hop.as_micros() as f64 / 1000.0, rate);
            }
        }
        BatonEvent::Retransmit { to } => {
            debug!(to = %to, "baton pass resent");
            if let Some(m) = m {
                m.counts.retransmits += 1;
            }
        }
        BatonEvent::Skipped { to } => {
            info!(peer = %to, "baton: peer skipped for this lap (no ack, refused, or gone)")
        }
        BatonEvent::Started { id, counter } => {
            info!(epoch = id.epoch, counter, "baton started")
        }
        BatonEvent::Regenerated { id, counter } => {
            info!(epoch = id.epoch, counter, "baton regenerated (none seen for regenerate_after)");
            if let Some(m) = m {
                m.counts.regenerated += 1;
            }
        }
        BatonEvent::Dropped { id, counter, why } => {
            info!(epoch = id.epoch, counter, why, "baton dropped")
        }
    }
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
