//! A deterministic N-node simulator that drives the real core (`herd::core`)
//! on a virtual clock, with a seeded network that can lose packets, partition
//! nodes and kill, restart, freeze or reload them. The same seed gives the
//! same run.
//!
//! Node `i` lives at 10.0.0.(i+1): gossip port 45892, data port 45893. A
//! `Dest::Group` datagram reaches every other running node (multicast), each
//! copy lost independently with probability `loss`; unicast reaches the node
//! that owns the address. Latency is 1-2 ms. Every event any node reports is
//! recorded with its virtual time and observer. relay.rs adds what the baton
//! tests build on it: a running relay, its checks and a random run.

pub mod relay;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use herd::core::baton::{BatonConfig, BatonEvent};
use herd::core::health::{self, Health};
use herd::core::links::LinkConfig;
use herd::core::membership::{Change, MemberState};
use herd::core::node::{Dest, Event, Fanout, Identity, Node, NodeConfig, Tuning, Via};
use herd::core::wire::BatonId;
use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};

pub const GOSSIP_PORT: u16 = 45892;
pub const DATA_PORT: u16 = 45893;

pub const SECOND: Duration = Duration::from_secs(1);
/// Every node's heartbeat interval (the template's).
pub const HEARTBEAT: Duration = SECOND;
/// Every node's `[baton] regenerate_after` (the template's).
pub const REGENERATE_AFTER: Duration = Duration::from_secs(3);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub struct SimNode {
    pub name: String,
    pub node: Option<Node<SmallRng>>,
    /// Its keyring (the first key seals); empty: plain datagrams.
    pub keys: Vec<Vec<u8>>,
    /// Incarnation of the current (or last) life.
    pub incarnation: u64,
    /// Overrides `template.tuning.baton.enabled` for this node.
    pub relays: Option<bool>,
    /// Its state file (a `[node] state_dir`): the counter ceiling written,
    /// which survives a kill. `None`: no state directory.
    pub state: Option<u64>,
    /// How far its wall clock is ahead of true time, µs (negative: behind).
    /// The simulator hands each node its wall clock before every turn, as
    /// the shell does.
    pub clock_skew_us: i64,
    /// Hand it no wall clock at all.
    pub no_wall_clock: bool,
    /// Its `poll_timeout` as of its last turn (the simulator's timer queue:
    /// asking every node every step would cost N² at 256 nodes).
    deadline: Option<Instant>,
    /// Frozen (SIGSTOP, a blocked SD card) until then: it handles nothing,
    /// and what reaches it waits in `backlog` (see [`Sim::freeze`]).
    frozen_until: Option<Instant>,
    backlog: Vec<(Via, SocketAddr, Vec<u8>)>,
}

/// True wall time at the simulator's start (2026-12-02T00:00:00Z), µs.
pub const WALL_AT_START_US: i64 = 1_796_169_600_000_000;

struct Packet {
    at: Instant,
    id: u64,
    to: usize,
    via: Via,
    src: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Packet {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.id) == (o.at, o.id)
    }
}
impl Eq for Packet {}
impl PartialOrd for Packet {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Packet {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.id).cmp(&(o.at, o.id))
    }
}

/// Datagrams and their payload bytes, one direction of one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub datagrams: u64,
    pub bytes: u64,
}

impl Traffic {
    fn add(&mut self, bytes: usize) {
        self.datagrams += 1;
        self.bytes += bytes as u64;
    }
}

/// One recorded event: when, which node saw it, what.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Duration,
    pub observer: usize,
    pub event: Event,
}

pub struct Sim {
    pub base: Instant,
    pub now: Instant,
    pub nodes: Vec<SimNode>,
    queue: BinaryHeap<Reverse<Packet>>,
    next_id: u64,
    rng: SmallRng,
    /// Probability that any one delivery is lost.
    pub loss: f64,
    /// Partition group per node; deliveries between groups are dropped.
    groups: Vec<u8>,
    pub log: Vec<Seen>,
    /// Every datagram sent, for replay tests: (sender, dest, bytes).
    pub capture: Option<Vec<(usize, Dest, Vec<u8>)>>,
    pub template: NodeConfig,
    pub seed: u64,
    /// Per node: what it sent (a multicast datagram counts once) and what
    /// reached it, since the start or [`Sim::reset_traffic`].
    pub sent: Vec<Traffic>,
    pub received: Vec<Traffic>,
}

pub fn addr(i: usize, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, (i + 1) as u8)), port)
}

/// Node `i`'s health in the simulator: a Pi 4 at 40 + i °C.
pub fn pi_health(i: usize) -> Health {
    Health {
        temp_dc: Some(400 + 10 * i as i16),
        throttle: Some(if i % 5 == 4 { health::UNDER_VOLTAGE } else { 0 }),
        load1_c: Some(30 + i as u16),
        mem_used_pct: Some(20),
        fan_rpm: None,
        root_readonly: Some(false),
        clock_synced: Some(true),
        uptime_s: Some(86_400 + i as u32),
        version: "0.1.0+0123456789ab".into(),
    }
}

pub fn name(i: usize) -> String {
    // psa, psb, ...; beyond 26, ps<i>.
    if i < 26 { format!("ps{}", (b'a' + i as u8) as char) } else { format!("ps{i}") }
}

impl Sim {
    /// `n` nodes with default timings (1 s / 3 s / 5 s), a shared secret and
    /// the baton off, not yet started.
    pub fn new(n: usize, seed: u64) -> Sim {
        let base = Instant::now();
        let identity = Identity {
            name: String::new(),
            cluster: "sim".into(),
            incarnation: 0,
            max_members: 256,
            data_port: DATA_PORT,
            // The simulated network has no spoofing: peers use the source.
            ip: std::net::Ipv4Addr::UNSPECIFIED,
            gossip_port: DATA_PORT,
            fanout: Fanout::Group,
        };
        let tuning = Tuning {
            keys: vec![b"sim secret".to_vec()],
            heartbeat_interval: HEARTBEAT,
            suspect_after: Duration::from_secs(3),
            down_after: Duration::from_secs(5),
            // Off unless a test turns it on, so membership tests see only
            // heartbeats, sightings and probes.
            baton: BatonConfig {
                enabled: false,
                main_node: String::new(),
                hold: Duration::from_millis(100),
                pass_timeout: Duration::from_millis(250),
                max_retries: 3,
                regenerate_after: REGENERATE_AFTER,
            },
            links: LinkConfig { probe_interval: Duration::from_secs(1), window: 60, sweep: false },
        };
        let template = NodeConfig { identity, tuning, reserved: None };
        Sim {
            base,
            now: base,
            nodes: (0..n)
                .map(|i| SimNode {
                    name: name(i),
                    node: None,
                    keys: template.tuning.keys.clone(),
                    incarnation: 0,
                    relays: None,
                    state: None,
                    clock_skew_us: 0,
                    no_wall_clock: false,
                    deadline: None,
                    frozen_until: None,
                    backlog: Vec::new(),
                })
                .collect(),
            queue: BinaryHeap::new(),
            next_id: 0,
            rng: SmallRng::seed_from_u64(seed),
            loss: 0.0,
            groups: vec![0; n],
            log: Vec::new(),
            capture: None,
            template,
            seed,
            sent: vec![Traffic::default(); n],
            received: vec![Traffic::default(); n],
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Node `i`'s wall clock now: true time plus its skew.
    pub fn wall_of(&self, i: usize) -> i64 {
        WALL_AT_START_US + self.elapsed().as_micros() as i64 + self.nodes[i].clock_skew_us
    }

    /// Starts (or restarts) node `i` now, with a new, higher incarnation.
    pub fn start(&mut self, i: usize) {
        let inc = (self.elapsed().as_millis() as u64 + 1).max(self.nodes[i].incarnation + 1);
        self.start_with_incarnation(i, inc);
    }

    pub fn start_with_incarnation(&mut self, i: usize, incarnation: u64) {
        let mut cfg = self.template.clone();
        cfg.identity.name = self.nodes[i].name.clone();
        cfg.tuning.keys = self.nodes[i].keys.clone();
        cfg.identity.incarnation = incarnation;
        if let Some(relays) = self.nodes[i].relays {
            cfg.tuning.baton.enabled = relays;
        }
        cfg.reserved = self.nodes[i].state;
        let rng = SmallRng::seed_from_u64(self.seed ^ (i as u64 * 7919) ^ incarnation);
        self.nodes[i].incarnation = incarnation;
        self.nodes[i].frozen_until = None;
        self.nodes[i].backlog.clear();
        self.nodes[i].node = Some(Node::new(cfg, rng, self.now));
        self.drain(i);
    }

    /// `n` nodes relaying at the shipped pace (`hold = "100ms"`), every one
    /// gossiping a Pi's health as agents do ([`Sim::set_health_all`] once the
    /// cluster has formed), run for `settle` after that.
    pub fn settled(n: usize, seed: u64, settle: Duration) -> Sim {
        let mut sim = Sim::new(n, seed).with_baton(Duration::from_millis(100));
        sim.start_all_within(HEARTBEAT);
        sim.run_for(2 * SECOND);
        sim.set_health_all();
        sim.run_for(settle);
        sim
    }

    /// Starts all nodes, each at a random phase within the first `spread`.
    pub fn start_all_within(&mut self, spread: Duration) {
        let mut order: Vec<(Duration, usize)> =
            (0..self.nodes.len()).map(|i| (spread.mul_f64(self.rng.random_range(0.0..1.0)), i)).collect();
        order.sort();
        for (at, i) in order {
            self.run_until(self.base + at);
            self.start(i);
        }
    }

    /// A Pi's health, different per node (temperature 40.0 + i °C), on every
    /// running node: what the agent sets after each sensor reading.
    pub fn set_health_all(&mut self) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if let Some(node) = n.node.as_mut() {
                node.set_health(pi_health(i));
            }
        }
    }

    /// A reload of node `i` (SIGHUP), as `agent::reload` applies one: its
    /// tuning changed by `change` and handed to the running node whole. A
    /// later life of the node starts with the same `[baton] enabled`.
    pub fn reconfigure(&mut self, i: usize, change: impl FnOnce(&mut Tuning)) {
        let now = self.now;
        let SimNode { node: Some(node), relays, .. } = &mut self.nodes[i] else { return };
        let mut tuning = node.tuning().clone();
        change(&mut tuning);
        *relays = Some(tuning.baton.enabled);
        node.reconfigure(now, tuning);
        self.drain(i);
    }

    /// `[baton] enabled` set to `on` in node `i`'s config, then reloaded.
    pub fn set_relaying(&mut self, i: usize, on: bool) {
        self.reconfigure(i, |t| t.baton.enabled = on);
    }

    /// Crash: the node stops at once, sending nothing more.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].node = None;
        self.nodes[i].deadline = None;
        self.nodes[i].frozen_until = None;
        self.nodes[i].backlog.clear();
    }

    /// Freezes node `i` for `d` from now, as SIGSTOP or an SD card blocking
    /// every process would: it handles nothing meanwhile, and datagrams
    /// reaching it queue up in its sockets. It then resumes as the agent's
    /// loop does (see [`Sim::resume`]).
    pub fn freeze(&mut self, i: usize, d: Duration) {
        if self.nodes[i].node.is_some() {
            self.nodes[i].frozen_until = Some(self.now + d);
        }
    }

    pub fn is_frozen(&self, i: usize) -> bool {
        self.nodes[i].frozen_until.is_some()
    }

    /// Node `i` runs again, turn after turn at this instant, in the order of
    /// the agent's driver (`agent::driver`): each turn takes one queued
    /// gossip datagram if there is one, else the timer if it is due, else a
    /// burst of the data socket's datagrams (up to 64, each answered at
    /// once); then the timer if it is due. The gossip socket is polled
    /// first, so a backlog of heartbeats is read before the data socket's
    /// passes and answers, and the late timer fires after the first of them.
    fn resume(&mut self, i: usize) {
        self.nodes[i].frozen_until = None;
        let mut backlog = std::mem::take(&mut self.nodes[i].backlog);
        loop {
            let now = self.now;
            let due = |n: &SimNode| n.node.as_ref().and_then(|n| n.poll_timeout()).is_some_and(|t| t <= now);
            let gossip = backlog.iter().position(|(via, ..)| *via == Via::Gossip);
            if let Some(k) = gossip {
                let (via, src, mut bytes) = backlog.remove(k);
                self.turn_datagram(i, via, src, &mut bytes);
            } else if due(&self.nodes[i]) {
                // A turn woken by the timer alone.
            } else if !backlog.is_empty() {
                let burst: Vec<_> = backlog.drain(..backlog.len().min(64)).collect();
                for (via, src, mut bytes) in burst {
                    self.turn_datagram(i, via, src, &mut bytes);
                }
            } else {
                break;
            }
            if due(&self.nodes[i]) {
                self.turn_timeout(i);
            }
        }
    }

    fn turn_datagram(&mut self, i: usize, via: Via, src: SocketAddr, bytes: &mut [u8]) {
        let wall = (!self.nodes[i].no_wall_clock).then(|| self.wall_of(i));
        if let Some(node) = self.nodes[i].node.as_mut() {
            if let Some(wall) = wall {
                node.set_wall_clock(self.now, wall);
            }
            node.handle(self.now, via, src, bytes);
            // As the driver's turn does: work that may run early rides on it.
            if node.poll_early().is_some_and(|t| t <= self.now) {
                node.handle_timeout(self.now);
            }
            self.drain(i);
        }
    }

    fn turn_timeout(&mut self, i: usize) {
        let wall = (!self.nodes[i].no_wall_clock).then(|| self.wall_of(i));
        if let Some(node) = self.nodes[i].node.as_mut() {
            if let Some(wall) = wall {
                node.set_wall_clock(self.now, wall);
            }
            node.handle_timeout(self.now);
            self.drain(i);
        }
    }

    /// Graceful leave, then stop.
    pub fn stop(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].node.as_mut() {
            node.leave(self.now);
        }
        self.drain(i);
        self.nodes[i].node = None;
        self.nodes[i].deadline = None;
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    /// Splits the cluster: node i is in `groups[i]`'s side.
    pub fn partition(&mut self, groups: &[u8]) {
        self.groups = groups.to_vec();
    }

    pub fn heal(&mut self) {
        self.groups = vec![0; self.nodes.len()];
    }

    pub fn node(&self, i: usize) -> &Node<SmallRng> {
        self.nodes[i].node.as_ref().expect("node is running")
    }

    /// What node `observer` thinks of node `subject`.
    pub fn state(&self, observer: usize, subject: usize) -> Option<MemberState> {
        self.node(observer).members().get(&self.nodes[subject].name).map(|m| m.state)
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Advances the virtual clock to `end`, delivering packets and firing
    /// timers in time order.
    pub fn run_until(&mut self, end: Instant) {
        loop {
            let next_packet = self.queue.peek().map(|Reverse(p)| p.at);
            let next_timer = self.nodes.iter().filter_map(|n| n.frozen_until.or(n.deadline)).min();
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if next_packet == Some(next) {
                let Reverse(mut p) = self.queue.pop().expect("peeked");
                if self.nodes[p.to].node.is_some() {
                    self.received[p.to].add(p.bytes.len());
                }
                if self.nodes[p.to].frozen_until.is_some() {
                    self.nodes[p.to].backlog.push((p.via, p.src, p.bytes));
                } else {
                    self.turn_datagram(p.to, p.via, p.src, &mut p.bytes);
                }
            } else {
                for i in 0..self.nodes.len() {
                    match self.nodes[i].frozen_until {
                        Some(t) if t <= self.now => self.resume(i),
                        Some(_) => {}
                        None if self.nodes[i].deadline.is_some_and(|t| t <= self.now) => self.turn_timeout(i),
                        None => {}
                    }
                }
            }
        }
        self.now = self.now.max(end);
    }

    /// Injects raw bytes to node `to` as if sent from `src`.
    pub fn inject(&mut self, to: usize, via: Via, src: SocketAddr, bytes: Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse(Packet { at: self.now, id, to, via, src, bytes }));
    }

    fn drain(&mut self, i: usize) {
        let SimNode { node: Some(node), state, deadline, .. } = &mut self.nodes[i] else {
            return;
        };
        // As the shell does: the reservation is written before anything is sent.
        if let Some(up_to) = node.poll_reserve() {
            *state = Some(up_to);
            node.reserved(self.now, up_to, true);
        }
        let mut out = Vec::new();
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        while let Some(event) = node.poll_event() {
            self.log.push(Seen { at: self.now - self.base, observer: i, event });
        }
        *deadline = node.poll_timeout();
        for t in out {
            self.sent[i].add(t.payload.len());
            if let Some(cap) = self.capture.as_mut() {
                cap.push((i, t.dest, t.payload.clone()));
            }
            match t.dest {
                Dest::Group => {
                    for to in 0..self.nodes.len() {
                        if to != i {
                            self.deliver(i, to, Via::Gossip, addr(i, GOSSIP_PORT), t.payload.clone());
                        }
                    }
                }
                Dest::Gossip(a) | Dest::Data(a) => {
                    let (via, src) = match t.dest {
                        Dest::Data(_) => (Via::Data, addr(i, DATA_PORT)),
                        _ => (Via::Gossip, addr(i, GOSSIP_PORT)),
                    };
                    let to = (0..self.nodes.len()).find(|&n| addr(n, a.port()) == a);
                    let port_ok =
                        matches!((via, a.port()), (Via::Data, DATA_PORT) | (Via::Gossip, GOSSIP_PORT));
                    if let (Some(to), true) = (to, port_ok) {
                        self.deliver(i, to, via, src, t.payload);
                    }
                }
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, via: Via, src: SocketAddr, bytes: Vec<u8>) {
        if self.groups[from] != self.groups[to] || self.rng.random_bool(self.loss.clamp(0.0, 1.0)) {
            return;
        }
        let latency = Duration::from_micros(1000 + self.rng.random_range(0..1000));
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse(Packet { at: self.now + latency, id, to, via, src, bytes }));
    }

    /// Member events matching `pred`, as (time, observer, subject name).
    pub fn member_events(&self, pred: impl Fn(&Change) -> bool) -> Vec<(Duration, usize, String)> {
        self.log
            .iter()
            .filter_map(|s| match &s.event {
                Event::Member(ev) if pred(&ev.change) => Some((s.at, s.observer, ev.name.clone())),
                _ => None,
            })
            .collect()
    }

    /// The first time after `after` at which `observer` saw `subject` change per `pred`.
    pub fn first(
        &self,
        observer: usize,
        subject: usize,
        after: Duration,
        pred: impl Fn(&Change) -> bool,
    ) -> Option<Duration> {
        let name = &self.nodes[subject].name;
        self.member_events(pred)
            .into_iter()
            .find(|(at, o, n)| *at >= after && *o == observer && n == name)
            .map(|(at, _, _)| at)
    }

    /// Turns the baton on for every node, with this `hold`.
    pub fn with_baton(mut self, hold: Duration) -> Sim {
        self.template.tuning.baton.enabled = true;
        self.template.tuning.baton.hold = hold;
        self
    }

    /// Running nodes that hold a baton: (node, baton, counter, not mid-pass).
    pub fn holders(&self) -> Vec<(usize, BatonId, u64, bool)> {
        (0..self.nodes.len())
            .filter_map(|i| {
                let relay = self.nodes[i].node.as_ref()?.relay();
                let (id, counter) = relay.holding()?;
                Some((i, id, counter, relay.holding_still()))
            })
            .collect()
    }

    /// Baton events, as (time, observer, event).
    pub fn baton_events(&self) -> Vec<(Duration, usize, BatonEvent)> {
        self.log
            .iter()
            .filter_map(|s| match &s.event {
                Event::Baton(ev) => Some((s.at, s.observer, ev.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every `Passed` counter, as (time, passer, counter), in time order.
    pub fn passes(&self) -> Vec<(Duration, usize, u64)> {
        self.baton_events()
            .into_iter()
            .filter_map(|(at, o, ev)| match ev {
                BatonEvent::Passed { counter } => Some((at, o, counter)),
                _ => None,
            })
            .collect()
    }

    /// Counts traffic from now on.
    pub fn reset_traffic(&mut self) {
        self.sent.fill(Traffic::default());
        self.received.fill(Traffic::default());
    }

    pub fn rng(&mut self) -> &mut impl Rng {
        &mut self.rng
    }
}
