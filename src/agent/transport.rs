//! transport: the datagram device the driver reads and writes, behind a small
//! trait, so one driver runs on the agent's UDP sockets and, in
//! unit tests, on an in-memory network (`memory`).
//!
//! The agent's sockets are read with `recvmmsg`, two datagrams at a time:
//! one read that returns a single datagram has also found the queue empty,
//! so the loop goes back to epoll without a read that fails (`EAGAIN`) to
//! learn it; the second datagram, when there is one, is handed out next.
//!
//! Contract for implementations: nothing here waits. A receive that finds
//! nothing registers the task's waker and says `Pending` (or `WouldBlock`);
//! a send that finds no room fails, and the datagram is dropped, as the
//! network could have dropped it.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::task::{Context, Poll, ready};

use tokio::io::Interest;

use super::net::{Sockets, Udp};
use super::network;
use crate::config::GossipSection;
use crate::core::node::{Dest, Via};

/// A received datagram's length and source.
pub type Received = io::Result<(usize, SocketAddr)>;

/// The first `n` bytes of `buf`, which a [`Transport`] receive that returned
/// a datagram of length `n` into it has written.
///
/// # Safety
/// The first `n` bytes of `buf` (or all of it, if shorter) must be
/// initialised: true of the buffer a `Transport` receive just returned
/// `Ok((n, _))` for (the trait's contract).
pub unsafe fn filled(buf: &mut [MaybeUninit<u8>], n: usize) -> &mut [u8] {
    let n = n.min(buf.len());
    // SAFETY: the caller vouches that the first `n` are initialised; `n` is
    // within the buffer.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), n) }
}

/// # Safety
/// A receive that returns `Ok((n, _))` has written the datagram's `n` bytes
/// (`n <= buf.len()`) at the start of the buffer it was given: the driver
/// reads them as initialised (see [`filled`]).
pub unsafe trait Transport {
    /// One datagram that arrived on `via`, written at the start of `buf`
    /// (its length is at most `buf.len()`: a longer one is cut), with its
    /// source; if none is waiting, registers `cx` to be woken for the next.
    /// See [`filled`] for the bytes.
    fn poll_recv(&mut self, via: Via, cx: &mut Context<'_>, buf: &mut [MaybeUninit<u8>]) -> Poll<Received>;

    /// The next waiting datagram on `via`, as `poll_recv`, or `WouldBlock`.
    /// The driver takes bursts on the data path this way without going back
    /// to the reactor.
    fn try_recv(&mut self, via: Via, buf: &mut [MaybeUninit<u8>]) -> Received;

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
    fn udp(&mut self, via: Via) -> &mut Udp {
        match via {
            Via::Gossip => &mut self.gossip,
            Via::Data => &mut self.data,
        }
    }
}

// SAFETY: every `Ok` comes from `read_two` (the kernel wrote `msg_len` bytes
// into the buffer) or `take_held` (copied that many into it).
unsafe impl Transport for Sockets {
    fn poll_recv(&mut self, via: Via, cx: &mut Context<'_>, buf: &mut [MaybeUninit<u8>]) -> Poll<Received> {
        let Udp { fd, held, ahead } = self.udp(via);
        if let Some(d) = take_held(held, ahead, buf) {
            return Poll::Ready(Ok(d));
        }
        loop {
            let mut ready = ready!(fd.poll_read_ready(cx))?;
            let mut got = None;
            // `WouldBlock` (nothing read, or the queue read to its end)
            // clears the readiness: poll again to register.
            let r = ready.try_io(|fd| read_two(fd.get_ref(), buf, held, ahead, &mut got));
            if let Some(d) = got {
                return Poll::Ready(Ok(d));
            }
            if let Ok(Err(e)) = r {
                return Poll::Ready(Err(e));
            }
        }
    }

    fn try_recv(&mut self, via: Via, buf: &mut [MaybeUninit<u8>]) -> Received {
        let Udp { fd, held, ahead } = self.udp(via);
        if let Some(d) = take_held(held, ahead, buf) {
            return Ok(d);
        }
        let mut got = None;
        // Without a system call when the last read found the queue's end
        // and epoll has said nothing since.
        let r = fd.try_io(Interest::READABLE, |sock| read_two(sock, buf, held, ahead, &mut got));
        match got {
            Some(d) => Ok(d),
            None => r.and(Err(io::ErrorKind::WouldBlock.into())),
        }
    }

    fn try_send(&mut self, dest: Dest, payload: &[u8]) -> io::Result<usize> {
        let sock = match dest {
            Dest::Group | Dest::Gossip(_) => &self.gossip,
            Dest::Data(_) => &self.data,
        };
        sock.fd.get_ref().send_to(payload, self.addr(dest))
    }

    fn addr(&self, dest: Dest) -> SocketAddr {
        match dest {
            Dest::Group => self.group,
            Dest::Gossip(a) | Dest::Data(a) => a,
        }
    }

    fn follow_network(&mut self, g: &GossipSection, seeds: &[SocketAddr]) -> network::State {
        network::follow(g, seeds, self.gossip.fd.get_ref(), &mut self.membership)
    }
}

/// The datagram read ahead by the last [`read_two`], copied into `buf`.
fn take_held(
    held: &mut Option<(usize, SocketAddr)>,
    ahead: &[MaybeUninit<u8>],
    buf: &mut [MaybeUninit<u8>],
) -> Option<(usize, SocketAddr)> {
    let (n, src) = held.take()?;
    let n = n.min(buf.len()).min(ahead.len());
    // SAFETY: the kernel wrote the datagram's `n` bytes at the start of
    // `ahead` (`recvmmsg`'s length for it), and `buf` has room for them.
    unsafe { std::ptr::copy_nonoverlapping(ahead.as_ptr(), buf.as_mut_ptr(), n) };
    Some((n, src))
}

/// One `recvmmsg` of up to two datagrams: the first into `buf` (its length
/// and source into `got`), a second into `ahead` (into `held`). Returns
/// `WouldBlock` when it read none, and also when it read one: the kernel
/// looked for a second and the queue was empty, which is what a further
/// read would have learnt with a system call of its own (`EAGAIN`), so the
/// caller's readiness is cleared now. A datagram arriving after that is a
/// new epoll event, so none is missed.
fn read_two(
    sock: &UdpSocket,
    buf: &mut [MaybeUninit<u8>],
    held: &mut Option<(usize, SocketAddr)>,
    ahead: &mut [MaybeUninit<u8>],
    got: &mut Option<(usize, SocketAddr)>,
) -> io::Result<()> {
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut names: [libc::sockaddr_in; 2] = unsafe { std::mem::zeroed() };
    let mut iov = [
        libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() },
        libc::iovec { iov_base: ahead.as_mut_ptr().cast(), iov_len: ahead.len() },
    ];
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
    for ((m, name), iov) in msgs.iter_mut().zip(&mut names).zip(&mut iov) {
        m.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every pointer in `msgs` is to a live buffer of the length
    // given with it (`buf`, `ahead`, `names`, `iov`), all outliving the call;
    // the kernel writes at most that much to each. No timeout.
    let n = unsafe {
        libc::recvmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), 2, libc::MSG_DONTWAIT as _, std::ptr::null_mut())
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let datagram = |i: usize| (msgs[i].msg_len as usize, source(&names[i]));
    match n {
        0 => Err(io::ErrorKind::WouldBlock.into()),
        1 => {
            *got = Some(datagram(0));
            Err(io::ErrorKind::WouldBlock.into())
        }
        _ => {
            *got = Some(datagram(0));
            *held = Some(datagram(1));
            Ok(())
        }
    }
}

/// The source of a datagram on an IPv4 socket.
fn source(name: &libc::sockaddr_in) -> SocketAddr {
    let ip = Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr));
    SocketAddr::from((ip, u16::from_be(name.sin_port)))
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

    // SAFETY: `try_recv` writes the `n` bytes it returns.
    unsafe impl Transport for Endpoint {
        fn poll_recv(
            &mut self,
            via: Via,
            cx: &mut Context<'_>,
            buf: &mut [MaybeUninit<u8>],
        ) -> Poll<Received> {
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

        fn try_recv(&mut self, via: Via, buf: &mut [MaybeUninit<u8>]) -> Received {
            let mut inboxes = self.net.0.lock().unwrap();
            let inbox = inboxes.get_mut(&self.addr(via)).expect("registered endpoint");
            let (bytes, src) = inbox.queue.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
            let n = bytes.len().min(buf.len());
            for (to, from) in buf.iter_mut().zip(&bytes[..n]) {
                to.write(*from);
            }
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

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;
    use crate::config::Config;

    /// Five datagrams queued on the data socket come out whole, in order,
    /// with their sources, two to a system call; then `WouldBlock`; and a
    /// datagram after that wakes `poll_recv`.
    #[tokio::test]
    async fn a_burst_is_read_whole_and_in_order_then_the_next_wakes_the_loop() {
        let text =
            "[gossip]\nif_addr = \"127.0.0.1\"\nstrategy = \"static\"\nhosts = [\"127.0.0.1:45892\"]\n";
        let g = Config::from_toml_str(text, "t.toml").unwrap().gossip;
        let mut s = crate::agent::net::bind(&g).unwrap();
        let to = s.data.fd.get_ref().local_addr().unwrap();
        let from = UdpSocket::bind("127.0.0.1:0").unwrap();
        let src = from.local_addr().unwrap();
        for i in 0..5u8 {
            from.send_to(&vec![i; 10 + usize::from(i)], to).unwrap();
        }
        let mut buf = Box::new_uninit_slice(65536);
        let first = poll_fn(|cx| s.poll_recv(Via::Data, cx, &mut buf)).await.unwrap();
        assert_eq!(first, (10, src));
        // SAFETY (here and below): each right after a receive returned that length.
        assert_eq!(unsafe { filled(&mut buf, 10) }, [0; 10]);
        for i in 1..5u8 {
            let (n, from_addr) = s.try_recv(Via::Data, &mut buf).unwrap();
            assert_eq!((n, from_addr), (10 + usize::from(i), src), "datagram {i}");
            let bytes = unsafe { filled(&mut buf, n) };
            assert!(bytes.iter().all(|b| *b == i), "datagram {i}: {bytes:?}");
        }
        let end = s.try_recv(Via::Data, &mut buf).unwrap_err();
        assert_eq!(end.kind(), io::ErrorKind::WouldBlock);
        from.send_to(b"late", to).unwrap();
        let late = poll_fn(|cx| s.poll_recv(Via::Data, cx, &mut buf)).await.unwrap();
        assert_eq!((late, &*unsafe { filled(&mut buf, 4) }), ((4, src), &b"late"[..]));
    }
}
