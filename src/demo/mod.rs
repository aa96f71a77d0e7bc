//! demo: `herd demo`, a whole cluster on this machine with no setup, no root
//! and no config file: the newcomer's first command.
//!
//! It owns, for the length of one run:
//! - N real agents (psa, psb, ... up to psz), each the unchanged agent that
//!   `herd run` runs ([`crate::agent::run_with`]), as tasks of one tokio
//!   runtime on this thread (`cluster`), each from the built-in defaults
//!   ([`Config::defaults_named`]) with what the demo needs set: loopback
//!   multicast, a gossip port picked free at start, `data_port = 0`, a random
//!   secret and a cluster name of its own, so a demo never joins or disturbs a
//!   real cluster (whose port is 45892) or another demo (this file), and a
//!   quicker failure detector than the product's;
//! - an embedded StatsD listener (a UDP socket on 127.0.0.1, in the same
//!   runtime) that parses the DogStatsD lines the agents send and keeps, per
//!   node, what the table shows (`listener`);
//! - the table on stdout, redrawn in place every second on a terminal, or
//!   printed as one plain block per second otherwise, and one summary line at
//!   the end (`table`). Agent logs go to stderr at `warn` (`RUST_LOG`
//!   overrides);
//! - on a terminal (stdin and stdout, in the foreground), the keys (`keys`):
//!   `k` crashes the baton's holder, `r` restarts the dead, `p` splits the
//!   cluster in two and heals it, `q` quits; each row then ends with the
//!   node's status and an events area under the table tells what was done
//!   and what followed (`events`), and the summary counts it. While the keys
//!   are on, stdin is in cbreak mode (restored on every way out) and agent
//!   logs default to `error`, so a split's refused datagrams do not scroll
//!   the table away.
//!
//! Everything shown is measured from the metrics the agents actually send,
//! exactly as a StatsD server would receive them: the demo never looks inside
//! an agent. The exceptions are what the demo did itself (which agent it
//! killed or restarted, when it split or healed the cluster and which half
//! each node is in: the status column, the lines starting with a key), and
//! whom `k` kills: the agent whose own status says it holds the baton, asked
//! in process as `herd status` asks an endpoint.
//!
//! At the default `--hold 0ms` the baton is always in flight: a pass stays
//! with its sender until acknowledged, so killing its holder does not lose
//! it (the events say so). `--hold 100ms` keeps it 100 ms at each node, so
//! `k` takes it down with its holder and another node regenerates it, and a
//! split leaves one half without it, which regenerates its own.
//!
//! Must not: touch any file, need privileges, use the real gossip port, print
//! anything but the table and the summary on stdout, leave the terminal in
//! cbreak mode, or leave an agent running: every live agent is stopped
//! through its shutdown future (so it announces its leave, as on SIGTERM)
//! before [`run`] returns.

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rand::RngExt;
use rand::rngs::SmallRng;

use crate::agent::process;
use crate::config::{Config, Flavor, Secret, StatsdAddress, Strategy};

mod cluster;
mod events;
mod keys;
mod listener;
mod table;

use cluster::{Cluster, Held};
use events::Events;
use keys::Key;
use listener::{Stats, statsd_listener};
use table::{Header, Screen, render};

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
/// A run at least this long with no agent hearing another means discovery is
/// broken (heartbeats go out every second), not just slow.
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(3);

/// The demo's failure detector and regeneration: a crashed node is down
/// 2.5 s after its last answer, and the half of a split without the baton
/// regenerates one as soon as it sees the other half down.
const SUSPECT_AFTER: Duration = Duration::from_millis(1500);
const DOWN_AFTER: Duration = Duration::from_millis(2500);
const REGENERATE_AFTER: Duration = Duration::from_secs(2);

/// `[statsd] prefix` and `[baton] metric` the demo configures and parses.
const PREFIX: &str = "herd";
const BATON_METRIC: &str = "baton";

/// Runs `herd demo`: `nodes` agents (1 to 26) for `seconds` (or until Ctrl-C,
/// SIGTERM or `q`), then stops them and prints the summary. Blocks; builds
/// its own single-threaded runtime and initialises logging (stderr, `warn`
/// unless `RUST_LOG` says otherwise; `error` while the keys are on, so the
/// table stays readable while a split makes every node complain). Returns
/// `Err` with a message for the user when the demo cannot run (a socket
/// cannot be bound, an agent fails) or when no agent heard another
/// (loopback multicast blocked).
pub fn run(nodes: usize, seconds: Option<u64>, hold: Duration) -> Result<()> {
    if !(1..=MAX_NODES).contains(&nodes) {
        bail!("--nodes {nodes}: must be from 1 to {MAX_NODES} (the nodes are named psa to psz)");
    }
    if seconds == Some(0) {
        bail!("--seconds 0: must be at least 1 (or leave it out and stop the demo with Ctrl-C)");
    }
    let keys = keys::available();
    process::init_tracing(if keys { "error" } else { "warn" });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let screen = Screen { tty: std::io::stdout().is_terminal(), drawn: false };
    rt.block_on(demo(nodes, seconds.map(Duration::from_secs), hold, screen, keys))
}

/// Why the demo stopped.
enum Stop {
    /// `--seconds` elapsed, or Ctrl-C / SIGTERM / `q`.
    Done,
    /// stdout is gone (e.g. piped into `head`): stop quietly.
    OutputClosed,
    /// An agent ended on its own: the demo cannot go on.
    AgentFailed(anyhow::Error),
}

async fn demo(
    nodes: usize,
    seconds: Option<Duration>,
    hold: Duration,
    mut screen: Screen,
    keys: bool,
) -> Result<()> {
    let listener = statsd_listener()?;
    let statsd = listener.local_addr()?;
    let port = free_gossip_port()?;
    let secret = random_secret()?;
    let cluster_name = format!("demo-{}", std::process::id());
    let names = node_names(nodes);
    let mut configs = Vec::with_capacity(nodes);
    for name in &names {
        let config = agent_config(name, &cluster_name, port, &secret, statsd, hold)
            .map_err(|e| anyhow!("the demo's config for {name} is invalid (a bug in herd demo): {e}"))?;
        configs.push(config);
    }
    let mut cluster = Cluster::start(configs);

    let started = Instant::now();
    let header = Header { cluster: cluster_name, port, seconds, tty: screen.tty };
    let mut stats = Stats::new(&names);
    // Only while the keys are on: the events area, and stdin in cbreak mode.
    let mut events = keys.then(|| Events::new(&names, started));
    let mut cbreak = match keys.then(keys::Cbreak::enter) {
        Some(Ok(mode)) => Some(mode),
        Some(Err(e)) => {
            events = None;
            tracing::error!(error = %e, "cannot put the terminal in cbreak mode: the keys are off");
            None
        }
        None => None,
    };
    let mut pressed = cbreak.as_ref().map(|_| keys::read_keys());
    let mut tick = tokio::time::interval_at((started + REFRESH).into(), REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let signal = process::shutdown_signal();
    tokio::pin!(signal);
    let mut buf = vec![0u8; 65536];

    let stop = loop {
        let key = async {
            match pressed.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut signal => break Stop::Done,
            r = listener.recv(&mut buf) => listener::drain(&listener, r, &mut buf, &mut stats),
            _ = tick.tick() => {
                let now = Instant::now();
                let elapsed = now.duration_since(started);
                let seen = stats.take_seen();
                if let Some(e) = events.as_mut() {
                    e.observe(seen);
                    let (passes, high) = stats.relay(now);
                    e.tick(now, passes, high);
                }
                if screen.draw(&render(&header, &mut stats, now, elapsed, events.as_ref())).is_err() {
                    break Stop::OutputClosed;
                }
                // On the tick, so a run of S seconds shows S tables.
                if seconds.is_some_and(|s| elapsed >= s) {
                    break Stop::Done;
                }
            }
            Some(key) = key => {
                let Some(e) = events.as_mut() else { continue };
                if key == Key::Quit {
                    break Stop::Done;
                }
                let now = Instant::now();
                e.observe(stats.take_seen());
                press(key, now, &mut cluster, &stats, e).await?;
                if screen.draw(&render(&header, &mut stats, now, now - started, Some(e))).is_err() {
                    break Stop::OutputClosed;
                }
            }
            why = cluster.failed() => break Stop::AgentFailed(why),
        }
    };
    // The terminal as it was, before anything else is printed.
    drop(pressed.take());
    drop(cbreak.take());
    let elapsed = started.elapsed();
    // What the run showed, before the agents' leaves change their gauges.
    let mut summary = stats.summary();
    if let Some(e) = &events {
        summary.push_str(&format!("; {}", e.counts));
    }
    let nobody_heard = nodes > 1 && stats.nodes.iter().all(|n| n.most_members <= 1);

    let stopped = cluster.stop().await;
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

/// What a key does to the cluster (all but `q`), told in the events area.
/// The holder `k` kills is the agent whose own status says it holds the
/// baton ([`Cluster::holder`]); between two of them (a pass in flight), the
/// last one the metrics name ([`Stats::holder`]).
async fn press(
    key: Key,
    now: Instant,
    cluster: &mut Cluster,
    stats: &Stats,
    events: &mut Events,
) -> Result<()> {
    match key {
        Key::Kill => {
            if cluster.live_count() < 2 {
                events.refused(now, "k: one node left: it is spared (r restarts the dead)");
                return Ok(());
            }
            let asked = cluster.holder().await;
            let last_gauge = || stats.holder(|i| cluster.is_live(i)).map(|i| (i, Held::LastGauge));
            let Some((holder, held)) = asked.or_else(last_gauge) else {
                events.refused(now, "k: no baton seen yet (the relay starts 2 s after the agents)");
                return Ok(());
            };
            if cluster.kill(holder) {
                events.killed(now, holder, held);
            }
        }
        Key::Restart => {
            let restarted = cluster.restart_dead();
            if restarted.is_empty() {
                events.refused(now, "r: nobody is dead (k kills the baton's holder)");
            } else {
                events.restarted(now, &restarted);
            }
        }
        Key::Partition if cluster.is_split() => {
            cluster.heal();
            events.healed(now);
        }
        Key::Partition => {
            if stats.nodes.len() < 2 {
                events.refused(now, "p: one node cannot be split (--nodes 2 or more)");
                return Ok(());
            }
            let secrets = [Secret(random_secret()?.into_bytes()), Secret(random_secret()?.into_bytes())];
            let boundary = cluster.split(secrets);
            events.split(now, boundary);
        }
        Key::Quit => {}
    }
    debug_assert_eq!(events.is_split(), cluster.is_split());
    Ok(())
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

/// One agent's config: the built-in defaults, with loopback multicast on
/// the demo's port, its secret and cluster, the baton at `hold` (0: unpaced), quick metrics
/// to the listener, and no status endpoint. The values the listener depends
/// on (prefix, flavour, baton metric) are set here too, so a change of the
/// defaults cannot silently empty the table.
fn agent_config(
    name: &str,
    cluster: &str,
    port: u16,
    secret: &str,
    statsd: SocketAddr,
    hold: Duration,
) -> Result<Config, crate::config::ConfigError> {
    let mut c = Config::defaults_named(name)?;
    c.node.cluster = cluster.to_owned();
    let g = &mut c.gossip;
    g.strategy = Strategy::Multicast;
    g.port = port;
    g.multicast_if = Ipv4Addr::LOCALHOST;
    g.data_port = 0;
    g.keys = vec![Secret(secret.as_bytes().to_vec())];
    // A quicker failure detector than the product's (3 s and 5 s), so a
    // kill or a split shows in the table within a few seconds.
    g.suspect_after = SUSPECT_AFTER;
    g.down_after = DOWN_AFTER;
    c.baton.enabled = true;
    c.baton.regenerate_after = REGENERATE_AFTER;
    c.baton.main_node = String::new();
    c.baton.metric = BATON_METRIC.to_owned();
    c.baton.hold = hold;
    c.statsd.address = StatsdAddress::Udp(statsd.to_string());
    c.statsd.prefix = PREFIX.to_owned();
    c.statsd.flavor = Flavor::DogStatsd;
    c.statsd.flush_interval = Duration::from_millis(200);
    c.telemetry.interval = Duration::from_secs(1);
    c.links.probe_interval = Duration::from_millis(250);
    c.status.listen = None;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_run_from_psa() {
        assert_eq!(node_names(4), ["psa", "psb", "psc", "psd"]);
        assert_eq!(node_names(MAX_NODES).last().map(String::as_str), Some("psz"));
    }

    #[test]
    fn every_agent_config_is_valid_and_isolated() {
        let statsd: SocketAddr = "127.0.0.1:9125".parse().unwrap();
        let c =
            agent_config("psb", "demo-42", 23456, "00ff", statsd, Duration::ZERO).expect("valid demo config");
        assert_eq!(c.node.name, "psb");
        assert_eq!(c.node.cluster, "demo-42");
        assert_eq!(c.gossip.port, 23456);
        assert_ne!(c.gossip.port, REAL_GOSSIP_PORT);
        assert_eq!(c.gossip.multicast_if, Ipv4Addr::LOCALHOST);
        assert_eq!(c.gossip.data_port, 0);
        assert_eq!(c.gossip.keys, vec![Secret(b"00ff".to_vec())]);
        assert_eq!(c.baton.hold, Duration::ZERO);
        assert_eq!(c.statsd.flush_interval, Duration::from_millis(200));
        assert_eq!(c.telemetry.interval, Duration::from_secs(1));
        assert_eq!(c.links.probe_interval, Duration::from_millis(250));
        assert_eq!((c.gossip.suspect_after, c.gossip.down_after), (SUSPECT_AFTER, DOWN_AFTER));
        assert_eq!(c.baton.regenerate_after, REGENERATE_AFTER);
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
    fn refuses_bad_arguments_before_starting_anything() {
        assert!(run(0, Some(1), Duration::ZERO).unwrap_err().to_string().contains("--nodes 0"));
        assert!(run(27, Some(1), Duration::ZERO).unwrap_err().to_string().contains("psz"));
        assert!(run(2, Some(0), Duration::ZERO).unwrap_err().to_string().contains("--seconds 0"));
    }
}
