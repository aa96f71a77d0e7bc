//! system: the processor and memory: CPU usage, load average and memory use from sysinfo (which
//! always reads the real `/proc`), and the CPU frequency from cpufreq under the sysfs root.

use std::time::Instant;

use sysinfo::{MemoryRefreshKind, System};

use super::read::{Fault, Reader};

/// sysinfo's state between reads: the CPU times the next usage figure is measured from.
#[derive(Debug)]
pub(super) struct Usage {
    /// `None` if sysinfo could not start (it cannot on Linux today; its API allows it).
    system: Option<System>,
    /// When sysinfo last took CPU times, the start of the span the next usage figure covers.
    cpu_times_at: Instant,
}

impl Usage {
    /// Starts sysinfo and takes the first CPU times, so that the first read can already give a usage
    /// if it comes late enough.
    pub(super) fn new(reader: &mut Reader) -> Usage {
        let mut system =
            reader.check("sysinfo", System::new().map_err(|e| Fault::Unavailable(e.to_string())));
        // Stamped after sysinfo's own stamp, so that "elapsed here" never runs ahead of sysinfo's.
        if let Some(system) = &mut system {
            system.refresh_cpu_usage();
        }
        Usage { system, cpu_times_at: Instant::now() }
    }

    /// Global CPU usage since the previous call (see `Reading::cpu_usage_pct`).
    pub(super) fn cpu_pct(&mut self, reader: &mut Reader) -> Option<f64> {
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
        reader.check("/proc/stat", usage).flatten()
    }

    /// Used (total minus available) over total RAM, in percent.
    pub(super) fn mem_used_pct(&mut self, reader: &mut Reader) -> Option<f64> {
        let system = self.system.as_mut()?;
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let total = system.total_memory();
        let used = if total == 0 {
            Err(Fault::Unavailable("sysinfo found no memory total".to_owned()))
        } else {
            Ok(system.used_memory() as f64 / total as f64 * 100.0)
        };
        reader.check("/proc/meminfo", used)
    }
}

/// The 1-minute load average.
pub(super) fn load_1(reader: &mut Reader) -> Option<f64> {
    let load = System::load_average().map(|load| load.one);
    reader.check("/proc/loadavg", load.map_err(|e| Fault::Unavailable(e.to_string())))
}

/// The first CPU's current frequency (cpufreq's `scaling_cur_freq`, in kHz), in MHz.
pub(super) fn cpu_freq_mhz(reader: &mut Reader) -> Option<f64> {
    let file = reader.sys("devices/system/cpu/cpu0/cpufreq/scaling_cur_freq");
    reader.value(&file, |s| s.parse::<u64>().ok().map(|khz| khz as f64 / 1000.0))
}
