//! The `herd` command: parses arguments, finds and validates the config, sets
//! up logging, runs the agent, and maps the outcome to an exit code
//! (0 ok, 78 EX_CONFIG for any config problem, 1 for anything else).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use herd::agent::process::{self, Signal};
use herd::cli::{Cli, Command};
use herd::config::{Config, ConfigError, DEFAULT_STATUS_LISTEN, SYSTEM_CONFIG};

/// sysexits.h EX_CONFIG: the configuration is invalid.
const EX_CONFIG: u8 = 78;

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
