//! prometheus: the snapshot as Prometheus text (exposition format 0.0.4) for `GET /metrics`.
//!
//! Names follow Prometheus' conventions (what `promtool check metrics` holds
//! them to): base units (seconds, bytes, hertz, ratios 0-1 for percentages),
//! `_total` for counters, and no type in the name. So they differ from the
//! StatsD names where those carry a unit: `herd.link.rtt_ms` is
//! `herd_link_rtt_seconds` here, `herd.link.loss_pct` `herd_link_loss_ratio`.

use super::*;
use crate::agent::snapshot::{BatonStatus, SensorStatus};

/// The snapshot in the Prometheus text exposition format 0.0.4: one
/// HELP/TYPE block per family, followed by its samples. A family with no
/// sample (a sensor this machine lacks, a link not measured yet) is left out
/// entirely, never reported as zero.
pub(super) fn metrics(s: &Snapshot) -> String {
    let mut p = Prometheus::default();
    agent(&mut p, s);
    members(&mut p, &s.members);
    baton(&mut p, &s.baton);
    sensors(&mut p, &s.sensors);
    traffic(&mut p, s);
    p.out
}

fn one(v: bool) -> f64 {
    if v { 1.0 } else { 0.0 }
}

/// The agent itself: up, info, incarnation, uptime, cluster size.
fn agent(p: &mut Prometheus, s: &Snapshot) {
    p.gauge("herd_up", "1: the agent answered.", [(vec![], 1.0)]);
    p.gauge(
        "herd_info",
        "Always 1; labels name the node, its cluster and the agent's version.",
        [(vec![("node", s.node.as_str()), ("cluster", &s.cluster), ("version", &s.version)], 1.0)],
    );
    p.gauge(
        "herd_incarnation",
        "Start time of this agent run, as gossiped.",
        [(vec![], s.incarnation as f64)],
    );
    p.gauge("herd_uptime_seconds", "Seconds since the agent started.", [(vec![], s.uptime_s)]);
    p.gauge("herd_members", "Live members, this node included.", [(vec![], s.live_members as f64)]);
    p.gauge(
        "herd_name_conflicts",
        "Other nodes heard using this node's name lately (0: none); nodes that share a name refuse each other.",
        [(vec![], s.name_conflicts.len() as f64)],
    );
    p.counter(
        "herd_member_suspect_total",
        "Times a member turned suspect (flaps).",
        [(vec![], s.member_suspects as f64)],
    );
}

/// Each member's state and link health.
fn members(p: &mut Prometheus, members: &[MemberStatus]) {
    p.gauge(
        "herd_member_up",
        "1 if the member is alive, else 0; label state is alive, suspect, down or left.",
        members
            .iter()
            .map(|m| (vec![("member", m.name.as_str()), ("state", &m.state)], one(m.state == "alive"))),
    );
    p.gauge(
        "herd_member_last_heard_seconds",
        "Seconds since this node last heard of the member.",
        members.iter().map(|m| (vec![("member", m.name.as_str())], m.last_heard_ms as f64 / 1e3)),
    );
    let links: [(&str, &str, LinkValue); 5] = [
        (
            "herd_link_rtt_seconds",
            "Probe round-trip time to the peer, seconds, over the probe window.",
            |m| Some(m.rtt_ms? / 1e3),
        ),
        ("herd_link_jitter_seconds", "Probe round-trip time jitter to the peer, seconds.", |m| {
            Some(m.jitter_ms? / 1e3)
        }),
        ("herd_link_loss_ratio", "Probes to the peer lost, fraction of the window.", |m| {
            Some(m.loss_pct? / 100.0)
        }),
        (
            "herd_link_heartbeat_loss_ratio",
            "Heartbeats of the peer missed, fraction (from sequence gaps).",
            |m| Some(m.heartbeat_loss_pct? / 100.0),
        ),
        (
            "herd_clock_offset_seconds",
            "The peer's clock minus this node's, seconds (from probe timestamps, median over the window).",
            |m| Some(m.clock_offset_ms? / 1e3),
        ),
    ];
    for (name, help, value) in links {
        p.gauge(
            name,
            help,
            members.iter().filter_map(|m| Some((vec![("peer", m.name.as_str())], value(m)?))),
        );
    }
}

fn baton(p: &mut Prometheus, b: &BatonStatus) {
    p.gauge(
        "herd_baton_enabled",
        "1 if this node takes part in the baton relay.",
        [(vec![], one(b.enabled))],
    );
    p.gauge(
        "herd_baton_epoch",
        "Epoch of the newest baton this node knows.",
        b.epoch.map(|e| (vec![], e as f64)),
    );
    p.gauge(
        "herd_baton_value",
        "Highest baton counter value this node has seen.",
        [(vec![], b.counter as f64)],
    );
    p.gauge("herd_baton_holding", "1 while this node holds the baton.", [(vec![], one(b.holding))]);
    p.counter("herd_baton_passes_total", "Passes made by this node.", [(vec![], b.passes as f64)]);
    p.counter(
        "herd_baton_regenerated_total",
        "Batons this node regenerated.",
        [(vec![], b.regenerated as f64)],
    );
}

/// The last sensor reading; what the machine lacks is left out.
fn sensors(p: &mut Prometheus, t: &SensorStatus) {
    p.gauge(
        "herd_cpu_temperature_celsius",
        "Temperature by sensor (thermal zone or hwmon label), degrees Celsius.",
        t.temperatures.iter().map(|(label, c)| (vec![("sensor", label.as_str())], *c)),
    );
    p.gauge(
        "herd_cpu_frequency_hertz",
        "Current frequency of CPU 0, hertz.",
        t.cpu_freq_mhz.map(|v| (vec![], v * 1e6)),
    );
    p.gauge("herd_cpu_usage_ratio", "CPU usage, 0-1.", t.cpu_usage_pct.map(|v| (vec![], v / 100.0)));
    p.gauge("herd_load1", "Load average over 1 minute.", t.load_1.map(|v| (vec![], v)));
    p.gauge("herd_memory_used_ratio", "Memory used, 0-1.", t.mem_used_pct.map(|v| (vec![], v / 100.0)));
    p.gauge(
        "herd_throttle",
        "Raspberry Pi firmware throttled word: 1 if the flag is set (*_occurred: since boot).",
        t.throttle.iter().flatten().map(|(flag, set)| (vec![("flag", flag.as_str())], one(*set))),
    );
    p.gauge(
        "herd_fan_rpm",
        "Fan speed by hwmon fan, revolutions per minute.",
        t.fans.iter().map(|(label, rpm)| (vec![("fan", label.as_str())], *rpm)),
    );
    let net = t.net.as_ref();
    let nic = |v: f64| net.map(|n| (vec![("interface", n.interface.as_str())], v));
    p.gauge("herd_net_up", "1 if the gossip interface is up.", net.and_then(|n| nic(one(n.up))));
    p.counter(
        "herd_net_rx_errors_total",
        "Receive errors of the gossip interface.",
        net.and_then(|n| nic(n.rx_errors as f64)),
    );
    p.counter(
        "herd_net_tx_errors_total",
        "Transmit errors of the gossip interface.",
        net.and_then(|n| nic(n.tx_errors as f64)),
    );
    p.counter(
        "herd_net_rx_dropped_total",
        "Received packets dropped on the gossip interface.",
        net.and_then(|n| nic(n.rx_dropped? as f64)),
    );
    p.counter(
        "herd_net_carrier_changes_total",
        "Carrier changes of the gossip interface since boot (link flaps).",
        net.and_then(|n| nic(n.carrier_changes? as f64)),
    );
    p.gauge(
        "herd_net_speed_bytes",
        "Negotiated speed of the gossip interface, bytes per second.",
        net.and_then(|n| nic(n.speed_mbps? * 125_000.0)),
    );
    p.gauge(
        "herd_net_full_duplex",
        "1 if the gossip interface runs full duplex.",
        net.and_then(|n| nic(one(n.full_duplex?))),
    );
    p.gauge(
        "herd_net_wifi_signal_dbm",
        "Wi-Fi signal level of the gossip interface, dBm.",
        net.and_then(|n| nic(n.wifi_signal_dbm?)),
    );
    p.gauge(
        "herd_clock_synced",
        "1 if the kernel's clock is synchronised (adjtimex).",
        t.clock_synced.map(|v| (vec![], one(v))),
    );
    p.gauge(
        "herd_clock_error_seconds",
        "The kernel's estimated clock error, seconds.",
        t.clock_error_ms.map(|v| (vec![], v / 1e3)),
    );
    p.gauge(
        "herd_fs_root_used_ratio",
        "Used fraction of the root filesystem.",
        t.root_used_pct.map(|v| (vec![], v / 100.0)),
    );
    p.gauge(
        "herd_fs_root_readonly",
        "1 if the root filesystem is mounted read-only.",
        t.root_readonly.map(|v| (vec![], one(v))),
    );
    p.gauge(
        "herd_system_uptime_seconds",
        "Seconds since the machine booted.",
        t.system_uptime_s.map(|v| (vec![], v)),
    );
}

/// Refused datagrams by class, and the sockets' traffic.
fn traffic(p: &mut Prometheus, s: &Snapshot) {
    p.counter(
        "herd_rejected_total",
        "Datagrams refused, by class (auth, replay, other_cluster, malformed, ...).",
        s.rejected.iter().map(|(class, n)| (vec![("class", class.as_str())], *n as f64)),
    );
    let t = &s.traffic;
    for (name, help, v) in [
        ("herd_datagrams_sent_total", "Gossip and data datagrams sent.", t.sent_datagrams),
        ("herd_datagram_bytes_sent_total", "Bytes of gossip and data datagrams sent.", t.sent_bytes),
        ("herd_datagrams_received_total", "Gossip and data datagrams received.", t.received_datagrams),
        (
            "herd_datagram_bytes_received_total",
            "Bytes of gossip and data datagrams received.",
            t.received_bytes,
        ),
    ] {
        p.counter(name, help, [(vec![], v as f64)]);
    }
}

/// One per-peer link measurement of a member.
type LinkValue = fn(&MemberStatus) -> Option<f64>;

type Labels<'a> = Vec<(&'static str, &'a str)>;

#[derive(Default)]
struct Prometheus {
    out: String,
}

impl Prometheus {
    fn gauge<'a>(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels<'a>, f64)>) {
        self.family(name, "gauge", help, samples);
    }

    fn counter<'a>(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels<'a>, f64)>) {
        self.family(name, "counter", help, samples);
    }

    fn family<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        let out = &mut self.out;
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for (labels, value) in samples {
            out.push_str(name);
            for (i, (key, value)) in labels.iter().enumerate() {
                out.push(if i == 0 { '{' } else { ',' });
                let _ = write!(out, "{key}=\"{}\"", label_value(value));
            }
            if !labels.is_empty() {
                out.push('}');
            }
            let _ = writeln!(out, " {}", prometheus_value(value));
        }
    }
}

/// A label value escaped as the text format requires: `\`, `"` and newline.
pub(super) fn label_value(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

pub(super) fn prometheus_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        v.to_string()
    }
}
