//! config: what the shell tells a node at start, and the settings of the
//! machines the node drives that follow from it.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::core::baton::BatonConfig;
use crate::core::links::LinkConfig;
use crate::core::membership::Timing;
use crate::core::probe::ProbeConfig;
use crate::core::timings::Timings;

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
    /// [`Node::set_ip`](super::Node::set_ip).
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

/// The member table's timings, from the node's config.
pub(super) fn member_timing(cfg: &NodeConfig, timings: Timings) -> Timing {
    Timing {
        suspect_after: cfg.suspect_after,
        down_after: cfg.down_after,
        probe_every: timings.probe_every,
        settle: cfg.down_after.saturating_sub(cfg.suspect_after) + cfg.links.probe_interval * 2,
    }
}

pub(super) fn probe_config(cfg: &NodeConfig) -> ProbeConfig {
    ProbeConfig {
        period: cfg.links.probe_interval,
        suspect_after: cfg.suspect_after,
        down_after: cfg.down_after,
        sweep: cfg.links.sweep,
    }
}
