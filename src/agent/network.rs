//! network: the host's network as the agent needs it, followed as the kernel
//! reports it rather than on a timer.
//!
//! - [`follow`] works out, from the interfaces and routes there are now,
//!   where heartbeats go out (the interface holding `multicast_if`, else the
//!   kernel's route to the group, the broadcast address or the first peer),
//!   which address this node advertises, and joins the multicast group on
//!   that interface: again after the interface was deleted and created anew
//!   (the kernel drops a group membership with its interface), and on the new
//!   one when the route moves. When it cannot, it says what the agent waits
//!   for ([`Waiting`]). A missing network is a state, never an error that
//!   ends the agent: the sockets are bound without it (see `net::bind`).
//! - [`watch`] is a netlink socket subscribed to IPv4 address, link and
//!   route changes. Every burst of messages wakes the loop once, which calls
//!   [`follow`] again: the messages are not parsed beyond their type (for
//!   the debug log), the truth is read afresh. A raw socket of a few lines,
//!   rather than the rtnetlink crates (an async netlink stack and message
//!   types the agent would never read, in a binary at 94 % of its size
//!   budget) or if-addrs' notifier (a blocking wait on a thread of its own,
//!   and blind to routes).
//! - [`Followed`] is the network as the agent last followed it: each change
//!   said once (the log line, systemd's status), the IP to advertise when it
//!   moves, when to look again without a wake-up, and the status endpoint's
//!   `network`.
//!
//! Must not: block (no DNS; netlink is read without waiting), or keep a
//! timer (the driver's one timer re-checks, at [`Followed::recheck`], only
//! while waiting, or when netlink is not available).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use socket2::{InterfaceIndexOrAddress, SockRef};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::snapshot::NetworkStatus;
use crate::config::{GossipSection, Strategy};

/// What an agent without a network waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// No interface but loopback has an IPv4 address (Wi-Fi not associated
    /// yet, no DHCP lease).
    NoAddress,
    /// `[gossip] <key>` names an address no interface of this host has.
    Missing { key: &'static str, addr: Ipv4Addr },
    /// The kernel has no route to where heartbeats go (the multicast group,
    /// the broadcast address, the first peer).
    NoRoute { to: Ipv4Addr },
    /// The interface heartbeats leave by has no link (a cable out, Wi-Fi
    /// not associated: no carrier).
    LinkDown { interface: String },
    /// The kernel refused the multicast group on the chosen interface.
    Join { interface: String, error: String },
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::NoAddress => write!(f, "no IPv4 address on any interface but loopback"),
            Waiting::Missing { key, addr } => {
                write!(f, "[gossip] {key} = \"{addr}\" is not an address of this host")
            }
            Waiting::NoRoute { to } => write!(f, "no route to {to} (no default route, and none for it)"),
            Waiting::LinkDown { interface } => write!(f, "{interface} has no link (no carrier)"),
            Waiting::Join { interface, error } => {
                write!(f, "cannot join the multicast group on {interface}: {error}")
            }
        }
    }
}

/// Where the agent stands with the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Heartbeats can go out, through `interface` when one is known (the
    /// unicast strategies before any peer is known have none), advertising
    /// `ip` (`0.0.0.0`: peers take the datagrams' source address).
    Ready {
        ip: Ipv4Addr,
        interface: Option<String>,
    },
    Waiting(Waiting),
}

impl State {
    /// The address heartbeats advertise in this state.
    pub fn ip(&self, g: &GossipSection) -> Ipv4Addr {
        match self {
            State::Ready { ip, .. } => *ip,
            State::Waiting(_) => advertised(g, Ipv4Addr::UNSPECIFIED),
        }
    }

    pub fn waiting(&self) -> Option<&Waiting> {
        match self {
            State::Waiting(w) => Some(w),
            State::Ready { .. } => None,
        }
    }
}

/// How often the network is followed again without a netlink wake-up: while
/// the agent waits for one (a cause netlink does not report, such as a
/// multicast route refused), and always when netlink is not available.
const RECHECK: Duration = Duration::from_secs(5);

/// The network as the agent last followed it.
pub struct Followed {
    /// `None` before the first look.
    state: Option<State>,
    /// When it changed to `state`.
    since: Instant,
    /// Changes followed since the first look.
    changes: u64,
    /// When to follow it again without a wake-up: while waiting, or without
    /// netlink.
    recheck: Option<Instant>,
}

impl Followed {
    /// Before the first look, at `now`.
    pub fn new(now: Instant) -> Followed {
        Followed { state: None, since: now, changes: 0, recheck: None }
    }

    /// What the agent waits for before it can reach the cluster, if anything.
    pub fn waiting(&self) -> Option<&Waiting> {
        self.state.as_ref().and_then(State::waiting)
    }

    /// When to follow the network again without a wake-up, if at all.
    pub fn recheck(&self) -> Option<Instant> {
        self.recheck
    }

    /// Follow it again at the next turn (a send found the network gone).
    pub fn recheck_now(&mut self, now: Instant) {
        self.recheck = Some(now);
    }

    /// Takes `state`, as [`follow`] just found it (`watched`: netlink
    /// reports changes). A change is said once: WARN when the agent starts
    /// waiting, INFO when it is back or renumbered, and systemd's status
    /// line. Returns the IP to advertise when the state changed.
    pub fn update(
        &mut self,
        state: State,
        g: &GossipSection,
        watched: bool,
        now: Instant,
    ) -> Option<Ipv4Addr> {
        self.recheck = (state.waiting().is_some() || !watched).then_some(now + RECHECK);
        if self.state.as_ref() == Some(&state) {
            return None;
        }
        let ip = state.ip(g);
        let via = match &state {
            State::Ready { interface: Some(i), .. } => i.as_str(),
            _ => "-",
        };
        // One line per change (built here, logged at one of two call sites:
        // each tracing call site costs the Pi's binary its own code).
        let waited = now.saturating_duration_since(self.since);
        let line = match (self.state.as_ref(), &state) {
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
                if self.waiting().is_none() {
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
        if self.state.is_some() {
            self.changes += 1;
        }
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]) {
            debug!("sd_notify STATUS failed: {e}");
        }
        // Waiting for another reason is the same wait.
        let still_waiting = state.waiting().is_some() && self.waiting().is_some();
        if !still_waiting {
            self.since = now;
        }
        self.state = Some(state);
        Some(ip)
    }

    /// The status endpoint's `network`.
    pub fn status(&self, now: Instant, g: &GossipSection) -> NetworkStatus {
        let state = self.state.as_ref();
        NetworkStatus {
            state: if self.waiting().is_some() { "waiting" } else { "ready" }.to_owned(),
            waiting_for: self.waiting().map(ToString::to_string),
            interface: match state {
                Some(State::Ready { interface, .. }) => interface.clone(),
                _ => None,
            },
            address: state.map_or(advertised(g, Ipv4Addr::UNSPECIFIED), |s| s.ip(g)).to_string(),
            since_ms: now.saturating_duration_since(self.since).as_millis() as u64,
            changes: self.changes,
        }
    }
}

/// The gossip socket's group membership: the interface it was last joined
/// on, left when the route moves to another.
#[derive(Debug, Default)]
pub struct Group {
    joined: Option<Joined>,
}

/// An interface, by index (or by address where the index is unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Joined {
    Index(u32),
    Address(Ipv4Addr),
}

impl Joined {
    fn on(self) -> InterfaceIndexOrAddress {
        match self {
            Joined::Index(i) => InterfaceIndexOrAddress::Index(i),
            Joined::Address(a) => InterfaceIndexOrAddress::Address(a),
        }
    }
}

/// Where heartbeats go out: the source address the kernel picks and its
/// interface.
struct Outbound {
    ip: Ipv4Addr,
    interface: Option<String>,
    index: Option<u32>,
    /// The interface has a link (IFF_RUNNING: carrier, or associated).
    running: bool,
}

/// The network now: what `g` needs of it, with the group joined where
/// heartbeats go out (multicast strategy). `seeds` are the unicast
/// strategies' heartbeat targets. Cheap (one getifaddrs, one UDP socket
/// connected without sending, one or two setsockopts): called at start, on
/// every netlink wake-up and on new seeds.
pub fn follow(g: &GossipSection, seeds: &[SocketAddr], gossip: &UdpSocket, group: &mut Group) -> State {
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(list) => list,
        Err(e) => {
            debug!(error = %e, "cannot list the interfaces");
            Vec::new()
        }
    };
    let out = match outbound(g, seeds, &interfaces) {
        Ok(out) => out,
        Err(why) => return State::Waiting(why),
    };
    if !out.running
        && let Some(interface) = &out.interface
    {
        // Sends would go nowhere; the group membership stays with the
        // interface, and a netlink wake-up comes with the carrier.
        return State::Waiting(Waiting::LinkDown { interface: interface.clone() });
    }
    if g.strategy == Strategy::Multicast
        && !g.broadcast_only
        && let Err(why) = group.join(&SockRef::from(gossip), g, &out)
    {
        return State::Waiting(why);
    }
    State::Ready { ip: advertised(g, out.ip), interface: out.interface }
}

/// The address heartbeats advertise: `if_addr` or `multicast_if` when set,
/// else `derived` (the source address towards the peers).
pub fn advertised(g: &GossipSection, derived: Ipv4Addr) -> Ipv4Addr {
    [g.if_addr, g.multicast_if].into_iter().find(|ip| is_host_addr(*ip)).unwrap_or(derived)
}

/// A unicast address that an interface may hold (not `0.0.0.0`, a group or
/// the broadcast address).
fn is_host_addr(ip: Ipv4Addr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast()
}

fn outbound(
    g: &GossipSection,
    seeds: &[SocketAddr],
    interfaces: &[if_addrs::Interface],
) -> Result<Outbound, Waiting> {
    let holder = |ip: Ipv4Addr| interfaces.iter().find(|i| i.addr.ip() == IpAddr::V4(ip));
    let named = |ip: Ipv4Addr| {
        let i = holder(ip);
        Outbound {
            ip,
            interface: i.map(|i| i.name.clone()),
            index: i.and_then(|i| i.index),
            running: i.is_none_or(if_addrs::Interface::is_oper_up),
        }
    };
    let has_address = interfaces.iter().any(|i| matches!(i.addr.ip(), IpAddr::V4(ip) if !ip.is_loopback()));
    for (key, addr) in [("if_addr", g.if_addr), ("multicast_if", g.multicast_if)] {
        if is_host_addr(addr) && holder(addr).is_none() {
            return Err(Waiting::Missing { key, addr });
        }
    }
    if g.strategy == Strategy::Multicast && is_host_addr(g.multicast_if) {
        return Ok(named(g.multicast_if));
    }
    let target = match g.strategy {
        Strategy::Multicast => Some(SocketAddrV4::new(g.multicast_addr, g.port)),
        Strategy::Static | Strategy::Dns => seeds.iter().find_map(|s| match s {
            SocketAddr::V4(v4) => Some(*v4),
            SocketAddr::V6(_) => None,
        }),
    };
    // No peer known yet (DNS not answered, a host name not resolved):
    // nothing to route to. Without any address that is the network's
    // absence; with one, the resolver says why.
    let Some(target) = target else {
        if !has_address {
            return Err(Waiting::NoAddress);
        }
        return Ok(Outbound { ip: Ipv4Addr::UNSPECIFIED, interface: None, index: None, running: true });
    };
    match route_source(target) {
        Ok(ip) => Ok(named(ip)),
        Err(_) if !has_address => Err(Waiting::NoAddress),
        Err(_) => Err(Waiting::NoRoute { to: *target.ip() }),
    }
}

/// The source address the kernel would pick towards `to`, found by
/// connecting a UDP socket (nothing is sent).
fn route_source(to: SocketAddrV4) -> io::Result<Ipv4Addr> {
    let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    let _ = sock.set_broadcast(true);
    sock.connect(to)?;
    match sock.local_addr()?.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Ok(ip),
        _ => Err(io::ErrorKind::AddrNotAvailable.into()),
    }
}

impl Group {
    /// Joins `g.multicast_addr` on `out`'s interface (by index when known),
    /// leaving the one joined before if it was another. Joining where the
    /// socket is a member already is `EADDRINUSE`: still joined.
    fn join(&mut self, sock: &SockRef<'_>, g: &GossipSection, out: &Outbound) -> Result<(), Waiting> {
        let on = match out.index {
            Some(index) => Joined::Index(index),
            None => Joined::Address(out.ip),
        };
        let failed = |e: io::Error| Waiting::Join {
            interface: out.interface.clone().unwrap_or_else(|| out.ip.to_string()),
            error: e.to_string(),
        };
        if let Some(old) = self.joined.take()
            && old != on
        {
            // Fails when the old interface is gone, which left the group too.
            let _ = sock.leave_multicast_v4_n(&g.multicast_addr, &old.on());
        }
        match sock.join_multicast_v4_n(&g.multicast_addr, &on.on()) {
            Err(e) if e.raw_os_error() != Some(libc::EADDRINUSE) => return Err(failed(e)),
            _ => {}
        }
        self.joined = Some(on);
        if is_host_addr(g.multicast_if) {
            sock.set_multicast_if_v4(&g.multicast_if).map_err(failed)?;
        }
        Ok(())
    }
}

/// Whether a send failed because this host has no way out (rather than
/// because of the peer): the network is gone or going.
pub fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENETUNREACH | libc::ENETDOWN | libc::EADDRNOTAVAIL | libc::ENODEV))
}

/// Watches the kernel's IPv4 addresses, links and routes: one `()` on the
/// returned channel per burst of changes (a queued one covers later ones).
/// The task ends when the receiver is dropped, or on a netlink error (logged;
/// the receiver then sees the channel closed).
pub fn watch() -> io::Result<(tokio::task::JoinHandle<()>, mpsc::Receiver<()>)> {
    let fd = super::net::register_readable(netlink_socket()?)?;
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        // Messages are read for their type only; a longer one is truncated.
        let mut buf = vec![0u8; 8192];
        loop {
            let read = match fd.readable().await {
                Ok(mut guard) => match guard.try_io(|fd| recv(fd.get_ref(), &mut buf)) {
                    Err(_would_block) => continue,
                    Ok(read) => read,
                },
                Err(e) => Err(e),
            };
            let changes = match read {
                Ok(n) if tracing::enabled!(tracing::Level::DEBUG) => kinds(&buf[..n]),
                Ok(_) => String::new(),
                // The socket's buffer overran: messages were lost, so
                // something changed.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => "overrun".to_owned(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return warn!(
                        "cannot watch the network (netlink): {e}; it is looked at every 5 s instead"
                    );
                }
            };
            debug!("network changed: {changes}");
            if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                return;
            }
        }
    });
    Ok((task, rx))
}

/// A non-blocking NETLINK_ROUTE socket subscribed to IPv4 address, link and
/// route changes.
fn netlink_socket() -> io::Result<OwnedFd> {
    let flags = libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, flags, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all zeros is a valid sockaddr_nl.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV4_ROUTE) as u32;
    let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `addr` is a sockaddr_nl of `len` bytes that outlives the call.
    let bound = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) };
    if bound != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length for the call.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// The kinds of the netlink messages in one read, for the debug log:
/// "new address, del route".
fn kinds(mut buf: &[u8]) -> String {
    let mut out = Vec::new();
    // nlmsghdr: u32 length, u16 type, then flags, sequence and port id.
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if !(16..=buf.len()).contains(&len) {
            break;
        }
        let kind = match u16::from_ne_bytes([buf[4], buf[5]]) {
            libc::RTM_NEWLINK => "new link",
            libc::RTM_DELLINK => "del link",
            libc::RTM_NEWADDR => "new address",
            libc::RTM_DELADDR => "del address",
            libc::RTM_NEWROUTE => "new route",
            libc::RTM_DELROUTE => "del route",
            _ => "other",
        };
        out.push(kind);
        // Messages are 4-byte aligned (the last one's padding may be cut).
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn gossip(extra: &str) -> GossipSection {
        Config::from_toml_str(&format!("[gossip]\n{extra}\n"), "t.toml").unwrap().gossip
    }

    fn lo() -> Vec<if_addrs::Interface> {
        if_addrs::get_if_addrs().unwrap().into_iter().filter(|i| i.addr.ip().is_loopback()).collect()
    }

    #[test]
    fn a_configured_address_the_host_lacks_is_waited_for_by_its_key() {
        let g = gossip("multicast_if = \"192.0.2.7\"");
        let why = outbound(&g, &[], &lo()).err().unwrap();
        assert_eq!(why, Waiting::Missing { key: "multicast_if", addr: Ipv4Addr::new(192, 0, 2, 7) });
        assert_eq!(why.to_string(), "[gossip] multicast_if = \"192.0.2.7\" is not an address of this host");
        let g = gossip("if_addr = \"192.0.2.8\"");
        assert!(matches!(outbound(&g, &[], &lo()), Err(Waiting::Missing { key: "if_addr", .. })));
    }

    #[test]
    fn multicast_if_on_loopback_goes_out_there() {
        let g = gossip("multicast_if = \"127.0.0.1\"");
        let out = outbound(&g, &[], &lo()).ok().unwrap();
        assert_eq!(out.ip, Ipv4Addr::LOCALHOST);
        assert_eq!(out.interface.as_deref(), Some("lo"));
        assert!(out.index.is_some());
    }

    #[test]
    fn unicast_peers_on_loopback_are_reached_from_loopback() {
        let g = gossip("strategy = \"static\"\nhosts = [\"127.0.0.1:45892\"]");
        let out = outbound(&g, &["127.0.0.1:45892".parse().unwrap()], &lo()).ok().unwrap();
        assert_eq!(out.ip, Ipv4Addr::LOCALHOST);
        // Before the resolver has answered, on a host with no address but
        // loopback: that is a missing network, not a slow name server.
        assert_eq!(outbound(&g, &[], &lo()).err(), Some(Waiting::NoAddress));
    }

    #[test]
    fn the_advertised_address_prefers_the_configured_ones() {
        let derived = Ipv4Addr::new(10, 0, 0, 9);
        assert_eq!(advertised(&gossip(""), derived), derived);
        assert_eq!(advertised(&gossip("multicast_if = \"10.0.0.2\""), derived), Ipv4Addr::new(10, 0, 0, 2));
        let both = gossip("if_addr = \"10.0.0.1\"\nmulticast_if = \"10.0.0.2\"");
        assert_eq!(advertised(&both, derived), Ipv4Addr::new(10, 0, 0, 1));
        let waiting = State::Waiting(Waiting::NoAddress);
        assert_eq!(waiting.ip(&gossip("")), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn netlink_message_kinds_are_named_and_a_short_read_ends_the_walk() {
        let msg = |kind: u16, len: u32| {
            let mut m = len.to_ne_bytes().to_vec();
            m.extend(kind.to_ne_bytes());
            m.resize(len as usize, 0);
            m
        };
        let mut buf = msg(libc::RTM_NEWADDR, 20);
        buf.extend(msg(libc::RTM_DELROUTE, 16));
        buf.extend([0; 7]);
        assert_eq!(kinds(&buf), "new address, del route");
        assert_eq!(kinds(&msg(libc::RTM_NEWLINK, 0)[..0]), "");
        // A length past the read (or wrapping the arithmetic) ends the walk.
        let mut huge = msg(libc::RTM_NEWADDR, 16);
        huge[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(kinds(&huge), "");
    }

    #[test]
    fn sends_that_fail_for_want_of_a_network_are_told_apart() {
        assert!(is_gone(&io::Error::from_raw_os_error(libc::ENETUNREACH)));
        assert!(is_gone(&io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)));
        assert!(!is_gone(&io::Error::from_raw_os_error(libc::ECONNREFUSED)));
        assert!(!is_gone(&io::Error::from_raw_os_error(libc::EHOSTUNREACH)));
    }
}
