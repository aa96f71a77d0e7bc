//! format: how numbers, durations and sensor rows are written, shared by the page and `herd status`
//! (the page's script follows the same rules).

use super::*;

/// "45s", "2m 03s", "1h 02m", "3d 04h".
pub(super) fn uptime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, x) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{x}s"),
        (0, 0, _) => format!("{m}m {x:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h:02}h"),
    }
}

/// "312 ms", "4.2 s".
pub(super) fn ago(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1e3) }
}

/// A peer's clock offset: "+0.4 ms", "-2.31 s (off!)" beyond a second, "-" unknown.
pub(super) fn clock_offset(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms.abs() > 1000.0 => format!("{:+.2} s (off!)", ms / 1e3),
        Some(ms) => format!("{ms:+.1} ms"),
    }
}

pub(super) fn num(v: Option<f64>, decimals: usize, unit: &str, none: &str) -> String {
    v.map_or_else(|| none.to_owned(), |v| format!("{v:.decimals$}{unit}"))
}

/// The set throttle flags, "none", or `None` when the machine has no throttle file.
pub(super) fn throttle_flags(s: &Snapshot) -> Option<String> {
    let flags = s.sensors.throttle.as_ref()?;
    let set: Vec<&str> = flags.iter().filter(|(_, set)| **set).map(|(f, _)| f.as_str()).collect();
    Some(if set.is_empty() { "none".into() } else { set.join(", ") })
}

pub(super) fn net_line(s: &Snapshot) -> Option<String> {
    let n = s.sensors.net.as_ref()?;
    let mut line = format!(
        "{} {} · rx errors {} · tx errors {}",
        n.interface,
        if n.up { "up" } else { "down" },
        n.rx_errors,
        n.tx_errors
    );
    if let Some(dbm) = n.wifi_signal_dbm {
        let _ = write!(line, " · Wi-Fi {dbm:.0} dBm");
    }
    if let Some(mbps) = n.speed_mbps {
        let duplex = match n.full_duplex {
            Some(true) => " full duplex",
            Some(false) => " half duplex",
            None => "",
        };
        let _ = write!(line, " · {mbps:.0} Mbit/s{duplex}");
    }
    if let Some(flaps) = n.carrier_changes {
        let _ = write!(line, " · {flaps} carrier changes");
    }
    if let Some(dropped) = n.rx_dropped {
        let _ = write!(line, " · {dropped} rx dropped");
    }
    Some(line)
}

/// The sensor rows shown by the page and `herd status`, in display order.
pub(super) fn sensor_rows(s: &Snapshot) -> Vec<(String, String)> {
    let t = &s.sensors;
    let mut rows: Vec<(String, String)> =
        t.temperatures.iter().map(|(label, c)| (label.clone(), format!("{c:.1} °C"))).collect();
    let optional = [
        ("CPU frequency", t.cpu_freq_mhz, 0, " MHz"),
        ("CPU usage", t.cpu_usage_pct, 1, " %"),
        ("load (1 min)", t.load_1, 2, ""),
        ("memory used", t.mem_used_pct, 1, " %"),
    ];
    for (label, value, decimals, unit) in optional {
        if value.is_some() {
            rows.push((label.into(), num(value, decimals, unit, "")));
        }
    }
    rows.extend(throttle_flags(s).map(|f| ("throttle".into(), f)));
    rows.extend(t.fans.iter().map(|(label, rpm)| (format!("fan {label}"), format!("{rpm:.0} rpm"))));
    rows.extend(net_line(s).map(|n| ("net".into(), n)));
    if let Some(synced) = t.clock_synced {
        let error = num(t.clock_error_ms, 1, " ms estimated error", "");
        let state = if synced { "synchronised" } else { "NOT synchronised" };
        rows.push(("clock".into(), format!("{state} · {error}")));
    }
    if t.root_used_pct.is_some() || t.root_readonly.is_some() {
        let used = num(t.root_used_pct, 1, " % used", "");
        let mode = match t.root_readonly {
            Some(true) => " · READ-ONLY",
            Some(false) => " · read-write",
            None => "",
        };
        rows.push(("root fs".into(), format!("{used}{mode}").trim_start_matches(" · ").to_owned()));
    }
    if let Some(up) = t.system_uptime_s {
        rows.push(("booted".into(), format!("{} ago", uptime(up))));
    }
    rows
}

pub(super) fn baton_rows(s: &Snapshot) -> Vec<(String, String)> {
    let b = &s.baton;
    let mut rows = Vec::new();
    if !b.enabled {
        rows.push(("relay".into(), "disabled on this node".into()));
    }
    rows.push(("epoch".into(), b.epoch.map_or_else(|| "no baton seen yet".into(), |e| e.to_string())));
    rows.push(("counter".into(), b.counter.to_string()));
    let holder = match (&b.holder, b.holding) {
        (Some(h), true) => format!("{h} (this node)"),
        (Some(h), false) => h.clone(),
        (None, _) => "unknown".into(),
    };
    rows.push(("holder".into(), holder));
    rows.push(("passes".into(), format!("{} by this node, {} regenerated", b.passes, b.regenerated)));
    rows
}

pub(super) fn rejected_rows(s: &Snapshot) -> Vec<(String, String)> {
    s.rejected.iter().filter(|(_, n)| **n > 0).map(|(class, n)| (class.clone(), n.to_string())).collect()
}
