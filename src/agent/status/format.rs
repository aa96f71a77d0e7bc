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

/// When other nodes use this node's name: a headline naming them and the
/// fix, the first thing `herd status`, `herd status --cluster` and the page
/// show (a cluster that looks small but healthy is the failure to avoid).
pub(super) fn name_conflict(s: &Snapshot) -> Option<(String, String)> {
    let others: Vec<String> =
        s.name_conflicts.iter().map(|c| format!("{} (heard {} ago)", c.addr, ago(c.last_heard_ms))).collect();
    let (last, init) = others.split_last()?;
    let (others, verb) = if init.is_empty() {
        (last.clone(), "also runs")
    } else {
        (format!("{} and {last}", init.join(", ")), "also run")
    };
    let headline = format!(
        "NAME CONFLICT: {others} {verb} as {:?}: nodes that share a name refuse each other, so they are not in one cluster",
        s.node
    );
    Some((headline, format!("Give each node its own name: {}", crate::config::RENAME_HINT)))
}

/// What `herd status` and `herd status --cluster` print first, when the
/// agent cannot be in the cluster: a name it shares, a network it waits for.
pub(super) fn headline(s: &Snapshot) -> String {
    let mut out = String::new();
    if let Some((headline, fix)) = name_conflict(s) {
        let _ = write!(out, "{headline}\n{fix}\n\n");
    }
    if let Some(why) = s.network.waiting() {
        let _ = write!(
            out,
            "WAITING FOR A NETWORK for {}: {why}\n  herd keeps running and joins the cluster as soon as there is one.\n\n",
            ago(s.network.since_ms)
        );
    }
    out
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

/// Loss above this is marked `!` in the link matrix (the monitors' threshold).
pub(super) const LOSSY_PCT: f64 = 5.0;

/// `herd status --cluster`: the whole cluster as this node hears it: one
/// row of health per member, then the link matrix (row: from, column: to;
/// "RTT ms/loss %"), the slowest measured link marked `*`, any loss above
/// [`LOSSY_PCT`] marked `!`.
pub(super) fn cluster_view(s: &Snapshot) -> String {
    let mut out = headline(s);
    out += &format!("cluster {} seen from {} · {} live members\n\n", s.cluster, s.node, s.live_members);
    let header = [
        "node", "state", "temp", "throttle", "load", "mem", "fan", "root", "clock", "up", "version", "heard",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for h in &s.health {
        let throttle = match &h.throttle {
            None => "-".to_owned(),
            Some(f) if f.is_empty() => "ok".to_owned(),
            Some(f) => f.join(","),
        };
        let flag =
            |v: Option<bool>, yes: &str, no: &str| v.map_or("-", |v| if v { yes } else { no }).to_owned();
        rows.push(vec![
            if h.name == s.node { format!("{} (this)", h.name) } else { h.name.clone() },
            h.state.clone(),
            num(h.temp_c, 1, " °C", "-"),
            throttle,
            num(h.load_1, 2, "", "-"),
            num(h.mem_used_pct, 0, " %", "-"),
            h.fan_rpm.map_or("-".into(), |r| format!("{r} rpm")),
            flag(h.root_readonly, "READ-ONLY", "rw"),
            flag(h.clock_synced, "synced", "UNSYNCED"),
            h.uptime_s.map_or("-".into(), |u| uptime(u as f64)),
            h.version.clone().unwrap_or_else(|| "-".into()),
            h.age_ms.map_or("none heard".into(), |a| {
                if a == 0 { "now".into() } else { format!("{} ago", ago(a)) }
            }),
        ]);
    }
    out += &table(&rows);
    let names: Vec<&str> = s.health.iter().map(|h| h.name.as_str()).collect();
    let slowest = s
        .links
        .iter()
        .flat_map(|(from, row)| {
            row.iter().filter_map(move |(to, c)| Some(((from.as_str(), to.as_str()), c.rtt_ms?)))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(at, _)| at);
    out += "\nlinks: RTT ms / loss % (row: from, column: to; * slowest, ! loss above 5 %)\n";
    let mut matrix = vec![
        std::iter::once("from \\ to".to_owned())
            .chain(names.iter().map(|n| (*n).to_owned()))
            .collect::<Vec<_>>(),
    ];
    for from in &names {
        let mut row = vec![(*from).to_owned()];
        for to in &names {
            let cell = match s.links.get(*from).and_then(|r| r.get(*to)) {
                _ if from == to => "·".to_owned(),
                None => "-".to_owned(),
                Some(c) => {
                    let mark = format!(
                        "{}{}",
                        if slowest == Some((*from, *to)) { "*" } else { "" },
                        if c.loss_pct > LOSSY_PCT { "!" } else { "" }
                    );
                    format!("{}/{:.0}{mark}", num(c.rtt_ms, 2, "", "-"), c.loss_pct)
                }
            };
            row.push(cell);
        }
        matrix.push(row);
    }
    out += &table(&matrix);
    out
}

/// Left-aligned columns two spaces apart, one line per row.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|v| v.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}
