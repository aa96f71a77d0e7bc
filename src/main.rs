//! The `herd` command: parses arguments, finds and validates the config, sets
//! up logging, runs the agent, and maps the outcome to an exit code
//! (0 ok, 78 EX_CONFIG for any config problem, 1 for anything else).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herd::agent::process::{self, Signal};
use herd::config::{Config, ConfigError, DEFAULT_STATUS_LISTEN, SYSTEM_CONFIG};

/// sysexits.h EX_CONFIG: the configuration is invalid.
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(name = "herd", version = herd::VERSION, about = "Peer discovery, a baton relay and Pi telemetry for Raspberry Pi clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        /// Agents to run (psa, psb, ...).
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen => match herd::config::new_key() {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("herd: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Check { config } => match load(config) {
            Ok((config, origin)) => {
                // Valid, so exit 0; the warning goes to stderr, apart from the TOML.
                if let Some(warning) = config.node.name_warning() {
                    eprintln!("herd: warning: {warning}");
                }
                println!("# herd {}: effective config from {origin}", herd::VERSION);
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => config_failure(&e),
        },
        Command::Demo { nodes, seconds, hold } => match herd::demo::run(usize::from(nodes), seconds, hold) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => failure(&e),
        },
        Command::Status { json, cluster, addr } => {
            let addr = addr
                .or_else(|| load(None).ok().and_then(|(c, _)| c.status.listen).map(|a| a.to_string()))
                .unwrap_or_else(|| DEFAULT_STATUS_LISTEN.to_owned());
            use herd::agent::status::View;
            let view = if json {
                View::Json
            } else if cluster {
                View::Cluster
            } else {
                View::Node
            };
            match herd::agent::status::client(&addr, view) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => failure(&e),
            }
        }
        Command::Ping { config, count } => {
            let (config, _) = match load(config) {
                Ok(c) => c,
                Err(e) => return config_failure(&e),
            };
            process::init_tracing("warn");
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return failure(&e.into()),
            };
            match rt.block_on(herd::agent::ping::run(config, count)) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(e) => failure(&e),
            }
        }
        Command::Run { config } => {
            let (config, origin) = match load(config) {
                Ok(c) => c,
                Err(e) => return config_failure(&e),
            };
            process::init_tracing(&format!("herd={},warn", config.log.level));
            tracing::debug!(%origin, "config loaded");
            match run(config, origin.0) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    failure(&e)
                }
            }
        }
    }
}

/// Finds the config: `-c`, else `$HERD_CONFIG`, else the system file if present,
/// else the built-in defaults. Returns it with a description of its origin.
fn load(arg: Option<PathBuf>) -> Result<(Config, Origin), ConfigError> {
    let env = std::env::var_os("HERD_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from);
    let system = PathBuf::from(SYSTEM_CONFIG);
    let path = arg.or(env).or_else(|| system.exists().then_some(system));
    match path {
        Some(p) => Config::load(&p).map(|c| (c, Origin(Some(p)))),
        None => Config::defaults().map(|c| (c, Origin(None))),
    }
}

/// Where a config came from: a file, or the built-in defaults (`None`).
struct Origin(Option<PathBuf>);

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(p) => write!(f, "{}", p.display()),
            None => f.write_str("built-in defaults"),
        }
    }
}

fn failure(e: &anyhow::Error) -> ExitCode {
    eprintln!("herd: {e:#}");
    ExitCode::FAILURE
}

fn config_failure(e: &ConfigError) -> ExitCode {
    for line in e.lines() {
        eprintln!("herd: config error: {line}");
    }
    ExitCode::from(EX_CONFIG)
}

fn run(config: Config, file: Option<PathBuf>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let shutdown = async {
        match process::shutdown_signal().await {
            Signal::Term => tracing::info!("SIGTERM: leaving the cluster"),
            Signal::Int => tracing::info!("SIGINT: leaving the cluster"),
        }
    };
    rt.block_on(herd::agent::run(config, file, shutdown))
}
