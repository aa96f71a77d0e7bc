//! node: one herd node as a state machine. Routes each datagram through the
//! codec and the member table, sends heartbeats, drives the failure detector
//! and the baton relay and carries out what they ask for (`core::effects`),
//! counts and rate-limits rejections, and merges every deadline into one
//! `poll_timeout`.
//!
//! Traffic per node is the same whatever the cluster's size (SWIM: see
//! `core::probe`), once every member speaks [`VERSION`]:
//! - one probe per `[links] probe_interval` (and the ack of the one probe it
//!   gets), which also measures the links;
//! - heartbeats (addresses, relay flag, baton view; multicast) at start, two
//!   more an interval apart, then every `heartbeat_interval` × max(10, N/2);
//!   a unicast one to each newcomer (so it learns the cluster at once) and
//!   a multicast one soon after a down member is heard again (a healed
//!   partition: both sides learn each other in one round);
//! - the baton's holder announces it in a heartbeat when none was heard for
//!   a heartbeat interval (about one per interval for the whole cluster);
//! - news of suspects and downs, multicast, only when they happen.
//!
//! A datagram carrying this node's name from another life is refused and
//! recorded (`core::conflict`): nodes that share a name cannot be members
//! of each other, and the status endpoint shows it.
//!
//! A member of the previous release behaves as this release does (it fails
//! members by the same probes and news, and heartbeats as seldom); only its
//! envelope is older, so what a mixed cluster needs is the wire version
//! per member below, and nothing else.
//!
//! The driver's contract (as quinn-proto's: the state machine does no I/O;
//! the driver feeds it and drains it):
//! - call [`Node::handle`] for every datagram received, with the socket it
//!   came in on;
//! - call [`Node::handle_timeout`] by `poll_timeout()`, and at any turn
//!   taken anyway once `now >= poll_early()`: some work (a probe round) may
//!   run anywhere in a window, and rides on a turn rather than waking the
//!   process for itself;
//! - after either, drain [`Node::poll_transmit`] and [`Node::poll_event`].
//!
//! Wire versions (see `wire`): each member records the newest version its
//! current life is known to understand (the highest it sent or announced).
//! Unicast goes to a member in that version, a reply in its request's, and
//! what goes to the whole cluster (heartbeats, leaves) in [`VERSION`] only
//! when every live member understands it, else in [`MIN_VERSION`]: a mixed
//! cluster of this release and the previous one is one cluster. A member
//! heard only in the old version is sent one probe in the new one per life
//! (with the next heartbeat): a node of this release answers it in kind, a
//! node of the previous release drops it (its one `unsupported protocol
//! version` rejection per upgraded peer).
//!
//! Must not: do I/O, read a clock, draw OS randomness (the RNG is injected, so
//! a seeded simulation is reproducible).
//!
//! Files, one idea each:
//! - `config`: what the shell tells the node: its identity for this life,
//!   and its tuning, which a reload replaces whole;
//! - `inbound`: one datagram's path, from the codec to the member table and
//!   on, by message;
//! - `heartbeat`: what the node tells the whole cluster, and when;
//! - `outbound`: every datagram sent: its wire version, sealing, fan-out;
//! - `effects`: the one place where what the machines asked for is carried
//!   out;
//! - `detector`: the failure detector's turn, verdicts, news and checks;
//! - `relay`: the relay's context, the holder's announcements,
//!   reservations;
//! - `rejections`: refused datagrams counted and logged, namesakes;
//! - `stall`: what a node does when its own turn comes late.
//!
//! [`VERSION`]: crate::core::wire::VERSION
//! [`MIN_VERSION`]: crate::core::wire::MIN_VERSION

mod config;
mod detector;
mod effects;
mod heartbeat;
mod inbound;
mod outbound;
mod rejections;
mod relay;
mod stall;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::core::baton::{BatonEvent, Relay};
use crate::core::conflict::{Conflicts, Heard};
use crate::core::effects::Effects;
use crate::core::health::{Board, Health};
use crate::core::limit::LogLimiter;
use crate::core::links::{LinkStats, Links};
use crate::core::membership::{MemberEvent, Members};
use crate::core::probe::Prober;
use crate::core::reserve::Reservations;
use crate::core::wire::{Codec, Message};
use heartbeat::{OWN_HEARTBEATS, START_BURST};

pub use config::{Fanout, Identity, NodeConfig, Tuning};
pub use rejections::{REJECT_LOG_EVERY, Reason, Rejections};

/// Most sent datagrams' buffers kept for reuse: what one turn sends at full
/// speed (a pass, an ack, a probe) with room to spare.
const SPARE: usize = 8;
/// A buffer larger than this (a full heartbeat's) is freed, not kept.
const RECYCLED_CAPACITY: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The shared gossip port (multicast, broadcast, static/DNS unicast).
    Gossip,
    /// This node's own unicast data port.
    Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// The multicast group (or broadcast address), from the gossip socket.
    Group,
    /// Unicast from the gossip socket (static and DNS strategies).
    Gossip(SocketAddr),
    /// Unicast from the data socket.
    Data(SocketAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: Dest,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Member(MemberEvent),
    Baton(BatonEvent),
    /// A refused datagram worth a log line: at most one per source IP per
    /// [`REJECT_LOG_EVERY`]; `suppressed` counts the ones not logged since.
    Rejected {
        source: IpAddr,
        reason: Reason,
        suppressed: u64,
        total: u64,
    },
    /// Another node uses this node's name: logged at once, then at most
    /// once per [`crate::core::conflict::LOG_EVERY`] per other node while it lasts (its
    /// datagrams are counted as `name_conflict` rejections, not reported as
    /// [`Event::Rejected`]).
    NameConflict(Heard),
    /// A node that used this node's name left the cluster: that conflict is
    /// over (one that falls silent ends after [`Node::conflict_window`]).
    NameConflictOver {
        incarnation: u64,
        addr: IpAddr,
    },
}

pub struct Node<R> {
    identity: Identity,
    tuning: Tuning,
    codec: Codec,
    members: Members,
    relay: Relay,
    /// The member whose heartbeat last said it holds the baton, and when.
    holder_hint: Option<(String, Instant)>,
    links: Links,
    rng: R,
    seq: u64,
    hb_seq: u32,
    next_heartbeat: Instant,
    last_heartbeat: Option<Instant>,
    seeds: Vec<SocketAddr>,
    /// What the member table, the failure detector and the relay asked
    /// for and the node has not carried out yet: empty between turns (see
    /// `effects`).
    effects: Effects,
    outbox: VecDeque<Transmit>,
    /// Sent datagrams' buffers, handed back by [`Node::recycle`] for the
    /// next encodes (at most [`SPARE`]): a pass allocates none.
    spare: Vec<Vec<u8>>,
    events: VecDeque<Event>,
    rejections: Rejections,
    reservations: Option<Reservations>,
    /// A ceiling to write before anything else is sent (see [`Node::poll_reserve`]).
    reserve: Option<u64>,
    /// One limiter per source IP (at most `rejections::REJECT_SOURCES`).
    reject_logs: HashMap<IpAddr, LogLimiter>,
    /// Other nodes heard using this node's name.
    conflicts: Conflicts,
    /// The IPs advertised by the last heartbeats sent to the cluster (at
    /// most `heartbeat::OWN_HEARTBEATS`; one unless it was renumbered): this node's
    /// multicast loops back to it, so a heartbeat with its name and
    /// incarnation that advertises another IP comes from another node of that
    /// name that started in the same millisecond.
    own_ips: VecDeque<Ipv4Addr>,
    left: bool,
    /// The wall clock as the shell last read it: (when, microseconds since
    /// the Unix epoch). The core reads no clock; it only stamps acks with
    /// this and times probes by it, for the clock offset per peer, and
    /// aligns probe periods across nodes by it.
    wall: Option<(Instant, i64)>,
    prober: Prober,
    /// Heartbeats still to send an interval apart after the start.
    burst: u8,
    /// When a heartbeat of a baton's holder was last heard or sent.
    last_view_heard: Option<Instant>,
    /// This node's health, from the shell's last sensor reading.
    health: Option<Health>,
    /// What every member gossiped of its health and links.
    board: Board,
    /// Rotates which links a heartbeat carries, when they do not all fit.
    links_cursor: usize,
    /// When links last went to the whole cluster.
    last_links: Option<Instant>,
    /// Bytes of health and links sent and received in heartbeats.
    health_bytes: (u64, u64),
    /// The `now` of the latest `handle` or `handle_timeout`, to tell a
    /// stall (see `stall`).
    last_turn: Option<Instant>,
    stalls: u64,
    last_stall: Option<Duration>,
    /// After a stall, until the relay has settled: the sources whose queued
    /// pings were answered (see `stall`).
    settle: Option<(Instant, Vec<SocketAddr>)>,
}

impl<R: Rng> Node<R> {
    /// A node that sends its first heartbeat at `now`.
    pub fn new(cfg: NodeConfig, mut rng: R, now: Instant) -> Node<R> {
        let NodeConfig { identity, tuning, reserved } = cfg;
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let codec = Codec::new(&identity.cluster, &tuning.keys, salt);
        let mut relay = Relay::new(tuning.baton.clone(), tuning.timings(), &identity.name, now);
        if let Some(ceiling) = reserved {
            relay.raise_floor(ceiling);
        }
        Node {
            members: Members::new(identity.max_members, tuning.member_timing()),
            reservations: reserved.map(|c| Reservations::new(c, tuning.baton.hold)),
            reserve: None,
            relay,
            holder_hint: None,
            links: Links::new(tuning.links),
            prober: Prober::new(tuning.probe_config(), now),
            burst: START_BURST,
            last_view_heard: None,
            health: None,
            board: Board::default(),
            links_cursor: 0,
            last_links: None,
            health_bytes: (0, 0),
            last_turn: None,
            stalls: 0,
            last_stall: None,
            settle: None,
            codec,
            rng,
            seq: 0,
            hb_seq: 0,
            next_heartbeat: now,
            last_heartbeat: None,
            seeds: Vec::new(),
            effects: Effects::default(),
            outbox: VecDeque::new(),
            spare: Vec::new(),
            events: VecDeque::new(),
            rejections: Rejections::default(),
            reject_logs: HashMap::new(),
            conflicts: Conflicts::default(),
            own_ips: VecDeque::with_capacity(OWN_HEARTBEATS),
            left: false,
            wall: None,
            identity,
            tuning,
        }
    }

    /// Who this node is, for this life.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// How it is tuned now (the last reload's, or the start's).
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    pub fn rejections(&self) -> Rejections {
        self.rejections
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Live members, self included: the size of the cluster as this node
    /// sees it (the `members` gauge, the status endpoint, member log lines).
    pub fn cluster_size(&self) -> usize {
        self.members.live().count() + 1
    }

    /// The wall clock at `at` (microseconds since the Unix epoch), as the
    /// shell read it. Called before each turn; a step of the clock (NTP
    /// syncing at boot) shows in the next probes, never in older ones.
    pub fn set_wall_clock(&mut self, at: Instant, unix_us: i64) {
        self.wall = Some((at, unix_us));
    }

    /// The wall clock at `now`, from the shell's last reading.
    fn wall_us(&self, now: Instant) -> Option<i64> {
        let (at, us) = self.wall?;
        let ahead = now.saturating_duration_since(at).as_micros() as i64;
        let behind = at.saturating_duration_since(now).as_micros() as i64;
        Some(us + ahead - behind)
    }

    /// This node's health from now on (the shell calls it after each sensor
    /// reading); the next heartbeats carry it.
    pub fn set_health(&mut self, health: Health) {
        self.health = Some(health);
    }

    /// This node's health, as its heartbeats carry it.
    pub fn health(&self) -> Option<&Health> {
        self.health.as_ref()
    }

    /// What the members' heartbeats said of their health and links.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// Bytes of health and links in heartbeats (their extensions), sent and
    /// received: what gossiping health costs.
    pub fn health_bytes(&self) -> (u64, u64) {
        self.health_bytes
    }

    /// Link health of every live peer, over the probe window.
    pub fn link_stats(&self, now: Instant) -> Vec<LinkStats> {
        let mut stats = self.links.stats(now);
        stats.retain(|s| self.members.get(&s.peer).is_some_and(|m| m.state.is_live()));
        stats
    }

    /// Takes a reloaded config's tuning, whole: the keyring, the gossip
    /// timings, the baton's and the links' settings. The identity is this
    /// life's and stays. Membership, the baton and link history are kept:
    /// peers see nothing but the new timings.
    pub fn reconfigure(&mut self, now: Instant, tuning: Tuning) {
        // New timings move deadlines: the next turn is measured from here,
        // not from a deadline the old timings set (see `notice_stall`).
        self.last_turn = Some(now);
        if tuning.keys != self.tuning.keys {
            self.codec = self.codec.rekeyed(&tuning.keys);
        }
        self.members.set_timing(tuning.member_timing());
        if tuning.baton.enabled != self.relay.enabled() {
            // Peers put this node into their laps, or leave it out, by its
            // heartbeats' relay flag: the sooner they have it, the fewer
            // passes are refused or held back for want of a peer.
            self.heartbeat_soon(now);
        }
        self.relay.set_config(tuning.baton.clone(), tuning.timings(), now);
        self.links.set_config(tuning.links);
        self.prober.set_config(tuning.probe_config(), now);
        self.next_heartbeat = self.next_heartbeat.min(now + tuning.heartbeat_interval);
        self.tuning = tuning;
    }

    /// The keyring's key ids, the sealing key first (see `wire::Codec::key_ids`).
    pub fn key_ids(&self) -> Vec<String> {
        self.codec.key_ids()
    }

    /// The IP advertised in heartbeats from now on (the shell follows the
    /// host's addresses: DHCP may renumber it while the agent runs). A new
    /// one is announced at once, so peers send to it from their next datagram
    /// rather than losing the node until its next heartbeat.
    pub fn set_ip(&mut self, now: Instant, ip: Ipv4Addr) {
        if ip != self.identity.ip {
            self.identity.ip = ip;
            self.next_heartbeat = self.next_heartbeat.min(now);
        }
    }

    /// Replaces the unicast heartbeat targets (static hosts, DNS answers).
    /// A new target is greeted at once rather than at the next interval.
    pub fn set_seeds(&mut self, now: Instant, seeds: Vec<SocketAddr>) {
        if seeds.iter().any(|s| !self.seeds.contains(s)) {
            self.heartbeat_soon(now);
        }
        self.seeds = seeds;
    }

    /// Does everything due at `now`: the heartbeat, the member table's
    /// deadlines, the failure detector's round and checks, the relay's.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.notice_stall(now);
        if now >= self.next_heartbeat {
            self.send_heartbeat(now);
        }
        // Each machine's effects are carried out before the next one runs:
        // the failure detector checks the suspects the member table hands
        // back, and the relay sees the members as the verdicts left them.
        self.members.handle_timeout(now, &mut self.effects);
        self.drain(now);
        if now >= self.prober.poll_early() {
            self.run_prober(now);
            self.drain(now);
        }
        let (relay, mut ctx) = self.relay_ctx(now);
        relay.handle_timeout(&mut ctx);
        self.drain(now);
    }

    /// When `handle_timeout` must next be called; `None` after `leave`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline(self.prober.poll_timeout())
    }

    /// The earliest `handle_timeout` has anything to do (at most
    /// `poll_timeout`); `None` after `leave`.
    pub fn poll_early(&self) -> Option<Instant> {
        self.deadline(self.prober.poll_early())
    }

    fn deadline(&self, prober: Instant) -> Option<Instant> {
        if self.left {
            return None;
        }
        let due = [self.members.poll_timeout(), self.relay.poll_timeout(), Some(prober)];
        Some(due.into_iter().flatten().fold(self.next_heartbeat, Instant::min))
    }

    /// Next datagram to send; call until `None` after every input.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// A sent datagram's buffer, for the next one to be encoded into.
    pub fn recycle(&mut self, mut payload: Vec<u8>) {
        if self.spare.len() < SPARE && payload.capacity() <= RECYCLED_CAPACITY {
            payload.clear();
            self.spare.push(payload);
        }
    }

    /// Next event to report (log, count); call until `None` after every input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Graceful leave: announces it on the gossip path and directly to every
    /// live member, then ignores all input. Drain `poll_transmit` afterwards.
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let (relay, mut ctx) = self.relay_ctx(now);
        relay.hand_off(&mut ctx);
        self.drain(now);
        self.fan_out(Message::Leave);
        let direct: Vec<SocketAddr> = self.members.live().map(|m| m.data_addr).collect();
        for addr in direct {
            self.send(Dest::Data(addr), Message::Leave);
        }
        self.left = true;
    }
}
