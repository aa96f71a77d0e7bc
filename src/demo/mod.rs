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
//!   real cluster (whose port is `[gossip] port`'s default,
//!   [`DEFAULT_GOSSIP_PORT`]) or another demo (this file), and a quicker
//!   failure detector than the product's;
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
//!   and what followed (`events`), and the summary counts it; both read who
//!   is live and which half each node is in from the cluster itself
//!   (`cluster::Layout`), never from a copy. While the keys are on, stdin is
//!   in cbreak mode (restored on every way out) and agent logs default to
//!   `error`, so a split's refused datagrams do not scroll the table away;
//! - the loop of one run, from the agents' start to the summary (`show`),
//!   and how what it prints words node names, counts and lists (`words`).
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
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rand::RngExt;
use rand::rngs::SmallRng;

use crate::agent::process;
use crate::config::{Config, DEFAULT_GOSSIP_PORT, Flavor, Secret, StatsdAddress, Strategy};

mod cluster;
mod events;
mod keys;
mod listener;
mod show;
mod table;
mod words;

use cluster::{Cluster, random_secret};
use listener::{BATON_METRIC, PREFIX, statsd_listener};
use table::{Header, Screen};
use words::node_names;

/// `herd demo` without `--nodes`.
pub const DEFAULT_NODES: usize = 4;
/// Names are `ps` + one letter: psa to psz.
pub const MAX_NODES: usize = 26;

/// Demo gossip ports are drawn from here: below Linux's ephemeral range
/// (32768-60999), so no agent's `data_port = 0` socket can be given it, and
/// far from the real port ([`DEFAULT_GOSSIP_PORT`]).
const PORT_RANGE: Range<u16> = 20000..32000;

/// The demo's failure detector and regeneration: a crashed node is down
/// 2.5 s after its last answer, and the half of a split without the baton
/// regenerates one as soon as it sees the other half down.
const SUSPECT_AFTER: Duration = Duration::from_millis(1500);
const DOWN_AFTER: Duration = Duration::from_millis(2500);
const REGENERATE_AFTER: Duration = Duration::from_secs(2);

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

/// One run: the listener, the agents, then [`show::show`] until it ends.
async fn demo(
    nodes: usize,
    seconds: Option<Duration>,
    hold: Duration,
    screen: Screen,
    keys: bool,
) -> Result<()> {
    let listener = statsd_listener()?;
    let statsd = listener.local_addr()?;
    let port = free_gossip_port()?;
    let cluster_name = format!("demo-{}", std::process::id());
    let names = node_names(nodes);
    let configs = agent_configs(&names, &cluster_name, port, statsd, hold)?;
    let cluster = Cluster::start(configs);
    let header = Header { cluster: cluster_name, port, seconds, tty: screen.tty };
    show::show(&listener, cluster, &names, header, screen, keys).await
}

/// A UDP port in [`PORT_RANGE`] that no socket on this machine holds now
/// (not even one bound to a single address), drawn at random so two demos
/// started together do not pick the same one. Never [`DEFAULT_GOSSIP_PORT`].
fn free_gossip_port() -> Result<u16> {
    let mut rng = rand::make_rng::<SmallRng>();
    for _ in 0..200 {
        let port = rng.random_range(PORT_RANGE);
        if port != DEFAULT_GOSSIP_PORT && StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("cannot find a free UDP port for the demo's gossip in {}-{}", PORT_RANGE.start, PORT_RANGE.end - 1)
}

/// Every agent's config ([`agent_config`]), under one fresh secret.
fn agent_configs(
    names: &[String],
    cluster: &str,
    port: u16,
    statsd: SocketAddr,
    hold: Duration,
) -> Result<Vec<Config>> {
    let secret = random_secret()?;
    let config = |name: &String| {
        agent_config(name, cluster, port, &secret, statsd, hold)
            .map_err(|e| anyhow!("the demo's config for {name} is invalid (a bug in herd demo): {e}"))
    };
    names.iter().map(config).collect()
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
        assert_ne!(c.gossip.port, DEFAULT_GOSSIP_PORT);
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
    fn gossip_port_is_free_and_not_the_real_one() {
        let port = free_gossip_port().unwrap();
        assert!(PORT_RANGE.contains(&port));
        assert_ne!(port, DEFAULT_GOSSIP_PORT);
    }

    #[test]
    fn refuses_bad_arguments_before_starting_anything() {
        assert!(run(0, Some(1), Duration::ZERO).unwrap_err().to_string().contains("--nodes 0"));
        assert!(run(27, Some(1), Duration::ZERO).unwrap_err().to_string().contains("psz"));
        assert!(run(2, Some(0), Duration::ZERO).unwrap_err().to_string().contains("--seconds 0"));
    }
}
