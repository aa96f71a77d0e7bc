//! telemetry: every `[telemetry] interval`, turns a sensor reading and the
//! core's link statistics into the metrics of PRODUCT.md: CPU temperature per
//! sensor, frequency, usage, load, memory, the Pi's throttle flags, the gossip
//! interface's state, and RTT / jitter / loss / heartbeat loss per peer.
//!
//! A value the machine cannot give (no thermal zone, no throttle file, not on
//! Wi-Fi) is not sent: never a made-up zero. A throttle flag that turns on is
//! logged as a warning, once per change.

use tracing::warn;

use super::sensors::{Reading, Sensors, Throttle};
use super::statsd::Metrics;
use crate::config::Config;
use crate::core::links::LinkStats;

pub struct Telemetry {
    sensors: Sensors,
    last_throttle: Option<Throttle>,
    /// The most recent reading, for the status endpoint and the demo.
    pub last: Option<Reading>,
}

impl Telemetry {
    pub fn new(config: &Config) -> Telemetry {
        let t = &config.telemetry;
        let sensors = Sensors::new(&t.sysfs_root, t.interface.as_deref(), config.gossip.multicast_if);
        Telemetry { sensors, last_throttle: None, last: None }
    }

    /// Reads the sensors and sends one interval's metrics (links included).
    pub fn report(&mut self, links: &[LinkStats], metrics: Option<&Metrics>) {
        let reading = self.sensors.read();
        if let Some(t) = reading.throttle {
            for flag in t.newly_set(self.last_throttle) {
                warn!(flag, word = format!("{:#x}", t.0), "Raspberry Pi firmware reports {flag}");
            }
            self.last_throttle = Some(t);
        }
        if let Some(m) = metrics {
            send(&reading, links, m);
        }
        self.last = Some(reading);
    }
}

fn send(r: &Reading, links: &[LinkStats], m: &Metrics) {
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
            m.gauge(&format!("throttle.{flag}"), if set { 1.0 } else { 0.0 });
        }
    }
    if let Some(net) = &r.net {
        m.gauge("net.up", if net.up { 1.0 } else { 0.0 });
        m.gauge("net.rx_errors", net.rx_errors as f64);
        m.gauge("net.tx_errors", net.tx_errors as f64);
        if let Some(dbm) = net.wifi_signal_dbm {
            m.gauge("net.wifi_signal_dbm", dbm);
        }
    }
    for l in links {
        let peer = ("peer", l.peer.as_str());
        let values = [
            ("link.rtt_ms", l.rtt_ms),
            ("link.jitter_ms", l.jitter_ms),
            ("link.loss_pct", l.loss_pct),
            ("link.heartbeat_loss_pct", l.heartbeat_loss_pct),
        ];
        for (name, value) in values {
            if let Some(v) = value {
                m.gauge_tagged(name, round3(v), peer);
            }
        }
    }
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
    use crate::agent::sensors::NetState;
    use crate::agent::statsd::spy;

    #[test]
    fn a_reading_and_links_become_these_exact_lines() {
        let config = spy::config("");
        let (m, lines) = spy::metrics(&config, "psa");
        let reading = Reading {
            temperatures: vec![("cpu-thermal".into(), 48.3124), ("rp1 adc".into(), 51.0)],
            cpu_freq_mhz: Some(1500.0),
            cpu_usage_pct: None,
            load_1: Some(0.25),
            mem_used_pct: Some(31.4159),
            throttle: Some(Throttle(0x5_0001)),
            net: Some(NetState {
                interface: "wlan0".into(),
                up: true,
                rx_errors: 2,
                tx_errors: 0,
                wifi_signal_dbm: Some(-61.0),
            }),
        };
        let links = [LinkStats {
            peer: "psb".into(),
            rtt_ms: Some(0.4567),
            jitter_ms: Some(0.05),
            loss_pct: None,
            heartbeat_loss_pct: Some(0.0),
        }];
        send(&reading, &links, &m);
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
            format!("herd.net.up:1|g|{t}"),
            format!("herd.net.rx_errors:2|g|{t}"),
            format!("herd.net.tx_errors:0|g|{t}"),
            format!("herd.net.wifi_signal_dbm:-61|g|{t}"),
            format!("herd.link.rtt_ms:0.457|g|{t},peer:psb"),
            format!("herd.link.jitter_ms:0.05|g|{t},peer:psb"),
            format!("herd.link.heartbeat_loss_pct:0|g|{t},peer:psb"),
        ]
        .into();
        assert_eq!(lines(), want);
    }
}
