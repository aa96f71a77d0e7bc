//! sensors: the node's own health, read once per `[telemetry] interval`. It owns reading
//! - temperatures and fans from thermal zones and hwmon (`class/thermal`, `class/hwmon`), the
//!   under-voltage alarm of hwmon `rpi_volt`, the CPU frequency (cpufreq), the Raspberry Pi
//!   firmware's throttled word and the gossip interface's state, speed, duplex, link flaps and drops
//!   (`class/net/<if>`), all as plain files under `[telemetry] sysfs_root`, and the default route,
//!   the Wi-Fi signal, the root filesystem's state and the uptime from `net/route`, `net/wireless`,
//!   `self/mountinfo` and `uptime` under the sibling `proc` directory, so a fixture tree stands in
//!   for a whole Pi;
//! - CPU usage, load average and memory use from sysinfo, which always reads the real `/proc`;
//! - the kernel's clock discipline (adjtimex(2) with no mode bits: it only reads, and herd never
//!   sets the clock) and the root filesystem's fill (statvfs(3) of `/`), from the running kernel.
//!
//! Contract: [`Sensors::read`] never panics, never spawns a process (no `vcgencmd`) and never waits on
//! anything slower than a sysfs or procfs read. A missing, unreadable or unparsable item is `None` (or
//! absent from [`Reading::temperatures`]), never a made-up zero, and one debug line names the file and
//! why; that line comes again only after the item has read well in between.
//!
//! Must not: send metrics, log at a level above debug, or judge the values (which throttle change
//! deserves a warning is the runtime's call, helped by [`Throttle::newly_set`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sysinfo::{MemoryRefreshKind, System};
use tracing::debug;

use crate::core::health::{self, Health};

/// One read of every sensor. `None` (or a sensor absent from `temperatures`) means "not known now".
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// °C per sensor, labelled, de-duplicated (see below), sorted by label.
    ///
    /// A thermal zone is labelled by its `type`; an hwmon sensor by its `name`, or
    /// `<name>_<tempN_label>` (`<name>_tempN` without a label file) when the device has several
    /// inputs. An hwmon device whose name equals a thermal zone's type once '-' is read as '_' is
    /// that zone seen again (a Pi's `cpu-thermal` and `cpu_thermal`) and is left out, as long as the
    /// zone itself gave a value. A label several sensors still share gets `_<sensor directory>`
    /// appended, so that no gauge silently overwrites another.
    pub temperatures: Vec<(String, f64)>,
    pub cpu_freq_mhz: Option<f64>,
    /// Global CPU usage since the previous read (sysinfo); `None` while it cannot tell yet, i.e. when
    /// less than `sysinfo::MINIMUM_CPU_UPDATE_INTERVAL` (200 ms on Linux) passed since the previous
    /// read or since [`Sensors::new`].
    pub cpu_usage_pct: Option<f64>,
    pub load_1: Option<f64>,
    /// Used (total minus available) over total RAM, in percent.
    pub mem_used_pct: Option<f64>,
    pub throttle: Option<Throttle>,
    /// hwmon `rpi_volt` `in0_lcrit_alarm`: the supply is below the Pi's minimum now. Newer kernels
    /// deprecate the firmware's `get_throttled` for it; telemetry uses it where the word is missing.
    pub under_voltage_alarm: Option<bool>,
    /// RPM per fan (hwmon `fan*_input`), labelled like hwmon temperatures, sorted by label.
    pub fans: Vec<(String, f64)>,
    pub net: Option<NetState>,
    pub clock: Option<ClockState>,
    /// Used over usable blocks of `/`, in percent, as df(1) counts them (blocks reserved for root
    /// count as neither).
    pub root_used_pct: Option<f64>,
    /// The filesystem on `/` is read-only (its own options in `proc/self/mountinfo`, not the
    /// mount's: a sandbox's read-only view is not a failing card): what the kernel does to a worn
    /// SD card.
    pub root_readonly: Option<bool>,
    /// Seconds since boot (`proc/uptime`).
    pub uptime_s: Option<f64>,
}

/// The kernel's NTP state (adjtimex(2)): whether a time daemon has synchronised the clock, and its
/// own estimate of the error. A Pi has no RTC: until NTP syncs, its clock is whatever it saved at
/// shutdown.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockState {
    pub synced: bool,
    pub error_ms: f64,
}

/// The Raspberry Pi firmware's throttled word (`vcgencmd get_throttled`): bits 0-3 are live, bits
/// 16-19 the same conditions, sticky since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle(pub u32);

/// Metric suffix and bit of each flag: the 4 live ones, then the 4 sticky ones.
const THROTTLE_FLAGS: [(&str, u32); 8] = [
    ("under_voltage", 0),
    ("freq_capped", 1),
    ("throttled", 2),
    ("soft_temp_limit", 3),
    ("under_voltage_occurred", 16),
    ("freq_capped_occurred", 17),
    ("throttled_occurred", 18),
    ("soft_temp_limit_occurred", 19),
];

const LIVE_BITS: u32 = 0xf;

impl Reading {
    /// The summary the node gossips (`core::health`): the hottest sensor, the
    /// live throttle bits (from hwmon's under-voltage alarm where the
    /// firmware word is missing), load, memory, the fastest fan, root
    /// read-only, clock sync, uptime, and this build's version. What the
    /// reading lacks stays absent.
    pub fn health(&self) -> Health {
        let hottest = self
            .temperatures
            .iter()
            .map(|(_, t)| *t)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        let throttle = match (self.throttle, self.under_voltage_alarm) {
            (Some(t), _) => Some((t.0 & 0x0f) as u8),
            (None, Some(alarm)) => Some(if alarm { health::UNDER_VOLTAGE } else { 0 }),
            (None, None) => None,
        };
        let fastest =
            self.fans.iter().map(|(_, r)| *r).fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        Health {
            temp_dc: hottest
                .map(|t| (t * 10.0).round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16),
            throttle,
            load1_c: self.load_1.map(|l| (l * 100.0).round().clamp(0.0, f64::from(u16::MAX)) as u16),
            mem_used_pct: self.mem_used_pct.map(|m| m.round().clamp(0.0, 100.0) as u8),
            fan_rpm: fastest.map(|r| r.round().clamp(0.0, f64::from(u16::MAX)) as u16),
            root_readonly: self.root_readonly,
            clock_synced: self.clock.map(|c| c.synced),
            uptime_s: self.uptime_s.map(|u| u.clamp(0.0, f64::from(u32::MAX)) as u32),
            version: crate::SHORT_VERSION.to_owned(),
        }
    }
}

impl Throttle {
    /// (metric suffix, set?) for the 4 live bits then the 4 sticky ones, in this order:
    /// ("under_voltage", bit0), ("freq_capped", bit1), ("throttled", bit2), ("soft_temp_limit", bit3),
    /// ("under_voltage_occurred", bit16), ("freq_capped_occurred", bit17), ("throttled_occurred", bit18),
    /// ("soft_temp_limit_occurred", bit19)
    pub fn flags(self) -> [(&'static str, bool); 8] {
        THROTTLE_FLAGS.map(|(name, bit)| (name, self.0 & (1 << bit) != 0))
    }

    /// Names of live bits (0-3) set now but not in `previous` (None = none set before), in bit order.
    pub fn newly_set(self, previous: Option<Throttle>) -> Vec<&'static str> {
        let before = previous.map_or(0, |p| p.0);
        let new = self.0 & !before & LIVE_BITS;
        THROTTLE_FLAGS.iter().filter(|(_, bit)| new & (1 << bit) != 0).map(|(name, _)| *name).collect()
    }
}

/// The gossip interface's state. Only built when its `operstate` and both error counters read well.
#[derive(Clone, Debug, PartialEq)]
pub struct NetState {
    pub interface: String,
    /// `operstate` is "up"; any other state ("down", "dormant", "unknown"...) is false.
    pub up: bool,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// The "level" column of the interface's line in `proc/net/wireless`; `None` when it has no line
    /// there (a wired interface).
    pub wifi_signal_dbm: Option<f64>,
    /// Negotiated speed (`speed`, Mbit/s); `None` where the driver has none (Wi-Fi, a link that is
    /// down: the kernel then answers -1 or an error).
    pub speed_mbps: Option<f64>,
    /// `duplex` is "full"; `None` when it is "unknown" or missing.
    pub full_duplex: Option<bool>,
    /// Link flaps since boot (`carrier_changes`: every up and every down counts one).
    pub carrier_changes: Option<u64>,
    pub rx_dropped: Option<u64>,
}

/// Reads the sensors; keeps only what makes the next read cheaper or quieter.
#[derive(Debug)]
pub struct Sensors {
    sys: PathBuf,
    proc: PathBuf,
    /// Configured gossip interface; `None` = auto-detect at every read (an address may come later).
    interface: Option<String>,
    multicast_if: Ipv4Addr,
    /// `None` if sysinfo could not start (it cannot on Linux today; its API allows it).
    system: Option<System>,
    /// When sysinfo last took CPU times, the start of the span the next usage figure covers.
    cpu_times_at: Instant,
    missing: MissingLog,
}

impl Sensors {
    /// `sysfs_root` is `[telemetry] sysfs_root` (default "/sys"). The proc root is the sibling directory
    /// named "proc" (so /sys -> /proc, and a fixture tree `x/sys` -> `x/proc`). `interface`: the gossip
    /// interface name if configured (Some("eth0")), else None = auto-detect: if `multicast_if` is not
    /// 0.0.0.0, the interface that has that IPv4 address, else the default route's interface. An empty
    /// name counts as not configured.
    pub fn new(sysfs_root: &Path, interface: Option<&str>, multicast_if: Ipv4Addr) -> Sensors {
        let proc = sysfs_root.parent().unwrap_or(Path::new("/")).join("proc");
        let mut missing = MissingLog::default();
        let mut system =
            missing.check("sysinfo", System::new().map_err(|e| Fault::Unavailable(e.to_string())));
        // The first CPU times, so that the first read can already give a usage if it comes late enough.
        // Stamped after sysinfo's own stamp, so that "elapsed here" never runs ahead of sysinfo's.
        if let Some(system) = &mut system {
            system.refresh_cpu_usage();
        }
        Sensors {
            sys: sysfs_root.to_owned(),
            proc,
            interface: interface.filter(|name| !name.is_empty()).map(str::to_owned),
            multicast_if,
            system,
            cpu_times_at: Instant::now(),
            missing,
        }
    }

    /// Reads everything once. Never panics, never blocks for long. Each item that is missing or
    /// unparsable is None (or absent from `temperatures`) and is logged once at debug level naming the
    /// file and why; it is logged again only if it came back and went missing again.
    pub fn read(&mut self) -> Reading {
        // Listed once per read: temperatures, the voltage alarm and fans are all hwmon's.
        let hwmon = self.hwmon_devices();
        let root = self.root_mount();
        Reading {
            temperatures: self.temperatures(&hwmon),
            cpu_freq_mhz: self.sys_value("devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", |s| {
                s.parse::<u64>().ok().map(|khz| khz as f64 / 1000.0)
            }),
            cpu_usage_pct: self.cpu_usage(),
            load_1: self.load_1(),
            mem_used_pct: self.mem_used_pct(),
            throttle: self.sys_value("devices/platform/soc/soc:firmware/get_throttled", parse_throttled),
            under_voltage_alarm: self.under_voltage_alarm(&hwmon),
            fans: self.fans(&hwmon),
            net: self.net(),
            clock: self.missing.check("adjtimex", read_clock()),
            root_used_pct: self.root_used_pct(root.as_ref()),
            root_readonly: root.map(|r| r.readonly),
            uptime_s: self.proc_value("uptime", |s| {
                s.split_whitespace().next()?.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
            }),
        }
    }

    /// One value file under the proc root.
    fn proc_value<T>(&mut self, relative: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        let path = self.proc.join(relative);
        self.missing.check(&path.to_string_lossy(), read_value(&path, parse))
    }

    /// The filesystem mounted on `/` as this process sees it: the last `/`
    /// line of `proc/self/mountinfo`, read for the filesystem's own (super
    /// block) options, not the mount's. Under systemd's ProtectSystem=strict
    /// the mount is read-only for herd alone while the card is fine; when
    /// the kernel remounts a failing card, the filesystem itself turns `ro`.
    fn root_mount(&mut self) -> Option<RootMount> {
        let file = self.proc.join("self/mountinfo");
        let root = read_text(&file).and_then(|text| {
            text.lines()
                .rev()
                .find_map(parse_root_mountinfo)
                .ok_or(Fault::Unavailable("no mount of / listed".to_owned()))
        });
        self.missing.check(&file.to_string_lossy(), root)
    }

    /// statvfs(3) of `/`, unless it is a network filesystem: there statvfs
    /// waits on the server, and it would stall the event loop (a Pi that
    /// boots from NFS reports no fill).
    fn root_used_pct(&mut self, root: Option<&RootMount>) -> Option<f64> {
        let used = match root.map(|r| r.fstype.as_str()) {
            Some(t) if NETWORK_FILESYSTEMS.iter().any(|n| t.starts_with(n)) => {
                Err(Fault::Unavailable(format!("/ is {t}, a network filesystem: not asked")))
            }
            _ => root_used_pct(),
        };
        self.missing.check("statvfs /", used)
    }

    /// The hwmon devices as (directory, name, file names), in hwmon order; unreadable ones are
    /// logged and left out.
    fn hwmon_devices(&mut self) -> Vec<Hwmon> {
        let dir = self.sys.join("class/hwmon");
        let Some(entries) = self.missing.check(&dir.to_string_lossy(), list_dir(&dir)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (_, device) in numbered(entries, "hwmon", "") {
            let path = dir.join(&device);
            let name_file = path.join("name");
            let name = read_string(&name_file);
            let Some(name) = self.missing.check(&name_file.to_string_lossy(), name) else {
                continue;
            };
            let Some(files) = self.missing.check(&path.to_string_lossy(), list_dir(&path)) else {
                continue;
            };
            out.push((path, device, name, files));
        }
        out
    }

    /// `in0_lcrit_alarm` of the hwmon device named `rpi_volt` ("1": under-voltage now).
    fn under_voltage_alarm(&mut self, hwmon: &[Hwmon]) -> Option<bool> {
        let device = hwmon.iter().find(|(_, _, name, _)| name == "rpi_volt")?;
        let file = device.0.join("in0_lcrit_alarm");
        let alarm = read_value(&file, |s| match s {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        });
        self.missing.check(&file.to_string_lossy(), alarm)
    }

    /// Each `fan*_input` of each hwmon device, in RPM: labelled by the device's name, or
    /// `<name>_fanN` when it has several.
    fn fans(&mut self, hwmon: &[Hwmon]) -> Vec<(String, f64)> {
        let mut fans = Vec::new();
        for (path, device, name, files) in hwmon {
            let inputs = numbered(files.clone(), "fan", "_input");
            let several = inputs.len() > 1;
            for (n, input) in inputs {
                let file = path.join(&input);
                let rpm = read_value(&file, |s| s.parse::<u64>().ok().map(|r| r as f64));
                let Some(rpm) = self.missing.check(&file.to_string_lossy(), rpm) else {
                    continue;
                };
                let label = if several { format!("{name}_fan{n}") } else { name.clone() };
                fans.push(Labelled { label, source: format!("{device}_fan{n}"), value: rpm });
            }
        }
        finish_labels(fans)
    }

    /// One single-value file under the sysfs root.
    fn sys_value<T>(&mut self, relative: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        let path = self.sys.join(relative);
        self.missing.check(&path.to_string_lossy(), read_value(&path, parse))
    }

    fn temperatures(&mut self, hwmon: &[Hwmon]) -> Vec<(String, f64)> {
        let mut temps = Vec::new();
        let zone_types = self.thermal_zones(&mut temps);
        self.hwmon(hwmon, &zone_types, &mut temps);
        finish_labels(temps)
    }

    /// Pushes each thermal zone that has a type and a temperature; returns those zones' types with
    /// '-' read as '_', for de-duplication against hwmon.
    fn thermal_zones(&mut self, temps: &mut Vec<Labelled>) -> HashSet<String> {
        let mut types = HashSet::new();
        let dir = self.sys.join("class/thermal");
        let Some(entries) = self.missing.check(&dir.to_string_lossy(), list_dir(&dir)) else {
            return types;
        };
        for (_, zone) in numbered(entries, "thermal_zone", "") {
            let path = dir.join(&zone);
            let type_file = path.join("type");
            let kind = read_string(&type_file);
            let Some(kind) = self.missing.check(&type_file.to_string_lossy(), kind) else {
                continue;
            };
            let temp_file = path.join("temp");
            let celsius = read_value(&temp_file, millidegrees);
            let Some(celsius) = self.missing.check(&temp_file.to_string_lossy(), celsius) else {
                continue;
            };
            types.insert(kind.replace('-', "_"));
            temps.push(Labelled { label: kind, source: zone, value: celsius });
        }
        types
    }

    /// Pushes each `temp*_input` of each hwmon device that is not a thermal zone seen again.
    fn hwmon(&mut self, hwmon: &[Hwmon], zone_types: &HashSet<String>, temps: &mut Vec<Labelled>) {
        for (path, device, name, files) in hwmon {
            if zone_types.contains(&name.replace('-', "_")) {
                continue;
            }
            // Devices without temperatures (rpi_volt, fans) have no input here and yield nothing.
            let inputs = numbered(files.clone(), "temp", "_input");
            let several = inputs.len() > 1;
            for (n, input) in inputs {
                let input_file = path.join(&input);
                let celsius = read_value(&input_file, millidegrees);
                let Some(celsius) = self.missing.check(&input_file.to_string_lossy(), celsius) else {
                    continue;
                };
                let label = if several {
                    let label = read_string(&path.join(format!("temp{n}_label")));
                    format!("{name}_{}", label.unwrap_or_else(|_| format!("temp{n}")))
                } else {
                    name.clone()
                };
                temps.push(Labelled { label, source: format!("{device}_temp{n}"), value: celsius });
            }
        }
    }

    fn cpu_usage(&mut self) -> Option<f64> {
        let system = self.system.as_mut()?;
        // sysinfo ignores a refresh closer than this to the previous one: it could not tell yet.
        if self.cpu_times_at.elapsed() < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            return None;
        }
        let had_times = !system.cpus().is_empty();
        system.refresh_cpu_usage();
        self.cpu_times_at = Instant::now();
        let usage = match (had_times, system.cpus().is_empty()) {
            (true, false) => Ok(Some(f64::from(system.global_cpu_usage()))),
            // The first times sysinfo got: its figure would be the average since boot.
            (false, false) => Ok(None),
            (_, true) => Err(Fault::Unavailable("sysinfo found no CPU times".to_owned())),
        };
        self.missing.check("/proc/stat", usage).flatten()
    }

    fn load_1(&mut self) -> Option<f64> {
        let load = System::load_average().map(|load| load.one);
        self.missing.check("/proc/loadavg", load.map_err(|e| Fault::Unavailable(e.to_string())))
    }

    fn mem_used_pct(&mut self) -> Option<f64> {
        let system = self.system.as_mut()?;
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let total = system.total_memory();
        let used = if total == 0 {
            Err(Fault::Unavailable("sysinfo found no memory total".to_owned()))
        } else {
            Ok(system.used_memory() as f64 / total as f64 * 100.0)
        };
        self.missing.check("/proc/meminfo", used)
    }

    fn net(&mut self) -> Option<NetState> {
        let interface = self.gossip_interface()?;
        let dir = self.sys.join("class/net").join(&interface);
        let exists = fs::metadata(&dir).map_err(|_| Fault::Unavailable("no such interface".to_owned()));
        self.missing.check(&dir.to_string_lossy(), exists)?;
        let up = self.sys_value(&format!("class/net/{interface}/operstate"), |s| Some(s == "up"))?;
        let rx_errors =
            self.sys_value(&format!("class/net/{interface}/statistics/rx_errors"), |s| s.parse().ok());
        let tx_errors =
            self.sys_value(&format!("class/net/{interface}/statistics/tx_errors"), |s| s.parse().ok());
        let wireless = self.proc.join("net/wireless");
        let wifi_signal_dbm =
            self.missing.check(&wireless.to_string_lossy(), read_text(&wireless)).and_then(|text| {
                let level = wireless_level(&text, &interface)?;
                let key = format!("{} ({interface} level)", wireless.display());
                self.missing.check(&key, parse_dbm(level))
            });
        let (rx_errors, tx_errors) = (rx_errors?, tx_errors?);
        // A link that is down (or Wi-Fi) has no speed: the kernel answers -1, or refuses the read.
        let speed_mbps = self.sys_value(&format!("class/net/{interface}/speed"), |s| {
            s.parse::<i64>().ok().map(|v| if v > 0 { Some(v as f64) } else { None })
        });
        let full_duplex = self.sys_value(&format!("class/net/{interface}/duplex"), |s| match s {
            "full" => Some(Some(true)),
            "half" => Some(Some(false)),
            "unknown" => Some(None),
            _ => None,
        });
        let carrier_changes =
            self.sys_value(&format!("class/net/{interface}/carrier_changes"), |s| s.parse().ok());
        let rx_dropped =
            self.sys_value(&format!("class/net/{interface}/statistics/rx_dropped"), |s| s.parse().ok());
        Some(NetState {
            interface,
            up,
            rx_errors,
            tx_errors,
            wifi_signal_dbm,
            speed_mbps: speed_mbps.flatten(),
            full_duplex: full_duplex.flatten(),
            carrier_changes,
            rx_dropped,
        })
    }

    /// The configured interface, else the one that has `multicast_if`, else the default route's. A name
    /// that is not a plain path component is refused, so it cannot lead outside `class/net`.
    fn gossip_interface(&mut self) -> Option<String> {
        let name = if let Some(name) = &self.interface {
            Some(name.clone())
        } else if !self.multicast_if.is_unspecified() {
            let wanted = IpAddr::V4(self.multicast_if);
            let owner = if_addrs::get_if_addrs().map_err(Fault::Unreadable).and_then(|interfaces| {
                let owner = interfaces.into_iter().find(|i| i.ip() == wanted).map(|i| i.name);
                owner.ok_or_else(|| Fault::Unavailable("no interface has this address".to_owned()))
            });
            self.missing.check(&format!("getifaddrs ({wanted})"), owner)
        } else {
            let route = self.proc.join("net/route");
            let default = read_text(&route).and_then(|text| {
                default_route(&text).ok_or(Fault::Unavailable("no default route".to_owned()))
            });
            self.missing.check(&route.to_string_lossy(), default)
        }?;
        let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
        let name = if plain { Ok(name) } else { Err(Fault::Garbled(name)) };
        self.missing.check("gossip interface name", name)
    }
}

/// An hwmon device: its directory, directory name (`hwmon2`), `name` and files.
type Hwmon = (PathBuf, String, String, Vec<String>);

/// A sensor's value (°C, RPM) before labels are made unique.
struct Labelled {
    label: String,
    /// The sensor's directory (`thermal_zone0`, `hwmon1_temp2`): unique, appended to a shared label.
    source: String,
    value: f64,
}

fn finish_labels(temps: Vec<Labelled>) -> Vec<(String, f64)> {
    let mut uses: HashMap<String, usize> = HashMap::new();
    for t in &temps {
        *uses.entry(t.label.clone()).or_default() += 1;
    }
    let mut out: Vec<(String, f64)> = temps
        .into_iter()
        .map(|t| match uses[&t.label] {
            1 => (t.label, t.value),
            _ => (format!("{}_{}", t.label, t.source), t.value),
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Why an item has no value now: the second half of its debug line.
#[derive(Debug)]
enum Fault {
    Unreadable(io::Error),
    Empty,
    Garbled(String),
    Unavailable(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Unreadable(e) => write!(f, "cannot read it: {e}"),
            Fault::Empty => write!(f, "it is empty"),
            Fault::Garbled(text) => write!(f, "cannot parse {text:?}"),
            Fault::Unavailable(why) => write!(f, "{why}"),
        }
    }
}

/// The items whose fault was logged and that have not read well since: each fault is logged once
/// per disappearance. Bounded by the number of files read.
#[derive(Debug, Default)]
struct MissingLog {
    logged: HashSet<String>,
}

impl MissingLog {
    /// The value of `item` if it read well (and forgets its fault); else logs why, if not done yet.
    fn check<T>(&mut self, item: &str, result: Result<T, Fault>) -> Option<T> {
        match result {
            Ok(value) => {
                self.logged.remove(item);
                Some(value)
            }
            Err(fault) => {
                if self.logged.insert(item.to_owned()) {
                    debug!("sensor {item}: {fault}; not reported while this lasts");
                }
                None
            }
        }
    }
}

/// sysfs attributes are one page at most; procfs tables here are a few lines per interface or route.
const MAX_FILE: u64 = 64 * 1024;

fn read_text(path: &Path) -> Result<String, Fault> {
    let mut text = String::new();
    File::open(path)
        .and_then(|file| file.take(MAX_FILE).read_to_string(&mut text))
        .map_err(Fault::Unreadable)?;
    Ok(text)
}

/// A one-value file: its trimmed contents, non-empty, through `parse`.
fn read_value<T>(path: &Path, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, Fault> {
    let text = read_text(path)?;
    let value = text.trim();
    if value.is_empty() {
        return Err(Fault::Empty);
    }
    parse(value).ok_or_else(|| Fault::Garbled(value.chars().take(40).collect()))
}

fn read_string(path: &Path) -> Result<String, Fault> {
    read_value(path, |s| Some(s.to_owned()))
}

fn list_dir(dir: &Path) -> Result<Vec<String>, Fault> {
    let entries = fs::read_dir(dir).map_err(Fault::Unreadable)?;
    Ok(entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect())
}

/// The names of the form `<prefix>N<suffix>`, with their N, in N order.
fn numbered(names: Vec<String>, prefix: &str, suffix: &str) -> Vec<(u32, String)> {
    let mut found: Vec<(u32, String)> = names
        .into_iter()
        .filter_map(|name| Some((name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()?, name)))
        .collect();
    found.sort();
    found
}

/// What `proc/self/mountinfo` says of `/`.
#[derive(Debug)]
struct RootMount {
    fstype: String,
    /// The filesystem's own options say `ro`.
    readonly: bool,
}

/// Filesystem types whose statvfs(3) waits on a server.
const NETWORK_FILESYSTEMS: [&str; 5] = ["nfs", "cifs", "smb", "9p", "fuse.sshfs"];

/// A mountinfo line of the mount on `/`: `ID PARENT MAJ:MIN ROOT MOUNTPOINT
/// OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS` (proc(5)).
fn parse_root_mountinfo(line: &str) -> Option<RootMount> {
    let (mount, fs) = line.split_once(" - ")?;
    if mount.split_whitespace().nth(4)? != "/" {
        return None;
    }
    let mut fs = fs.split_whitespace();
    let fstype = fs.next()?.to_owned();
    let super_options = fs.nth(1)?;
    Some(RootMount { fstype, readonly: super_options.split(',').any(|o| o == "ro") })
}

/// The kernel's clock discipline, read-only: adjtimex(2) with `modes = 0` changes nothing (and needs
/// no privilege). Unsynchronised when the kernel says TIME_ERROR or STA_UNSYNC.
fn read_clock() -> Result<ClockState, Fault> {
    // SAFETY: timex is plain data, for which all-zero is valid (modes = 0: read only).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, writable timex.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state == -1 {
        // EPERM under a seccomp filter that blocks it (systemd's ProtectClock=yes does).
        return Err(Fault::Unreadable(io::Error::last_os_error()));
    }
    let synced = state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0;
    Ok(ClockState { synced, error_ms: tx.esterror as f64 / 1000.0 })
}

/// statvfs(3) of `/`: used blocks over used plus those available to users, as df(1) shows it.
fn root_used_pct() -> Result<f64, Fault> {
    // SAFETY: statvfs is plain data; all-zero is valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid, writable statvfs.
    if unsafe { libc::statvfs(c"/".as_ptr(), &mut st) } != 0 {
        return Err(Fault::Unreadable(io::Error::last_os_error()));
    }
    let used = (st.f_blocks as u64).saturating_sub(st.f_bfree as u64);
    let usable = used + st.f_bavail as u64;
    if usable == 0 {
        return Err(Fault::Unavailable("statvfs reports no blocks".to_owned()));
    }
    Ok(used as f64 / usable as f64 * 100.0)
}

/// Kernel temperatures are integer millidegrees Celsius ("48312" = 48.312 °C).
fn millidegrees(text: &str) -> Option<f64> {
    text.parse::<i64>().ok().map(|m| m as f64 / 1000.0)
}

/// The firmware prints the word in hex, with or without "0x" ("0x50005", "50005", "0").
fn parse_throttled(text: &str) -> Option<Throttle> {
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    u32::from_str_radix(hex, 16).ok().map(Throttle)
}

/// The interface of the default route in `/proc/net/route` (destination and mask 0, flag RTF_UP) with
/// the lowest metric, as the kernel picks it; the first listed on a tie.
fn default_route(text: &str) -> Option<String> {
    const RTF_UP: u16 = 0x1;
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [iface, destination, _, flags, _, _, metric, mask, ..] = fields[..] else {
                return None;
            };
            let up = u16::from_str_radix(flags, 16).ok()? & RTF_UP != 0;
            let default = destination == "00000000" && mask == "00000000" && up;
            default.then_some((metric.parse::<u32>().ok()?, iface))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, iface)| iface.to_owned())
}

/// The "level" field of `interface`'s line in `/proc/net/wireless` ("wlan0: 0000 70. -40. -256 ..."),
/// `None` when the interface has no line.
fn wireless_level<'a>(text: &'a str, interface: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (name, fields) = line.split_once(':')?;
        // status, link quality, then level
        (name.trim() == interface).then(|| fields.split_whitespace().nth(2).unwrap_or(""))
    })
}

/// A level such as "-52." (the kernel prints a trailing dot) in dBm.
fn parse_dbm(level: &str) -> Result<f64, Fault> {
    match level.parse::<f64>() {
        Ok(dbm) if dbm.is_finite() => Ok(dbm),
        _ => Err(Fault::Garbled(level.to_owned())),
    }
}
