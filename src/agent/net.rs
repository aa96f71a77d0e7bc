//! net: the agent's two UDP sockets, set up with socket2, and the resolver
//! that turns static `hosts` and `dns_name` into heartbeat targets.
//!
//! - The gossip socket is bound to `if_addr:port` with SO_REUSEADDR and
//!   SO_REUSEPORT, so several agents on one host share the gossip port; in the
//!   multicast strategy it joins `multicast_addr` on `multicast_if`, sends with
//!   TTL `multicast_ttl` through `multicast_if`, with loopback on (agents on
//!   the same host hear each other). With `broadcast_only` it sends to
//!   `multicast_addr` as a broadcast address instead of joining a group.
//! - The data socket is this agent's own unicast port (`data_port`, 0 = any
//!   free port), for probes and the baton.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::{GossipSection, Strategy};

pub struct Sockets {
    pub gossip: UdpSocket,
    pub data: UdpSocket,
    /// Where `Dest::Group` datagrams go: the multicast group or broadcast address.
    pub group: SocketAddr,
}

/// Receive buffer asked of the kernel: room for bursts of heartbeats from a
/// large cluster, and for the baton at full speed.
const RECV_BUFFER: usize = 1 << 20;

pub fn bind(g: &GossipSection) -> Result<Sockets> {
    let gossip = gossip_socket(g)?;
    let data_addr = SocketAddrV4::new(g.if_addr, g.data_port);
    let data = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    data.set_nonblocking(true)?;
    let _ = data.set_recv_buffer_size(RECV_BUFFER);
    data.bind(&data_addr.into()).with_context(|| {
        format!("cannot bind the data socket to {data_addr} ([gossip] if_addr, data_port; data_port = 0 picks a free port)")
    })?;
    Ok(Sockets {
        gossip: UdpSocket::from_std(gossip.into())?,
        data: UdpSocket::from_std(data.into())?,
        group: SocketAddr::V4(SocketAddrV4::new(g.multicast_addr, g.port)),
    })
}

fn gossip_socket(g: &GossipSection) -> Result<Socket> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    #[cfg(unix)]
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    let _ = sock.set_recv_buffer_size(RECV_BUFFER);
    let addr = SocketAddrV4::new(g.if_addr, g.port);
    sock.bind(&addr.into())
        .with_context(|| format!("cannot bind the gossip socket to {addr} ([gossip] if_addr, port)"))?;
    if g.strategy != Strategy::Multicast {
        return Ok(sock);
    }
    if g.broadcast_only {
        sock.set_broadcast(true).context("cannot enable broadcast on the gossip socket")?;
        return Ok(sock);
    }
    let iface = if g.multicast_if.is_unspecified() {
        "the default interface".to_owned()
    } else {
        g.multicast_if.to_string()
    };
    sock.join_multicast_v4(&g.multicast_addr, &g.multicast_if).with_context(|| {
        format!(
            "cannot join multicast group {} on {iface}; set [gossip] multicast_if to the address of \
             the interface to use (e.g. \"127.0.0.1\" on a single machine), or use strategy = \"static\"",
            g.multicast_addr
        )
    })?;
    sock.set_multicast_if_v4(&g.multicast_if)
        .with_context(|| format!("cannot send multicast through {iface} ([gossip] multicast_if)"))?;
    sock.set_multicast_ttl_v4(g.multicast_ttl)?;
    sock.set_multicast_loop_v4(true)?;
    Ok(sock)
}

/// Whether [`own_ip`] has to work the address out (neither `if_addr` nor
/// `multicast_if` names it).
pub fn derives_ip(g: &GossipSection) -> bool {
    g.if_addr.is_unspecified() && g.multicast_if.is_unspecified()
}

/// The IP this agent advertises in its heartbeats: `if_addr` or
/// `multicast_if` when set, else the source address the kernel picks towards
/// the peers (the group, the broadcast address or the first seed), found by
/// connecting a UDP socket (nothing is sent). `0.0.0.0` if there is no route
/// yet: peers then use the datagrams' source.
pub fn own_ip(g: &GossipSection, seeds: &[SocketAddr]) -> Ipv4Addr {
    if !g.if_addr.is_unspecified() {
        return g.if_addr;
    }
    if !g.multicast_if.is_unspecified() {
        return g.multicast_if;
    }
    let target = match g.strategy {
        Strategy::Multicast => Some(SocketAddr::from((g.multicast_addr, g.port))),
        Strategy::Static | Strategy::Dns => seeds.first().copied(),
    };
    let found = target.and_then(|target| {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        let _ = sock.set_broadcast(true);
        sock.connect(target).ok()?;
        match sock.local_addr().ok()?.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        }
    });
    found.unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// Resolves the unicast heartbeat targets every `every` and publishes them
/// whenever they change (sorted): `hosts` for the static strategy,
/// `dns_name`'s A records (at the gossip port) for the DNS strategy. IPv6
/// answers are skipped: herd's sockets are IPv4. A failed lookup keeps the
/// previous targets and is logged once until it recovers. Returns when the
/// receiver is gone.
pub async fn resolve_seeds(g: GossipSection, every: Duration, tx: mpsc::Sender<Vec<SocketAddr>>) {
    let mut failing = false;
    let mut current = Vec::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let names: Vec<String> = match g.strategy {
            Strategy::Static => g.hosts.clone(),
            Strategy::Dns => vec![format!("{}:{}", g.dns_name, g.port)],
            Strategy::Multicast => return,
        };
        let mut seeds = Vec::new();
        let mut errors = Vec::new();
        for name in &names {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(addrs) => seeds.extend(addrs.filter(SocketAddr::is_ipv4)),
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        seeds.sort_unstable();
        seeds.dedup();
        if errors.is_empty() {
            if failing {
                debug!("peer lookup recovered");
            }
            failing = false;
        } else if !failing {
            failing = true;
            warn!(errors = %errors.join("; "), "cannot resolve peers; keeping the previous ones");
        }
        if (errors.is_empty() || !seeds.is_empty()) && seeds != current {
            debug!(?seeds, "heartbeat targets");
            current = seeds.clone();
            if tx.send(seeds).await.is_err() {
                return; // the agent is gone
            }
        }
    }
}
