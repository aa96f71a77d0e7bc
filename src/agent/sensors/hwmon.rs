//! hwmon: what the kernel's thermal and hardware-monitoring classes say, under the sysfs root:
//! temperatures from thermal zones (`class/thermal`) and hwmon devices (`class/hwmon`), fan speeds,
//! and the under-voltage alarm of hwmon `rpi_volt`. The hwmon devices are listed once per read
//! ([`devices`]) and handed to each of these.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::read::{Reader, list_dir, numbered, read_string, text};

/// An hwmon device: its directory, directory name (`hwmon2`), `name` and files.
pub(super) type Hwmon = (PathBuf, String, String, Vec<String>);

/// A sensor's value (°C, RPM) before labels are made unique.
struct Labelled {
    label: String,
    /// The sensor's directory (`thermal_zone0`, `hwmon1_temp2`): unique, appended to a shared label.
    source: String,
    value: f64,
}

/// The hwmon devices as (directory, name, file names), in hwmon order; unreadable ones are
/// logged and left out.
pub(super) fn devices(reader: &mut Reader) -> Vec<Hwmon> {
    let mut out = Vec::new();
    for (path, device) in reader.numbered_dir("class/hwmon", "hwmon").unwrap_or_default() {
        let Some(name) = reader.value(&path.join("name"), text) else {
            continue;
        };
        let Some(files) = reader.check_file(&path, list_dir(&path)) else {
            continue;
        };
        out.push((path, device, name, files));
    }
    out
}

/// Every temperature, labelled and de-duplicated as `Reading::temperatures` says, sorted by label.
pub(super) fn temperatures(reader: &mut Reader, hwmon: &[Hwmon]) -> Vec<(String, f64)> {
    let mut temps = Vec::new();
    let zone_types = thermal_zones(reader, &mut temps);
    hwmon_temperatures(reader, hwmon, &zone_types, &mut temps);
    finish_labels(temps)
}

/// `in0_lcrit_alarm` of the hwmon device named `rpi_volt` ("1": under-voltage now).
pub(super) fn under_voltage_alarm(reader: &mut Reader, hwmon: &[Hwmon]) -> Option<bool> {
    let device = hwmon.iter().find(|(_, _, name, _)| name == "rpi_volt")?;
    reader.value(&device.0.join("in0_lcrit_alarm"), |s| match s {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    })
}

/// Each `fan*_input` of each hwmon device, in RPM: labelled by the device's name, or
/// `<name>_fanN` when it has several.
pub(super) fn fans(reader: &mut Reader, hwmon: &[Hwmon]) -> Vec<(String, f64)> {
    let mut fans = Vec::new();
    for (path, device, name, files) in hwmon {
        let inputs = numbered(files.clone(), "fan", "_input");
        let several = inputs.len() > 1;
        for (n, input) in inputs {
            let rpm = reader.value(&path.join(&input), |s| s.parse::<u64>().ok().map(|r| r as f64));
            let Some(rpm) = rpm else {
                continue;
            };
            let label = if several { format!("{name}_fan{n}") } else { name.clone() };
            fans.push(Labelled { label, source: format!("{device}_fan{n}"), value: rpm });
        }
    }
    finish_labels(fans)
}

/// Pushes each thermal zone that has a type and a temperature; returns those zones' types with
/// '-' read as '_', for de-duplication against hwmon.
fn thermal_zones(reader: &mut Reader, temps: &mut Vec<Labelled>) -> HashSet<String> {
    let mut types = HashSet::new();
    for (path, zone) in reader.numbered_dir("class/thermal", "thermal_zone").unwrap_or_default() {
        let Some(kind) = reader.value(&path.join("type"), text) else {
            continue;
        };
        let Some(celsius) = reader.value(&path.join("temp"), millidegrees) else {
            continue;
        };
        types.insert(kind.replace('-', "_"));
        temps.push(Labelled { label: kind, source: zone, value: celsius });
    }
    types
}

/// Pushes each `temp*_input` of each hwmon device that is not a thermal zone seen again.
fn hwmon_temperatures(
    reader: &mut Reader,
    hwmon: &[Hwmon],
    zone_types: &HashSet<String>,
    temps: &mut Vec<Labelled>,
) {
    for (path, device, name, files) in hwmon {
        if zone_types.contains(&name.replace('-', "_")) {
            continue;
        }
        // Devices without temperatures (rpi_volt, fans) have no input here and yield nothing.
        let inputs = numbered(files.clone(), "temp", "_input");
        let several = inputs.len() > 1;
        for (n, input) in inputs {
            let Some(celsius) = reader.value(&path.join(&input), millidegrees) else {
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

/// The values with their labels, a label several share made unique by its sensor's directory,
/// sorted by label.
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

/// Kernel temperatures are integer millidegrees Celsius ("48312" = 48.312 °C).
fn millidegrees(text: &str) -> Option<f64> {
    text.parse::<i64>().ok().map(|m| m as f64 / 1000.0)
}
