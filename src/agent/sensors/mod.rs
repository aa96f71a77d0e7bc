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
//!
//! By what each part reads:
//! - `hwmon`: thermal zones and hwmon: temperatures, fans, the under-voltage alarm;
//! - `throttle`: the Pi firmware's throttled word and its flags;
//! - `net`: the gossip interface: link, speed, duplex, flaps, errors, drops, Wi-Fi signal;
//! - `system`: CPU usage, load and memory (sysinfo), the CPU frequency (cpufreq);
//! - `clock`: the kernel's clock discipline and the uptime;
//! - `root`: the root filesystem's state and fill;
//! - `read`: the file reads under both roots, and the debug line each failing item gets once.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::core::health::{self, Health};

mod clock;
mod hwmon;
mod net;
mod read;
mod root;
mod system;
mod throttle;

pub use clock::ClockState;
pub use net::NetState;
pub use throttle::Throttle;

use read::Reader;
use system::Usage;

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
            (Some(t), _) => Some(t.live()),
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

/// Reads the sensors; keeps only what makes the next read cheaper or quieter.
#[derive(Debug)]
pub struct Sensors {
    reader: Reader,
    /// Configured gossip interface; `None` = auto-detect at every read (an address may come later).
    interface: Option<String>,
    multicast_if: Ipv4Addr,
    usage: Usage,
}

impl Sensors {
    /// `sysfs_root` is `[telemetry] sysfs_root` (default "/sys"). The proc root is the sibling directory
    /// named "proc" (so /sys -> /proc, and a fixture tree `x/sys` -> `x/proc`). `interface`: the gossip
    /// interface name if configured (Some("eth0")), else None = auto-detect: if `multicast_if` is not
    /// 0.0.0.0, the interface that has that IPv4 address, else the default route's interface. An empty
    /// name counts as not configured.
    pub fn new(sysfs_root: &Path, interface: Option<&str>, multicast_if: Ipv4Addr) -> Sensors {
        let mut reader = Reader::new(sysfs_root);
        let usage = Usage::new(&mut reader);
        Sensors {
            reader,
            interface: interface.filter(|name| !name.is_empty()).map(str::to_owned),
            multicast_if,
            usage,
        }
    }

    /// Reads everything once. Never panics, never blocks for long. Each item that is missing or
    /// unparsable is None (or absent from `temperatures`) and is logged once at debug level naming the
    /// file and why; it is logged again only if it came back and went missing again.
    pub fn read(&mut self) -> Reading {
        let r = &mut self.reader;
        // Listed once per read: temperatures, the voltage alarm and fans are all hwmon's.
        let hwmon = hwmon::devices(r);
        let root = root::mount(r);
        Reading {
            temperatures: hwmon::temperatures(r, &hwmon),
            cpu_freq_mhz: system::cpu_freq_mhz(r),
            cpu_usage_pct: self.usage.cpu_pct(r),
            load_1: system::load_1(r),
            mem_used_pct: self.usage.mem_used_pct(r),
            throttle: throttle::read(r),
            under_voltage_alarm: hwmon::under_voltage_alarm(r, &hwmon),
            fans: hwmon::fans(r, &hwmon),
            net: net::read(r, self.interface.as_deref(), self.multicast_if),
            clock: clock::read(r),
            root_used_pct: root::used_pct(r, root.as_ref()),
            root_readonly: root.map(|m| m.readonly),
            uptime_s: clock::uptime_s(r),
        }
    }
}
