//! driver: one turn of the agent's event loop, in named steps, the way
//! quinn's `ConnectionDriver::poll` calls `drive_transmit` and `drive_timer`.
//! It owns the core [`Node`], the [`Transport`] and everything
//! that runs on the loop's clock; `herd run` and `herd ping` drive the same
//! turn, and unit tests drive it over an in-memory network.
//!
//! A turn:
//! 1. `wait`: sleeps until one source is ready. Every source is
//!    polled in place (no future built and dropped per turn, which `select!`
//!    did and which cost a tenth of the relay's CPU), in a fixed order with
//!    the data socket last, so a flood on it cannot hide any other source:
//!    shutdown, the gossip socket, the one timer, new heartbeat targets,
//!    a network change (netlink), status requests, reloads (SIGHUP, or a
//!    config handed in), the data socket.
//! 2. the input: datagrams into the core (on the data path, the baton's,
//!    what each caused is sent at once and the rest of the burst is taken
//!    before going back to epoll), seeds, the network followed again
//!    (`drive_network`), or a snapshot for the endpoint;
//! 3. `drive_timer`: the core's deadline, checked after every
//!    input so a busy socket cannot starve it;
//! 4. `drive_jobs`: the periodic jobs (StatsD flush, telemetry, the page's
//!    history; the network re-checked while the agent waits for one);
//! 5. `drive_transmit`: everything the core queued;
//! 6. `drive_events`: the core's events to the [`Reporter`].
//!
//! Must not: block, spawn tasks, or keep a timer per purpose (one timer at
//! the earliest of the core's deadline and the jobs).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::SmallRng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;
use tracing::{debug, info, warn};

use super::history::{self, History};
use super::network::{self, State};
use super::process;
use super::report::Reporter;
use super::snapshot::{self, SnapshotRequest, Traffic};
use super::telemetry::Telemetry;
use super::transport::{Received, Transport};
use crate::config::{Config, GossipSection, reload};
use crate::core::limit::LogLimiter;
use crate::core::node::{Node, Via};

/// Datagrams larger than this are truncated by the kernel and then refused by
/// the codec as oversized; 64 KiB covers any UDP payload.
const RECV_BUF: usize = 65536;
/// Most data-socket datagrams handled in one turn before the other sources
/// get a look in.
const DRAIN: usize = 64;
/// How often the network is followed again without a netlink wake-up: while
/// the agent waits for one (a cause netlink does not report, such as a
/// multicast route refused), and always when netlink is not available.
const NETWORK_RECHECK: Duration = Duration::from_secs(5);
const SEND_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);
/// When nothing at all is due (only after the core left): the timer's
/// deadline, so it never fires for nothing.
const IDLE: Duration = Duration::from_secs(3600);

/// What the driver listens to besides the transport. A source that is `None`
/// is not polled (a closed channel would wake every turn).
#[derive(Default)]
pub struct Inputs {
    /// Completes once: leave the cluster.
    pub shutdown: Option<oneshot::Receiver<()>>,
    /// New unicast heartbeat targets (static hosts, DNS), from the resolver.
    pub seeds: Option<mpsc::Receiver<Vec<SocketAddr>>>,
    /// The host's addresses, links or routes changed (`network::watch`).
    pub network: Option<mpsc::Receiver<()>>,
    /// Snapshot requests from the status endpoint.
    pub status: Option<mpsc::Receiver<SnapshotRequest>>,
    /// Re-read the config file (SIGHUP).
    pub reload: Option<mpsc::Receiver<()>>,
    /// A config to apply as a reload would, from memory (`agent::run_with`).
    pub apply: Option<mpsc::Receiver<Config>>,
}

impl Inputs {
    /// `shutdown` as a oneshot fired by its own task, so the loop polls an
    /// atomic per turn instead of the signal machinery.
    pub fn shutdown_on(
        future: impl Future<Output = ()> + Send + 'static,
    ) -> (oneshot::Receiver<()>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            future.await;
            let _ = tx.send(());
        });
        (rx, task)
    }
}

/// What a turn ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Continue,
    /// The shutdown input fired: call [`Driver::leave`].
    Stop,
}

/// What ended one wait.
enum Wake {
    Shutdown,
    Datagram(Via, Received),
    /// The core's deadline or a periodic job may be due.
    Deadline,
    Seeds(Vec<SocketAddr>),
    Network,
    Status(SnapshotRequest),
    Reload,
    Apply(Box<Config>),
}

pub struct Driver<T> {
    node: Node<SmallRng>,
    transport: T,
    inputs: Inputs,
    timer: Pin<Box<Sleep>>,
    jobs: Jobs,
    /// `None` for `herd ping`: events are dropped, no metrics are sent.
    reporter: Option<Reporter>,
    telemetry: Option<Telemetry>,
    /// The page's charts: only with a status endpoint.
    history: Option<History>,
    /// What `network::follow` needs, with the seeds.
    gossip: GossipSection,
    seeds: Vec<SocketAddr>,
    net: NetView,
    /// The config running now, where it was read from (`None`: the built-in
    /// defaults) and when (a reload re-reads the same file).
    config: Config,
    config_file: Option<PathBuf>,
    config_loaded: SystemTime,
    traffic: Traffic,
    send_errors: u64,
    send_log: LogLimiter,
    state_log: LogLimiter,
    started: Instant,
    /// Stalls the core has noticed and this driver has logged.
    stalls_logged: u64,
    gbuf: Box<[u8]>,
    dbuf: Box<[u8]>,
}

impl<T: Transport> Driver<T> {
    /// The whole agent of `herd run`: every event reported and counted,
    /// metrics flushed, telemetry read, a derived IP re-checked.
    pub fn new(config: &Config, node: Node<SmallRng>, transport: T, inputs: Inputs) -> Driver<T> {
        let now = Instant::now();
        let mut d = Driver::quiet(config, node, transport, inputs);
        d.reporter = Some(Reporter::new(config));
        d.telemetry = Some(Telemetry::new(config));
        d.jobs = Jobs::new(config, now);
        // Only for a page to show (not for the demo's in-process snapshots).
        if config.status.listen.is_some() && d.inputs.status.is_some() {
            d.history = Some(History::new());
            d.jobs.history = Some(Every { period: history::EVERY, next: now });
        }
        d
    }

    /// Only the core and its inputs: no reporting, no telemetry, no periodic
    /// jobs (`herd ping`, which must not send metrics).
    pub fn quiet(config: &Config, node: Node<SmallRng>, transport: T, inputs: Inputs) -> Driver<T> {
        let jobs = Jobs::default();
        let timer = Box::pin(tokio::time::sleep_until(jobs.next(&node).into()));
        let mut d = Driver {
            node,
            transport,
            inputs,
            timer,
            jobs,
            reporter: None,
            telemetry: None,
            history: None,
            gossip: config.gossip.clone(),
            seeds: Vec::new(),
            net: NetView { state: None, since: Instant::now(), changes: 0, recheck: None },
            config: config.clone(),
            config_file: None,
            config_loaded: SystemTime::now(),
            traffic: Traffic::default(),
            send_errors: 0,
            send_log: LogLimiter::new(SEND_ERROR_LOG_EVERY),
            state_log: LogLimiter::new(SEND_ERROR_LOG_EVERY),
            started: Instant::now(),
            stalls_logged: 0,
            gbuf: vec![0; RECV_BUF].into_boxed_slice(),
            dbuf: vec![0; RECV_BUF].into_boxed_slice(),
        };
        // Before the first heartbeat: the group joined, the address known
        // (or what the agent waits for said).
        d.drive_network(Instant::now());
        d
    }

    /// What the agent waits for before it can reach the cluster, if anything.
    pub fn waiting(&self) -> Option<&network::Waiting> {
        self.net.state.as_ref().and_then(State::waiting)
    }

    /// The file the config was read from, which a reload reads again.
    pub fn set_config_file(&mut self, path: Option<PathBuf>) {
        self.config_file = path;
    }

    #[cfg(test)]
    pub(crate) fn set_reporter(&mut self, reporter: Reporter) {
        self.reporter = Some(reporter);
    }

    pub fn node(&self) -> &Node<SmallRng> {
        &self.node
    }

    /// One turn: wait for a source, handle it, then the timer, the jobs, the
    /// transmits and the events. Cancel-safe: the only await is the wait,
    /// which consumes nothing until it returns.
    pub async fn turn(&mut self) -> Turn {
        self.arm_timer();
        let wake = self.wait().await;
        self.stamp_wall_clock();
        let mut asked = None;
        match wake {
            Wake::Shutdown => return Turn::Stop,
            Wake::Datagram(via, r) => self.drive_recv(via, r),
            Wake::Deadline => {}
            Wake::Seeds(seeds) => self.set_seeds(seeds),
            Wake::Network => self.drive_network(Instant::now()),
            // Answered at the end of the turn, so the picture includes what
            // the turn did (a pass that was due is sent, not still "held").
            Wake::Status(reply) => asked = Some(reply),
            Wake::Reload => self.reload(),
            Wake::Apply(config) => self.apply(*config, "memory"),
        }
        let now = Instant::now();
        self.drive_timer(now);
        self.drive_jobs(now);
        self.drive_transmit();
        self.drive_events();
        if let Some(reply) = asked {
            let _ = reply.send(self.snapshot());
        }
        Turn::Continue
    }

    /// Hands the core the wall clock for this turn (it reads none): acks
    /// carry it, and probes are timed by it, for the clock offset per peer.
    /// A clock before 1970 (a Pi that booted with no RTC and no saved time
    /// may say so) is still a clock: the offset shows how wrong it is.
    fn stamp_wall_clock(&mut self) {
        let wall = SystemTime::now();
        let us = match wall.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => after.as_micros() as i64,
            Err(before) => -(before.duration().as_micros() as i64),
        };
        self.node.set_wall_clock(Instant::now(), us);
    }

    /// Graceful leave: the core hands off the baton and announces the leave,
    /// which is sent at once; then the last events, a final metrics flush
    /// and the summary line.
    pub fn leave(&mut self) {
        let now = Instant::now();
        self.node.leave(now);
        self.drive_transmit();
        self.drive_events();
        let size = self.node.cluster_size();
        if let Some(r) = self.reporter.as_mut() {
            r.flush(size, self.node.rejections(), now);
            r.left(self.node.rejections());
        }
    }

    /// Moves the timer only when the deadline comes earlier, or after it
    /// fired: at full speed every pass moves the core's deadline later
    /// (`pass_timeout` after the pass), and re-arming it every turn cost more
    /// than the spurious wake-up (at most one per `pass_timeout`).
    fn arm_timer(&mut self) {
        let next = self.jobs.next(&self.node);
        let deadline = self.net.recheck.map_or(next, |at| next.min(at)).into();
        if deadline < self.timer.deadline() || self.timer.is_elapsed() {
            self.timer.as_mut().reset(deadline);
        }
    }

    /// Step 1: until one source is ready (order: see the module doc).
    async fn wait(&mut self) -> Wake {
        let Driver { transport, inputs, timer, gbuf, dbuf, .. } = self;
        poll_fn(|cx| {
            if let Some(Poll::Ready(_)) = inputs.shutdown.as_mut().map(|rx| Pin::new(rx).poll(cx)) {
                return Poll::Ready(Wake::Shutdown);
            }
            if let Poll::Ready(r) = transport.poll_recv(Via::Gossip, cx, gbuf) {
                return Poll::Ready(Wake::Datagram(Via::Gossip, r));
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Deadline);
            }
            if let Some(Poll::Ready(Some(s))) = inputs.seeds.as_mut().map(|rx| rx.poll_recv(cx)) {
                return Poll::Ready(Wake::Seeds(s));
            }
            if let Some(Poll::Ready(changed)) = inputs.network.as_mut().map(|rx| rx.poll_recv(cx)) {
                if changed.is_none() {
                    // The watch ended (logged there): re-checked on a timer now.
                    inputs.network = None;
                }
                return Poll::Ready(Wake::Network);
            }
            if let Some(Poll::Ready(Some(reply))) = inputs.status.as_mut().map(|rx| rx.poll_recv(cx)) {
                return Poll::Ready(Wake::Status(reply));
            }
            if let Some(Poll::Ready(Some(()))) = inputs.reload.as_mut().map(|rx| rx.poll_recv(cx)) {
                return Poll::Ready(Wake::Reload);
            }
            if let Some(Poll::Ready(Some(c))) = inputs.apply.as_mut().map(|rx| rx.poll_recv(cx)) {
                return Poll::Ready(Wake::Apply(Box::new(c)));
            }
            transport.poll_recv(Via::Data, cx, dbuf).map(|r| Wake::Datagram(Via::Data, r))
        })
        .await
    }

    /// Step 2, datagrams: into the core. On the data path (the baton's) what
    /// each datagram caused is sent at once, and up to [`DRAIN`] queued ones
    /// are taken before going back to epoll.
    fn drive_recv(&mut self, via: Via, mut r: Received) {
        let rounds = if via == Via::Data { DRAIN } else { 1 };
        for _ in 0..rounds {
            match r {
                Ok((n, src)) => {
                    self.traffic.received_datagrams += 1;
                    self.traffic.received_bytes += n as u64;
                    let buf = if via == Via::Data { &mut self.dbuf } else { &mut self.gbuf };
                    self.node.handle(Instant::now(), via, src, &mut buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    match via {
                        Via::Gossip => debug!(error = %e, "gossip socket receive error"),
                        Via::Data => debug!(error = %e, "data socket receive error"),
                    }
                    return;
                }
            }
            if via == Via::Gossip {
                return;
            }
            self.drive_transmit();
            r = self.transport.try_recv(Via::Data, &mut self.dbuf);
        }
    }

    /// Step 2, new heartbeat targets: the advertised IP may follow them.
    fn set_seeds(&mut self, seeds: Vec<SocketAddr>) {
        let now = Instant::now();
        self.seeds = seeds.clone();
        self.drive_network(now);
        self.node.set_seeds(now, seeds);
    }

    /// Step 2, the network followed again (at start, on a netlink wake-up,
    /// new seeds, a send that found the network gone, or the re-check while
    /// waiting): the group joined where heartbeats go out, a new address
    /// announced to the cluster at once, and a change said once: WARN when
    /// the agent starts waiting, INFO when it is back or renumbered.
    fn drive_network(&mut self, now: Instant) {
        let state = self.transport.follow_network(&self.gossip, &self.seeds);
        let watched = self.inputs.network.is_some();
        self.net.recheck = (state.waiting().is_some() || !watched).then_some(now + NETWORK_RECHECK);
        if self.net.state.as_ref() == Some(&state) {
            return;
        }
        let ip = state.ip(&self.gossip);
        let via = match &state {
            State::Ready { interface: Some(i), .. } => i.as_str(),
            _ => "-",
        };
        // One line per change (built here, logged at one of two call sites:
        // each tracing call site costs the Pi's binary its own code).
        let waited = now.saturating_duration_since(self.net.since);
        let line = match (self.net.state.as_ref(), &state) {
            (None | Some(State::Ready { .. }), State::Waiting(why)) => {
                format!("waiting for a network: {why}; herd keeps running and joins as soon as there is one")
            }
            (Some(State::Waiting(_)), State::Waiting(why)) => format!("still waiting for a network: {why}"),
            (None, State::Ready { .. }) => format!("network ready ip={ip} interface={via}"),
            (Some(State::Waiting(_)), State::Ready { .. }) => {
                format!("network ready: joining the cluster ip={ip} interface={via} waited={waited:.1?}")
            }
            (Some(State::Ready { ip: old, .. }), State::Ready { .. }) if *old == ip => {
                format!("network changed: heartbeats leave by {via} now ip={ip}")
            }
            (Some(State::Ready { ip: old, .. }), State::Ready { .. }) => {
                format!("network changed: telling the cluster from={old} to={ip} interface={via}")
            }
        };
        let status = match state.waiting() {
            Some(why) => {
                if self.net.state.as_ref().is_none_or(|s| s.waiting().is_none()) {
                    warn!("{line}");
                } else {
                    info!("{line}");
                }
                format!("waiting for a network: {why}")
            }
            None => {
                info!("{line}");
                format!("running on {via} as {ip}")
            }
        };
        if self.net.state.is_some() {
            self.net.changes += 1;
        }
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]) {
            debug!("sd_notify STATUS failed: {e}");
        }
        self.node.set_ip(now, ip);
        // Waiting for another reason is the same wait.
        let still_waiting =
            state.waiting().is_some() && self.net.state.as_ref().and_then(State::waiting).is_some();
        if !still_waiting {
            self.net.since = now;
        }
        self.net.state = Some(state);
    }

    /// Step 2, a status request: the picture of this agent now.
    fn snapshot(&self) -> snapshot::Snapshot {
        snapshot::build(snapshot::Inputs {
            node: &self.node,
            now: Instant::now(),
            started: self.started,
            reading: self.telemetry.as_ref().and_then(|t| t.last.as_ref()),
            totals: self.reporter.as_ref().map(|r| *r.totals()).unwrap_or_default(),
            traffic: self.traffic,
            config_file: self.config_file.as_deref(),
            config_loaded: self.config_loaded,
            history: self.history.as_ref(),
            network: self.net.status(Instant::now(), &self.gossip),
        })
    }

    /// Step 2, SIGHUP: the config file read again and what may change live
    /// applied (see `config::reload`); the node keeps its life, its members
    /// and the baton, so peers see nothing. A file with problems changes
    /// nothing: each is logged as `herd check` prints it.
    fn reload(&mut self) {
        let Some(path) = self.config_file.clone() else {
            warn!("SIGHUP: no config file to read again (running on the built-in defaults)");
            return;
        };
        let wanted = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                for line in e.lines() {
                    warn!("reload: {line}");
                }
                warn!(file = %path.display(), "reload refused: the config is unchanged");
                return;
            }
        };
        self.apply(wanted, &path.display().to_string());
    }

    /// Step 2, a new config (`from`: the file it was read from, or "memory"
    /// for one handed in by `agent::run_with`): applied by the same plan as a
    /// reload, so what needs a restart keeps its running value.
    fn apply(&mut self, wanted: Config, from: &str) {
        let (config, held) = reload::plan(&self.config, wanted);
        if !held.is_empty() {
            let held: Vec<String> = held.iter().map(ToString::to_string).collect();
            warn!("reload: these need a restart and keep their running values: {}", held.join(", "));
        }
        let changed = reload::changed(&self.config, &config);
        let now = Instant::now();
        self.node.reconfigure(now, crate::agent::runtime::tuning(&config));
        if self.reporter.is_some() {
            self.reporter = Some(Reporter::reconfigured(self.reporter.take(), &config));
            self.telemetry = Some(match self.telemetry.take() {
                Some(t) => t.reconfigured(&config),
                None => Telemetry::new(&config),
            });
            self.jobs = Jobs::new(&config, now);
        }
        if config.log.level != self.config.log.level {
            process::set_log_filter(&format!("herd={},warn", config.log.level));
        }
        self.config = config;
        self.config_loaded = SystemTime::now();
        let changed = if changed.is_empty() { "nothing".to_owned() } else { changed.join(", ") };
        info!(file = %from, %changed, "config reloaded");
    }

    /// Step 3: the core's deadline.
    fn drive_timer(&mut self, now: Instant) {
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
    }

    /// Step 4: each periodic job that is due.
    fn drive_jobs(&mut self, now: Instant) {
        if Jobs::due(&mut self.jobs.flush, now)
            && let Some(r) = self.reporter.as_mut()
        {
            r.flush(self.node.cluster_size(), self.node.rejections(), now);
        }
        if Jobs::due(&mut self.jobs.telemetry, now)
            && let Some(t) = self.telemetry.as_mut()
        {
            let links = self.node.link_stats(now);
            t.report(&links, self.reporter.as_ref().and_then(Reporter::metrics));
            if let Some(reading) = &t.last {
                self.node.set_health(reading.health());
            }
        }
        if Jobs::due(&mut self.jobs.history, now)
            && let Some(h) = self.history.as_mut()
        {
            h.sample(&self.node, now, self.started);
        }
        if self.net.recheck.is_some_and(|at| now >= at) {
            self.drive_network(now);
        }
    }

    /// Step 5: sends everything the core queued, after writing the counter
    /// reservation it asked for, if any (so no counter goes out above a
    /// written ceiling). Never waits on the network: a full socket buffer
    /// drops the datagram, as the network could have.
    fn drive_transmit(&mut self) {
        if let Some(up_to) = self.node.poll_reserve() {
            self.drive_reserve(up_to);
        }
        while let Some(t) = self.node.poll_transmit() {
            match self.transport.try_send(t.dest, &t.payload) {
                Ok(n) => {
                    self.traffic.sent_datagrams += 1;
                    self.traffic.sent_bytes += n as u64;
                }
                Err(e) => {
                    self.send_errors += 1;
                    let gone = network::is_gone(&e);
                    if gone && self.waiting().is_none() {
                        // Netlink is usually first; this covers a host without it.
                        self.net.recheck = Some(Instant::now());
                    }
                    if gone && self.waiting().is_some() {
                        // Said once, when the agent started waiting.
                        debug!(to = %self.transport.addr(t.dest), error = %e, "cannot send: no network");
                    } else if self.send_log.allow(Instant::now()).is_some() {
                        let to = self.transport.addr(t.dest);
                        warn!(%to, error = %e, total = self.send_errors, "cannot send datagram");
                    }
                }
            }
        }
    }

    /// The state file write the core asked for: a few milliseconds (an
    /// fsync), about once per 10 minutes. A failure is logged (at most once
    /// per 10 s) and tried again 10 s later.
    fn drive_reserve(&mut self, up_to: u64) {
        let Some(dir) = self.config.node.state_dir.clone() else {
            // No state_dir, no reservations: the core never asks.
            return;
        };
        match super::state::write(&dir, up_to) {
            Ok(()) => {
                debug!(ceiling = up_to, "counter reserved");
                self.node.reserved(Instant::now(), up_to, true);
            }
            Err(e) => {
                self.node.reserved(Instant::now(), up_to, false);
                if self.state_log.allow(Instant::now()).is_some() {
                    warn!("{e:#}; the counter is not protected against a power cut until it works");
                }
            }
        }
    }

    /// Step 6: the core's events, to the reporter (or nowhere), and a
    /// stall the core noticed (see `core::node`), to the log.
    fn drive_events(&mut self) {
        if let (n, Some(late)) = self.node.stalls()
            && n > self.stalls_logged
        {
            self.stalls_logged = n;
            warn!(
                late_ms = late.as_millis() as u64,
                total = n,
                "this agent was not running for a while (a stalled process: a slow SD card, SIGSTOP); \
                 its baton waits for the cluster's views, peers are not judged for the time missed"
            );
        }
        while let Some(ev) = self.node.poll_event() {
            if let Some(r) = self.reporter.as_mut() {
                r.event(ev, self.node.cluster_size());
            }
        }
    }
}

/// The network as last followed (see `network::follow`).
struct NetView {
    /// `None` before the first look (at construction).
    state: Option<State>,
    /// When it changed to `state`.
    since: Instant,
    /// Changes followed since the first look.
    changes: u64,
    /// When to follow it again without a wake-up: while waiting, or without
    /// netlink.
    recheck: Option<Instant>,
}

impl NetView {
    fn status(&self, now: Instant, g: &GossipSection) -> snapshot::NetworkStatus {
        let state = self.state.as_ref();
        snapshot::NetworkStatus {
            state: if state.and_then(State::waiting).is_some() { "waiting" } else { "ready" }.to_owned(),
            waiting_for: state.and_then(State::waiting).map(ToString::to_string),
            interface: match state {
                Some(State::Ready { interface, .. }) => interface.clone(),
                _ => None,
            },
            address: state
                .map_or(network::advertised(g, std::net::Ipv4Addr::UNSPECIFIED), |s| s.ip(g))
                .to_string(),
            since_ms: now.saturating_duration_since(self.since).as_millis() as u64,
            changes: self.changes,
        }
    }
}

/// The periodic jobs. Each runs at most once per period; a late turn delays
/// the next run rather than bunching runs up.
#[derive(Default)]
struct Jobs {
    flush: Option<Every>,
    telemetry: Option<Every>,
    /// Only with a status endpoint (the page's charts).
    history: Option<Every>,
}

#[derive(Debug, Clone, Copy)]
struct Every {
    period: Duration,
    next: Instant,
}

impl Jobs {
    /// The first flush and telemetry run at `now`, as with `tokio::time::interval`.
    fn new(config: &Config, now: Instant) -> Jobs {
        let every = |period| Some(Every { period, next: now });
        Jobs {
            flush: every(config.statsd.flush_interval),
            telemetry: every(config.telemetry.interval),
            history: None,
        }
    }

    fn due(job: &mut Option<Every>, now: Instant) -> bool {
        match job {
            Some(e) if now >= e.next => {
                e.next = now + e.period;
                true
            }
            _ => false,
        }
    }

    /// When the loop must next wake: the earliest of the jobs and the core's
    /// deadline.
    fn next<R: rand::Rng>(&self, node: &Node<R>) -> Instant {
        let jobs = [self.flush, self.telemetry, self.history].map(|j| j.map(|e| e.next));
        let earliest = jobs.into_iter().chain([node.poll_timeout()]).flatten().min();
        earliest.unwrap_or_else(|| Instant::now() + IDLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::runtime::node_config;
    use crate::agent::statsd::spy;
    use crate::agent::transport::memory::{Endpoint, Network};
    use crate::core::membership::MemberState;

    type Lines = Box<dyn Fn() -> Vec<String>>;

    /// `ip` is advertised in heartbeats, so it must be the endpoint's.
    fn config(name: &str, ip: std::net::IpAddr) -> Config {
        let text = format!(
            "[node]\nname = \"{name}\"\ncluster = \"unit\"\n\
             [gossip]\nif_addr = \"{ip}\"\nsecret = \"unit secret\"\nheartbeat_interval = \"100ms\"\n\
             suspect_after = \"300ms\"\ndown_after = \"500ms\"\n\
             [links]\nprobe_interval = \"100ms\"\n\
             [baton]\nhold = \"5ms\"\n[status]\nlisten = \"\"\n\
             [telemetry]\nsysfs_root = \"/nonexistent\"\n"
        );
        Config::from_toml_str(&text, "unit.toml").unwrap()
    }

    /// A whole agent over endpoint `i`; its metrics go to a spy, whose lines
    /// the returned closure takes.
    fn agent(net: &Network, i: u8, name: &str) -> (Driver<Endpoint>, Lines) {
        let endpoint = net.endpoint(i);
        let config = config(name, endpoint.data.ip());
        let node =
            Node::new(node_config(&config, endpoint.data.port(), None), rand::make_rng(), Instant::now());
        let mut driver = Driver::new(&config, node, endpoint, Inputs::default());
        let (metrics, lines) = spy::metrics(&config, name);
        driver.set_reporter(Reporter::with_metrics(&config, metrics));
        (driver, Box::new(lines))
    }

    /// Turns both drivers until `done` holds; fails after 5 s.
    async fn drive_until(
        a: &mut Driver<Endpoint>,
        b: &mut Driver<Endpoint>,
        done: impl Fn(&Node<SmallRng>, &Node<SmallRng>) -> bool,
    ) {
        let end = Instant::now() + Duration::from_secs(5);
        while !done(&a.node, &b.node) {
            assert!(Instant::now() < end, "not done within 5 s");
            tokio::select! {
                _ = a.turn() => {}
                _ = b.turn() => {}
            }
        }
    }

    fn state(n: &Node<SmallRng>, peer: &str) -> Option<MemberState> {
        n.members().get(peer).map(|m| m.state)
    }

    /// A config handed in (`run_with`'s control channel) is applied as a
    /// reload: a keyring the peer does not share cuts the two apart (each
    /// sees the other down, its datagrams refused as auth), and the shared
    /// secret again brings them back.
    #[tokio::test]
    async fn a_config_handed_in_rekeys_like_a_reload() {
        let net = Network::default();
        let (mut a, _) = agent(&net, 0, "psa");
        let (mut b, _) = agent(&net, 1, "psb");
        let (tx, rx) = mpsc::channel(1);
        b.inputs.apply = Some(rx);
        let alive = Some(MemberState::Alive);
        drive_until(&mut a, &mut b, |a, b| state(a, "psb") == alive && state(b, "psa") == alive).await;

        let shared = b.config.clone();
        let mut apart = shared.clone();
        apart.gossip.keys = vec![crate::config::Secret(b"another secret".to_vec())];
        tx.try_send(apart).unwrap();
        let down = Some(MemberState::Down);
        drive_until(&mut a, &mut b, |a, b| state(a, "psb") == down && state(b, "psa") == down).await;
        assert!(a.node.rejections().auth > 0 && b.node.rejections().auth > 0);
        assert_eq!(b.node.key_ids().len(), 1);
        assert_ne!(b.node.key_ids(), a.node.key_ids());

        tx.try_send(shared).unwrap();
        drive_until(&mut a, &mut b, |a, b| state(a, "psb") == alive && state(b, "psa") == alive).await;
        assert_eq!(b.node.key_ids(), a.node.key_ids());
    }

    #[tokio::test]
    async fn two_drivers_over_memory_join_relay_one_baton_and_leave() {
        let net = Network::default();
        let (mut a, a_lines) = agent(&net, 0, "psa");
        let (mut b, b_lines) = agent(&net, 1, "psb");
        let alive = Some(MemberState::Alive);
        drive_until(&mut a, &mut b, |a, b| state(a, "psb") == alive && state(b, "psa") == alive).await;
        drive_until(&mut a, &mut b, |a, b| a.relay().high() >= 20 && b.relay().high() >= 20).await;

        // Each driver reported its own passes as `baton:<n>|g|#host:<node>`,
        // and together they are one rising counter: one baton.
        let gauges = |lines: Vec<String>, host: &str| -> Vec<u64> {
            let suffix = format!("|g|#host:{host}");
            let mut out = Vec::new();
            for l in lines.iter().filter(|l| l.starts_with("baton:")) {
                let n = l.strip_prefix("baton:").and_then(|r| r.strip_suffix(suffix.as_str()));
                out.push(n.unwrap_or_else(|| panic!("{l:?}")).parse::<u64>().unwrap());
            }
            out
        };
        let (from_a, from_b) = (gauges(a_lines(), "psa"), gauges(b_lines(), "psb"));
        assert!(!from_a.is_empty() && !from_b.is_empty(), "{from_a:?} {from_b:?}");
        assert_eq!(from_a.len() as u64, a.reporter.as_ref().unwrap().totals().passes);
        let mut all: Vec<u64> = from_a.iter().chain(&from_b).copied().collect();
        all.sort_unstable();
        let distinct = all.len();
        all.dedup();
        assert_eq!(all.len(), distinct, "a counter sent twice: {from_a:?} {from_b:?}");
        assert!(from_a.windows(2).all(|w| w[0] < w[1]), "{from_a:?}");

        a.leave();
        assert_eq!(a.node.poll_timeout(), None, "a node that left has no deadline");
        drive_until(&mut a, &mut b, |_, b| state(b, "psa") == Some(MemberState::Left)).await;
        let last = a_lines();
        assert!(last.iter().any(|l| l == "herd.members:2|g|#host:psa"), "final flush: {last:?}");
    }
}
