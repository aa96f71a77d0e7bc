//! telemetry: every `[telemetry] interval`, turns a sensor reading and the
//! core's link statistics into the metrics of docs/metrics.md: CPU temperature per
//! sensor, frequency, usage, load, memory, the Pi's throttle flags (or its
//! hwmon under-voltage alarm), fans, the gossip interface's state, speed,
//! duplex, flaps and drops, the clock's sync state, the root filesystem, the
//! uptime, and RTT / jitter / loss / heartbeat loss per peer.
//!
//! A value the machine cannot give (no thermal zone, no throttle file, not on
//! Wi-Fi) is not sent: never a made-up zero. A throttle flag that turns on is
//! logged as a warning, once per change, as are the under-voltage alarm and a
//! root filesystem turned read-only.

use std::collections::BTreeSet;

use tracing::{info, warn};

use super::sensors::{Reading, Sensors, Throttle};
use super::statsd::Metrics;
use crate::config::Config;
use crate::config::PeerMetrics;
use crate::core::links::LinkStats;

pub struct Telemetry {
    sensors: Sensors,
    last_throttle: Option<Throttle>,
    /// The previous reading's alarms, so each is logged once when it turns on.
    last_alarm: Option<bool>,
    last_readonly: Option<bool>,
    peer_metrics: PeerMetrics,
    /// Peers whose clock is more than [`FAR_OFF_MS`] off ours, warned about.
    far_off: BTreeSet<String>,
    /// The most recent reading, for the status endpoint and the demo.
    pub last: Option<Reading>,
}

impl Telemetry {
    pub fn new(config: &Config) -> Telemetry {
        let t = &config.telemetry;
        let sensors = Sensors::new(&t.sysfs_root, t.interface.as_deref(), config.gossip.multicast_if);
        Telemetry {
            sensors,
            last_throttle: None,
            last_alarm: None,
            last_readonly: None,
            peer_metrics: config.links.peer_metrics,
            far_off: BTreeSet::new(),
            last: None,
        }
    }

    /// For a reloaded `config` (sysfs root, interface, `peer_metrics`): what
    /// was warned about stays warned about, so a reload repeats no warning.
    pub fn reconfigured(self, config: &Config) -> Telemetry {
        Telemetry {
            last_throttle: self.last_throttle,
            last_alarm: self.last_alarm,
            last_readonly: self.last_readonly,
            far_off: self.far_off,
            last: self.last,
            ..Telemetry::new(config)
        }
    }

    /// Reads the sensors and sends one interval's metrics (links included).
    pub fn report(&mut self, links: &[LinkStats], metrics: Option<&Metrics>) {
        self.watch_clocks(links);
        let reading = self.sensors.read();
        if let Some(t) = reading.throttle {
            for flag in t.newly_set(self.last_throttle) {
                warn!(flag, word = format!("{:#x}", t.0), "Raspberry Pi firmware reports {flag}");
            }
            self.last_throttle = Some(t);
        } else if reading.under_voltage_alarm == Some(true) && self.last_alarm != Some(true) {
            warn!("hwmon rpi_volt reports under-voltage (in0_lcrit_alarm): check the power supply");
        }
        self.last_alarm = reading.under_voltage_alarm;
        if reading.root_readonly == Some(true) && self.last_readonly != Some(true) {
            warn!("the root filesystem is mounted read-only: the kernel does that to a failing SD card");
        }
        self.last_readonly = reading.root_readonly;
        if let Some(m) = metrics {
            send(&reading, m);
            send_links(links, self.peer_metrics, m);
        }
        self.last = Some(reading);
    }
}

impl Telemetry {
    /// A warning when a peer's clock goes more than a second off ours (once,
    /// until it comes back within), as an NTP failure on one Pi looks.
    fn watch_clocks(&mut self, links: &[LinkStats]) {
        for l in links {
            let Some(offset) = l.clock_offset_ms else { continue };
            if offset.abs() > FAR_OFF_MS {
                if self.far_off.insert(l.peer.clone()) {
                    warn!(
                        peer = %l.peer,
                        offset_ms = round3(offset),
                        "the peer's clock is more than 1 s off this one's (is NTP running on both?)"
                    );
                }
            } else if self.far_off.remove(&l.peer) {
                info!(peer = %l.peer, offset_ms = round3(offset), "the peer's clock is within 1 s again");
            }
        }
        self.far_off.retain(|peer| links.iter().any(|l| &l.peer == peer));
    }
}

/// A peer's clock this far off ours is worth a warning.
const FAR_OFF_MS: f64 = 1000.0;

fn send(r: &Reading, m: &Metrics) {
    for (label, celsius) in &r.temperatures {
        m.gauge_tagged("cpu.temperature", round3(*celsius), ("sensor", &tag_safe(label)));
    }
    let plain = [
        ("cpu.freq_mhz", r.cpu_freq_mhz),
        ("cpu.usage_pct", r.cpu_usage_pct),
        ("load.1", r.load_1),
        ("mem.used_pct", r.mem_used_pct),
    ];
    for (name, value) in plain {
        if let Some(v) = value {
            m.gauge(name, round3(v));
        }
    }
    if let Some(t) = r.throttle {
        for (flag, set) in t.flags() {
            m.gauge(&format!("throttle.{flag}"), one(set));
        }
    } else if let Some(alarm) = r.under_voltage_alarm {
        // No firmware word (newer kernels): the hwmon alarm tells the live
        // under-voltage bit, and nothing about the other flags.
        m.gauge("throttle.under_voltage", one(alarm));
    }
    for (label, rpm) in &r.fans {
        m.gauge_tagged("fan.rpm", *rpm, ("fan", &tag_safe(label)));
    }
    if let Some(net) = &r.net {
        m.gauge("net.up", one(net.up));
        m.gauge("net.rx_errors", net.rx_errors as f64);
        m.gauge("net.tx_errors", net.tx_errors as f64);
        let optional = [
            ("net.wifi_signal_dbm", net.wifi_signal_dbm),
            ("net.speed_mbps", net.speed_mbps),
            ("net.full_duplex", net.full_duplex.map(one)),
            ("net.carrier_changes", net.carrier_changes.map(|v| v as f64)),
            ("net.rx_dropped", net.rx_dropped.map(|v| v as f64)),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                m.gauge(name, v);
            }
        }
    }
    if let Some(c) = r.clock {
        m.gauge("clock.synced", one(c.synced));
        m.gauge("clock.error_ms", round3(c.error_ms));
    }
    let system = [
        ("fs.root_used_pct", r.root_used_pct.map(round3)),
        ("fs.root_readonly", r.root_readonly.map(one)),
        ("system.uptime_s", r.uptime_s.map(|s| s.floor())),
    ];
    for (name, value) in system {
        if let Some(v) = value {
            m.gauge(name, v);
        }
    }
}

/// The link gauges as `[links] peer_metrics` says: per peer (tag `peer:`),
/// summarised (the mean over the peers measured, under the same names, and
/// the worst peer's RTT and loss), or none.
fn send_links(links: &[LinkStats], how: PeerMetrics, m: &Metrics) {
    let figures = |l: &LinkStats| {
        [
            ("link.rtt_ms", l.rtt_ms),
            ("link.jitter_ms", l.jitter_ms),
            ("link.loss_pct", l.loss_pct),
            ("link.heartbeat_loss_pct", l.heartbeat_loss_pct),
        ]
    };
    match how {
        PeerMetrics::None => {}
        PeerMetrics::All => {
            for l in links {
                for (name, value) in figures(l).into_iter().chain([("clock.offset_ms", l.clock_offset_ms)]) {
                    if let Some(v) = value {
                        m.gauge_tagged(name, round3(v), ("peer", l.peer.as_str()));
                    }
                }
            }
        }
        PeerMetrics::Summary => {
            let per_peer: Vec<_> = links.iter().map(figures).collect();
            for i in 0..4 {
                let values: Vec<f64> = per_peer.iter().filter_map(|f| f[i].1).collect();
                if let Some(name) = per_peer.first().map(|f| f[i].0)
                    && !values.is_empty()
                {
                    m.gauge(name, round3(values.iter().sum::<f64>() / values.len() as f64));
                }
            }
            let worst =
                |value: fn(&LinkStats) -> Option<f64>| links.iter().filter_map(value).reduce(f64::max);
            if let Some(v) = worst(|l| l.rtt_ms) {
                m.gauge("link.worst_rtt_ms", round3(v));
            }
            if let Some(v) = worst(|l| l.loss_pct) {
                m.gauge("link.worst_loss_pct", round3(v));
            }
            // A mean of offsets says nothing: the peer farthest off, signed.
            let farthest = links
                .iter()
                .filter_map(|l| l.clock_offset_ms)
                .reduce(|a, b| if b.abs() > a.abs() { b } else { a });
            if let Some(v) = farthest {
                m.gauge("clock.offset_ms", round3(v));
            }
        }
    }
}

fn one(set: bool) -> f64 {
    if set { 1.0 } else { 0.0 }
}

/// Three decimals are plenty for a dashboard and keep the lines short.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A sensor label as a tag value: no StatsD separators, no spaces.
fn tag_safe(label: &str) -> String {
    label.chars().map(|c| if c.is_whitespace() || matches!(c, '|' | ',' | '#') { '_' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::sensors::{ClockState, NetState};
    use crate::agent::statsd::spy;

    fn reading() -> Reading {
        Reading {
            temperatures: vec![("cpu-thermal".into(), 48.3124), ("rp1 adc".into(), 51.0)],
            cpu_freq_mhz: Some(1500.0),
            cpu_usage_pct: None,
            load_1: Some(0.25),
            mem_used_pct: Some(31.4159),
            throttle: Some(Throttle(0x5_0001)),
            under_voltage_alarm: Some(false),
            fans: vec![("pwmfan".into(), 3120.0)],
            net: Some(NetState {
                interface: "eth0".into(),
                up: true,
                rx_errors: 2,
                tx_errors: 0,
                wifi_signal_dbm: None,
                speed_mbps: Some(100.0),
                full_duplex: Some(true),
                carrier_changes: Some(7),
                rx_dropped: Some(12),
            }),
            clock: Some(ClockState { synced: true, error_ms: 16.5 }),
            root_used_pct: Some(41.23456),
            root_readonly: Some(false),
            uptime_s: Some(86523.41),
        }
    }

    fn links() -> [LinkStats; 2] {
        [
            LinkStats {
                peer: "psb".into(),
                rtt_ms: Some(0.4567),
                jitter_ms: Some(0.05),
                loss_pct: None,
                heartbeat_loss_pct: Some(0.0),
                clock_offset_ms: Some(-0.25),
            },
            LinkStats {
                peer: "psc".into(),
                rtt_ms: Some(2.5),
                jitter_ms: Some(0.25),
                loss_pct: Some(5.0),
                heartbeat_loss_pct: Some(10.0),
                clock_offset_ms: Some(1500.0),
            },
        ]
    }

    #[test]
    fn a_reading_becomes_these_exact_lines() {
        let config = spy::config("");
        let (m, lines) = spy::metrics(&config, "psa");
        send(&reading(), &m);
        let t = "#host:psa";
        let want: Vec<String> = [
            format!("herd.cpu.temperature:48.312|g|{t},sensor:cpu-thermal"),
            format!("herd.cpu.temperature:51|g|{t},sensor:rp1_adc"),
            format!("herd.cpu.freq_mhz:1500|g|{t}"),
            format!("herd.load.1:0.25|g|{t}"),
            format!("herd.mem.used_pct:31.416|g|{t}"),
            format!("herd.throttle.under_voltage:1|g|{t}"),
            format!("herd.throttle.freq_capped:0|g|{t}"),
            format!("herd.throttle.throttled:0|g|{t}"),
            format!("herd.throttle.soft_temp_limit:0|g|{t}"),
            format!("herd.throttle.under_voltage_occurred:1|g|{t}"),
            format!("herd.throttle.freq_capped_occurred:0|g|{t}"),
            format!("herd.throttle.throttled_occurred:1|g|{t}"),
            format!("herd.throttle.soft_temp_limit_occurred:0|g|{t}"),
            format!("herd.fan.rpm:3120|g|{t},fan:pwmfan"),
            format!("herd.net.up:1|g|{t}"),
            format!("herd.net.rx_errors:2|g|{t}"),
            format!("herd.net.tx_errors:0|g|{t}"),
            format!("herd.net.speed_mbps:100|g|{t}"),
            format!("herd.net.full_duplex:1|g|{t}"),
            format!("herd.net.carrier_changes:7|g|{t}"),
            format!("herd.net.rx_dropped:12|g|{t}"),
            format!("herd.clock.synced:1|g|{t}"),
            format!("herd.clock.error_ms:16.5|g|{t}"),
            format!("herd.fs.root_used_pct:41.235|g|{t}"),
            format!("herd.fs.root_readonly:0|g|{t}"),
            format!("herd.system.uptime_s:86523|g|{t}"),
        ]
        .into();
        assert_eq!(lines(), want);
    }

    #[test]
    fn without_the_firmware_word_under_voltage_comes_from_the_hwmon_alarm() {
        let config = spy::config("");
        let (m, lines) = spy::metrics(&config, "psz");
        let r = Reading {
            temperatures: vec![],
            cpu_freq_mhz: None,
            cpu_usage_pct: None,
            load_1: None,
            mem_used_pct: None,
            throttle: None,
            under_voltage_alarm: Some(true),
            fans: vec![],
            net: Some(NetState {
                interface: "wlan0".into(),
                up: true,
                rx_errors: 0,
                tx_errors: 0,
                wifi_signal_dbm: Some(-67.0),
                speed_mbps: None,
                full_duplex: None,
                carrier_changes: Some(4),
                rx_dropped: None,
            }),
            clock: Some(ClockState { synced: false, error_ms: 16000.0 }),
            root_used_pct: None,
            root_readonly: Some(true),
            uptime_s: None,
        };
        send(&r, &m);
        // Only the live under-voltage bit is known: no other throttle flag,
        // no zero for what Wi-Fi lacks.
        assert_eq!(
            lines(),
            [
                "herd.throttle.under_voltage:1|g|#host:psz",
                "herd.net.up:1|g|#host:psz",
                "herd.net.rx_errors:0|g|#host:psz",
                "herd.net.tx_errors:0|g|#host:psz",
                "herd.net.wifi_signal_dbm:-67|g|#host:psz",
                "herd.net.carrier_changes:4|g|#host:psz",
                "herd.clock.synced:0|g|#host:psz",
                "herd.clock.error_ms:16000|g|#host:psz",
                "herd.fs.root_readonly:1|g|#host:psz",
            ]
        );
    }

    #[test]
    fn peer_metrics_all_sends_one_series_per_peer() {
        let config = spy::config("");
        let (m, lines) = spy::metrics(&config, "psa");
        send_links(&links(), config.links.peer_metrics, &m);
        assert_eq!(
            lines(),
            [
                "herd.link.rtt_ms:0.457|g|#host:psa,peer:psb",
                "herd.link.jitter_ms:0.05|g|#host:psa,peer:psb",
                "herd.link.heartbeat_loss_pct:0|g|#host:psa,peer:psb",
                "herd.clock.offset_ms:-0.25|g|#host:psa,peer:psb",
                "herd.link.rtt_ms:2.5|g|#host:psa,peer:psc",
                "herd.link.jitter_ms:0.25|g|#host:psa,peer:psc",
                "herd.link.loss_pct:5|g|#host:psa,peer:psc",
                "herd.link.heartbeat_loss_pct:10|g|#host:psa,peer:psc",
                "herd.clock.offset_ms:1500|g|#host:psa,peer:psc",
            ]
        );
    }

    #[test]
    fn peer_metrics_summary_sends_means_and_the_worst_peer_without_a_peer_tag() {
        let config = spy::config("[links]\npeer_metrics = \"summary\"\n");
        let (m, lines) = spy::metrics(&config, "psa");
        send_links(&links(), config.links.peer_metrics, &m);
        // Means over the peers that have a value: loss only psc's.
        assert_eq!(
            lines(),
            [
                "herd.link.rtt_ms:1.478|g|#host:psa",
                "herd.link.jitter_ms:0.15|g|#host:psa",
                "herd.link.loss_pct:5|g|#host:psa",
                "herd.link.heartbeat_loss_pct:5|g|#host:psa",
                "herd.link.worst_rtt_ms:2.5|g|#host:psa",
                "herd.link.worst_loss_pct:5|g|#host:psa",
                "herd.clock.offset_ms:1500|g|#host:psa",
            ]
        );
        // No peers measured yet: nothing, not zeros.
        send_links(&[], config.links.peer_metrics, &m);
        assert!(lines().is_empty());
    }

    #[test]
    fn peer_metrics_none_sends_no_link_gauge() {
        let config = spy::config("[links]\npeer_metrics = \"none\"\n");
        let (m, lines) = spy::metrics(&config, "psa");
        send_links(&links(), config.links.peer_metrics, &m);
        m.gauge("members", 3.0);
        assert_eq!(lines(), ["herd.members:3|g|#host:psa"]);
    }

    /// Distinct series (name and tags) among `lines`.
    fn series(lines: &[String]) -> usize {
        let keys: BTreeSet<String> = lines
            .iter()
            .map(|l| {
                let (name, rest) = l.split_once(':').expect("name:value");
                let tags = rest.split_once("|#").map_or("", |(_, t)| t);
                format!("{name}#{tags}")
            })
            .collect();
        keys.len()
    }

    /// Per-peer links of `n` − 1 peers, each with every figure.
    fn peers(n: usize) -> Vec<LinkStats> {
        (1..n)
            .map(|i| LinkStats {
                peer: format!("p{i}"),
                rtt_ms: Some(1.0),
                jitter_ms: Some(0.1),
                loss_pct: Some(0.0),
                heartbeat_loss_pct: Some(0.0),
                clock_offset_ms: Some(0.5),
            })
            .collect()
    }

    #[test]
    fn the_series_table_of_the_docs_is_what_herd_sends() {
        // docs/metrics.md "How many series": per Pi, the base (relay,
        // membership and a wired Pi 4's sensors) plus the link series of
        // each setting.
        let doc = include_str!("../../docs/metrics.md");
        let table = doc.split("### How many series").nth(1).expect("docs/metrics.md: ### How many series");
        let rows: Vec<Vec<String>> = table
            .lines()
            .skip_while(|l| !l.starts_with("| Pis"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.split('|').map(|c| c.trim().replace(',', "")).filter(|c| !c.is_empty()).collect())
            .collect();
        assert_eq!(rows.len(), 3, "rows for 4, 8 and 32 Pis: {rows:?}");
        // The base: 13 relay and membership series (baton, the 6 counters,
        // members, hop_ms's 5 DogStatsD aggregates), and the Pi 4 fixture's
        // sensors on eth0 (its bad cable), read twice so CPU usage is known.
        let sys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pi4/sys");
        let mut sensors = Sensors::new(&sys, Some("eth0"), std::net::Ipv4Addr::UNSPECIFIED);
        std::thread::sleep(std::time::Duration::from_millis(250));
        let reading = sensors.read();
        assert!(reading.cpu_usage_pct.is_some() && reading.clock.is_some());
        let config = spy::config("");
        let (m, lines) = spy::metrics(&config, "psa");
        send(&reading, &m);
        let base = 13 + series(&lines());
        for row in rows {
            let n: usize = row[0].parse().expect("Pis");
            let count = |how: PeerMetrics| {
                let config = spy::config("");
                let (m, lines) = spy::metrics(&config, "psa");
                send_links(&peers(n), how, &m);
                series(&lines())
            };
            let (all, summary) = (count(PeerMetrics::All), count(PeerMetrics::Summary));
            assert_eq!(count(PeerMetrics::None), 0);
            let want = [
                format!("{} ({all})", base + all),
                format!("{} ({summary})", base + summary),
                base.to_string(),
                ((base + all) * n).to_string(),
                ((base + summary) * n).to_string(),
                (base * n).to_string(),
            ];
            assert_eq!(row[1..], want, "docs/metrics.md's row for {n} Pis");
        }
    }
}
