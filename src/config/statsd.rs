//! `[statsd]`: where metrics go, and how they are named and tagged.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::check_host_port;
use super::key::{Key, Section, boolean, choice, duration, int, integer, list, span, strings, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    #[default]
    DogStatsd,
    Statsd,
}

impl Flavor {
    const ALL: [Flavor; 2] = [Flavor::DogStatsd, Flavor::Statsd];

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

impl Default for StatsdAddress {
    fn default() -> StatsdAddress {
        StatsdAddress::Udp(String::new())
    }
}

impl fmt::Display for StatsdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatsdAddress::Udp(a) => f.write_str(a),
            StatsdAddress::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsdSection {
    pub address: StatsdAddress,
    pub prefix: String,
    pub tags: Vec<String>,
    pub flavor: Flavor,
    pub max_packet_size: usize,
    pub flush_interval: Duration,
    /// Tag every metric `host:<node>` (dogstatsd flavour). Off: the Datadog
    /// Agent files them under its own hostname, which then must be this
    /// Pi's (one Agent per Pi).
    pub host_tag: bool,
}

type S = StatsdSection;

const ADDRESS: Key<S> = Key::live(
    "address",
    || text("127.0.0.1:8125"),
    |s, v| {
        let a = v.as_str().unwrap_or_default();
        s.address = match a.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => StatsdAddress::Unix(PathBuf::from(path)),
            None if check_host_port(a).is_ok() => StatsdAddress::Udp(a.to_owned()),
            _ => return Err("must be \"host:port\" (UDP) or \"unix:///absolute/path.socket\"".into()),
        };
        Ok(())
    },
    |s| text(&s.address),
);
const PREFIX: Key<S> = Key::live(
    "prefix",
    || text("herd"),
    |s, v| {
        let m = v.as_str().ok_or("must be a string")?;
        if !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
            return Err("must be letters, digits, '_' or '.' (or \"\" for none)".into());
        }
        s.prefix = m.trim_matches('.').to_owned();
        Ok(())
    },
    |s| text(&s.prefix),
);
const TAGS: Key<S> = Key::live(
    "tags",
    || toml::Value::Array(Vec::new()),
    |s, v| strings(v, check_tag).map(|t| s.tags = t),
    |s| list(&s.tags),
);
const FLAVOR: Key<S> = Key::live(
    "flavor",
    || text("dogstatsd"),
    |s, v| choice(v, &Flavor::ALL, Flavor::as_str).map(|f| s.flavor = f),
    |s| text(s.flavor.as_str()),
);
const MAX_PACKET_SIZE: Key<S> = Key::live(
    "max_packet_size",
    || integer(1432),
    |s, v| int(v, 64, 65507).map(|n| s.max_packet_size = n as usize),
    |s| integer(s.max_packet_size as i64),
);
const FLUSH_INTERVAL: Key<S> = Key::live(
    "flush_interval",
    || text("1s"),
    |s, v| duration(v, Duration::from_millis(1)).map(|d| s.flush_interval = d),
    |s| span(s.flush_interval),
);

const HOST_TAG: Key<S> =
    Key::live("host_tag", || true.into(), |s, v| boolean(v).map(|b| s.host_tag = b), |s| s.host_tag.into());

impl Section for StatsdSection {
    const NAME: &'static str = "statsd";
    const KEYS: &'static [Key<Self>] =
        &[ADDRESS, PREFIX, TAGS, FLAVOR, MAX_PACKET_SIZE, FLUSH_INTERVAL, HOST_TAG];
}

fn check_tag(s: &str) -> Result<(), String> {
    if s.is_empty() || s.contains(['|', ',', '#', ' ', '\n']) {
        Err("must be \"key:value\" or \"key\" without '|', ',', '#' or spaces".to_owned())
    } else {
        Ok(())
    }
}
