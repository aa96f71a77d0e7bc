//! The tests' StatsD server, and the one parser of the baton gauge that
//! every test reads the relay through.
//!
//! Must not: normalise what arrives (lines are kept byte for byte), or let a
//! malformed baton gauge pass unseen.

use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::toml_str;

/// A StatsD server for the tests: a UDP socket on loopback whose datagrams a
/// thread splits into lines, each stamped with its arrival time. Lines are
/// kept byte for byte, so tests can assert the exact metric text.
pub struct Statsd {
    pub addr: std::net::SocketAddr,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Statsd {
    pub fn start() -> Statsd {
        Statsd::start_on(vec![UdpSocket::bind("127.0.0.1:0").expect("bind statsd listener")])
    }

    /// One server reading several sockets into one list of lines (the lab
    /// binds one in each host's namespace, as a local dogstatsd would be);
    /// `addr` is the first socket's.
    pub fn start_on(socks: Vec<UdpSocket>) -> Statsd {
        let addr = socks[0].local_addr().expect("local addr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for sock in socks {
            sock.set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
            let (sink, stopped) = (Arc::clone(&lines), Arc::clone(&stop));
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stopped.load(Ordering::Relaxed) {
                    let Ok(n) = sock.recv(&mut buf) else { continue };
                    let at = Instant::now();
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let mut lines = sink.lock().unwrap_or_else(PoisonError::into_inner);
                    lines.extend(text.split('\n').filter(|l| !l.is_empty()).map(|l| (at, l.to_owned())));
                }
            });
        }
        Statsd { addr, lines, stop }
    }

    /// Every line received so far, with its arrival time.
    pub fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `[statsd] address` for an agent that reports here.
    pub fn address(&self) -> String {
        toml_str(&self.addr.to_string())
    }
}

impl Drop for Statsd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A baton gauge, parsed strictly: `Some((counter, host))` only for a line
/// that is exactly `baton:<counter>|g|#host:<host><tags>`, where `<counter>`
/// is a `u64` written as `u64` prints it (digits, no sign, no leading zero),
/// `<host>` is a node name (letters, digits, `-`, `_`, `.`; herd's own
/// rule), and `<tags>` is exactly
/// `tags` (`""` for none, else the added tags with their leading comma, e.g.
/// `",env:lab,rack:1"`). Anything else is `None`: another metric, another
/// type, other or missing tags, the plain-StatsD `baton.<host>:` form, a
/// trailing newline or space.
pub fn baton_gauge<'a>(line: &'a str, tags: &str) -> Option<(u64, &'a str)> {
    let (counter, rest) = line.strip_prefix("baton:")?.split_once("|g|#host:")?;
    let host = rest.strip_suffix(tags)?;
    let value: u64 = counter.parse().ok()?;
    let name = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
    (value.to_string() == counter && !host.is_empty() && host.bytes().all(name)).then_some((value, host))
}

/// Every baton gauge `statsd` received so far, in arrival order: (arrival,
/// counter, host). Panics on a line that starts with `baton` but is not a
/// gauge with exactly `tags` by [`baton_gauge`].
pub fn gauges(statsd: &Statsd, tags: &str) -> Vec<(Instant, u64, String)> {
    statsd
        .lines()
        .into_iter()
        .filter(|(_, l)| l.starts_with("baton"))
        .map(|(at, l)| {
            let (c, h) =
                baton_gauge(&l, tags).unwrap_or_else(|| panic!("not a byte-exact baton gauge: {l:?}"));
            (at, c, h.to_owned())
        })
        .collect()
}

/// The gauges `g` (of [`gauges`]) must be one baton's: every counter value
/// sent once, and each host's values strictly increasing.
pub fn assert_one_baton(g: &[(Instant, u64, String)]) {
    let mut seen = std::collections::BTreeSet::new();
    let mut last: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (_, c, h) in g {
        assert!(seen.insert(*c), "counter {c} sent twice: two batons");
        if let Some(prev) = last.insert(h, *c) {
            assert!(*c > prev, "{h} went from {prev} to {c}");
        }
    }
}
