//! config: what the shell tells a node at start, split by what may change
//! while it runs: its [`Identity`] for this life, and its [`Tuning`], which a
//! reload replaces whole; and the settings of the machines the node drives
//! that follow from the tuning.

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

/// How the shell starts a node: who it is, how it is tuned, and what its
/// state file held. Only [`Tuning`] can change while the node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub identity: Identity,
    pub tuning: Tuning,
    /// Counter reservations (a `[node] state_dir`): `Some(ceiling)` of the
    /// state file as read at start (0: none yet), `None` without a state
    /// directory (then nothing is ever asked to be written). Read once, at
    /// start: the node keeps the ceilings it writes from then on.
    pub reserved: Option<u64>,
}

/// What identifies the node for this life: who it is in the cluster and how
/// peers reach it, and the member table's size. Set at start and kept until
/// exit (the config keys behind it need a restart), but for the advertised
/// IP, which follows the host: see [`Node::set_ip`](super::Node::set_ip).
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub cluster: String,
    /// This life of the node: must grow across restarts (the shell uses the
    /// start time in milliseconds since the Unix epoch).
    pub incarnation: u64,
    pub max_members: usize,
    /// The data socket's actual port, advertised in heartbeats.
    pub data_port: u16,
    /// This node's IP as peers should reach it, advertised in heartbeats
    /// (`0.0.0.0`: unknown, peers take the datagrams' source).
    pub ip: Ipv4Addr,
    /// The cluster's gossip port: where a member that advertises its IP gets
    /// unicast heartbeats (every member shares it).
    pub gossip_port: u16,
    pub fanout: Fanout,
}

/// What tunes the node: the whole of what a reload may change, replaced
/// whole by [`Node::reconfigure`](super::Node::reconfigure). The timings
/// that follow from `heartbeat_interval` are not in it: see [`Timings`].
#[derive(Debug, Clone)]
pub struct Tuning {
    /// The keyring (`[gossip] secret` or `secret_file`): the first key seals
    /// what this node sends, every key opens. Empty: plain datagrams.
    pub keys: Vec<Vec<u8>>,
    pub heartbeat_interval: Duration,
    pub suspect_after: Duration,
    pub down_after: Duration,
    pub baton: BatonConfig,
    pub links: LinkConfig,
}

impl Tuning {
    /// The deadlines that follow from the heartbeat interval.
    pub(super) fn timings(&self) -> Timings {
        Timings::from_heartbeat(self.heartbeat_interval)
    }

    /// The member table's timings.
    pub(super) fn member_timing(&self) -> Timing {
        Timing { settle: self.down_after.saturating_sub(self.suspect_after) + self.links.probe_interval * 2 }
    }

    /// The failure detector's settings.
    pub(super) fn probe_config(&self) -> ProbeConfig {
        ProbeConfig {
            period: self.links.probe_interval,
            suspect_after: self.suspect_after,
            down_after: self.down_after,
            sweep: self.links.sweep,
        }
    }
}
