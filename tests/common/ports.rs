//! Free ports for agents, listeners and status endpoints: one UDP and one TCP
//! helper, both drawing from [`PORT_RANGE`], so what a test binds can never
//! collide with a socket the kernel gives an agent on its own.
//!
//! Must not: hand out the same port twice in one process.

use std::collections::HashSet;
use std::net::{TcpListener, UdpSocket};
use std::sync::{Mutex, PoisonError};

use super::random_u64;

/// Ports are drawn from here: below Linux's default ephemeral range
/// (32768-60999), so an agent's `data_port = 0` socket, which the kernel
/// takes from that range, can never squat on a port another test picked.
const PORT_RANGE: std::ops::Range<u16> = 20000..32000;

/// A UDP port in [`PORT_RANGE`] that no socket holds right now and that this
/// process has not handed out before. Random rather than sequential, so two
/// test binaries run at once are unlikely to collide either.
pub fn free_udp_port() -> u16 {
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut taken = TAKEN.lock().unwrap_or_else(PoisonError::into_inner);
    let taken = taken.get_or_insert_with(HashSet::new);
    let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
    for _ in 0..1000 {
        let port = PORT_RANGE.start + (random_u64() % span) as u16;
        // 0.0.0.0 conflicts with a socket bound to any local address, so this
        // also covers agents bound to 127.0.0.2 and friends.
        if !taken.contains(&port) && UdpSocket::bind(("0.0.0.0", port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free UDP port in {PORT_RANGE:?}");
}

/// A port that [`free_udp_port`] handed out and that no TCP socket holds on
/// loopback right now (status endpoints, node_exporter).
pub fn free_tcp_port() -> u16 {
    loop {
        let port = free_udp_port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
