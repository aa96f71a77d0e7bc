//! snapshot: a point-in-time picture of one agent (its member table with link
//! health, the baton as this node knows it, the last sensor reading, the
//! rejection counts), built by the event loop on request and served by the
//! status endpoint as JSON, HTML and Prometheus text. `herd status` reads the
//! same JSON back, so the type is both serialised and deserialised here.
//!
//! Must not: hold references into the live state (the loop copies what it
//! needs), or be built when nobody asked (idle CPU).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::history::History;
use super::report::Totals;
pub use super::report::Traffic;
use super::sensors::Reading;
use crate::core::health::{self, Health};
use crate::core::node::Node;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub node: String,
    pub cluster: String,
    pub incarnation: u64,
    pub version: String,
    pub uptime_s: f64,
    /// Live members, self included.
    pub live_members: usize,
    /// Every member this node knows of (self excluded), in name order.
    pub members: Vec<MemberStatus>,
    pub baton: BatonStatus,
    pub sensors: SensorStatus,
    pub rejected: BTreeMap<String, u64>,
    /// The config file the agent runs on (`None`: the built-in defaults)
    /// and when it was read, as an RFC 3339 UTC time (at start, or at the
    /// last reload that took).
    #[serde(default)]
    pub config_file: Option<String>,
    #[serde(default)]
    pub config_loaded: String,
    /// The ids of the keyring's keys (never the keys), the sealing key
    /// first; empty without a secret.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Datagrams this agent sent and received since start (gossip and data
    /// sockets; StatsD not included).
    #[serde(default)]
    pub traffic: Traffic,
    /// Times a member turned suspect since start (flaps).
    #[serde(default)]
    pub member_suspects: u64,
    /// The whole cluster's health, this node included, in name order: each
    /// member's as its heartbeats last carried it (absent from an
    /// older agent's answer, and empty for a member not heard yet).
    #[serde(default)]
    pub health: Vec<MemberHealth>,
    /// The link matrix: `links[a][b]` is what `a` measured of its link to
    /// `b` over its probe window (this node's own row from its probes, the
    /// others' from their heartbeats).
    #[serde(default)]
    pub links: BTreeMap<String, BTreeMap<String, LinkCell>>,
    /// The host's network as this agent follows it: ready, or what it
    /// waits for (absent from an older agent's answer: an empty state).
    #[serde(default)]
    pub network: NetworkStatus,
    /// Other nodes heard using this node's name within the conflict window
    /// (`core::conflict`), first heard first; empty when the name is this
    /// node's alone (and in an older agent's answer).
    #[serde(default)]
    pub name_conflicts: Vec<NameConflict>,
    /// The last 15 minutes, for the page's charts (not in the JSON).
    #[serde(skip)]
    pub history: Option<History>,
}

/// The network as the agent follows it (see `agent::network`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// "ready", or "waiting": no heartbeat can reach the cluster yet.
    pub state: String,
    /// What it waits for, when waiting: "no IPv4 address on any interface
    /// but loopback", "no route to 230.1.1.251 ...", "[gossip] multicast_if
    /// = ... is not an address of this host", a refused group join.
    pub waiting_for: Option<String>,
    /// The interface heartbeats go out through, when known.
    pub interface: Option<String>,
    /// The address heartbeats advertise ("0.0.0.0": peers take the
    /// datagrams' source address).
    pub address: String,
    /// How long the network has been in this state.
    pub since_ms: u64,
    /// Changes followed since start (waiting, back, renumbered, moved).
    pub changes: u64,
}

impl NetworkStatus {
    pub fn waiting(&self) -> Option<&str> {
        self.waiting_for.as_deref().filter(|_| self.state == "waiting")
    }
}

/// One member's health as the cluster view shows it (`core::health`, in
/// display units). `None`: that node has no such sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberHealth {
    pub name: String,
    /// "alive", "suspect", "down" or "left" (this node: "alive").
    pub state: String,
    /// How long ago its health was heard (0 for this node); `None`: none
    /// heard yet.
    pub age_ms: Option<u64>,
    /// Its hottest sensor, °C.
    pub temp_c: Option<f64>,
    /// Its live throttle flags that are set ("under_voltage", "freq_capped",
    /// "throttled", "soft_temp_limit"); `None`: no throttle sensor.
    pub throttle: Option<Vec<String>>,
    pub load_1: Option<f64>,
    pub mem_used_pct: Option<f64>,
    pub fan_rpm: Option<u32>,
    pub root_readonly: Option<bool>,
    pub clock_synced: Option<bool>,
    pub uptime_s: Option<u64>,
    /// herd's version there ("0.1.0+<git rev>").
    pub version: Option<String>,
}

/// Another node that uses this node's name: the two refuse each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameConflict {
    /// Its address: the IP its heartbeats advertise, else `source`.
    pub addr: String,
    /// The source IP of its last datagram.
    pub source: String,
    /// The IP its heartbeats advertise, if one was heard.
    pub advertised: Option<String>,
    pub incarnation: u64,
    pub last_heard_ms: u64,
    /// How long the conflict with it has lasted.
    pub since_ms: u64,
}

/// One cell of the link matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkCell {
    /// Mean RTT over the window; `None`: no probe answered.
    pub rtt_ms: Option<f64>,
    pub loss_pct: f64,
    /// How old the measurement is (0 for this node's own row).
    pub age_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub name: String,
    /// "alive", "suspect", "down" or "left".
    pub state: String,
    /// Its data address (IP and unicast port).
    pub addr: String,
    pub incarnation: u64,
    pub last_heard_ms: u64,
    pub relays: bool,
    pub rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub heartbeat_loss_pct: Option<f64>,
    /// The wire version this node speaks to it: the newest both understand
    /// (during an upgrade, the previous release's members show its version).
    #[serde(default)]
    pub wire: u8,
    /// Its clock minus ours, ms (median over the probe window); `None`
    /// when it sends no wall clock (it has none set) or we have none.
    #[serde(default)]
    pub clock_offset_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatonStatus {
    pub enabled: bool,
    pub epoch: Option<u64>,
    /// The highest counter this node has seen.
    pub counter: u64,
    /// This node holds the baton now (or is passing it).
    pub holding: bool,
    /// ...and a pass of it is on its way, not yet acknowledged: the next
    /// node may already have it.
    #[serde(default)]
    pub passing: bool,
    /// The baton it holds, as `<epoch>.<origin>` (origin in hex): two nodes
    /// holding different ids at once means two batons (the lab tests count
    /// them this way); the same id twice is one baton in mid-pass.
    #[serde(default)]
    pub held_id: Option<String>,
    /// Who holds it, as far as this node knows (itself, or the member whose
    /// heartbeat last said so within two heartbeats); `None` if unknown.
    pub holder: Option<String>,
    /// Passes made by this node since it started.
    pub passes: u64,
    /// Batons this node regenerated since it started.
    pub regenerated: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SensorStatus {
    /// °C by sensor label.
    pub temperatures: BTreeMap<String, f64>,
    pub cpu_freq_mhz: Option<f64>,
    pub cpu_usage_pct: Option<f64>,
    pub load_1: Option<f64>,
    pub mem_used_pct: Option<f64>,
    /// Flag name (e.g. "under_voltage", "throttled_occurred") → set. Where
    /// the firmware word is missing, only "under_voltage", from hwmon.
    pub throttle: Option<BTreeMap<String, bool>>,
    pub net: Option<NetStatus>,
    // Added in 0.2; absent from an older agent's answer.
    /// RPM by fan label.
    #[serde(default)]
    pub fans: BTreeMap<String, f64>,
    #[serde(default)]
    pub clock_synced: Option<bool>,
    #[serde(default)]
    pub clock_error_ms: Option<f64>,
    #[serde(default)]
    pub root_used_pct: Option<f64>,
    #[serde(default)]
    pub root_readonly: Option<bool>,
    /// Seconds since the machine booted.
    #[serde(default)]
    pub system_uptime_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetStatus {
    pub interface: String,
    pub up: bool,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub wifi_signal_dbm: Option<f64>,
    #[serde(default)]
    pub speed_mbps: Option<f64>,
    #[serde(default)]
    pub full_duplex: Option<bool>,
    #[serde(default)]
    pub carrier_changes: Option<u64>,
    #[serde(default)]
    pub rx_dropped: Option<u64>,
}

pub struct Inputs<'a, R> {
    pub node: &'a Node<R>,
    pub now: Instant,
    pub started: Instant,
    pub reading: Option<&'a Reading>,
    pub totals: Totals,
    pub traffic: Traffic,
    pub config_file: Option<&'a std::path::Path>,
    pub config_loaded: std::time::SystemTime,
    pub history: Option<&'a History>,
    pub network: NetworkStatus,
}

pub fn build<R: rand::Rng>(i: Inputs<'_, R>) -> Snapshot {
    let node = i.node;
    let cfg = node.identity();
    let links: BTreeMap<String, _> =
        node.link_stats(i.now).into_iter().map(|l| (l.peer.clone(), l)).collect();
    let members = node
        .members()
        .iter()
        .map(|m| {
            let link = links.get(&m.name);
            MemberStatus {
                name: m.name.clone(),
                state: m.state.as_str().to_owned(),
                addr: m.data_addr.to_string(),
                incarnation: m.incarnation,
                last_heard_ms: i.now.saturating_duration_since(m.last_heard).as_millis() as u64,
                relays: m.relays,
                rtt_ms: link.and_then(|l| l.rtt_ms),
                jitter_ms: link.and_then(|l| l.jitter_ms),
                loss_pct: link.and_then(|l| l.loss_pct),
                heartbeat_loss_pct: link.and_then(|l| l.heartbeat_loss_pct),
                wire: node.wire_for(m),
                clock_offset_ms: link.and_then(|l| l.clock_offset_ms),
            }
        })
        .collect();
    let relay = node.relay();
    let rejected = node.rejections().iter().map(|(k, v)| (k.to_owned(), v)).collect();
    Snapshot {
        node: cfg.name.clone(),
        cluster: cfg.cluster.clone(),
        incarnation: cfg.incarnation,
        version: crate::VERSION.to_owned(),
        uptime_s: i.now.saturating_duration_since(i.started).as_secs_f64(),
        live_members: node.cluster_size(),
        members,
        baton: BatonStatus {
            enabled: relay.enabled(),
            epoch: relay.best().map(|b| b.epoch),
            counter: relay.high(),
            holding: relay.holding().is_some(),
            passing: relay.holding().is_some() && !relay.holding_still(),
            held_id: relay.holding().map(|(id, _)| format!("{}.{:016x}", id.epoch, id.origin)),
            holder: node.holder(i.now).map(str::to_owned),
            passes: i.totals.passes,
            regenerated: i.totals.regenerated,
        },
        sensors: i.reading.map(sensor_status).unwrap_or_default(),
        rejected,
        keys: node.key_ids(),
        config_file: i.config_file.map(|p| p.display().to_string()),
        config_loaded: humantime::format_rfc3339_seconds(i.config_loaded).to_string(),
        traffic: Traffic {
            health_sent_bytes: node.health_bytes().0,
            health_received_bytes: node.health_bytes().1,
            ..i.traffic
        },
        member_suspects: i.totals.member_suspect,
        health: cluster_health(node, i.now),
        links: link_matrix(node, i.now),
        name_conflicts: node
            .name_conflicts(i.now)
            .into_iter()
            .map(|c| NameConflict {
                addr: c.addr().to_string(),
                source: c.source.to_string(),
                advertised: c.advertised.map(|ip| ip.to_string()),
                incarnation: c.incarnation,
                last_heard_ms: i.now.saturating_duration_since(c.last_heard).as_millis() as u64,
                since_ms: i.now.saturating_duration_since(c.since).as_millis() as u64,
            })
            .collect(),
        history: i.history.cloned(),
        network: i.network,
    }
}

/// This node's health and every member's, in name order.
fn cluster_health<R: rand::Rng>(node: &Node<R>, now: Instant) -> Vec<MemberHealth> {
    let me = &node.identity().name;
    let mut rows: Vec<MemberHealth> = node
        .members()
        .iter()
        .map(|m| {
            let g = node.board().get(&m.name).filter(|g| g.incarnation == m.incarnation);
            let age = g.and_then(|g| g.at).map(|at| now.saturating_duration_since(at).as_millis() as u64);
            member_health(&m.name, m.state.as_str(), age, g.and_then(|g| g.health.as_ref()))
        })
        .collect();
    // The member table is in name order: this node goes in its place.
    let own = node.health();
    let at = rows.partition_point(|r| r.name.as_str() < me.as_str());
    rows.insert(at, member_health(me, "alive", own.map(|_| 0), own));
    rows
}

fn member_health(name: &str, state: &str, age_ms: Option<u64>, h: Option<&Health>) -> MemberHealth {
    const FLAGS: [(u8, &str); 4] = [
        (health::UNDER_VOLTAGE, "under_voltage"),
        (health::FREQ_CAPPED, "freq_capped"),
        (health::THROTTLED, "throttled"),
        (health::SOFT_TEMP_LIMIT, "soft_temp_limit"),
    ];
    MemberHealth {
        name: name.to_owned(),
        state: state.to_owned(),
        age_ms,
        temp_c: h.and_then(Health::temp_c),
        throttle: h
            .and_then(|h| h.throttle)
            .map(|t| FLAGS.iter().filter(|(bit, _)| t & bit != 0).map(|(_, n)| (*n).to_owned()).collect()),
        load_1: h.and_then(Health::load1),
        mem_used_pct: h.and_then(|h| h.mem_used_pct).map(f64::from),
        fan_rpm: h.and_then(|h| h.fan_rpm).map(u32::from),
        root_readonly: h.and_then(|h| h.root_readonly),
        clock_synced: h.and_then(|h| h.clock_synced),
        uptime_s: h.and_then(|h| h.uptime_s).map(u64::from),
        version: h.map(|h| h.version.clone()),
    }
}

/// This node's links (from its own probes) and every member's (from their
/// heartbeats), for members still in the table.
fn link_matrix<R: rand::Rng>(node: &Node<R>, now: Instant) -> BTreeMap<String, BTreeMap<String, LinkCell>> {
    let mut matrix = BTreeMap::new();
    let own: BTreeMap<String, LinkCell> = node
        .link_stats(now)
        .into_iter()
        .filter_map(|l| Some((l.peer, LinkCell { rtt_ms: l.rtt_ms, loss_pct: l.loss_pct?, age_ms: 0 })))
        .collect();
    if !own.is_empty() {
        matrix.insert(node.identity().name.clone(), own);
    }
    for (name, g) in node.board().iter() {
        let current = node.members().get(name).is_some_and(|m| m.incarnation == g.incarnation);
        if !current || g.links.is_empty() {
            continue;
        }
        let row = g
            .links
            .iter()
            .map(|(peer, r)| {
                let cell = LinkCell {
                    rtt_ms: r.rtt_cms.map(|c| f64::from(c) / 100.0),
                    loss_pct: f64::from(r.loss_pct),
                    age_ms: now.saturating_duration_since(r.at).as_millis() as u64,
                };
                (peer.clone(), cell)
            })
            .collect();
        matrix.insert(name.to_owned(), row);
    }
    matrix
}

fn sensor_status(r: &Reading) -> SensorStatus {
    SensorStatus {
        temperatures: r.temperatures.iter().cloned().collect(),
        cpu_freq_mhz: r.cpu_freq_mhz,
        cpu_usage_pct: r.cpu_usage_pct,
        load_1: r.load_1,
        mem_used_pct: r.mem_used_pct,
        throttle: match (r.throttle, r.under_voltage_alarm) {
            (Some(t), _) => Some(t.flags().iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()),
            (None, Some(alarm)) => Some(BTreeMap::from([("under_voltage".to_owned(), alarm)])),
            (None, None) => None,
        },
        net: r.net.as_ref().map(|n| NetStatus {
            interface: n.interface.clone(),
            up: n.up,
            rx_errors: n.rx_errors,
            tx_errors: n.tx_errors,
            wifi_signal_dbm: n.wifi_signal_dbm,
            speed_mbps: n.speed_mbps,
            full_duplex: n.full_duplex,
            carrier_changes: n.carrier_changes,
            rx_dropped: n.rx_dropped,
        }),
        fans: r.fans.iter().cloned().collect(),
        clock_synced: r.clock.map(|c| c.synced),
        clock_error_ms: r.clock.map(|c| c.error_ms),
        root_used_pct: r.root_used_pct,
        root_readonly: r.root_readonly,
        system_uptime_s: r.uptime_s,
    }
}

/// How the status endpoint asks the event loop for a snapshot: it sends the
/// reply half of a oneshot channel; the loop answers on its next turn.
pub type SnapshotRequest = tokio::sync::oneshot::Sender<Snapshot>;
