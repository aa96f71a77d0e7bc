//! The command line: every subcommand and option of `herd`, as clap parses
//! them. `main.rs` runs what is parsed; the man page and the shell
//! completions are generated from the same definition at build time
//! (`examples/pages.rs`, run by `scripts/dist.sh`), so they never disagree
//! with `herd --help` and cost the agent's binary nothing.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `herd --help`'s description, and the man page's DESCRIPTION.
const LONG_ABOUT: &str = "\
herd is an agent for Raspberry Pi clusters, one per Pi. It finds its peers by \
multicast gossip (or static hosts, DNS or broadcast), relays a baton counter \
across the live nodes in a shuffled order while sending StatsD gauges tagged \
by host, and reports CPU temperature, throttling, clock, file system and link \
health alongside, over StatsD and an optional status endpoint (JSON, \
Prometheus text and a cluster page).

Under systemd it runs as `herd run -c /etc/herd/herd.toml`; `herd status` \
asks the local agent what it sees, `herd check` validates a config before a \
restart or reload, `herd ping` measures the links to every member, and \
`herd demo` runs a whole cluster on one machine.";

/// Everything `herd` accepts: one subcommand and its options.
#[derive(Parser)]
#[command(
    name = "herd",
    version = crate::VERSION,
    about = "Peer discovery, a baton relay and Pi telemetry for Raspberry Pi clusters",
    long_about = LONG_ABOUT
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What `herd` does, one variant per subcommand.
#[derive(Subcommand)]
pub enum Command {
    /// Run the agent (config: -c, else $HERD_CONFIG, else /etc/herd/herd.toml, else defaults).
    Run {
        /// Config file.
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Validate the config and print the effective config (defaults filled in) as TOML.
    Check {
        /// Config file.
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Run a whole cluster on this machine: N agents on loopback, a live table, a summary.
    Demo {
        /// Agents to run, named psa, psb, psc and so on.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(2..=26))]
        nodes: u16,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// How long each node holds the baton ([baton] hold; default 0ms, full
        /// speed). With e.g. 100ms, `k` kills the baton with its holder.
        #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
        hold: std::time::Duration,
    },
    /// Ask the local agent for its member table, baton, link health and sensors.
    Status {
        /// Print the raw JSON of GET /status.
        #[arg(long, conflicts_with = "cluster")]
        json: bool,
        /// The whole cluster: every member's health and the link matrix.
        #[arg(long)]
        cluster: bool,
        /// The agent's status endpoint (default: [status] listen of the config, else 127.0.0.1:45894).
        #[arg(long, value_name = "ADDR")]
        addr: Option<String>,
    },
    /// Print a new random key (32 bytes, base64) for [gossip] secret_file.
    Keygen,
    /// Join the cluster briefly and print RTT, jitter and loss to every member.
    Ping {
        /// Config file (for the cluster, its secret and the gossip settings).
        #[arg(short, long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Probes per member, 200 ms apart.
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
}
