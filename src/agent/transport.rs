//! transport: the datagram device the driver reads and writes, behind a small
//! trait, so one driver runs on the agent's UDP sockets and, in
//! unit tests, on an in-memory network (`memory`).
//!
//! Contract for implementations: nothing here waits. A receive that finds
//! nothing registers the task's waker and says `Pending` (or `WouldBlock`);
//! a send that finds no room fails, and the datagram is dropped, as the
//! network could have dropped it.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::task::{Context, Poll, ready};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::net::Sockets;
use super::network;
use crate::config::GossipSection;
use crate::core::node::{Dest, Via};

/// A received datagram's length and source.
pub type Received = io::Result<(usize, SocketAddr)>;

pub trait Transport {
    /// One datagram that arrived on `via`, into `buf`, with its source; if
    /// none is waiting, registers `cx` to be woken for the next.
    fn poll_recv(&mut self, via: Via, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Received>;

    /// The next waiting datagram on `via`, or `WouldBlock`. The driver takes
    /// bursts on the data path this way without going back to the reactor.
    fn try_recv(&mut self, via: Via, buf: &mut [u8]) -> Received;

    /// Sends one datagram now, or fails.
    fn try_send(&mut self, dest: Dest, payload: &[u8]) -> io::Result<usize>;

    /// The address a datagram for `dest` goes to (for logs).
    fn addr(&self, dest: Dest) -> SocketAddr;

    /// The network now, with the multicast group joined where heartbeats
    /// go out (see `network::follow`); `seeds` are the unicast strategies'
    /// heartbeat targets.
    fn follow_network(&mut self, g: &GossipSection, seeds: &[SocketAddr]) -> network::State;
}

impl Sockets {
    fn socket(&self, via: Via) -> &AsyncFd<UdpSocket> {
        match via {
            Via::Gossip => &self.gossip,
            Via::Data => &self.data,
        }
    }
}

impl Transport for Sockets {
    fn poll_recv(&mut self, via: Via, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Received> {
        let sock = self.socket(via);
        loop {
            let mut ready = ready!(sock.poll_read_ready(cx))?;
            // `WouldBlock` clears the readiness: poll again to register.
            if let Ok(r) = ready.try_io(|s| s.get_ref().recv_from(buf)) {
                return Poll::Ready(r);
            }
        }
    }

    fn try_recv(&mut self, via: Via, buf: &mut [u8]) -> Received {
        self.socket(via).try_io(Interest::READABLE, |s| s.recv_from(buf))
    }

    fn try_send(&mut self, dest: Dest, payload: &[u8]) -> io::Result<usize> {
        let sock = match dest {
            Dest::Group | Dest::Gossip(_) => &self.gossip,
            Dest::Data(_) => &self.data,
        };
        sock.get_ref().send_to(payload, self.addr(dest))
    }

    fn addr(&self, dest: Dest) -> SocketAddr {
        match dest {
            Dest::Group => self.group,
            Dest::Gossip(a) | Dest::Data(a) => a,
        }
    }

    fn follow_network(&mut self, g: &GossipSection, seeds: &[SocketAddr]) -> network::State {
        network::follow(g, seeds, self.gossip.get_ref(), &mut self.membership)
    }
}

/// An in-memory network for unit tests: every endpoint has a gossip and a
/// data address; `Dest::Group` reaches every endpoint's gossip inbox (its
/// own too, as multicast loopback does), unicast the inbox at that address.
/// Nothing is lost or reordered.
#[cfg(test)]
pub mod memory {
    use std::collections::{HashMap, VecDeque};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Mutex};
    use std::task::Waker;

    use super::*;

    #[derive(Default)]
    struct Inbox {
        queue: VecDeque<(Vec<u8>, SocketAddr)>,
        waker: Option<Waker>,
    }

    #[derive(Clone, Default)]
    pub struct Network(Arc<Mutex<HashMap<SocketAddr, Inbox>>>);

    pub struct Endpoint {
        net: Network,
        pub gossip: SocketAddr,
        pub data: SocketAddr,
    }

    impl Network {
        /// Endpoint `i` lives at 10.0.0.(i+1), gossip port 45892, data 45893.
        pub fn endpoint(&self, i: u8) -> Endpoint {
            let ip = Ipv4Addr::new(10, 0, 0, i + 1);
            let (gossip, data) = (SocketAddr::from((ip, 45892)), SocketAddr::from((ip, 45893)));
            let mut inboxes = self.0.lock().unwrap();
            inboxes.insert(gossip, Inbox::default());
            inboxes.insert(data, Inbox::default());
            Endpoint { net: self.clone(), gossip, data }
        }
    }

    impl Endpoint {
        fn addr(&self, via: Via) -> SocketAddr {
            match via {
                Via::Gossip => self.gossip,
                Via::Data => self.data,
            }
        }
    }

    impl Transport for Endpoint {
        fn poll_recv(&mut self, via: Via, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Received> {
            match self.try_recv(via, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut inboxes = self.net.0.lock().unwrap();
                    let inbox = inboxes.get_mut(&self.addr(via)).expect("registered endpoint");
                    inbox.waker = Some(cx.waker().clone());
                    // A datagram may have come between the two locks.
                    if inbox.queue.is_empty() {
                        return Poll::Pending;
                    }
                    drop(inboxes);
                    Poll::Ready(self.try_recv(via, buf))
                }
                r => Poll::Ready(r),
            }
        }

        fn try_recv(&mut self, via: Via, buf: &mut [u8]) -> Received {
            let mut inboxes = self.net.0.lock().unwrap();
            let inbox = inboxes.get_mut(&self.addr(via)).expect("registered endpoint");
            let (bytes, src) = inbox.queue.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            Ok((n, src))
        }

        fn try_send(&mut self, dest: Dest, payload: &[u8]) -> io::Result<usize> {
            let mut inboxes = self.net.0.lock().unwrap();
            let (src, targets): (SocketAddr, Vec<SocketAddr>) = match dest {
                Dest::Group => (
                    self.gossip,
                    inboxes.keys().filter(|a| a.port() == self.gossip.port()).copied().collect(),
                ),
                Dest::Gossip(a) => (self.gossip, vec![a]),
                Dest::Data(a) => (self.data, vec![a]),
            };
            for to in targets {
                // Like UDP: a datagram to nobody is gone.
                if let Some(inbox) = inboxes.get_mut(&to) {
                    inbox.queue.push_back((payload.to_vec(), src));
                    if let Some(w) = inbox.waker.take() {
                        w.wake();
                    }
                }
            }
            Ok(payload.len())
        }

        fn addr(&self, dest: Dest) -> SocketAddr {
            match dest {
                Dest::Group => SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.gossip.port())),
                Dest::Gossip(a) | Dest::Data(a) => a,
            }
        }

        /// Always there: the endpoint's own address.
        fn follow_network(&mut self, _: &GossipSection, _: &[SocketAddr]) -> network::State {
            let ip = match self.data.ip() {
                std::net::IpAddr::V4(ip) => ip,
                std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            network::State::Ready { ip, interface: None }
        }
    }
}
