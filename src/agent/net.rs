//! net: the agent's two UDP sockets, set up with socket2, and the resolver
//! that turns static `hosts` and `dns_name` into heartbeat targets.
//!
//! - The gossip socket is bound to `if_addr:port` with SO_REUSEADDR and
//!   SO_REUSEPORT, so several agents on one host share the gossip port; in the
//!   multicast strategy it sends with TTL `multicast_ttl`, with loopback on
//!   (agents on the same host hear each other), and joins the group where
//!   `network::follow` says (not here: the network may not be there yet).
//!   With `broadcast_only` it sends to `multicast_addr` as a broadcast
//!   address instead of joining a group.
//! - The data socket is this agent's own unicast port (`data_port`, 0 = any
//!   free port), for probes and the baton.
//! - Neither needs a network to be bound: an `if_addr` this host does not
//!   have yet is bound with IP_FREEBIND and used once the address comes.
//! - Both are registered with the reactor for reading only. Sends never
//!   wait (a full buffer drops the datagram), so nothing waits to write;
//!   and an edge-triggered registration for writing would wake the process
//!   each time the kernel frees a sent datagram's buffer (on a network
//!   card, once per datagram sent, after it went out).

use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::network::Group;
use crate::config::{GossipSection, Strategy};

pub struct Sockets {
    pub gossip: Udp,
    pub data: Udp,
    /// Where `Dest::Group` datagrams go: the multicast group or broadcast address.
    pub group: SocketAddr,
    /// The gossip socket's group membership, kept by `network::follow`.
    pub membership: Group,
}

/// One UDP socket as the transport reads it (see `transport`): registered
/// with the reactor for reading only, read up to two datagrams at a time.
pub struct Udp {
    pub fd: AsyncFd<UdpSocket>,
    /// The second datagram of the last read, not yet handed out: its length
    /// and source; the bytes are in `ahead`.
    pub(super) held: Option<(usize, SocketAddr)>,
    /// Left uninitialised (the kernel writes it), so that its pages cost
    /// memory only as far as datagrams reach.
    pub(super) ahead: Box<[MaybeUninit<u8>]>,
}

/// Room for one datagram read ahead: any UDP payload, as the driver's own
/// buffers.
const AHEAD: usize = 65536;

/// Receive buffer asked of the kernel: room for bursts of heartbeats from a
/// large cluster, and for the baton at full speed.
const RECV_BUFFER: usize = 1 << 20;

pub fn bind(g: &GossipSection) -> Result<Sockets> {
    let gossip = gossip_socket(g)?;
    let data_addr = SocketAddrV4::new(g.if_addr, g.data_port);
    let data = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    data.set_nonblocking(true)?;
    free_bind(&data, g)?;
    let _ = data.set_recv_buffer_size(RECV_BUFFER);
    data.bind(&data_addr.into()).with_context(|| {
        format!("cannot bind the data socket to {data_addr} ([gossip] if_addr, data_port; data_port = 0 picks a free port)")
    })?;
    Ok(Sockets {
        gossip: readable(gossip)?,
        data: readable(data)?,
        group: SocketAddr::V4(SocketAddrV4::new(g.multicast_addr, g.port)),
        membership: Group::default(),
    })
}

/// `sock` registered with the reactor for reading only.
fn readable(sock: Socket) -> std::io::Result<Udp> {
    let fd = register_readable(UdpSocket::from(sock))?;
    Ok(Udp { fd, held: None, ahead: Box::new_uninit_slice(AHEAD) })
}

/// `fd` registered with the reactor for reading only (the agent's sockets,
/// the netlink socket, the loop's timerfd). `T` owns its descriptor (it is
/// made from and into an `OwnedFd`).
pub(crate) fn register_readable<T>(fd: T) -> std::io::Result<AsyncFd<T>>
where
    T: AsRawFd + From<OwnedFd> + Into<OwnedFd>,
{
    // SAFETY: `fd` owns its descriptor and is moved into the AsyncFd, which
    // owns it until both are dropped together: it stays open and the same.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// An `if_addr` may not be on any interface yet (DHCP, Wi-Fi): IP_FREEBIND
/// lets the socket bind it anyway and receive once it is there.
fn free_bind(sock: &Socket, g: &GossipSection) -> Result<()> {
    if !g.if_addr.is_unspecified() {
        sock.set_freebind_v4(true).context("cannot set IP_FREEBIND for [gossip] if_addr")?;
    }
    Ok(())
}

fn gossip_socket(g: &GossipSection) -> Result<Socket> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    #[cfg(unix)]
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    free_bind(&sock, g)?;
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
    sock.set_multicast_ttl_v4(g.multicast_ttl)?;
    sock.set_multicast_loop_v4(true)?;
    Ok(sock)
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
