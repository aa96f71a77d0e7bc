//! `[telemetry]`: how often the sensors are read, where sysfs is, and which
//! interface is the gossip interface.

use std::path::PathBuf;
use std::time::Duration;

use super::key::{Key, Section, duration, span, string, text};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TelemetrySection {
    pub interval: Duration,
    pub sysfs_root: PathBuf,
    /// The gossip interface whose state is reported; `None` = the interface
    /// that owns `multicast_if`, else the default route's.
    pub interface: Option<String>,
}

type T = TelemetrySection;

const INTERVAL: Key<T> = Key::live(
    "interval",
    || text("10s"),
    |t, v| duration(v, Duration::from_millis(100)).map(|d| t.interval = d),
    |t| span(t.interval),
);
const SYSFS_ROOT: Key<T> = Key::live(
    "sysfs_root",
    || text("/sys"),
    |t, v| string(v).map(|s| t.sysfs_root = PathBuf::from(s)),
    |t| text(t.sysfs_root.display()),
);
const INTERFACE: Key<T> = Key::live(
    "interface",
    || text(""),
    |t, v| {
        let name = v.as_str().ok_or("must be a string")?;
        let ok = name.len() <= 15 && !name.contains(['/', ' ', '\t', '\n']);
        t.interface = match name {
            "" => None,
            _ if ok => Some(name.to_owned()),
            _ => {
                return Err("must be a network interface name such as \"eth0\" (at most 15 characters), \
                            or \"\" for automatic"
                    .into());
            }
        };
        Ok(())
    },
    |t| text(t.interface.as_deref().unwrap_or_default()),
);

impl Section for TelemetrySection {
    const NAME: &'static str = "telemetry";
    const KEYS: &'static [Key<Self>] = &[INTERVAL, SYSFS_ROOT, INTERFACE];
}
