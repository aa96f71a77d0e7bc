//! listener: the demo's embedded StatsD server. It parses the DogStatsD
//! lines the agents send, exactly as a StatsD server would receive them, and
//! keeps per node what the table shows ([`Stats`]), and the metrics the
//! events area reads ([`Seen`]: downs, regenerations, member counts, as they
//! arrive): the demo never looks inside an agent.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::words::count;

/// `[statsd] prefix` and `[baton] metric` the listener parses; the demo
/// configures its agents with them.
pub(super) const PREFIX: &str = "herd";
pub(super) const BATON_METRIC: &str = "baton";
/// Receive buffer asked of the kernel for the listener: the baton gauge goes
/// out at every pass, tens of thousands of lines a second.
const LISTENER_BUFFER: usize = 1 << 20;
/// Datagrams read per wake-up before the agents get the thread back.
const DRAIN: usize = 64;
/// The `passes/s` column sums the passes counters received this long ago or less.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The embedded StatsD server's socket: 127.0.0.1, any free port, a large
/// receive buffer (what overflows it is dropped, as UDP may).
pub(super) fn statsd_listener() -> Result<UdpSocket> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let bind = || -> std::io::Result<UdpSocket> {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        let _ = sock.set_recv_buffer_size(LISTENER_BUFFER);
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        UdpSocket::from_std(sock.into())
    };
    bind().with_context(|| format!("cannot bind the demo's StatsD listener to {addr}"))
}

/// The datagram `first` that woke the listener, and what else is queued (the
/// gauges come in floods), up to [`DRAIN`], into `stats`.
pub(super) fn drain(listener: &UdpSocket, first: std::io::Result<usize>, buf: &mut [u8], stats: &mut Stats) {
    let mut r = first;
    for _ in 0..DRAIN {
        match r {
            Ok(n) => stats.ingest(&buf[..n], Instant::now()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                tracing::debug!(error = %e, "demo StatsD listener receive error");
                break;
            }
        }
        r = listener.try_recv(buf);
    }
}

/// One metric line, borrowed from the datagram:
/// `name:value|type[|@rate][|#tag:value,...]`.
#[derive(Debug, PartialEq)]
struct Metric<'a> {
    name: &'a str,
    value: &'a str,
    kind: &'a str,
    rate: f64,
    tags: &'a str,
}

impl<'a> Metric<'a> {
    fn parse(line: &'a str) -> Option<Metric<'a>> {
        let mut parts = line.split('|');
        let (name, value) = parts.next()?.split_once(':')?;
        let kind = parts.next()?;
        let mut metric = Metric { name, value, kind, rate: 1.0, tags: "" };
        for part in parts {
            if let Some(rate) = part.strip_prefix('@') {
                metric.rate = rate.parse().ok().filter(|r: &f64| *r > 0.0 && *r <= 1.0)?;
            } else if let Some(tags) = part.strip_prefix('#') {
                metric.tags = tags;
            }
        }
        Some(metric)
    }

    /// The value of tag `key` (`#host:psa,peer:psb` has `host` and `peer`).
    fn tag(&self, key: &str) -> Option<&'a str> {
        self.tags.split(',').find_map(|t| t.strip_prefix(key)?.strip_prefix(':'))
    }
}

/// What the listener learned about one node from the metrics tagged with its
/// name.
#[derive(Debug)]
pub(super) struct NodeView {
    name: String,
    /// Latest `herd.members` gauge (live members, itself included).
    members: Option<u64>,
    /// Highest `herd.members` gauge of the run: for the summary's "saw".
    pub(super) most_members: u64,
    /// `herd.baton.passes` counters with their arrival time, the last
    /// [`RATE_WINDOW`]'s worth (older ones are dropped as they age).
    passes: VecDeque<(Instant, u64)>,
    /// Highest `baton` gauge this node sent.
    counter: Option<u64>,
    /// The first sensor's label and latest reading (°C).
    temperature: Option<(String, f64)>,
    /// Latest `herd.link.rtt_ms` per peer.
    rtt: Vec<(String, f64)>,
}

impl NodeView {
    fn new(name: &str) -> NodeView {
        NodeView {
            name: name.to_owned(),
            members: None,
            most_members: 0,
            passes: VecDeque::new(),
            counter: None,
            temperature: None,
            rtt: Vec::new(),
        }
    }

    /// Passes in the last [`RATE_WINDOW`]; forgets older counters.
    fn passes_per_window(&mut self, now: Instant) -> u64 {
        while self.passes.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > RATE_WINDOW) {
            self.passes.pop_front();
        }
        self.passes.iter().map(|(_, n)| n).sum()
    }

    /// Mean over peers of the latest RTT to each, once any is known.
    fn mean_rtt(&self) -> Option<f64> {
        (!self.rtt.is_empty()).then(|| self.rtt.iter().map(|(_, ms)| ms).sum::<f64>() / self.rtt.len() as f64)
    }
}

/// A metric the events area reads (see `events`), as it arrived: which
/// node (its index) sent it, and when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Seen {
    pub(super) at: Instant,
    pub(super) node: usize,
    pub(super) what: Reported,
}

/// The metrics behind the events: `herd.member.down` and
/// `herd.baton.regenerated` counts, and the `herd.members` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reported {
    Down(u64),
    Regenerated(u64),
    Members(u64),
}

/// Everything the listener learned: per node, and the cluster's baton.
#[derive(Debug)]
pub(super) struct Stats {
    pub(super) nodes: Vec<NodeView>,
    /// The first baton gauge that arrived (any node), with its arrival time.
    first_baton: Option<(Instant, u64)>,
    /// The highest baton gauge so far, with the time it arrived.
    high_baton: Option<(Instant, u64)>,
    /// What the events area has not taken yet ([`Stats::take_seen`]).
    seen: Vec<Seen>,
}

impl Stats {
    pub(super) fn new(names: &[String]) -> Stats {
        Stats {
            nodes: names.iter().map(|n| NodeView::new(n)).collect(),
            first_baton: None,
            high_baton: None,
            seen: Vec::new(),
        }
    }

    /// The metrics for the events area that arrived since the last call, in
    /// arrival order.
    pub(super) fn take_seen(&mut self) -> Vec<Seen> {
        std::mem::take(&mut self.seen)
    }

    /// The baton's holder as the metrics tell it: of the nodes `live` says
    /// are running, the one that sent the highest `baton` gauge (the last to
    /// pass it on, as of its latest flush). `None` before any gauge.
    pub(super) fn holder(&self, live: impl Fn(usize) -> bool) -> Option<usize> {
        let sent = self.nodes.iter().enumerate().filter(|(i, _)| live(*i));
        sent.filter_map(|(i, n)| n.counter.map(|c| (c, i))).max().map(|(_, i)| i)
    }

    /// The relay as the events area weighs it: the passes per second every
    /// node counted (over the last [`RATE_WINDOW`]), and the highest `baton`
    /// gauge so far. With one baton each pass raises the highest counter by
    /// one; with two (a split), only the leading baton's passes do.
    pub(super) fn relay(&mut self, now: Instant) -> (f64, Option<u64>) {
        let passes: u64 = self.nodes.iter_mut().map(|n| n.passes_per_window(now)).sum();
        (passes as f64 / RATE_WINDOW.as_secs_f64(), self.high_baton.map(|(_, v)| v))
    }

    /// Takes one datagram of newline-separated metric lines. Lines it does not
    /// use, cannot parse, or from hosts it does not know are ignored.
    pub(super) fn ingest(&mut self, datagram: &[u8], at: Instant) {
        let text = String::from_utf8_lossy(datagram);
        for line in text.split('\n') {
            if let Some(m) = Metric::parse(line) {
                self.record(&m, at);
            }
        }
    }

    fn record(&mut self, m: &Metric<'_>, at: Instant) {
        let Some(host) = m.tag("host") else { return };
        let Some(index) = self.nodes.iter().position(|n| n.name == host) else { return };
        let node = &mut self.nodes[index];
        if m.name == BATON_METRIC {
            let (true, Ok(v)) = (m.kind == "g", m.value.parse::<u64>()) else { return };
            node.counter = Some(node.counter.map_or(v, |c| c.max(v)));
            self.first_baton.get_or_insert((at, v));
            if self.high_baton.is_none_or(|(_, high)| v > high) {
                self.high_baton = Some((at, v));
            }
            return;
        }
        let Some(name) = m.name.strip_prefix(PREFIX).and_then(|n| n.strip_prefix('.')) else { return };
        let Ok(value) = m.value.parse::<f64>() else { return };
        if !value.is_finite() {
            return;
        }
        let count = (value.max(0.0) / m.rate).round() as u64;
        let mut seen = |what| self.seen.push(Seen { at, node: index, what });
        match (name, m.kind) {
            ("members", "g") => {
                let v = value.max(0.0) as u64;
                node.members = Some(v);
                node.most_members = node.most_members.max(v);
                seen(Reported::Members(v));
            }
            ("baton.passes", "c") => node.passes.push_back((at, count)),
            ("member.down", "c") if count > 0 => seen(Reported::Down(count)),
            ("baton.regenerated", "c") if count > 0 => seen(Reported::Regenerated(count)),
            ("cpu.temperature", "g") => {
                let label = m.tag("sensor").unwrap_or_default();
                match &mut node.temperature {
                    Some((first, celsius)) if first == label => *celsius = value,
                    Some(_) => {}
                    None => node.temperature = Some((label.to_owned(), value)),
                }
            }
            ("link.rtt_ms", "g") => {
                let Some(peer) = m.tag("peer") else { return };
                match node.rtt.iter_mut().find(|(p, _)| p == peer) {
                    Some((_, ms)) => *ms = value,
                    None => node.rtt.push((peer.to_owned(), value)),
                }
            }
            _ => {}
        }
    }

    /// The rows of the table, as text cells in [`super::table::COLUMNS`] order.
    pub(super) fn rows(&mut self, now: Instant) -> Vec<[String; 6]> {
        let dash = || "-".to_owned();
        self.nodes
            .iter_mut()
            .map(|n| {
                [
                    n.name.clone(),
                    n.members.map_or_else(dash, |m| m.to_string()),
                    n.passes_per_window(now).to_string(),
                    n.counter.map_or_else(dash, |c| c.to_string()),
                    n.temperature.as_ref().map_or_else(dash, |(_, c)| format!("{c:.1}")),
                    n.mean_rtt().map_or_else(dash, |ms| format!("{ms:.2}")),
                ]
            })
            .collect()
    }

    /// The one summary line: nodes, who saw whom (from the highest member
    /// count each node reported), and the relay's rate: the growth of the
    /// highest baton counter between the first and the last baton gauge that
    /// arrived, over the time between them (the relay's running time, which
    /// begins two heartbeats after the agents).
    pub(super) fn summary(&self) -> String {
        let n = self.nodes.len();
        let peers = n - 1;
        let short: Vec<String> = self
            .nodes
            .iter()
            .filter(|v| (v.most_members.saturating_sub(1) as usize) < peers)
            .map(|v| {
                format!(
                    "{} saw {} of {}",
                    v.name,
                    v.most_members.saturating_sub(1),
                    count(peers as u64, "peer")
                )
            })
            .collect();
        let seen = if peers == 0 {
            "no peers to see".to_owned()
        } else if short.is_empty() {
            format!("every node saw {}", count(peers as u64, "peer"))
        } else {
            short.join(", ")
        };
        let relay = match (self.first_baton, self.high_baton) {
            (Some((t0, v0)), Some((t1, v1))) if t1 > t0 && v1 > v0 => {
                let secs = t1.duration_since(t0).as_secs_f64();
                let passes = v1 - v0;
                format!("{passes} passes in {secs:.1} s = {:.0} passes/s", passes as f64 / secs)
            }
            _ if peers == 0 => "no baton passes (the baton needs two nodes)".to_owned(),
            _ => {
                "no baton passes seen yet (the relay starts two heartbeats, 2 s, after the agents)".to_owned()
            }
        };
        format!("summary: {}, {seen}, {relay}", count(n as u64, "node"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::words::node_names as names;

    #[test]
    fn parses_dogstatsd_lines() {
        let m = Metric::parse("herd.link.rtt_ms:0.125|g|#host:psa,peer:psb").unwrap();
        assert_eq!((m.name, m.value, m.kind), ("herd.link.rtt_ms", "0.125", "g"));
        assert_eq!(m.tag("host"), Some("psa"));
        assert_eq!(m.tag("peer"), Some("psb"));
        assert_eq!(m.tag("sensor"), None);
        let m = Metric::parse("herd.baton.hop_ms:0.2|h|@0.01|#host:psc").unwrap();
        assert_eq!(m.rate, 0.01);
        assert_eq!(m.tag("host"), Some("psc"));
        assert_eq!(Metric::parse("garbage"), None);
        assert_eq!(Metric::parse("x:1|g|@zero"), None);
        assert_eq!(Metric::parse(""), None);
    }

    #[test]
    fn keeps_what_the_table_shows_per_node() {
        let mut s = Stats::new(&names(3));
        let t0 = Instant::now();
        s.ingest(b"baton:5|g|#host:psa\nbaton:7|g|#host:psa\nherd.members:3|g|#host:psa", t0);
        s.ingest(b"baton:6|g|#host:psb\nherd.baton.passes:40|c|#host:psb", t0);
        s.ingest(
            b"herd.baton.passes:2|c|#host:psb\nherd.members:2|g|#host:psb",
            t0 + Duration::from_millis(600),
        );
        s.ingest(
            b"herd.cpu.temperature:47.25|g|#host:psa,sensor:cpu_thermal\n\
              herd.cpu.temperature:30|g|#host:psa,sensor:other\n\
              herd.link.rtt_ms:0.1|g|#host:psa,peer:psb\n\
              herd.link.rtt_ms:0.3|g|#host:psa,peer:psc\n\
              herd.link.rtt_ms:0.5|g|#host:psa,peer:psb\n\
              herd.members:9|g|#host:stranger\n\
              herd.members:4|g|#host:psa,extra:tag",
            t0 + Duration::from_millis(700),
        );
        let now = t0 + Duration::from_millis(800);
        let rows = s.rows(now);
        assert_eq!(rows[0], ["psa", "4", "0", "7", "47.2", "0.40"].map(String::from));
        assert_eq!(rows[1], ["psb", "2", "42", "6", "-", "-"].map(String::from));
        assert_eq!(rows[2], ["psc", "-", "0", "-", "-", "-"].map(String::from));
        // A second later only the newer passes counter is in the window.
        let rows = s.rows(t0 + Duration::from_millis(1500));
        assert_eq!(rows[1][2], "2");
        assert_eq!(s.nodes[0].most_members, 4);
    }

    #[test]
    fn summary_says_who_saw_whom_and_the_relay_rate() {
        let mut s = Stats::new(&names(4));
        let t0 = Instant::now();
        for n in ["psa", "psb", "psc", "psd"] {
            s.ingest(format!("herd.members:4|g|#host:{n}").as_bytes(), t0);
        }
        assert_eq!(
            s.summary(),
            "summary: 4 nodes, every node saw 3 peers, no baton passes seen yet \
             (the relay starts two heartbeats, 2 s, after the agents)"
        );
        s.ingest(b"baton:1000|g|#host:psa", t0);
        s.ingest(b"baton:201000|g|#host:psc", t0 + Duration::from_secs(2));
        // Lower members later (others left) do not undo what a node saw.
        s.ingest(b"herd.members:1|g|#host:psb", t0 + Duration::from_secs(2));
        assert_eq!(
            s.summary(),
            "summary: 4 nodes, every node saw 3 peers, 200000 passes in 2.0 s = 100000 passes/s"
        );

        let mut s = Stats::new(&names(4));
        for (n, m) in [("psa", 4), ("psb", 4), ("psc", 4), ("psd", 3)] {
            s.ingest(format!("herd.members:{m}|g|#host:{n}").as_bytes(), t0);
        }
        assert!(s.summary().starts_with("summary: 4 nodes, psd saw 2 of 3 peers, "), "{}", s.summary());

        let s = Stats::new(&names(2));
        assert!(s.summary().starts_with("summary: 2 nodes, psa saw 0 of 1 peer, psb saw 0 of 1 peer, "));
        let s = Stats::new(&names(1));
        assert_eq!(
            s.summary(),
            "summary: 1 node, no peers to see, no baton passes (the baton needs two nodes)"
        );
    }
}
