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
//!    the control inputs (shutdown, new heartbeat targets, a network change
//!    from netlink, status requests, reloads: SIGHUP or a config handed in),
//!    the gossip socket, the one timer (a timerfd: `timer`), the data
//!    socket. The control inputs are polled only in a turn after one of
//!    them woke the loop or gave it something (`control`): at full speed a
//!    turn is one datagram, and polling six idle channels each time was a
//!    twentieth of a pass.
//! 2. the input: datagrams into the core (on the data path, the baton's,
//!    what each caused is sent at once and the rest of the burst is taken
//!    before going back to epoll), seeds, the network followed again
//!    (`drive_network`), or a snapshot for the endpoint;
//! 3. `drive_timer`: the core's deadline, checked after every
//!    input so a busy socket cannot starve it, and the core's work that may
//!    run early (`Node::poll_early`: a probe round) done in this turn
//!    rather than in a wake-up of its own; then `drive_stall`: a stall
//!    the core noticed (this process was not running) is logged, and the
//!    metric lines buffered before it are dropped before a flush sends them;
//! 4. `drive_jobs`: the periodic jobs (StatsD flush, telemetry, the page's
//!    history; the network re-checked while the agent waits for one), each
//!    in a window either side of its time, so most ride on a turn taken
//!    anyway;
//! 5. `drive_transmit`: everything the core queued;
//! 6. `drive_events`: the core's events to the [`Reporter`].
//!
//! The driver drives; what each step hands over is done elsewhere: counting
//! and reporting ([`Reporter`]), following the network and saying its
//! changes ([`Followed`]), applying a new config ([`Running`]), writing the
//! state file ([`Store`]).
//!
//! Must not: block, spawn tasks, or keep a timer per purpose (one timer at
//! the earliest of the core's deadline and the jobs' latest times). An idle
//! agent's cost is its wake-ups (a context switch costs it more than the
//! instructions of a turn), so whatever can wait for a turn does.

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::SmallRng;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::history::{self, History};
use super::network::{self, Followed};
use super::reload::Running;
use super::report::Reporter;
use super::snapshot::{self, SnapshotRequest};
use super::state::Store;
use super::telemetry::Telemetry;
use super::transport::{self, Received, Transport};
use crate::config::Config;
use crate::core::node::{Event, Node, Via};
use control::Control;
use timer::Timer;

/// Datagrams larger than this are truncated by the kernel and then refused by
/// the codec as oversized; 64 KiB covers any UDP payload.
const RECV_BUF: usize = 65536;
/// Most data-socket datagrams handled in one turn before the other sources
/// get a look in.
const DRAIN: usize = 64;
/// When nothing at all is due (only after the core left): the timer's
/// deadline, so it never fires for nothing.
const IDLE: Duration = Duration::from_secs(3600);

/// The most a periodic job runs before or after its time (see `Jobs::due`).
const JOB_SLACK: Duration = Duration::from_millis(100);

/// A deadline that moved later by more than this sets the timer again
/// (see `Driver::arm_timer`).
const REARM_LATER: Duration = Duration::from_millis(5);

/// What the driver listens to besides the transport. A source that is `None`
/// is not polled (a closed channel would wake every turn).
#[derive(Default)]
pub struct Inputs {
    /// Completes once: leave the cluster (`setup::start_shutdown`).
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
    timer: Timer,
    jobs: Jobs,
    /// Every count; quiet for `herd ping` (events dropped, no metrics).
    reporter: Reporter,
    /// `None` for `herd ping`, as are the periodic jobs.
    telemetry: Option<Telemetry>,
    /// The page's charts: only with a status endpoint.
    history: Option<History>,
    /// The unicast heartbeat targets, which the advertised IP may follow.
    seeds: Vec<SocketAddr>,
    net: Followed,
    /// The config running now (`[gossip]` for following the network too).
    running: Running,
    state: Store,
    started: Instant,
    /// Stalls the core has noticed and this driver has logged.
    stalls_logged: u64,
    /// Receive buffers, left uninitialised: the transport writes a datagram
    /// at their start, so their pages cost memory only as far as datagrams
    /// reach (zeroed, the two were 128 KiB of every agent's memory).
    gbuf: Box<[MaybeUninit<u8>]>,
    dbuf: Box<[MaybeUninit<u8>]>,
    control: Control,
}

impl<T: Transport> Driver<T> {
    /// The whole agent of `herd run`: every event reported and counted,
    /// metrics flushed, telemetry read, a derived IP re-checked.
    pub fn new(config: &Config, node: Node<SmallRng>, transport: T, inputs: Inputs) -> Driver<T> {
        let now = Instant::now();
        let mut d = Driver::quiet(config, node, transport, inputs);
        d.reporter = Reporter::new(config);
        d.telemetry = Some(Telemetry::new(config));
        d.jobs = Jobs::new(config, now);
        // Only for a page to show (not for the demo's in-process snapshots).
        if config.status.listen.is_some() && d.inputs.status.is_some() {
            d.history = Some(History::new());
            d.jobs.history = Some(Every::around(history::EVERY, now));
        }
        d
    }

    /// Only the core and its inputs: a quiet reporter (traffic counted,
    /// nothing reported), no telemetry, no periodic jobs (`herd ping`, which
    /// must not send metrics).
    pub fn quiet(config: &Config, node: Node<SmallRng>, transport: T, inputs: Inputs) -> Driver<T> {
        let jobs = Jobs::default();
        let timer = Timer::new(jobs.next(&node));
        let mut d = Driver {
            node,
            transport,
            inputs,
            timer,
            jobs,
            reporter: Reporter::quiet(config),
            telemetry: None,
            history: None,
            seeds: Vec::new(),
            net: Followed::new(Instant::now()),
            running: Running::new(config.clone()),
            state: Store::new(config),
            started: Instant::now(),
            stalls_logged: 0,
            gbuf: Box::new_uninit_slice(RECV_BUF),
            dbuf: Box::new_uninit_slice(RECV_BUF),
            control: Control::new(),
        };
        // Before the first heartbeat: the group joined, the address known
        // (or what the agent waits for said).
        d.drive_network(Instant::now());
        d
    }

    /// What the agent waits for before it can reach the cluster, if anything.
    pub fn waiting(&self) -> Option<&network::Waiting> {
        self.net.waiting()
    }

    /// The file the config was read from, which a reload reads again.
    pub fn set_config_file(&mut self, path: Option<PathBuf>) {
        self.running.set_file(path);
    }

    #[cfg(test)]
    pub(crate) fn set_reporter(&mut self, reporter: Reporter) {
        self.reporter = reporter;
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
        // The turn's clock: read once when it woke, again only for each
        // further datagram it takes (a system call's worth each, on a Pi).
        let mut now = Instant::now();
        self.stamp_wall_clock(now);
        let mut asked = None;
        match wake {
            Wake::Shutdown => return Turn::Stop,
            Wake::Datagram(via, r) => now = self.drive_recv(now, via, r),
            Wake::Deadline => {}
            Wake::Seeds(seeds) => self.set_seeds(seeds),
            Wake::Network => self.drive_network(now),
            // Answered at the end of the turn, so the picture includes what
            // the turn did (a pass that was due is sent, not still "held").
            Wake::Status(reply) => asked = Some(reply),
            Wake::Reload => {
                if let Some((config, from)) = self.running.read_again() {
                    self.apply(config, &from);
                }
                now = Instant::now();
            }
            Wake::Apply(config) => {
                self.apply(*config, "memory");
                now = Instant::now();
            }
        }
        self.drive_timer(now);
        self.drive_stall();
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
    fn stamp_wall_clock(&mut self, now: Instant) {
        let wall = SystemTime::now();
        let us = match wall.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => after.as_micros() as i64,
            Err(before) => -(before.duration().as_micros() as i64),
        };
        self.node.set_wall_clock(now, us);
    }

    /// Graceful leave: the core hands off the baton and announces the leave,
    /// which is sent at once; then the last events, a final metrics flush
    /// and the summary line.
    pub fn leave(&mut self) {
        let now = Instant::now();
        self.node.leave(now);
        self.drive_transmit();
        self.drive_events();
        self.reporter.flush(self.node.cluster_size(), self.node.rejections(), now);
        self.reporter.left(self.node.rejections());
    }

    /// Sets the timer when the deadline comes earlier, after it fired, or
    /// when the deadline moved later by more than [`REARM_LATER`]: at full
    /// speed every pass moves the core's deadline later by microseconds
    /// (`pass_timeout` after the pass), and setting it every pass would
    /// cost a system call each; at an idle agent's pace a timer left early
    /// wakes the process for nothing, which costs it more.
    fn arm_timer(&mut self) {
        let next = self.jobs.next(&self.node);
        let deadline = self.net.recheck().map_or(next, |at| next.min(at));
        let armed = self.timer.deadline();
        if deadline < armed || self.timer.is_elapsed() || deadline > armed + REARM_LATER {
            self.timer.reset(deadline);
        }
    }

    /// Step 1: until one source is ready (order: see the module doc).
    async fn wait(&mut self) -> Wake {
        let Driver { transport, inputs, timer, gbuf, dbuf, control, .. } = self;
        poll_fn(|cx| {
            if control.take_due(cx)
                && let Some(wake) = poll_control(inputs, &mut control.context())
            {
                control.again();
                return Poll::Ready(wake);
            }
            if let Poll::Ready(r) = transport.poll_recv(Via::Gossip, cx, gbuf) {
                return Poll::Ready(Wake::Datagram(Via::Gossip, r));
            }
            if timer.poll(cx).is_ready() {
                return Poll::Ready(Wake::Deadline);
            }
            transport.poll_recv(Via::Data, cx, dbuf).map(|r| Wake::Datagram(Via::Data, r))
        })
        .await
    }

    /// Step 2, datagrams: into the core. On the data path (the baton's) what
    /// each datagram caused is sent at once, and up to [`DRAIN`] queued ones
    /// are taken before going back to epoll. The first is handled at `now`
    /// (when the turn woke), each further one when it was taken; the time
    /// of the last is returned.
    fn drive_recv(&mut self, mut now: Instant, via: Via, mut r: Received) -> Instant {
        let rounds = if via == Via::Data { DRAIN } else { 1 };
        for round in 0..rounds {
            match r {
                Ok((n, src)) => {
                    if round > 0 {
                        now = Instant::now();
                    }
                    self.reporter.received(n);
                    let buf = if via == Via::Data { &mut self.dbuf } else { &mut self.gbuf };
                    // SAFETY: the transport just returned this datagram's length
                    // for this buffer (`Transport`'s contract).
                    let datagram = unsafe { transport::filled(buf, n) };
                    self.node.handle(now, via, src, datagram);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return now,
                Err(e) => {
                    match via {
                        Via::Gossip => debug!(error = %e, "gossip socket receive error"),
                        Via::Data => debug!(error = %e, "data socket receive error"),
                    }
                    return now;
                }
            }
            if via == Via::Gossip {
                return now;
            }
            self.drive_transmit();
            r = self.transport.try_recv(Via::Data, &mut self.dbuf);
        }
        now
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
    /// waiting): the group joined where heartbeats go out, and a new address
    /// announced to the cluster at once (the change is said by `network`).
    fn drive_network(&mut self, now: Instant) {
        let g = &self.running.config().gossip;
        let state = self.transport.follow_network(g, &self.seeds);
        if let Some(ip) = self.net.update(state, g, self.inputs.network.is_some(), now) {
            self.node.set_ip(now, ip);
        }
    }

    /// Step 2, a status request: the picture of this agent now.
    fn snapshot(&self) -> snapshot::Snapshot {
        snapshot::build(snapshot::Inputs {
            node: &self.node,
            now: Instant::now(),
            started: self.started,
            reading: self.telemetry.as_ref().and_then(|t| t.last.as_ref()),
            totals: *self.reporter.totals(),
            traffic: self.reporter.traffic(),
            config_file: self.running.file(),
            config_loaded: self.running.loaded(),
            history: self.history.as_ref(),
            network: self.net.status(Instant::now(), &self.running.config().gossip),
        })
    }

    /// Step 2, a new config (SIGHUP's file read again, or one handed in by
    /// `agent::run_with`), applied as `reload` says; this driver's own parts
    /// (metrics, telemetry, the jobs' periods) rebuilt from what now runs.
    fn apply(&mut self, wanted: Config, from: &str) {
        let now = Instant::now();
        let Driver { running, node, reporter, telemetry, jobs, .. } = self;
        running.apply(wanted, from, node, now, |config| {
            reporter.reconfigure(config);
            if let Some(t) = telemetry.take() {
                *telemetry = Some(t.reconfigured(config));
                // The charts' sampling depends on no reloadable key: it goes on.
                *jobs = Jobs { history: jobs.history, ..Jobs::new(config, now) };
            }
        });
    }

    /// Step 3: the core's deadline, or work of the core that may run early
    /// and rides on this turn (see `Node::poll_early`).
    fn drive_timer(&mut self, now: Instant) {
        if self.node.poll_early().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
    }

    /// Step 4: each periodic job that is due.
    fn drive_jobs(&mut self, now: Instant) {
        if Jobs::due(&mut self.jobs.flush, now) {
            self.reporter.flush(self.node.cluster_size(), self.node.rejections(), now);
        }
        if Jobs::due(&mut self.jobs.telemetry, now)
            && let Some(t) = self.telemetry.as_mut()
        {
            let links = self.node.link_stats(now);
            t.report(&links, self.reporter.metrics());
            if let Some(reading) = &t.last {
                self.node.set_health(reading.health());
            }
        }
        if Jobs::due(&mut self.jobs.history, now)
            && let Some(h) = self.history.as_mut()
        {
            h.sample(&self.node, now, self.started);
        }
        if self.net.recheck().is_some_and(|at| now >= at) {
            self.drive_network(now);
        }
    }

    /// Step 5: sends everything the core queued, after writing the counter
    /// reservation it asked for, if any (so no counter goes out above a
    /// written ceiling). Never waits on the network: a full socket buffer
    /// drops the datagram, as the network could have.
    fn drive_transmit(&mut self) {
        // The state file write the core asked for (see `state::Store`).
        if let Some(up_to) = self.node.poll_reserve()
            && let Some(written) = self.state.reserve(up_to)
        {
            self.node.reserved(Instant::now(), up_to, written);
        }
        while let Some(t) = self.node.poll_transmit() {
            let sent = self.transport.try_send(t.dest, &t.payload);
            self.node.recycle(t.payload);
            match sent {
                Ok(n) => self.reporter.sent(n),
                Err(e) => {
                    let gone = network::is_gone(&e);
                    if gone && self.waiting().is_none() {
                        // Netlink is usually first; this covers a host without it.
                        self.net.recheck_now(Instant::now());
                    }
                    // Gone while waiting: said once, when the agent started to wait.
                    let no_network = gone && self.waiting().is_some();
                    self.reporter.send_failed(self.transport.addr(t.dest), &e, no_network);
                }
            }
        }
    }

    /// Step 3b: a stall the core noticed (see `core::node`): said in the
    /// log, and the metric lines buffered before it dropped unsent, before
    /// the flush job could send them. Their values are from before the
    /// stall (a baton gauge the cluster has since passed), and StatsD stamps
    /// a line when it arrives.
    fn drive_stall(&mut self) {
        let (n, late) = self.node.stalls();
        let Some(late) = late.filter(|_| n > self.stalls_logged) else { return };
        self.stalls_logged = n;
        let dropped = self.reporter.metrics().map_or(0, |m| m.discard());
        warn!(
            late_ms = late.as_millis() as u64,
            total = n,
            dropped_lines = dropped,
            "this agent was not running for a while (a stalled process: a slow SD card, SIGSTOP); \
             its baton waits for the cluster's views, peers are not judged for the time missed, \
             metric lines from before it are dropped"
        );
    }

    /// Step 6: the core's events, to the reporter (or nowhere).
    fn drive_events(&mut self) {
        while let Some(ev) = self.node.poll_event() {
            // Only a member event's line names the cluster's size: counting
            // the members for every pass's event was a hundredth of a pass.
            let size = if matches!(ev, Event::Member(_)) { self.node.cluster_size() } else { 0 };
            self.reporter.event(ev, size);
        }
    }
}

/// The periodic jobs, each run in a window around its time (see
/// `Jobs::due`), so that most run in a turn the loop takes anyway.
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
    /// When: `Early` for a job whose period is a promise (the flush: a
    /// recorded metric is sent within `flush_interval`), `Around` for one
    /// whose period is only a rate (telemetry, the charts).
    window: Window,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    /// Up to the slack before its time, never after; the next time is a
    /// period after the run, so no two runs are more than a period apart.
    Early,
    /// Up to the slack before or after its time; the next time is a period
    /// after this one's, so the job keeps its rate however early or late
    /// each run was.
    Around,
}

impl Jobs {
    /// The first flush and telemetry run at `now`, as with `tokio::time::interval`.
    fn new(config: &Config, now: Instant) -> Jobs {
        Jobs {
            flush: Some(Every { period: config.statsd.flush_interval, next: now, window: Window::Early }),
            telemetry: Some(Every::around(config.telemetry.interval, now)),
            history: None,
        }
    }

    /// Whether `job` runs in this turn: within its slack (an eighth of its
    /// period, at most [`JOB_SLACK`]) of its time, as its [`Window`] says,
    /// so that it runs in a turn the loop takes anyway (a pass, a datagram)
    /// rather than waking the process for itself. After a stop longer than
    /// the slack a job runs once and starts again from then, rather than
    /// bunching runs up.
    fn due(job: &mut Option<Every>, now: Instant) -> bool {
        match job {
            Some(e) if now + e.slack() >= e.next => {
                let next = e.next + e.period;
                e.next = match e.window {
                    // On time (within the window): the grid holds.
                    Window::Around if now <= e.next + e.slack() => next,
                    // Early-only jobs, and a late turn (the process was
                    // stopped): a period from now, so no two runs bunch up.
                    _ => now + e.period,
                };
                true
            }
            _ => false,
        }
    }

    /// When the loop must next wake: the earliest of the jobs' latest times
    /// and the core's deadline.
    fn next<R: rand::Rng>(&self, node: &Node<R>) -> Instant {
        let jobs = [self.flush, self.telemetry, self.history].map(|j| j.map(|e| e.latest()));
        let earliest = jobs.into_iter().chain([node.poll_timeout()]).flatten().min();
        earliest.unwrap_or_else(|| Instant::now() + IDLE)
    }
}

impl Every {
    /// A job whose period is only a rate, first due at `next`.
    fn around(period: Duration, next: Instant) -> Every {
        Every { period, next, window: Window::Around }
    }

    fn slack(&self) -> Duration {
        (self.period / 8).min(JOB_SLACK)
    }

    /// The end of its window: when the timer must wake the loop for it.
    fn latest(&self) -> Instant {
        match self.window {
            Window::Early => self.next,
            Window::Around => self.next + self.slack(),
        }
    }
}

/// The first control input that is ready, in order (see the module doc).
fn poll_control(inputs: &mut Inputs, cx: &mut Context<'_>) -> Option<Wake> {
    if let Some(Poll::Ready(_)) = inputs.shutdown.as_mut().map(|rx| Pin::new(rx).poll(cx)) {
        return Some(Wake::Shutdown);
    }
    if let Some(Poll::Ready(Some(s))) = inputs.seeds.as_mut().map(|rx| rx.poll_recv(cx)) {
        return Some(Wake::Seeds(s));
    }
    if let Some(Poll::Ready(changed)) = inputs.network.as_mut().map(|rx| rx.poll_recv(cx)) {
        if changed.is_none() {
            // The watch ended (logged there): re-checked on a timer now.
            inputs.network = None;
        }
        return Some(Wake::Network);
    }
    if let Some(Poll::Ready(Some(reply))) = inputs.status.as_mut().map(|rx| rx.poll_recv(cx)) {
        return Some(Wake::Status(reply));
    }
    if let Some(Poll::Ready(Some(()))) = inputs.reload.as_mut().map(|rx| rx.poll_recv(cx)) {
        return Some(Wake::Reload);
    }
    if let Some(Poll::Ready(Some(c))) = inputs.apply.as_mut().map(|rx| rx.poll_recv(cx)) {
        return Some(Wake::Apply(Box::new(c)));
    }
    None
}

mod control;
mod timer;

#[cfg(test)]
mod tests;
