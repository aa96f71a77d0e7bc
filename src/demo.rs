//! demo: `herd demo`, a whole cluster on this machine with no setup, no root
//! and no config file: the newcomer's first command.
//!
//! It owns, for the length of one run:
//! - N real agents (psa, psb, ... up to psz), each the unchanged
//!   [`crate::agent::run`] that `herd run` uses, as tasks of one tokio runtime
//!   on this thread, each built from a TOML text by
//!   [`Config::from_toml_str`], as a config file would be: loopback multicast,
//!   a gossip port picked free at start, `data_port = 0`, a random secret and
//!   a cluster name of its own, so a demo never joins or disturbs a real
//!   cluster (whose port is 45892) or another demo;
//! - an embedded StatsD listener (a UDP socket on 127.0.0.1, in the same
//!   runtime) that parses the DogStatsD lines the agents send and keeps, per
//!   node, what the table shows (`Stats`);
//! - the table on stdout, redrawn in place every second on a terminal, or
//!   printed as one plain block per second otherwise, and one summary line at
//!   the end. Agent logs go to stderr at `warn` (`RUST_LOG` overrides).
//!
//! Everything shown is measured from the metrics the agents actually send,
//! exactly as a StatsD server would receive them: the demo never looks inside
//! an agent.
//!
//! Must not: touch any file, need privileges, use the real gossip port, print
//! anything but the table and the summary on stdout, or leave an agent
//! running: every agent is stopped through its shutdown future (so it
//! announces its leave, as on SIGTERM) before [`run`] returns.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket as StdUdpSocket};
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rand::RngExt;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::Config;

/// `herd demo` without `--nodes`.
pub const DEFAULT_NODES: usize = 4;
/// Names are `ps` + one letter: psa to psz.
pub const MAX_NODES: usize = 26;

/// The gossip port of real clusters (libcluster's): never used by a demo.
const REAL_GOSSIP_PORT: u16 = 45892;
/// Demo gossip ports are drawn from here: below Linux's ephemeral range
/// (32768-60999), so no agent's `data_port = 0` socket can be given it, and
/// far from the real port.
const PORT_RANGE: Range<u16> = 20000..32000;
/// How often the table is drawn.
const REFRESH: Duration = Duration::from_secs(1);
/// The `passes/s` column sums the passes counters received this long ago or less.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Agents leave within a heartbeat; this is the bound before the demo gives up on them.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A run at least this long with no agent hearing another means discovery is
/// broken (heartbeats go out every second), not just slow.
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(3);
/// Receive buffer asked of the kernel for the listener: the baton gauge goes
/// out at every pass, tens of thousands of lines a second.
const LISTENER_BUFFER: usize = 1 << 20;
/// Datagrams read per wake-up before the agents get the thread back.
const DRAIN: usize = 64;

/// `[statsd] prefix` and `[baton] metric` the demo configures and parses.
const PREFIX: &str = "herd";
const BATON_METRIC: &str = "baton";

/// Runs `herd demo`: `nodes` agents (1 to 26) for `seconds` (or until Ctrl-C
/// or SIGTERM), then stops them and prints the summary. Blocks; builds its
/// own single-threaded runtime and initialises logging (stderr, `warn` unless
/// `RUST_LOG` says otherwise). Returns `Err` with a message for the user when
/// the demo cannot run (a socket cannot be bound, an agent fails) or when no
/// agent heard another (loopback multicast blocked).
pub fn run(nodes: usize, seconds: Option<u64>) -> Result<()> {
    if !(1..=MAX_NODES).contains(&nodes) {
        bail!("--nodes {nodes}: must be from 1 to {MAX_NODES} (the nodes are named psa to psz)");
    }
    if seconds == Some(0) {
        bail!("--seconds 0: must be at least 1 (or leave it out and stop the demo with Ctrl-C)");
    }
    init_tracing();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let screen = Screen { tty: std::io::stdout().is_terminal(), drawn: false };
    rt.block_on(demo(nodes, seconds.map(Duration::from_secs), screen))
}

/// Logs go to stderr, so the table on stdout stays readable; `RUST_LOG`
/// overrides the `warn` level. Does nothing if a subscriber is already set.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Why the demo stopped.
enum Stop {
    /// `--seconds` elapsed, or Ctrl-C / SIGTERM.
    Done,
    /// stdout is gone (e.g. piped into `head`): stop quietly.
    OutputClosed,
    /// An agent ended on its own: the demo cannot go on.
    AgentFailed(anyhow::Error),
}

async fn demo(nodes: usize, seconds: Option<Duration>, mut screen: Screen) -> Result<()> {
    let listener = statsd_listener()?;
    let statsd = listener.local_addr()?;
    let port = free_gossip_port()?;
    let secret = random_secret()?;
    let cluster = format!("demo-{}", std::process::id());
    let names = node_names(nodes);
    let mut configs = Vec::with_capacity(nodes);
    for name in &names {
        let text = agent_toml(name, &cluster, port, &secret, statsd);
        let config = Config::from_toml_str(&text, "herd demo")
            .map_err(|e| anyhow!("the demo's config for {name} is invalid (a bug in herd demo): {e}"))?;
        configs.push(config);
    }

    // Each agent's shutdown future completes when this turns true (or when
    // the sender is dropped, so an early return stops them too).
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut agents = JoinSet::new();
    for config in configs {
        let mut stop = stop_rx.clone();
        let name = config.node.name.clone();
        // Every log line of this agent names it: N agents share one process.
        // An error-level span, so it is on whatever level RUST_LOG asks for.
        let span = tracing::error_span!("agent", node = %name);
        agents.spawn(
            async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                (name, crate::agent::run(config, shutdown).await)
            }
            .instrument(span),
        );
    }

    let started = Instant::now();
    let header = Header { cluster, port, seconds, tty: screen.tty };
    let mut stats = Stats::new(&names);
    let mut tick = tokio::time::interval_at((started + REFRESH).into(), REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let signal = stop_signal();
    tokio::pin!(signal);
    let mut buf = vec![0u8; 65536];

    let stop = loop {
        tokio::select! {
            _ = &mut signal => break Stop::Done,
            r = listener.recv(&mut buf) => {
                // Take what else is queued too: the gauges come in floods.
                let mut r = r;
                for _ in 0..DRAIN {
                    match r {
                        Ok(n) => stats.ingest(&buf[..n], Instant::now()),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "demo StatsD listener receive error");
                            break;
                        }
                    }
                    r = listener.try_recv(&mut buf);
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let elapsed = now.duration_since(started);
                if screen.draw(&render(&header, &mut stats, now, elapsed)).is_err() {
                    break Stop::OutputClosed;
                }
                // On the tick, so a run of S seconds shows S tables.
                if seconds.is_some_and(|s| elapsed >= s) {
                    break Stop::Done;
                }
            }
            Some(done) = agents.join_next() => {
                let why = match done {
                    Ok((name, Ok(()))) => anyhow!("agent {name} stopped on its own"),
                    Ok((name, Err(e))) => anyhow!("agent {name} failed: {e:#}"),
                    Err(e) => anyhow!("an agent task failed: {e}"),
                };
                break Stop::AgentFailed(why);
            }
        }
    };
    let elapsed = started.elapsed();
    // What the run showed, before the agents' leaves change their gauges.
    let summary = stats.summary();
    let nobody_heard = nodes > 1 && stats.nodes.iter().all(|n| n.most_members <= 1);

    let _ = stop_tx.send(true);
    let stopped = stop_agents(&mut agents).await;
    match stop {
        Stop::AgentFailed(e) => return Err(e),
        Stop::OutputClosed => return stopped,
        Stop::Done => stopped?,
    }
    screen.line(&summary);
    if nobody_heard && elapsed >= DISCOVERY_DEADLINE {
        bail!(
            "no agent heard another in {:.0} s: multicast on the loopback interface seems blocked \
             (`ip link show lo` should say MULTICAST; check the firewall for 127.0.0.1 port {port})",
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// Waits for every agent to return after its shutdown future completed;
/// aborts them and fails after [`STOP_TIMEOUT`]. The first agent error, if
/// any, is returned once all have ended.
async fn stop_agents(agents: &mut JoinSet<(String, Result<()>)>) -> Result<()> {
    let deadline = tokio::time::sleep(STOP_TIMEOUT);
    tokio::pin!(deadline);
    let mut first_error = None;
    loop {
        tokio::select! {
            done = agents.join_next() => match done {
                None => break,
                Some(Ok((_, Ok(())))) => {}
                Some(Ok((name, Err(e)))) => {
                    first_error.get_or_insert(anyhow!("agent {name} failed while leaving: {e:#}"));
                }
                Some(Err(e)) => {
                    first_error.get_or_insert(anyhow!("an agent task failed while leaving: {e}"));
                }
            },
            _ = &mut deadline => {
                agents.abort_all();
                bail!("agents did not stop within {} s", STOP_TIMEOUT.as_secs());
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. A signal that cannot be listened
/// for is left out (then only the other one, or `--seconds`, stops the demo).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {}
            _ = ctrl_c => {}
        },
        Err(_) => ctrl_c.await,
    }
}

/// The embedded StatsD server's socket: 127.0.0.1, any free port, a large
/// receive buffer (what overflows it is dropped, as UDP may).
fn statsd_listener() -> Result<UdpSocket> {
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

/// A UDP port in [`PORT_RANGE`] that no socket on this machine holds now
/// (not even one bound to a single address), drawn at random so two demos
/// started together do not pick the same one. Never [`REAL_GOSSIP_PORT`].
fn free_gossip_port() -> Result<u16> {
    let mut rng = rand::make_rng::<SmallRng>();
    for _ in 0..200 {
        let port = rng.random_range(PORT_RANGE);
        if port != REAL_GOSSIP_PORT && StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("cannot find a free UDP port for the demo's gossip in {}-{}", PORT_RANGE.start, PORT_RANGE.end - 1)
}

/// 128 bits from the operating system, as 32 hex digits: the cluster's
/// secret, so the demo's gossip is authenticated and encrypted like a real
/// cluster's, and nothing else can join it.
fn random_secret() -> Result<String> {
    use rand::TryRng;
    let mut bytes = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| anyhow!("cannot get random bytes for the demo's secret: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// psa, psb, ... (`n` at most [`MAX_NODES`]).
fn node_names(n: usize) -> Vec<String> {
    (b'a'..=b'z').take(n).map(|c| format!("ps{}", c as char)).collect()
}

/// One agent's config file, as a user would write it. The values the
/// listener depends on (prefix, flavour, baton metric) are spelled out, so a
/// change of the defaults cannot silently empty the table.
fn agent_toml(name: &str, cluster: &str, port: u16, secret: &str, statsd: SocketAddr) -> String {
    format!(
        r#"[node]
name = "{name}"
cluster = "{cluster}"

[gossip]
strategy = "multicast"
port = {port}
multicast_if = "127.0.0.1"
data_port = 0
secret = "{secret}"

[baton]
enabled = true
main_node = ""
metric = "{BATON_METRIC}"
hold = "0ms"

[statsd]
address = "{statsd}"
prefix = "{PREFIX}"
flavor = "dogstatsd"
flush_interval = "200ms"

[telemetry]
interval = "1s"

[links]
probe_interval = "250ms"

[status]
listen = ""
"#
    )
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
struct NodeView {
    name: String,
    /// Latest `herd.members` gauge (live members, itself included).
    members: Option<u64>,
    /// Highest `herd.members` gauge of the run: for the summary's "saw".
    most_members: u64,
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

/// Everything the listener learned: per node, and the cluster's baton.
#[derive(Debug)]
struct Stats {
    nodes: Vec<NodeView>,
    /// The first baton gauge that arrived (any node), with its arrival time.
    first_baton: Option<(Instant, u64)>,
    /// The highest baton gauge so far, with the time it arrived.
    high_baton: Option<(Instant, u64)>,
}

impl Stats {
    fn new(names: &[String]) -> Stats {
        Stats { nodes: names.iter().map(|n| NodeView::new(n)).collect(), first_baton: None, high_baton: None }
    }

    /// Takes one datagram of newline-separated metric lines. Lines it does not
    /// use, cannot parse, or from hosts it does not know are ignored.
    fn ingest(&mut self, datagram: &[u8], at: Instant) {
        let text = String::from_utf8_lossy(datagram);
        for line in text.split('\n') {
            if let Some(m) = Metric::parse(line) {
                self.record(&m, at);
            }
        }
    }

    fn record(&mut self, m: &Metric<'_>, at: Instant) {
        let Some(host) = m.tag("host") else { return };
        let Some(node) = self.nodes.iter_mut().find(|n| n.name == host) else { return };
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
        match (name, m.kind) {
            ("members", "g") => {
                let v = value.max(0.0) as u64;
                node.members = Some(v);
                node.most_members = node.most_members.max(v);
            }
            ("baton.passes", "c") => node.passes.push_back((at, (value.max(0.0) / m.rate).round() as u64)),
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

    /// The rows of the table, as text cells in [`COLUMNS`] order.
    fn rows(&mut self, now: Instant) -> Vec<[String; 6]> {
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
    fn summary(&self) -> String {
        let n = self.nodes.len();
        let peers = n - 1;
        let short: Vec<String> = self
            .nodes
            .iter()
            .filter(|v| (v.most_members.saturating_sub(1) as usize) < peers)
            .map(|v| {
                format!(
                    "{} saw {} of {peers} {}",
                    v.name,
                    v.most_members.saturating_sub(1),
                    plural(peers, "peer")
                )
            })
            .collect();
        let seen = if peers == 0 {
            "no peers to see".to_owned()
        } else if short.is_empty() {
            format!("every node saw {peers} {}", plural(peers, "peer"))
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
        format!("summary: {n} {}, {seen}, {relay}", plural(n, "node"))
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 { word.to_owned() } else { format!("{word}s") }
}

/// The table's column titles; numbers are right-aligned under them.
const COLUMNS: [&str; 6] = ["node", "members", "passes/s", "counter", "temp°C", "rtt ms"];

/// What the header line says about the run.
struct Header {
    cluster: String,
    port: u16,
    seconds: Option<Duration>,
    tty: bool,
}

/// One table block: the header line, the column titles and a row per node,
/// each line ending in `\n`. Plain text; the [`Screen`] adds any escapes.
fn render(header: &Header, stats: &mut Stats, now: Instant, elapsed: Duration) -> String {
    let mut out = format!(
        "herd demo: cluster {}, gossip port {} on 127.0.0.1, {} s",
        header.cluster,
        header.port,
        elapsed.as_secs_f64().round()
    );
    if let Some(s) = header.seconds {
        out.push_str(&format!(" of {}", s.as_secs()));
    }
    if header.tty {
        out.push_str(" (Ctrl-C stops)");
    }
    out.push('\n');
    let rows = stats.rows(now);
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| {
            rows.iter().map(|r| r[i].chars().count()).chain([COLUMNS[i].chars().count()]).max().unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 6], out: &mut String| {
        let mut text = format!("{:<w$}", cells[0], w = widths[0]);
        for (cell, w) in cells.iter().zip(&widths).skip(1) {
            text.push_str(&format!("  {cell:>w$}"));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(COLUMNS, &mut out);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]], &mut out);
    }
    out
}

/// stdout: on a terminal, each table replaces the previous one in place
/// (cursor home, each line cleared to its end, the rest of the screen
/// cleared); otherwise each table is printed as a plain block followed by a
/// blank line. Write errors are returned (stdout closed: the demo stops).
struct Screen {
    tty: bool,
    drawn: bool,
}

impl Screen {
    fn draw(&mut self, block: &str) -> std::io::Result<()> {
        let mut text = String::with_capacity(block.len() + 64);
        if self.tty {
            text.push_str(if self.drawn { "\x1b[H" } else { "\x1b[H\x1b[2J" });
            for line in block.lines() {
                text.push_str(line);
                text.push_str("\x1b[K\n");
            }
            text.push_str("\x1b[J");
        } else {
            text.push_str(block);
            text.push('\n');
        }
        self.drawn = true;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// A line after the tables (the summary). Best effort: stdout may be gone.
    fn line(&mut self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        node_names(n)
    }

    #[test]
    fn names_run_from_psa() {
        assert_eq!(node_names(4), ["psa", "psb", "psc", "psd"]);
        assert_eq!(node_names(MAX_NODES).last().map(String::as_str), Some("psz"));
    }

    #[test]
    fn every_agent_config_is_valid_and_isolated() {
        let statsd: SocketAddr = "127.0.0.1:9125".parse().unwrap();
        let text = agent_toml("psb", "demo-42", 23456, "00ff", statsd);
        let c = Config::from_toml_str(&text, "test").expect("valid demo config");
        assert_eq!(c.node.name, "psb");
        assert_eq!(c.node.cluster, "demo-42");
        assert_eq!(c.gossip.port, 23456);
        assert_ne!(c.gossip.port, REAL_GOSSIP_PORT);
        assert_eq!(c.gossip.multicast_if, Ipv4Addr::LOCALHOST);
        assert_eq!(c.gossip.data_port, 0);
        assert_eq!(c.gossip.secret.as_ref().map(|s| s.0.clone()), Some(b"00ff".to_vec()));
        assert_eq!(c.baton.hold, Duration::ZERO);
        assert_eq!(c.statsd.flush_interval, Duration::from_millis(200));
        assert_eq!(c.telemetry.interval, Duration::from_secs(1));
        assert_eq!(c.links.probe_interval, Duration::from_millis(250));
    }

    #[test]
    fn secrets_are_random_hex() {
        let (a, b) = (random_secret().unwrap(), random_secret().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn gossip_port_is_free_and_not_the_real_one() {
        let port = free_gossip_port().unwrap();
        assert!(PORT_RANGE.contains(&port));
        assert_ne!(port, REAL_GOSSIP_PORT);
    }

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

    #[test]
    fn renders_an_aligned_plain_table() {
        let mut s = Stats::new(&names(2));
        let t0 = Instant::now();
        s.ingest(
            b"baton:123456|g|#host:psa\nherd.members:2|g|#host:psa\nherd.baton.passes:9|c|#host:psa",
            t0,
        );
        let header = Header {
            cluster: "demo-7".into(),
            port: 23456,
            seconds: Some(Duration::from_secs(5)),
            tty: false,
        };
        let text = render(&header, &mut s, t0, Duration::from_millis(2004));
        assert_eq!(
            text,
            "herd demo: cluster demo-7, gossip port 23456 on 127.0.0.1, 2 s of 5\n\
             node  members  passes/s  counter  temp°C  rtt ms\n\
             psa         2         9   123456       -       -\n\
             psb         -         0        -       -       -\n"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn refuses_bad_arguments_before_starting_anything() {
        assert!(run(0, Some(1)).unwrap_err().to_string().contains("--nodes 0"));
        assert!(run(27, Some(1)).unwrap_err().to_string().contains("psz"));
        assert!(run(2, Some(0)).unwrap_err().to_string().contains("--seconds 0"));
    }
}
