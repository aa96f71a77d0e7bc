//! reload: the config the agent runs with ([`Running`]: the config, the file
//! it was read from, when), and a new one applied to the running agent, from
//! that file read again (SIGHUP, `systemctl reload herd`) or handed in
//! (`agent::run_with`, which the demo uses).
//!
//! What may change is `config::reload`'s plan, derived from each key's
//! declaration: a key that needs a restart keeps its running value and is
//! named in a warning. Applying the plan is, in this order: the core's new
//! tuning (the shell's one call to `Node::reconfigure`), the caller's own
//! parts (metrics, telemetry, periodic jobs), the log level, and the line
//! that says what changed. The node keeps its life, its members and the
//! baton, so peers see nothing. A file with problems changes nothing: each
//! is logged as `herd check` prints it.
//!
//! Must not: read the state file again, or touch what identifies the node
//! (the core keeps its name, cluster, incarnation, ports, advertised IP,
//! fanout and member table across a reconfigure).

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use tracing::{info, warn};

use super::process;
use super::setup;
use crate::config::{Config, reload};
use crate::core::node::Node;

/// The config the agent runs with, where it was read from (`None`: the
/// built-in defaults, or a config built in memory) and when it was loaded.
pub struct Running {
    config: Config,
    file: Option<PathBuf>,
    loaded: SystemTime,
}

impl Running {
    pub fn new(config: Config) -> Running {
        Running { config, file: None, loaded: SystemTime::now() }
    }

    /// The file the config was read from, which SIGHUP reads again.
    pub fn set_file(&mut self, file: Option<PathBuf>) {
        self.file = file;
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// When the running config was loaded (at start, or by the last reload).
    pub fn loaded(&self) -> SystemTime {
        self.loaded
    }

    /// SIGHUP: the file read again, with the name it goes by in the log.
    /// `None`, and logged, when there is no file (the built-in defaults) or
    /// it does not pass `herd check`.
    pub fn read_again(&self) -> Option<(Config, String)> {
        let Some(path) = &self.file else {
            warn!("SIGHUP: no config file to read again (running on the built-in defaults)");
            return None;
        };
        match Config::load(path) {
            Ok(c) => Some((c, path.display().to_string())),
            Err(e) => {
                for line in e.lines() {
                    warn!("reload: {line}");
                }
                warn!(file = %path.display(), "reload refused: the config is unchanged");
                None
            }
        }
    }

    /// Applies `wanted` (`from`: the file it was read from, or "memory") by
    /// `config::reload`'s plan: the core reconfigured, then `shell` handed
    /// the config now running to rebuild the caller's parts, then the log
    /// level and the "config reloaded" line.
    pub fn apply<R: rand::Rng>(
        &mut self,
        wanted: Config,
        from: &str,
        node: &mut Node<R>,
        now: Instant,
        shell: impl FnOnce(&Config),
    ) {
        let (config, held) = reload::plan(&self.config, wanted);
        if !held.is_empty() {
            let held: Vec<String> = held.iter().map(ToString::to_string).collect();
            warn!("reload: these need a restart and keep their running values: {}", held.join(", "));
        }
        let changed = reload::changed(&self.config, &config);
        reconfigure(node, &config, now);
        shell(&config);
        if config.log.level != self.config.log.level {
            process::set_log_filter(&format!("herd={},warn", config.log.level));
        }
        self.config = config;
        self.loaded = SystemTime::now();
        let changed = if changed.is_empty() { "nothing".to_owned() } else { changed.join(", ") };
        info!(file = %from, %changed, "config reloaded");
    }
}

/// The shell's one call into the core's reconfiguration: the core's tuning
/// built from `config` as at start (`setup::tuning`), replaced whole. What
/// identifies the node is the core's and stays.
fn reconfigure<R: rand::Rng>(node: &mut Node<R>, config: &Config, now: Instant) {
    node.reconfigure(now, setup::tuning(config));
}
