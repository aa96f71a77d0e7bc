//! `[gossip]`: how peers are found and how often they hear from each other,
//! the secret, and the sockets.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::key::{
    Key, Section, boolean, choice, duration, int, integer, ipv4, list, span, string, strings, text,
};
use super::{Problem, REDACTED, check_host_port};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    #[default]
    Multicast,
    Static,
    Dns,
}

impl Strategy {
    const ALL: [Strategy; 3] = [Strategy::Multicast, Strategy::Static, Strategy::Dns];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Multicast => "multicast",
            Strategy::Static => "static",
            Strategy::Dns => "dns",
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
pub struct GossipSection {
    pub strategy: Strategy,
    pub port: u16,
    pub if_addr: Ipv4Addr,
    pub multicast_if: Ipv4Addr,
    pub multicast_addr: Ipv4Addr,
    pub multicast_ttl: u32,
    pub broadcast_only: bool,
    /// The keyring: `secret` (one key), or the lines of `secret_file` (blank
    /// lines skipped). The first key seals what this node sends, every key
    /// opens, so a secret is rotated without a split (docs/operating.md).
    /// Empty = unauthenticated.
    pub keys: Vec<Secret>,
    pub secret_file: Option<PathBuf>,
    pub heartbeat_interval: Duration,
    pub suspect_after: Duration,
    pub down_after: Duration,
    pub hosts: Vec<String>,
    pub dns_name: String,
    pub data_port: u16,
    pub max_members: usize,
}

/// Placeholders only: `key::read` sets every field from its key's default.
impl Default for GossipSection {
    fn default() -> GossipSection {
        GossipSection {
            strategy: Strategy::default(),
            port: 0,
            if_addr: Ipv4Addr::UNSPECIFIED,
            multicast_if: Ipv4Addr::UNSPECIFIED,
            multicast_addr: Ipv4Addr::UNSPECIFIED,
            multicast_ttl: 0,
            broadcast_only: false,
            keys: Vec::new(),
            secret_file: None,
            heartbeat_interval: Duration::ZERO,
            suspect_after: Duration::ZERO,
            down_after: Duration::ZERO,
            hosts: Vec::new(),
            dns_name: String::new(),
            data_port: 0,
            max_members: 0,
        }
    }
}

/// `[gossip] port`'s default: the port real clusters gossip on.
pub const DEFAULT_GOSSIP_PORT: u16 = 45892;

type G = GossipSection;
const MS10: Duration = Duration::from_millis(10);

const STRATEGY: Key<G> = Key::restart(
    "strategy",
    || text("multicast"),
    |g, v| choice(v, &Strategy::ALL, Strategy::as_str).map(|s| g.strategy = s),
    |g| text(g.strategy.as_str()),
);
const PORT: Key<G> = Key::restart(
    "port",
    || integer(DEFAULT_GOSSIP_PORT),
    |g, v| int(v, 1, 65535).map(|n| g.port = n as u16),
    |g| integer(g.port),
);
const IF_ADDR: Key<G> =
    Key::restart("if_addr", || text("0.0.0.0"), |g, v| ipv4(v).map(|a| g.if_addr = a), |g| text(g.if_addr));
const MULTICAST_IF: Key<G> = Key::restart(
    "multicast_if",
    || text("0.0.0.0"),
    |g, v| ipv4(v).map(|a| g.multicast_if = a),
    |g| text(g.multicast_if),
);
const MULTICAST_ADDR: Key<G> = Key::restart(
    "multicast_addr",
    || text("230.1.1.251"),
    |g, v| match v.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
        Some(a) if g.broadcast_only || a.is_multicast() => {
            g.multicast_addr = a;
            Ok(())
        }
        _ if g.broadcast_only => Err("must be an IPv4 broadcast address such as \"192.168.1.255\"".into()),
        _ => Err(format!(
            "must be an IPv4 multicast address (224.0.0.0 to 239.255.255.255), e.g. \"230.1.1.251\"; \
             set {} = true to use a broadcast address",
            BROADCAST_ONLY.name
        )),
    },
    |g| text(g.multicast_addr),
);
const MULTICAST_TTL: Key<G> = Key::restart(
    "multicast_ttl",
    || integer(1),
    |g, v| int(v, 0, 255).map(|n| g.multicast_ttl = n as u32),
    |g| integer(g.multicast_ttl),
);
const BROADCAST_ONLY: Key<G> = Key::restart(
    "broadcast_only",
    || false.into(),
    |g, v| boolean(v).map(|b| g.broadcast_only = b),
    |g| g.broadcast_only.into(),
);
const SECRET: Key<G> = Key::live(
    "secret",
    || text(""),
    |g, v| string(v).map(|s| g.keys = if s.is_empty() { Vec::new() } else { vec![Secret(s.into_bytes())] }),
    // Never the secret itself, so the output can be shown or logged.
    |g| text(if !g.keys.is_empty() && g.secret_file.is_none() { REDACTED } else { "" }),
);
const SECRET_FILE: Key<G> = Key::live(
    "secret_file",
    || text(""),
    |g, v| string(v).map(|s| g.secret_file = (!s.is_empty()).then(|| PathBuf::from(s))),
    |g| text(g.secret_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
);
const HEARTBEAT_INTERVAL: Key<G> = Key::live(
    "heartbeat_interval",
    || text("1s"),
    |g, v| duration(v, MS10).map(|d| g.heartbeat_interval = d),
    |g| span(g.heartbeat_interval),
);
const SUSPECT_AFTER: Key<G> = Key::live(
    "suspect_after",
    || text("3s"),
    |g, v| duration(v, MS10).map(|d| g.suspect_after = d),
    |g| span(g.suspect_after),
);
const DOWN_AFTER: Key<G> = Key::live(
    "down_after",
    || text("5s"),
    |g, v| duration(v, MS10).map(|d| g.down_after = d),
    |g| span(g.down_after),
);
const HOSTS: Key<G> = Key::restart(
    "hosts",
    || toml::Value::Array(Vec::new()),
    |g, v| strings(v, check_host_port).map(|h| g.hosts = h),
    |g| list(&g.hosts),
);
const DNS_NAME: Key<G> =
    Key::restart("dns_name", || text(""), |g, v| string(v).map(|s| g.dns_name = s), |g| text(&g.dns_name));
const DATA_PORT: Key<G> = Key::restart(
    "data_port",
    || integer(45893),
    |g, v| int(v, 0, 65535).map(|n| g.data_port = n as u16),
    |g| integer(g.data_port),
);
const MAX_MEMBERS: Key<G> = Key::restart(
    "max_members",
    || integer(256),
    |g, v| int(v, 2, 65536).map(|n| g.max_members = n as usize),
    |g| integer(g.max_members as i64),
);

impl Section for GossipSection {
    const NAME: &'static str = "gossip";
    const KEYS: &'static [Key<Self>] = &[
        STRATEGY,
        PORT,
        IF_ADDR,
        MULTICAST_IF,
        MULTICAST_ADDR,
        MULTICAST_TTL,
        BROADCAST_ONLY,
        SECRET,
        SECRET_FILE,
        HEARTBEAT_INTERVAL,
        SUSPECT_AFTER,
        DOWN_AFTER,
        HOSTS,
        DNS_NAME,
        DATA_PORT,
        MAX_MEMBERS,
    ];
}

impl GossipSection {
    /// The rules between keys, and the secret from `secret_file`.
    pub(super) fn check(&mut self, p: &mut Vec<Problem>) {
        let d = super::format_duration;
        if self.suspect_after <= self.heartbeat_interval {
            p.push(SUSPECT_AFTER.problem(
                self,
                format!(
                    "must be longer than {} ({}), or every peer is suspected between two heartbeats",
                    HEARTBEAT_INTERVAL.name,
                    d(self.heartbeat_interval)
                ),
            ));
        }
        if self.down_after <= self.suspect_after {
            let allowed = format!("must be longer than {} ({})", SUSPECT_AFTER.name, d(self.suspect_after));
            p.push(DOWN_AFTER.problem(self, allowed));
        }
        if self.strategy == Strategy::Static && self.hosts.is_empty() {
            let allowed =
                format!("{} = \"static\" needs at least one \"host:port\" in {}", STRATEGY.name, HOSTS.name);
            p.push(HOSTS.problem(self, allowed));
        }
        if self.strategy == Strategy::Dns && self.dns_name.trim().is_empty() {
            let allowed = format!(
                "{} = \"dns\" needs a {}, e.g. \"herd.default.svc.cluster.local\"",
                STRATEGY.name, DNS_NAME.name
            );
            p.push(DNS_NAME.problem(self, allowed));
        }
        if self.data_port != 0 && self.data_port == self.port {
            let allowed =
                format!("must differ from {} ({}); use 0 for any free port", PORT.path(), self.port);
            p.push(DATA_PORT.problem(self, allowed));
        }
        self.check_secret(p);
    }

    fn check_secret(&mut self, p: &mut Vec<Problem>) {
        if self.keys.iter().any(|k| k.0 == REDACTED.as_bytes()) {
            p.push(Problem {
                path: SECRET.path(),
                value: text(REDACTED).to_string(),
                allowed: format!(
                    "is the placeholder `herd check` prints; put the real secret here (or use {})",
                    SECRET_FILE.name
                ),
            });
            self.keys.clear();
        }
        let Some(path) = &self.secret_file else { return };
        if !self.keys.is_empty() {
            let allowed = format!("set either {} or {}, not both", SECRET.name, SECRET_FILE.name);
            p.push(SECRET_FILE.problem(self, allowed));
            self.keys.clear();
            return;
        }
        match std::fs::read(path) {
            Ok(bytes) => match keyring(&bytes) {
                Ok(keys) => self.keys = keys,
                Err(allowed) => p.push(SECRET_FILE.problem(self, allowed)),
            },
            Err(e) => p.push(SECRET_FILE.problem(self, format!("must be a readable file ({e})"))),
        }
    }
}

/// `herd keygen`: a new key for `secret_file`, 32 bytes from the operating
/// system's random source, in base64 (44 characters, one line).
pub fn new_key() -> anyhow::Result<String> {
    use base64::Engine as _;
    use rand::TryRng as _;
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot get random bytes for a key: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Most keys a `secret_file` holds: a datagram of the previous wire version
/// names no key, so it is tried against each.
pub const MAX_KEYS: usize = 8;

/// The keys of a `secret_file`: one a line (a line's `\r\n` or `\n` is not
/// part of its key), blank lines skipped, in order; or what is wrong with it.
fn keyring(bytes: &[u8]) -> Result<Vec<Secret>, String> {
    let keys: Vec<Secret> = bytes
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| Secret(line.to_vec()))
        .collect();
    match keys.len() {
        0 => Err("the file holds no key (one a line; `herd keygen` makes one)".into()),
        n if n > MAX_KEYS => Err(format!("holds {n} keys; at most {MAX_KEYS}, one a line")),
        _ => Ok(keys),
    }
}
