//! node: one herd node as a state machine. Routes each datagram through the
//! codec and the member table, sends heartbeats, answers and sends probes,
//! counts and rate-limits rejections, and merges every deadline into one
//! `poll_timeout`. What it tells the cluster, and when, is in `gossip`.
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
//! While a member of the previous release is live, every node goes back to
//! that release's ways (a heartbeat each interval with sightings of every
//! member, members failed by silence): a mixed cluster is one cluster, at the
//! old cost.
//!
//! The driver's contract (quinn-proto style, STYLE.md 1):
//! - call [`Node::handle`] for every datagram received, with the socket it
//!   came in on;
//! - call [`Node::handle_timeout`] whenever `now >= poll_timeout()`;
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

mod gossip;
mod stall;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::{Rng, RngExt};

use super::baton::{BatonConfig, BatonEvent, Relay, RelayCtx, RelayOut, RelaySend};
use super::conflict::{self, Conflict, Conflicts, Heard};
use super::health::{Board, Health, PeerLink};
use super::limit::LogLimiter;
use super::links::{LinkConfig, LinkStats, Links};
use super::membership::{Admit, Change, Hello, Member, MemberEvent, MemberState, Members};
use super::probe::{self, ProbeOut, Prober, Ring, Target};
use super::reserve::Reservations;
use super::timings::Timings;
use super::wire::{self, Codec, Envelope, Heartbeat, MIN_VERSION, Message, VERSION, WireError};
use gossip::{member_timing, probe_config};

/// How heartbeats reach the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// One datagram to the multicast group or broadcast address.
    Group,
    /// One unicast datagram to every seed (static hosts, DNS answers) and every
    /// live member's gossip address.
    Unicast,
}

/// What the core needs to know; the shell builds it from the validated config.
/// The timings that follow from `heartbeat_interval` are not in it: see
/// [`crate::core::timings::Timings`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub cluster: String,
    /// This life of the node: must grow across restarts (the shell uses the
    /// start time in milliseconds since the Unix epoch).
    pub incarnation: u64,
    /// The keyring (`[gossip] secret` or `secret_file`): the first key seals
    /// what this node sends, every key opens. Empty: plain datagrams.
    pub keys: Vec<Vec<u8>>,
    pub heartbeat_interval: Duration,
    pub suspect_after: Duration,
    pub down_after: Duration,
    pub max_members: usize,
    /// The data socket's actual port, advertised in heartbeats.
    pub data_port: u16,
    /// This node's IP as peers should reach it, advertised in heartbeats
    /// (`0.0.0.0`: unknown, peers take the datagrams' source); see
    /// [`Node::set_ip`].
    pub ip: Ipv4Addr,
    /// The cluster's gossip port: where a member that advertises its IP gets
    /// unicast heartbeats (every member shares it).
    pub gossip_port: u16,
    pub fanout: Fanout,
    pub baton: BatonConfig,
    pub links: LinkConfig,
    /// Counter reservations (a `[node] state_dir`): `Some(ceiling)` of the
    /// state file as read at start (0: none yet), `None` without a state
    /// directory (then nothing is ever asked to be written).
    pub reserved: Option<u64>,
}

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

/// Why a datagram changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Wire(WireError),
    /// Same sender, same life, a sequence number already seen.
    Replay,
    /// From an earlier life of a member.
    Stale,
    /// A newcomer while the member table is full.
    TableFull,
    /// Another node uses this node's name: counted here, recorded in
    /// `core::conflict` and reported as [`Event::NameConflict`].
    NameConflict {
        incarnation: u64,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Wire(e) => e.fmt(f),
            Reason::Replay => f.write_str("replayed datagram"),
            Reason::Stale => f.write_str("datagram from an earlier life of the sender"),
            Reason::TableFull => f.write_str("member table full"),
            Reason::NameConflict { incarnation } => {
                write!(f, "another node (incarnation {incarnation}) uses this node's name")
            }
        }
    }
}

/// Counts of refused datagrams, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    /// Wrong or missing secret, a key not in the keyring, altered, or sealed
    /// for another cluster.
    pub auth: u64,
    /// A sequence number already seen from that life.
    pub replay: u64,
    /// From an earlier life of the sender.
    pub stale: u64,
    /// Plain datagrams of another cluster.
    pub other_cluster: u64,
    /// Garbage, truncated, oversized, unknown version or kind.
    pub malformed: u64,
    pub table_full: u64,
    pub name_conflict: u64,
}

impl Rejections {
    /// Every class with its count, in a fixed order: the one list of classes
    /// that the status endpoint, `/metrics` and the shutdown log print.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("auth", self.auth),
            ("replay", self.replay),
            ("stale", self.stale),
            ("other_cluster", self.other_cluster),
            ("malformed", self.malformed),
            ("table_full", self.table_full),
            ("name_conflict", self.name_conflict),
        ]
        .into_iter()
    }

    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }

    fn count(&mut self, reason: &Reason) {
        let slot = match reason {
            Reason::Wire(
                WireError::AuthFailed
                | WireError::UnknownKey(_)
                | WireError::Unauthenticated
                | WireError::UnexpectedSealed,
            ) => &mut self.auth,
            Reason::Wire(WireError::OtherCluster) => &mut self.other_cluster,
            Reason::Wire(_) => &mut self.malformed,
            Reason::Replay => &mut self.replay,
            Reason::Stale => &mut self.stale,
            Reason::TableFull => &mut self.table_full,
            Reason::NameConflict { .. } => &mut self.name_conflict,
        };
        *slot += 1;
    }
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
    /// once per [`conflict::LOG_EVERY`] per other node while it lasts (its
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

pub const REJECT_LOG_EVERY: Duration = Duration::from_secs(10);
/// Sources remembered for rate limiting; bounded so a spoofing flood cannot
/// grow memory (beyond it, rejections are counted but not logged).
const REJECT_SOURCES: usize = 256;
/// Room left in a heartbeat for sightings, after header, names and tag.
/// (Header 4, nonce 24, tag 16, two names, incarnation, seq, kind, data port,
/// heartbeat seq, flags, baton view 44, sighting count.)
const SIGHTING_BUDGET: usize =
    wire::MAX_DATAGRAM - 4 - 24 - 16 - 2 * (1 + wire::MAX_NAME) - 8 - 8 - 1 - 2 - 4 - 1 - 44 - 1;

pub struct Node<R> {
    cfg: NodeConfig,
    codec: Codec,
    members: Members,
    relay: Relay,
    relay_out: RelayOut,
    /// The member whose heartbeat last said it holds the baton, and when.
    holder_hint: Option<(String, Instant)>,
    links: Links,
    rng: R,
    seq: u64,
    hb_seq: u32,
    next_heartbeat: Instant,
    last_heartbeat: Option<Instant>,
    /// Rotates which members a heartbeat's sightings start from, for clusters
    /// too big to mention everyone in one datagram.
    sighting_cursor: usize,
    seeds: Vec<SocketAddr>,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    scratch: Vec<MemberEvent>,
    rejections: Rejections,
    reservations: Option<Reservations>,
    /// A ceiling to write before anything else is sent (see [`Node::poll_reserve`]).
    reserve: Option<u64>,
    /// One limiter per source IP (at most [`REJECT_SOURCES`]).
    reject_logs: HashMap<IpAddr, LogLimiter>,
    /// Other nodes heard using this node's name.
    conflicts: Conflicts,
    /// The IPs advertised by the last heartbeats sent to the cluster (at
    /// most [`OWN_HEARTBEATS`]; one unless it was renumbered): this node's
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
    probe_out: ProbeOut,
    /// A live member speaks only the previous version: heartbeats every
    /// interval with sightings, members failed by silence (module doc).
    legacy: bool,
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

/// Heartbeats to the cluster remembered to recognise this node's own when
/// they loop back (they do within milliseconds; a heartbeat goes out at most
/// every quarter interval or so).
const OWN_HEARTBEATS: usize = 8;
/// Heartbeats a node sends an interval apart when it starts, so that one
/// lost datagram does not hide it for a whole refresh period.
const START_BURST: u8 = 3;
/// Without silence, a heartbeat is sent at least every this many intervals
/// (or N / 2, whichever is more: the cluster receives the same bytes per
/// node at any size).
const REFRESH_INTERVALS: u32 = 10;

impl<R: Rng> Node<R> {
    /// A node that sends its first heartbeat at `now`.
    pub fn new(cfg: NodeConfig, mut rng: R, now: Instant) -> Node<R> {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let codec = Codec::new(&cfg.cluster, &cfg.keys, salt);
        let timings = Timings::from_heartbeat(cfg.heartbeat_interval);
        let timing = member_timing(&cfg, timings);
        let mut relay = Relay::new(cfg.baton.clone(), timings, &cfg.name, now);
        if let Some(ceiling) = cfg.reserved {
            relay.raise_floor(ceiling);
        }
        relay.ask_first = true;
        let mut members = Members::new(cfg.max_members, timing);
        // Until a member of the previous release shows up (`update_mode`).
        members.set_silence(now, false);
        Node {
            members,
            reservations: cfg.reserved.map(|c| Reservations::new(c, cfg.baton.hold)),
            reserve: None,
            relay,
            relay_out: RelayOut::default(),
            holder_hint: None,
            links: Links::new(cfg.links),
            prober: Prober::new(probe_config(&cfg), now),
            probe_out: ProbeOut::default(),
            legacy: false,
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
            sighting_cursor: 0,
            seeds: Vec::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            rejections: Rejections::default(),
            reject_logs: HashMap::new(),
            conflicts: Conflicts::default(),
            own_ips: VecDeque::with_capacity(OWN_HEARTBEATS),
            left: false,
            wall: None,
            cfg,
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
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

    /// Who holds the baton as far as this node knows at `now`: itself, or the
    /// alive member whose heartbeat said so within the last two heartbeat
    /// intervals; `None` if unknown.
    pub fn holder(&self, now: Instant) -> Option<&str> {
        if self.relay.holding().is_some() {
            return Some(&self.cfg.name);
        }
        let (name, at) = self.holder_hint.as_ref()?;
        let recent = now.saturating_duration_since(*at) <= self.cfg.heartbeat_interval * 2;
        let alive = self.members.get(name).is_some_and(|m| m.state == MemberState::Alive);
        (recent && alive).then_some(name.as_str())
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

    /// What the members' heartbeats said of their health and links (members
    /// of the previous release send none).
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

    /// Takes a reloaded config: the keyring, the gossip timings, the baton's
    /// and the links' settings. Name, cluster, incarnation, ports, address,
    /// fan-out and table size are this life's and stay (the shell's reload
    /// keeps them). Membership, the baton and link history are kept: peers
    /// see nothing but the new timings.
    pub fn reconfigure(&mut self, now: Instant, cfg: NodeConfig) {
        // New timings move deadlines: the next turn is measured from here,
        // not from a deadline the old timings set (see `notice_stall`).
        self.last_turn = Some(now);
        if cfg.keys != self.cfg.keys {
            self.codec = self.codec.rekeyed(&cfg.keys);
        }
        let timings = Timings::from_heartbeat(cfg.heartbeat_interval);
        self.members.set_timing(member_timing(&cfg, timings));
        self.relay.set_config(cfg.baton.clone(), timings);
        self.links.set_config(cfg.links);
        self.prober.set_config(probe_config(&cfg), now);
        self.next_heartbeat = self.next_heartbeat.min(now + cfg.heartbeat_interval);
        self.cfg = NodeConfig {
            name: std::mem::take(&mut self.cfg.name),
            cluster: std::mem::take(&mut self.cfg.cluster),
            incarnation: self.cfg.incarnation,
            data_port: self.cfg.data_port,
            ip: self.cfg.ip,
            gossip_port: self.cfg.gossip_port,
            fanout: self.cfg.fanout,
            max_members: self.cfg.max_members,
            ..cfg
        };
    }

    /// The keyring's key ids, the sealing key first (see `wire::Codec::key_ids`).
    pub fn key_ids(&self) -> Vec<String> {
        self.codec.key_ids()
    }

    /// The wire version this node speaks to member `m` (unicast).
    pub fn wire_for(&self, m: &Member) -> u8 {
        m.wire.clamp(MIN_VERSION, VERSION)
    }

    /// The IP advertised in heartbeats from now on (the shell follows the
    /// host's addresses: DHCP may renumber it while the agent runs). A new
    /// one is announced at once, so peers send to it from their next datagram
    /// rather than losing the node until its next heartbeat.
    pub fn set_ip(&mut self, now: Instant, ip: Ipv4Addr) {
        if ip != self.cfg.ip {
            self.cfg.ip = ip;
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

    /// One datagram received on `via` from `src`. Decrypts in place.
    pub fn handle(&mut self, now: Instant, via: Via, src: SocketAddr, datagram: &mut [u8]) {
        if self.left {
            return;
        }
        self.notice_stall(now);
        let env = match self.codec.open(datagram) {
            Ok(env) => env,
            Err(e) => return self.reject(now, src.ip(), Reason::Wire(e)),
        };
        if env.from == self.cfg.name {
            if env.incarnation != self.cfg.incarnation || !self.is_own(&env) {
                self.name_conflict(now, src.ip(), &env);
            }
            // Otherwise our own multicast, looped back for agents on this host.
            return;
        }
        let hello = match &env.msg {
            Message::Heartbeat(hb) => {
                // The advertised IP is authenticated, the source is not. A
                // heartbeat to the data port (a welcome, an answer) comes
                // from the sender's data socket: its gossip address is the
                // cluster's port at its IP, unless already known.
                let ip = match hb.ip {
                    ip if ip.is_unspecified() => src.ip(),
                    ip => IpAddr::V4(ip),
                };
                let gossip_addr = match (via, hb.ip.is_unspecified()) {
                    (Via::Gossip, true) => src,
                    (Via::Gossip, false) => SocketAddr::new(ip, self.cfg.gossip_port),
                    (Via::Data, _) => self
                        .members
                        .get(env.from)
                        .filter(|m| m.incarnation == env.incarnation)
                        .map_or(SocketAddr::new(ip, self.cfg.gossip_port), |m| m.gossip_addr),
                };
                Some(Hello { gossip_addr, data_addr: SocketAddr::new(ip, hb.data_port), relays: hb.relays })
            }
            _ => None,
        };
        let was_down = self
            .members
            .get(env.from)
            .is_some_and(|m| m.incarnation == env.incarnation && m.state == MemberState::Down);
        let mut changes = std::mem::take(&mut self.scratch);
        let verdict = self.members.admit(now, env.from, env.incarnation, env.seq, hello, &mut changes);
        match verdict {
            Admit::Accepted => {
                let mut newer = self.members.understands(env.from, env.version);
                if let Message::Heartbeat(Heartbeat { understands: Some(v), .. }) = env.msg {
                    newer |= self.members.understands(env.from, v);
                }
                if newer || !changes.is_empty() {
                    self.update_mode(now);
                }
                if was_down && !self.legacy {
                    // Heard again after a partition: the whole other side
                    // learns of this side from one heartbeat each.
                    self.heartbeat_soon(now);
                }
                self.prober.heard(now, env.from, env.incarnation, &mut self.probe_out);
                self.act(now, via, src, &env, &mut changes);
                self.drain_probe(now, &mut changes);
            }
            // Authenticated, but from no live member we know (a node that has
            // just left, or restarted and not yet heartbeated).
            Admit::Ignored => {
                self.handle_direct(now, via, src, &env);
            }
            Admit::Replay => self.reject(now, src.ip(), Reason::Replay),
            Admit::Stale => self.reject(now, src.ip(), Reason::Stale),
            Admit::Full => self.reject(now, src.ip(), Reason::TableFull),
        }
        self.absorb(now, &mut changes);
        self.scratch = changes;
        self.drain_relay(now);
    }

    /// What is done for any authenticated, fresh datagram, member or not:
    /// probes are answered (a restarted node learns its RTT at once), passes
    /// taken (a node that just left hands its baton off), acks heard (they may
    /// come after the sender's leave). False for the other messages.
    fn handle_direct(&mut self, now: Instant, via: Via, src: SocketAddr, env: &Envelope<'_>) -> bool {
        match &env.msg {
            Message::Ping { .. } if self.settling_answered(now, src) => {}
            Message::Ping { token } => {
                let ack = Message::Ack { token: *token, wall_us: self.wall_us(now) };
                self.send_as(reply_dest(via, src), env.version, ack)
            }
            Message::Pass { id, counter, lap } => {
                let (relay, mut ctx) = self.relay_ctx(now);
                relay.on_pass(&mut ctx, src, *id, *counter, lap);
            }
            Message::PassAck(ack) => {
                let (relay, mut ctx) = self.relay_ctx(now);
                relay.on_ack(&mut ctx, env.from, *ack);
            }
            _ => return false,
        }
        true
    }

    fn act(
        &mut self,
        now: Instant,
        via: Via,
        src: SocketAddr,
        env: &Envelope<'_>,
        changes: &mut Vec<MemberEvent>,
    ) {
        if self.handle_direct(now, via, src, env) {
            return;
        }
        match &env.msg {
            Message::Heartbeat(hb) => {
                if hb.baton.is_some_and(|v| v.holding) {
                    self.last_view_heard = Some(now);
                }
                if hb.asks_views
                    && self.has_fresher_view(now, hb.baton)
                    && let Some(addr) = self.members.get(env.from).map(|m| m.data_addr)
                {
                    self.send_heartbeat_to(now, Dest::Data(addr));
                }
                for s in &hb.sightings {
                    if s.name != self.cfg.name {
                        let age = Duration::from_millis(s.age_ms.into());
                        self.members.sighted(now, s.name, s.incarnation, age, changes);
                    }
                }
                if let Some(floor) = hb.floor {
                    self.relay.raise_floor(floor);
                }
                if let Some(view) = hb.baton {
                    self.relay.on_view(now, view, &mut self.relay_out);
                    if view.holding && self.relay.best() == Some(view.id) {
                        self.holder_hint = Some((env.from.to_owned(), now));
                    }
                }
                self.links.on_heartbeat(env.from, env.incarnation, hb.hb_seq);
                if hb.health.is_some() || !hb.links.is_empty() {
                    self.health_bytes.1 += wire::health_ext_len(hb.health.as_ref(), &hb.links) as u64;
                    let (me, members) = (&self.cfg.name, &self.members);
                    let known = |n: &str| n == me || members.get(n).is_some();
                    self.board.record(now, env.from, env.incarnation, hb.health.as_ref(), &hb.links, known);
                }
            }
            Message::Leave => self.members.leave(now, env.from, changes),
            // Liveness was recorded by `admit`; a link probe's ack also gives an RTT.
            Message::Ack { token, wall_us } => {
                let clocks = wall_us.zip(self.wall_us(now));
                self.links.on_ack(now, env.from, *token, clocks);
                self.prober.on_ack(now, env.from, *token, &mut self.probe_out);
            }
            Message::PingReq { token, target, incarnation } => {
                let target = self
                    .members
                    .get(target)
                    .filter(|m| m.incarnation == *incarnation && m.state.is_live())
                    .map(|m| (m.name.as_str(), m.data_addr));
                self.prober.on_ping_req(now, src, *token, target, &mut self.rng, &mut self.probe_out);
            }
            Message::IndirectAck { token, answered } => {
                self.prober.on_indirect_ack(now, *token, *answered, &mut self.probe_out);
            }
            Message::News(items) => self.on_news(now, items, changes),
            // Handled by `handle_direct` above.
            Message::Ping { .. } | Message::Pass { .. } | Message::PassAck(_) => {}
        }
    }

    /// Turns member changes into events; a newcomer gets an early heartbeat so
    /// it learns this node without waiting a whole interval.
    fn absorb(&mut self, now: Instant, changes: &mut Vec<MemberEvent>) {
        if !changes.is_empty() {
            let (relay, mut ctx) = self.relay_ctx(now);
            relay.on_members_changed(&mut ctx);
        }
        let mut welcome = Vec::new();
        for ev in changes.drain(..) {
            if matches!(ev.change, Change::Up | Change::Restarted { .. }) {
                if self.legacy {
                    self.heartbeat_soon(now);
                } else {
                    welcome.push(ev.addr);
                }
            }
            self.events.push_back(Event::Member(ev));
        }
        for addr in welcome {
            self.send_heartbeat_to(now, Dest::Data(addr));
        }
    }

    /// Does everything due at `now`: heartbeat, member transitions, probes.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.notice_stall(now);
        if now >= self.next_heartbeat {
            self.send_heartbeat(now);
        }
        let mut changes = std::mem::take(&mut self.scratch);
        self.members.handle_timeout(now, &mut changes);
        let mut due = Vec::new();
        self.members.probes_due(now, &mut due);
        for (name, incarnation, addr) in due {
            if self.legacy {
                let token = self.rng.next_u64();
                self.send(Dest::Data(addr), Message::Ping { token });
            } else {
                self.prober.check_suspect(now, &name, incarnation, addr);
            }
        }
        if now >= self.prober.poll_timeout() {
            self.links.retain_live(&self.members);
            let reconnect = now.checked_sub(probe::RECONNECT_FOR);
            let ring: Vec<Target<'_>> = self
                .members
                .iter()
                .filter(|m| {
                    m.state.is_live()
                        || (m.state == MemberState::Down && reconnect.is_none_or(|r| m.since >= r))
                })
                .map(|m| Target {
                    name: &m.name,
                    incarnation: m.incarnation,
                    addr: m.data_addr,
                    live: m.state.is_live(),
                })
                .collect();
            let wall_ms = self.wall_us(now).map(|us| us.div_euclid(1000));
            let view = Ring { me: &self.cfg.name, members: &ring, wall_ms, detect: !self.legacy };
            self.prober.handle_timeout(now, view, &mut self.rng, &mut self.probe_out);
            self.drain_probe(now, &mut changes);
        }
        self.absorb(now, &mut changes);
        self.scratch = changes;
        let (relay, mut ctx) = self.relay_ctx(now);
        relay.handle_timeout(&mut ctx);
        self.drain_relay(now);
    }

    /// The relay and its context, borrowed apart from the rest of the node.
    fn relay_ctx(&mut self, now: Instant) -> (&mut Relay, RelayCtx<'_, R>) {
        let ctx = RelayCtx { now, members: &self.members, rng: &mut self.rng, out: &mut self.relay_out };
        (&mut self.relay, ctx)
    }

    /// Encodes what the relay queued and forwards its events.
    fn drain_relay(&mut self, now: Instant) {
        let mut out = std::mem::take(&mut self.relay_out);
        for (addr, send) in out.sends.drain(..) {
            let msg = match &send {
                RelaySend::Pass { id, counter, lap } => {
                    Message::Pass { id: *id, counter: *counter, lap: lap.clone() }
                }
                RelaySend::PassAck(ack) => Message::PassAck(*ack),
            };
            self.send(Dest::Data(addr), msg);
        }
        let took = out.events.iter().any(|e| {
            matches!(
                e,
                BatonEvent::Taken { .. } | BatonEvent::Started { .. } | BatonEvent::Regenerated { .. }
            )
        });
        let ask = std::mem::take(&mut out.ask_views);
        self.events.extend(out.events.drain(..).map(Event::Baton));
        self.relay_out = out;
        if ask {
            self.send_heartbeat_as(now, None, true);
        } else if took && !self.legacy && self.relay.holding().is_some() {
            // The holder tells the cluster the baton lives, about once an
            // interval whoever holds it: the views regeneration relies on.
            let quiet = self.last_view_heard.is_none_or(|t| now >= t + self.cfg.heartbeat_interval);
            if quiet {
                self.send_heartbeat(now);
            }
        }
        self.reserve_ahead(now);
    }

    /// Asks for a new ceiling when the highest counter known comes within
    /// half a range of the written one (after every change of it: the relay
    /// reports through `drain_relay`).
    fn reserve_ahead(&mut self, now: Instant) {
        let Some(r) = self.reservations.as_mut() else { return };
        if let Some(up_to) = r.due(now, self.relay.high()) {
            self.reserve = Some(up_to);
        }
    }

    /// A counter ceiling to write to the state file (write, fsync, rename)
    /// before the next [`Node::poll_transmit`], then confirm with
    /// [`Node::reserved`]. It is asked for half a range before counters
    /// reach the written one (`core::reserve`), and taken before this turn's
    /// datagrams go out, so no counter is sent above a written ceiling.
    pub fn poll_reserve(&mut self) -> Option<u64> {
        self.reserve.take()
    }

    /// The state file holds `up_to` now (`ok`), or writing it failed
    /// (asked again [`crate::core::reserve::RETRY`] later).
    pub fn reserved(&mut self, now: Instant, up_to: u64, ok: bool) {
        if let Some(r) = self.reservations.as_mut() {
            if ok { r.written(up_to) } else { r.failed(now) }
        }
    }

    /// When `handle_timeout` must next be called; `None` after `leave`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        let due = [self.members.poll_timeout(), self.relay.poll_timeout(), Some(self.prober.poll_timeout())];
        Some(due.into_iter().flatten().fold(self.next_heartbeat, Instant::min))
    }

    /// Next datagram to send; call until `None` after every input.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
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
        self.drain_relay(now);
        self.fan_out(Message::Leave);
        let direct: Vec<SocketAddr> = self.members.live().map(|m| m.data_addr).collect();
        for addr in direct {
            self.send(Dest::Data(addr), Message::Leave);
        }
        self.left = true;
    }

    /// How long a name conflict lasts after the other node was last heard:
    /// three of this node's heartbeat refresh periods (two nodes with one
    /// name hear each other only through their heartbeats, at least one per
    /// refresh period: two lost ones do not end the conflict), and at least
    /// [`conflict::LOG_EVERY`], so a conflict that goes on is logged again.
    /// 60 s with the default 1 s heartbeat interval.
    pub fn conflict_window(&self) -> Duration {
        (self.refresh_every() * 3).max(conflict::LOG_EVERY)
    }

    /// The other nodes heard using this node's name within
    /// [`Node::conflict_window`] of `now`, first heard first; empty when
    /// the name is this node's alone.
    pub fn name_conflicts(&self, now: Instant) -> Vec<&Conflict> {
        self.conflicts.current(now, self.conflict_window())
    }

    /// Whether a datagram with this node's name and incarnation is its own,
    /// looped back. Another node of that name started in the same
    /// millisecond shows in its heartbeats: they advertise an IP this node
    /// has not advertised lately. Other messages, and heartbeats when either
    /// side does not know its IP, are taken as its own (a false conflict on
    /// a healthy node would be worse than a missed one this unlikely).
    fn is_own(&self, env: &Envelope<'_>) -> bool {
        match &env.msg {
            Message::Heartbeat(hb) if !hb.ip.is_unspecified() && !self.cfg.ip.is_unspecified() => {
                hb.ip == self.cfg.ip || self.own_ips.contains(&hb.ip)
            }
            _ => true,
        }
    }

    /// A datagram of another life that carries this node's name: refused
    /// (counted as a `name_conflict` rejection) and recorded; its leave ends
    /// the conflict with it.
    fn name_conflict(&mut self, now: Instant, source: IpAddr, env: &Envelope<'_>) {
        self.rejections.count(&Reason::NameConflict { incarnation: env.incarnation });
        let advertised = match &env.msg {
            Message::Heartbeat(hb) if !hb.ip.is_unspecified() => Some(hb.ip),
            Message::Leave => {
                if let Some(gone) = self.conflicts.left(env.incarnation) {
                    let (incarnation, addr) = (gone.incarnation, gone.addr());
                    self.events.push_back(Event::NameConflictOver { incarnation, addr });
                }
                return;
            }
            _ => None,
        };
        let window = self.conflict_window();
        if let Some(heard) = self.conflicts.heard(now, window, env.incarnation, source, advertised) {
            self.events.push_back(Event::NameConflict(heard));
        }
    }

    fn reject(&mut self, now: Instant, source: IpAddr, reason: Reason) {
        self.rejections.count(&reason);
        if self.reject_logs.len() >= REJECT_SOURCES && !self.reject_logs.contains_key(&source) {
            self.reject_logs.retain(|_, l| !l.is_idle(now));
            if self.reject_logs.len() >= REJECT_SOURCES {
                return;
            }
        }
        let limiter = self.reject_logs.entry(source).or_insert(LogLimiter::new(REJECT_LOG_EVERY));
        if let Some(suppressed) = limiter.allow(now) {
            let total = self.rejections.total();
            self.events.push_back(Event::Rejected { source, reason, suppressed, total });
        }
    }
}

fn reply_dest(via: Via, src: SocketAddr) -> Dest {
    match via {
        Via::Gossip => Dest::Gossip(src),
        Via::Data => Dest::Data(src),
    }
}
