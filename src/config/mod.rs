//! Configuration: the TOML schema of `config/herd.toml`, its defaults and its
//! validation into a typed [`Config`].
//!
//! Two layers (STYLE.md 8): the file is first parsed into a plain TOML table,
//! then every documented key is taken out of it by a typed reader that records
//! a [`Problem`] (key path, bad value, what is allowed) instead of stopping at
//! the first one, so `herd check` can list every mistake at once. Keys left over
//! afterwards are unknown and are problems too. Cross-key rules (e.g.
//! `suspect_after < down_after`) run last.
//!
//! This module owns no I/O beyond reading the config file and `secret_file`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

/// What `herd check` prints instead of the secret; refused as a secret, so
/// saving that output as a config cannot silently change the key.
const REDACTED: &str = "<redacted>";

/// Every key of every section, in the documented order: what the validator
/// accepts (anything else is an unknown key) and what `config/herd.toml`
/// documents.
pub const KEYS: &[(&str, &[&str])] = &[
    ("node", &["name", "cluster"]),
    (
        "gossip",
        &[
            "strategy",
            "port",
            "if_addr",
            "multicast_if",
            "multicast_addr",
            "multicast_ttl",
            "broadcast_only",
            "secret",
            "secret_file",
            "heartbeat_interval",
            "suspect_after",
            "down_after",
            "hosts",
            "dns_name",
            "data_port",
            "max_members",
        ],
    ),
    ("baton", &["enabled", "main_node", "metric", "hold", "pass_timeout", "max_retries", "regenerate_after"]),
    ("statsd", &["address", "prefix", "tags", "flavor", "max_packet_size", "flush_interval"]),
    ("telemetry", &["interval", "sysfs_root", "interface"]),
    ("links", &["probe_interval", "window"]),
    ("status", &["listen"]),
    ("log", &["level"]),
];

/// Where `herd run` and `herd check` look when no `-c` and no `$HERD_CONFIG`.
pub const SYSTEM_CONFIG: &str = "/etc/herd/herd.toml";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Multicast,
    Static,
    Dns,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Multicast => "multicast",
            Strategy::Static => "static",
            Strategy::Dns => "dns",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    DogStatsd,
    Statsd,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::DogStatsd => "dogstatsd",
            Flavor::Statsd => "statsd",
        }
    }
}

/// Where metrics go: a UDP `host:port` or a Unix datagram socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsdAddress {
    Udp(String),
    Unix(PathBuf),
}

impl fmt::Display for StatsdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatsdAddress::Udp(a) => f.write_str(a),
            StatsdAddress::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// The shared secret, kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
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

#[derive(Debug, Clone, PartialEq)]
pub struct NodeSection {
    pub name: String,
    pub cluster: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GossipSection {
    pub strategy: Strategy,
    pub port: u16,
    pub if_addr: Ipv4Addr,
    pub multicast_if: Ipv4Addr,
    pub multicast_addr: Ipv4Addr,
    pub multicast_ttl: u32,
    pub broadcast_only: bool,
    /// From `secret` or the contents of `secret_file`; `None` = unauthenticated.
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    pub heartbeat_interval: Duration,
    pub suspect_after: Duration,
    pub down_after: Duration,
    pub hosts: Vec<String>,
    pub dns_name: String,
    pub data_port: u16,
    pub max_members: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatonSection {
    pub enabled: bool,
    pub main_node: String,
    pub metric: String,
    pub hold: Duration,
    pub pass_timeout: Duration,
    pub max_retries: u32,
    pub regenerate_after: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatsdSection {
    pub address: StatsdAddress,
    pub prefix: String,
    pub tags: Vec<String>,
    pub flavor: Flavor,
    pub max_packet_size: usize,
    pub flush_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySection {
    pub interval: Duration,
    pub sysfs_root: PathBuf,
    /// The gossip interface whose state is reported; `None` = the interface
    /// that owns `multicast_if`, else the default route's.
    pub interface: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinksSection {
    pub probe_interval: Duration,
    pub window: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusSection {
    /// `None` when `listen = ""` (endpoint disabled).
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogSection {
    pub level: String,
}

const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

impl Config {
    /// The built-in defaults (node name = this machine's hostname).
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::from_toml_str("", "<defaults>")
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
        validate(table)
    }

    /// The effective config as TOML, every key present, in the documented order.
    /// The secret is redacted so the output can be shown or logged safely.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let g = &self.gossip;
        let dur = |d: Duration| Value::String(format_duration(d));
        let s = |v: &str| Value::String(v.to_owned());
        let int = |v: i64| Value::Integer(v);
        let list = |v: &[String]| Value::Array(v.iter().map(|x| s(x)).collect());
        let sections: Vec<(&str, Vec<(&str, Value)>)> = vec![
            ("node", vec![("name", s(&self.node.name)), ("cluster", s(&self.node.cluster))]),
            (
                "gossip",
                vec![
                    ("strategy", s(g.strategy.as_str())),
                    ("port", int(g.port.into())),
                    ("if_addr", s(&g.if_addr.to_string())),
                    ("multicast_if", s(&g.multicast_if.to_string())),
                    ("multicast_addr", s(&g.multicast_addr.to_string())),
                    ("multicast_ttl", int(g.multicast_ttl.into())),
                    ("broadcast_only", Value::Boolean(g.broadcast_only)),
                    (
                        "secret",
                        s(&match (&g.secret, &g.secret_file) {
                            (Some(_), None) => REDACTED.to_owned(),
                            _ => String::new(),
                        }),
                    ),
                    (
                        "secret_file",
                        s(&g.secret_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
                    ),
                    ("heartbeat_interval", dur(g.heartbeat_interval)),
                    ("suspect_after", dur(g.suspect_after)),
                    ("down_after", dur(g.down_after)),
                    ("hosts", list(&g.hosts)),
                    ("dns_name", s(&g.dns_name)),
                    ("data_port", int(g.data_port.into())),
                    ("max_members", int(g.max_members as i64)),
                ],
            ),
            (
                "baton",
                vec![
                    ("enabled", Value::Boolean(self.baton.enabled)),
                    ("main_node", s(&self.baton.main_node)),
                    ("metric", s(&self.baton.metric)),
                    ("hold", dur(self.baton.hold)),
                    ("pass_timeout", dur(self.baton.pass_timeout)),
                    ("max_retries", int(self.baton.max_retries.into())),
                    ("regenerate_after", dur(self.baton.regenerate_after)),
                ],
            ),
            (
                "statsd",
                vec![
                    ("address", s(&self.statsd.address.to_string())),
                    ("prefix", s(&self.statsd.prefix)),
                    ("tags", list(&self.statsd.tags)),
                    ("flavor", s(self.statsd.flavor.as_str())),
                    ("max_packet_size", int(self.statsd.max_packet_size as i64)),
                    ("flush_interval", dur(self.statsd.flush_interval)),
                ],
            ),
            (
                "telemetry",
                vec![
                    ("interval", dur(self.telemetry.interval)),
                    ("sysfs_root", s(&self.telemetry.sysfs_root.display().to_string())),
                    ("interface", s(self.telemetry.interface.as_deref().unwrap_or_default())),
                ],
            ),
            (
                "links",
                vec![
                    ("probe_interval", dur(self.links.probe_interval)),
                    ("window", int(self.links.window as i64)),
                ],
            ),
            ("status", vec![("listen", s(&self.status.listen.map(|a| a.to_string()).unwrap_or_default()))]),
            ("log", vec![("level", s(&self.log.level))]),
        ];
        for (i, (name, keys)) in sections.into_iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("[{name}]\n"));
            for (key, value) in keys {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
        out
    }
}

/// Formats a duration the way the config file writes them: `"250ms"`, `"1s"`, `"1m 30s"`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0ms".to_owned();
    }
    humantime::format_duration(d).to_string()
}

/// Takes typed values out of one `[section]`, recording problems as it goes.
struct Section<'p> {
    name: &'static str,
    table: Table,
    problems: &'p mut Vec<Problem>,
}

impl<'p> Section<'p> {
    fn new(root: &mut Table, name: &'static str, problems: &'p mut Vec<Problem>) -> Self {
        let table = match root.remove(name) {
            None => Table::new(),
            Some(Value::Table(t)) => t,
            Some(other) => {
                problems.push(Problem {
                    path: name.to_owned(),
                    value: other.to_string(),
                    allowed: format!("must be a table: [{name}]"),
                });
                Table::new()
            }
        };
        Section { name, table, problems }
    }

    fn problem(&mut self, key: &str, value: &Value, allowed: impl Into<String>) {
        self.problems.push(Problem {
            path: format!("{}.{key}", self.name),
            value: value.to_string(),
            allowed: allowed.into(),
        });
    }

    /// Takes `key`, converting it with `parse`; on error records a problem
    /// (with the message `parse` returned) and yields `default`.
    fn get<T>(&mut self, key: &str, default: T, parse: impl FnOnce(&Value) -> Result<T, String>) -> T {
        match self.table.remove(key) {
            None => default,
            Some(value) => match parse(&value) {
                Ok(v) => v,
                Err(allowed) => {
                    self.problem(key, &value, allowed);
                    default
                }
            },
        }
    }

    fn string(&mut self, key: &str, default: &str) -> String {
        self.get(key, default.to_owned(), |v| {
            v.as_str().map(str::to_owned).ok_or_else(|| "must be a string".into())
        })
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        self.get(key, default, |v| v.as_bool().ok_or_else(|| "must be true or false".into()))
    }

    fn int(&mut self, key: &str, default: i64, lo: i64, hi: i64) -> i64 {
        self.get(key, default, |v| match v.as_integer() {
            Some(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(format!("must be an integer from {lo} to {hi}")),
        })
    }

    fn duration(&mut self, key: &str, default: &str, min: Duration) -> Duration {
        let default = humantime::parse_duration(default).expect("valid default duration");
        self.get(key, default, |v| {
            let allowed = || {
                format!(
                    "must be a duration string of at least {} such as \"250ms\", \"1s\" or \"2m\"",
                    format_duration(min)
                )
            };
            let text = v.as_str().ok_or_else(allowed)?;
            let d = if text.trim() == "0" {
                Duration::ZERO
            } else {
                humantime::parse_duration(text.trim()).map_err(|_| allowed())?
            };
            if d < min { Err(allowed()) } else { Ok(d) }
        })
    }

    fn ipv4(&mut self, key: &str, default: Ipv4Addr) -> Ipv4Addr {
        self.get(key, default, |v| {
            v.as_str()
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
                .ok_or_else(|| "must be an IPv4 address such as \"192.168.1.10\" or \"0.0.0.0\"".into())
        })
    }

    fn choice(&mut self, key: &str, default: &'static str, allowed: &'static [&'static str]) -> &'static str {
        self.get(key, default, |v| {
            let s = v.as_str();
            allowed
                .iter()
                .find(|a| Some(**a) == s)
                .copied()
                .ok_or_else(|| format!("must be one of {}", quoted(allowed)))
        })
    }

    fn strings(&mut self, key: &str, check: impl Fn(&str) -> Result<(), String>) -> Vec<String> {
        self.get(key, Vec::new(), |v| {
            let arr = v.as_array().ok_or("must be an array of strings")?;
            let mut out = Vec::with_capacity(arr.len());
            for item in arr {
                let s = item.as_str().ok_or("must be an array of strings")?;
                check(s).map_err(|e| format!("element {item}: {e}"))?;
                out.push(s.to_owned());
            }
            Ok(out)
        })
    }

    /// Reports keys nobody took as unknown, naming the section's valid keys.
    fn finish(self) {
        let known = KEYS.iter().find(|(name, _)| *name == self.name).map_or(&[][..], |(_, keys)| keys);
        for (key, value) in self.table {
            self.problems.push(Problem {
                path: format!("{}.{key}", self.name),
                value: value.to_string(),
                allowed: format!("unknown key; [{}] has {}", self.name, known.join(", ")),
            });
        }
    }
}

fn quoted(items: &[&str]) -> String {
    items.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
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

fn check_tag(s: &str) -> Result<(), String> {
    if s.is_empty() || s.contains(['|', ',', '#', ' ', '\n']) {
        Err("must be \"key:value\" or \"key\" without '|', ',', '#' or spaces".to_owned())
    } else {
        Ok(())
    }
}

fn default_node_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    // A hostname may be an FQDN; the first label is what operators call the node.
    host.split('.').next().unwrap_or_default().to_owned()
}

fn validate(mut root: Table) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let p = &mut problems;

    let mut s = Section::new(&mut root, "node", p);
    let mut name = s.string("name", "");
    let cluster = s.get("cluster", "herd".to_owned(), |v| {
        let c = v.as_str().ok_or("must be a string")?;
        check_name(c).map(|_| c.to_owned())
    });
    if name.is_empty() {
        name = default_node_name();
        if let Err(allowed) = check_name(&name) {
            s.problems.push(Problem {
                path: "node.name".into(),
                value: String::new(),
                allowed: format!(
                    "the hostname {name:?} is not a usable node name ({allowed}); set [node] name"
                ),
            });
        }
    } else if let Err(allowed) = check_name(&name) {
        let v = Value::String(name.clone());
        s.problem("name", &v, allowed);
    }
    s.finish();
    let node = NodeSection { name, cluster };

    let mut s = Section::new(&mut root, "gossip", p);
    let strategy = match s.choice("strategy", "multicast", &["multicast", "static", "dns"]) {
        "static" => Strategy::Static,
        "dns" => Strategy::Dns,
        _ => Strategy::Multicast,
    };
    let port = s.int("port", 45892, 1, 65535) as u16;
    let if_addr = s.ipv4("if_addr", Ipv4Addr::UNSPECIFIED);
    let multicast_if = s.ipv4("multicast_if", Ipv4Addr::UNSPECIFIED);
    let broadcast_only = s.boolean("broadcast_only", false);
    let multicast_addr = s.get("multicast_addr", Ipv4Addr::new(230, 1, 1, 251), |v| {
        let a = v.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok());
        match a {
            Some(a) if broadcast_only || a.is_multicast() => Ok(a),
            _ if broadcast_only => Err("must be an IPv4 broadcast address such as \"192.168.1.255\"".into()),
            _ => Err("must be an IPv4 multicast address (224.0.0.0 to 239.255.255.255), e.g. \"230.1.1.251\"; set broadcast_only = true to use a broadcast address".into()),
        }
    });
    let multicast_ttl = s.int("multicast_ttl", 1, 0, 255) as u32;
    let secret_text = s.string("secret", "");
    let secret_file = s.string("secret_file", "");
    let heartbeat_interval = s.duration("heartbeat_interval", "1s", Duration::from_millis(10));
    let suspect_after = s.duration("suspect_after", "3s", Duration::from_millis(10));
    let down_after = s.duration("down_after", "5s", Duration::from_millis(10));
    let hosts = s.strings("hosts", check_host_port);
    let dns_name = s.string("dns_name", "");
    let data_port = s.int("data_port", 45893, 0, 65535) as u16;
    let max_members = s.int("max_members", 256, 2, 65536) as usize;
    s.finish();
    let mut cross =
        |path: &str, value: String, allowed: String| p.push(Problem { path: path.into(), value, allowed });
    if suspect_after <= heartbeat_interval {
        cross(
            "gossip.suspect_after",
            format!("\"{}\"", format_duration(suspect_after)),
            format!(
                "must be longer than heartbeat_interval ({}), or every peer is suspected between two heartbeats",
                format_duration(heartbeat_interval)
            ),
        );
    }
    if down_after <= suspect_after {
        cross(
            "gossip.down_after",
            format!("\"{}\"", format_duration(down_after)),
            format!("must be longer than suspect_after ({})", format_duration(suspect_after)),
        );
    }
    if strategy == Strategy::Static && hosts.is_empty() {
        cross(
            "gossip.hosts",
            "[]".into(),
            "strategy = \"static\" needs at least one \"host:port\" in hosts".into(),
        );
    }
    if strategy == Strategy::Dns && dns_name.trim().is_empty() {
        cross(
            "gossip.dns_name",
            "\"\"".into(),
            "strategy = \"dns\" needs a dns_name, e.g. \"herd.default.svc.cluster.local\"".into(),
        );
    }
    if data_port != 0 && data_port == port {
        cross(
            "gossip.data_port",
            data_port.to_string(),
            format!("must differ from gossip.port ({port}); use 0 for any free port"),
        );
    }
    if secret_text == REDACTED {
        cross(
            "gossip.secret",
            format!("\"{REDACTED}\""),
            "is the placeholder `herd check` prints; put the real secret here (or use secret_file)".into(),
        );
    }
    let secret = match (secret_text.is_empty() || secret_text == REDACTED, secret_file.is_empty()) {
        (true, true) => None,
        (false, true) => Some(Secret(secret_text.into_bytes())),
        (false, false) => {
            cross(
                "gossip.secret_file",
                format!("{secret_file:?}"),
                "set either secret or secret_file, not both".into(),
            );
            None
        }
        (true, false) => match std::fs::read(&secret_file) {
            Ok(bytes) => {
                // A trailing newline from `echo secret > file` is not part of the secret.
                let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                let text = text.strip_suffix(b"\r").unwrap_or(text).to_vec();
                if text.is_empty() {
                    cross("gossip.secret_file", format!("{secret_file:?}"), "the file is empty".into());
                    None
                } else {
                    Some(Secret(text))
                }
            }
            Err(e) => {
                cross(
                    "gossip.secret_file",
                    format!("{secret_file:?}"),
                    format!("must be a readable file ({e})"),
                );
                None
            }
        },
    };
    let gossip = GossipSection {
        strategy,
        port,
        if_addr,
        multicast_if,
        multicast_addr,
        multicast_ttl,
        broadcast_only,
        secret,
        secret_file: (!secret_file.is_empty()).then(|| PathBuf::from(&secret_file)),
        heartbeat_interval,
        suspect_after,
        down_after,
        hosts,
        dns_name,
        data_port,
        max_members,
    };

    let mut s = Section::new(&mut root, "baton", p);
    let enabled = s.boolean("enabled", true);
    let main_node = s.get("main_node", String::new(), |v| {
        let n = v.as_str().ok_or("must be a string")?;
        if n.is_empty() {
            return Ok(String::new());
        }
        check_name(n).map(|_| n.to_owned()).map_err(|e| format!("{e}, or \"\" for leaderless"))
    });
    let metric = s.get("metric", "baton".to_owned(), |v| {
        let m = v.as_str().unwrap_or_default();
        let ok = !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if ok { Ok(m.to_owned()) } else { Err("must be a metric name of letters, digits, '_' or '.'".into()) }
    });
    let hold = s.duration("hold", "0ms", Duration::ZERO);
    let pass_timeout = s.duration("pass_timeout", "250ms", Duration::from_millis(1));
    let max_retries = s.int("max_retries", 3, 0, 100) as u32;
    let regenerate_after = s.duration("regenerate_after", "3s", Duration::from_millis(10));
    s.finish();
    if regenerate_after <= pass_timeout * (max_retries + 1) {
        p.push(Problem {
            path: "baton.regenerate_after".into(),
            value: format!("\"{}\"", format_duration(regenerate_after)),
            allowed: format!(
                "must be longer than pass_timeout × (max_retries + 1) = {}, or a slow pass looks like a lost baton",
                format_duration(pass_timeout * (max_retries + 1))
            ),
        });
    }
    let baton =
        BatonSection { enabled, main_node, metric, hold, pass_timeout, max_retries, regenerate_after };

    let mut s = Section::new(&mut root, "statsd", p);
    let address = s.get("address", StatsdAddress::Udp("127.0.0.1:8125".into()), |v| {
        let a = v.as_str().unwrap_or_default();
        if let Some(path) = a.strip_prefix("unix://") {
            if path.starts_with('/') {
                return Ok(StatsdAddress::Unix(PathBuf::from(path)));
            }
        } else if check_host_port(a).is_ok() {
            return Ok(StatsdAddress::Udp(a.to_owned()));
        }
        Err("must be \"host:port\" (UDP) or \"unix:///absolute/path.socket\"".into())
    });
    let prefix = s.get("prefix", "herd".to_owned(), |v| {
        let m = v.as_str().ok_or("must be a string")?;
        if m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
            Ok(m.trim_matches('.').to_owned())
        } else {
            Err("must be letters, digits, '_' or '.' (or \"\" for none)".into())
        }
    });
    let tags = s.strings("tags", check_tag);
    let flavor = match s.choice("flavor", "dogstatsd", &["dogstatsd", "statsd"]) {
        "statsd" => Flavor::Statsd,
        _ => Flavor::DogStatsd,
    };
    let max_packet_size = s.int("max_packet_size", 1432, 64, 65507) as usize;
    let flush_interval = s.duration("flush_interval", "1s", Duration::from_millis(1));
    s.finish();
    let statsd = StatsdSection { address, prefix, tags, flavor, max_packet_size, flush_interval };

    let mut s = Section::new(&mut root, "telemetry", p);
    let interval = s.duration("interval", "10s", Duration::from_millis(100));
    let sysfs_root = PathBuf::from(s.string("sysfs_root", "/sys"));
    let interface = s.get("interface", None, |v| {
        let name = v.as_str().ok_or("must be a string")?;
        let ok = name.len() <= 15 && !name.contains(['/', ' ', '\t', '\n']);
        match name {
            "" => Ok(None),
            _ if ok => Ok(Some(name.to_owned())),
            _ => Err("must be a network interface name such as \"eth0\" (at most 15 characters), or \"\" for automatic".into()),
        }
    });
    s.finish();
    let telemetry = TelemetrySection { interval, sysfs_root, interface };

    let mut s = Section::new(&mut root, "links", p);
    let probe_interval = s.duration("probe_interval", "1s", Duration::from_millis(10));
    let window = s.int("window", 60, 1, 10_000) as usize;
    s.finish();
    let links = LinksSection { probe_interval, window };

    let mut s = Section::new(&mut root, "status", p);
    let listen =
        s.get("listen", Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 45894))), |v| match v.as_str() {
            Some("") => Ok(None),
            Some(a) => a.parse::<SocketAddr>().map(Some).map_err(|_| {
                "must be \"ip:port\" such as \"127.0.0.1:45894\", or \"\" to disable".to_owned()
            }),
            None => Err("must be a string".into()),
        });
    s.finish();
    let status = StatusSection { listen };

    let mut s = Section::new(&mut root, "log", p);
    let level = s.choice("level", "info", LOG_LEVELS).to_owned();
    s.finish();
    let log = LogSection { level };

    for (key, value) in root {
        let allowed = match value {
            Value::Table(_) => {
                "unknown section; sections are node, gossip, baton, statsd, telemetry, links, status, log"
            }
            _ => "unknown key; keys belong in a section such as [node] or [gossip]",
        };
        problems.push(Problem { path: key, value: value.to_string(), allowed: allowed.into() });
    }

    if problems.is_empty() {
        Ok(Config { node, gossip, baton, statsd, telemetry, links, status, log })
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

#[cfg(test)]
mod tests;
