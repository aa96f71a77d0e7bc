//! Configuration: the TOML schema of `config/herd.toml`, its defaults and its
//! validation into a typed [`Config`].
//!
//! Two layers: the file is parsed into a plain TOML table, then
//! each section (one file here: node, gossip, baton, statsd, telemetry,
//! links, status, log) takes its keys out of it. Each key is declared once,
//! in its section's file, with its name, whether a reload applies it live,
//! its default, check and printing side by side (`key::Key`); the list of
//! known keys, the unknown-key messages, the defaults, `herd check`'s output
//! and what a reload holds back until a restart ([`reload`]) are derived
//! from those declarations.
//! Every problem is recorded (key path, bad value, what is allowed) instead
//! of stopping at the first, so `herd check` lists every mistake at once.
//! Keys left over are unknown, and are problems too. The rules between keys
//! (e.g. `suspect_after < down_after`) run last, in `Config::check`.
//!
//! A [`Config`] is a plain validated value: `herd run` builds the agent from
//! one, and a running agent can be handed a new one the same way.
//!
//! This module owns no I/O beyond reading the config file and `secret_file`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

mod baton;
mod gossip;
mod key;
mod links;
mod log;
mod node;
pub mod reload;
mod statsd;
mod status;
mod telemetry;

pub use baton::BatonSection;
pub use gossip::{DEFAULT_GOSSIP_PORT, GossipSection, MAX_KEYS, Secret, Strategy, new_key};
use key::Section;
pub use links::{LinksSection, PeerMetrics};
pub use log::LogSection;
pub use node::{NodeSection, PI_OS_HOSTNAME, RENAME_HINT, name_warning};
pub use statsd::{Flavor, StatsdAddress, StatsdSection};
pub use status::{DEFAULT_STATUS_LISTEN, StatusSection};
pub use telemetry::TelemetrySection;

/// What `herd check` prints instead of the secret; refused as a secret, so
/// saving that output as a config cannot silently change the key.
const REDACTED: &str = "<redacted>";

/// Where `herd run` and `herd check` look when no `-c` and no `$HERD_CONFIG`.
pub const SYSTEM_CONFIG: &str = "/etc/herd/herd.toml";

/// Every key of every section, in the documented order: what the validator
/// accepts (anything else is an unknown key) and what `config/herd.toml`
/// documents. Derived from the sections' declarations.
pub fn known_keys() -> Vec<(&'static str, Vec<&'static str>)> {
    fn of<S: Section>() -> (&'static str, Vec<&'static str>) {
        (S::NAME, S::key_names())
    }
    vec![
        of::<NodeSection>(),
        of::<GossipSection>(),
        of::<BatonSection>(),
        of::<StatsdSection>(),
        of::<TelemetrySection>(),
        of::<LinksSection>(),
        of::<StatusSection>(),
        of::<LogSection>(),
    ]
}

/// One thing wrong with a config, reported as `path = value: allowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `gossip.port`.
    pub path: String,
    /// The offending value, rendered as TOML (empty when the key is missing).
    pub value: String,
    /// What is allowed instead.
    pub allowed: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.path, self.allowed)
        } else {
            write!(f, "{} = {}: {}", self.path, self.value, self.allowed)
        }
    }
}

/// Why a config could not be used. `main` maps this to exit code 78.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// One line per problem, for stderr.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node: NodeSection,
    pub gossip: GossipSection,
    pub baton: BatonSection,
    pub statsd: StatsdSection,
    pub telemetry: TelemetrySection,
    pub links: LinksSection,
    pub status: StatusSection,
    pub log: LogSection,
}

impl Config {
    /// The built-in defaults (node name = this machine's hostname).
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::from_toml_str("", "<defaults>")
    }

    /// The built-in defaults for a node called `name`, with no hostname
    /// involved: what `herd demo` builds its agents from.
    pub fn defaults_named(name: &str) -> Result<Config, ConfigError> {
        let (mut config, mut problems) = Config::read(Table::new());
        node::NAME.apply(&mut config.node, &Value::String(name.to_owned()), &mut problems);
        config.finish(problems)
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in syntax errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            ConfigError::Syntax {
                path: origin.to_owned(),
                message: format!("TOML syntax error at {}{}", at.unwrap_or_default(), e.message().trim()),
            }
        })?;
        Config::from_table(table)
    }

    fn from_table(root: Table) -> Result<Config, ConfigError> {
        let (config, problems) = Config::read(root);
        config.finish(problems)
    }

    /// Every section out of `root`, with the problems of every key.
    fn read(mut root: Table) -> (Config, Vec<Problem>) {
        let mut problems = Vec::new();
        let p = &mut problems;
        let r = &mut root;
        let config = Config {
            node: key::read(r, p),
            gossip: key::read(r, p),
            baton: key::read(r, p),
            statsd: key::read(r, p),
            telemetry: key::read(r, p),
            links: key::read(r, p),
            status: key::read(r, p),
            log: key::read(r, p),
        };
        let sections: Vec<&str> = known_keys().into_iter().map(|(name, _)| name).collect();
        for (key, value) in root {
            let allowed = match value {
                Value::Table(_) => format!("unknown section; sections are {}", sections.join(", ")),
                _ => "unknown key; keys belong in a section such as [node] or [gossip]".to_owned(),
            };
            problems.push(Problem { path: key, value: value.to_string(), allowed });
        }
        (config, problems)
    }

    fn finish(mut self, mut problems: Vec<Problem>) -> Result<Config, ConfigError> {
        self.check(&mut problems);
        if problems.is_empty() { Ok(self) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// The rules between keys, once every key is read, and what the machine
    /// supplies (the hostname, the secret from `secret_file`). `problems`
    /// holds the keys' own problems so far.
    fn check(&mut self, problems: &mut Vec<Problem>) {
        self.node.check(problems);
        self.gossip.check(problems);
        self.links.check(self.gossip.suspect_after, problems);
        self.baton.check(problems);
    }

    /// The effective config as TOML, every key present, in the documented order.
    /// The secret is redacted so the output can be shown or logged safely.
    pub fn to_toml(&self) -> String {
        [
            key::print(&self.node),
            key::print(&self.gossip),
            key::print(&self.baton),
            key::print(&self.statsd),
            key::print(&self.telemetry),
            key::print(&self.links),
            key::print(&self.status),
            key::print(&self.log),
        ]
        .join("\n")
    }
}

/// Formats a duration the way the config file writes them: `"250ms"`, `"1s"`, `"1m 30s"`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0ms".to_owned();
    }
    humantime::format_duration(d).to_string()
}

/// Names of nodes and clusters travel in every datagram and in StatsD tags and
/// metric names, so they are kept to hostname characters.
pub fn check_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= crate::core::wire::MAX_NAME
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1 to {} characters of letters, digits, '-', '_' or '.'",
            crate::core::wire::MAX_NAME
        ))
    }
}

fn check_host_port(s: &str) -> Result<(), String> {
    let allowed = || "must be \"host:port\", e.g. \"10.0.0.11:45892\" or \"pi2.local:45892\"".to_owned();
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(allowed)?;
    let port_ok = port.parse::<u16>().map(|p| p > 0).unwrap_or(false);
    if host.is_empty() || !port_ok || host.contains(['/', ' ']) {
        return Err(allowed());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
