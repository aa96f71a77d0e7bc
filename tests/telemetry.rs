//! Telemetry across real `herd` processes: three agents read a Raspberry Pi 4
//! sysfs fixture (`tests/fixtures/pi4`) and report to a StatsD listener; a Pi
//! 5 and a Pi Zero W (`pi5`, `pizero-w`) form a cluster of their own. Every
//! metric of the metrics table (docs/metrics.md) that a fixture can produce
//! must arrive, byte-exact in name, type and tags, and link metrics (clock
//! offset included) for every peer. The clock state and the root
//! filesystem's fill come from this machine's kernel (adjtimex, statvfs), so
//! only their form is checked.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Agent, Cluster, Statsd, toml_str, wait_until};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}/sys", env!("CARGO_MANIFEST_DIR"))
}

/// Whether `line` is `<name>:<number>|g|#host:<host><tags>` exactly.
fn numeric_gauge(line: &str, name: &str, host: &str, tags: &str) -> bool {
    let Some(rest) = line.strip_prefix(&format!("{name}:")) else {
        return false;
    };
    let Some(value) = rest.strip_suffix(&format!("|g|#host:{host}{tags}")) else {
        return false;
    };
    value.parse::<f64>().is_ok_and(f64::is_finite)
}

#[test]
fn three_agents_report_every_metric_the_pi4_fixture_can_produce() {
    let statsd = Statsd::start();
    let cluster = Cluster::new("telemetry");
    let names = ["psa", "psb", "psc"];
    let _agents: Vec<Agent> = names
        .iter()
        .map(|n| {
            Agent::start(
                &cluster
                    .node(n)
                    .secret("telemetry")
                    .set("baton", "hold", &toml_str("100ms"))
                    .statsd(&statsd)
                    .set("telemetry", "interval", &toml_str("1s"))
                    .set("telemetry", "sysfs_root", &toml_str(&fixture("pi4")))
                    .set("telemetry", "interface", &toml_str("wlan0")),
            )
        })
        .collect();

    let exact = |host: &str| -> Vec<String> {
        let mut lines: Vec<String> = [
            "herd.cpu.temperature:48.312|g|#host:{h},sensor:cpu-thermal",
            "herd.cpu.freq_mhz:1500|g|#host:{h}",
            // get_throttled = 0x50005: under-voltage and throttled, now and sticky.
            "herd.throttle.under_voltage:1|g|#host:{h}",
            "herd.throttle.freq_capped:0|g|#host:{h}",
            "herd.throttle.throttled:1|g|#host:{h}",
            "herd.throttle.soft_temp_limit:0|g|#host:{h}",
            "herd.throttle.under_voltage_occurred:1|g|#host:{h}",
            "herd.throttle.freq_capped_occurred:0|g|#host:{h}",
            "herd.throttle.throttled_occurred:1|g|#host:{h}",
            "herd.throttle.soft_temp_limit_occurred:0|g|#host:{h}",
            // wlan0 in the fixture: down, 3 rx errors, 0 tx errors, -52 dBm.
            "herd.net.up:0|g|#host:{h}",
            "herd.net.rx_errors:3|g|#host:{h}",
            "herd.net.tx_errors:0|g|#host:{h}",
            "herd.net.wifi_signal_dbm:-52|g|#host:{h}",
            "herd.net.carrier_changes:0|g|#host:{h}",
            "herd.net.rx_dropped:0|g|#host:{h}",
            "herd.fs.root_readonly:0|g|#host:{h}",
            "herd.system.uptime_s:86523|g|#host:{h}",
            "herd.members:3|g|#host:{h}",
        ]
        .iter()
        .map(|l| l.replace("{h}", host))
        .collect();
        lines.sort();
        lines
    };
    let numeric = |host: &str| -> Vec<(String, String)> {
        let mut want = vec![
            ("herd.cpu.usage_pct".to_owned(), String::new()),
            ("herd.load.1".to_owned(), String::new()),
            ("herd.mem.used_pct".to_owned(), String::new()),
            ("herd.clock.synced".to_owned(), String::new()),
            ("herd.clock.error_ms".to_owned(), String::new()),
            ("herd.fs.root_used_pct".to_owned(), String::new()),
        ];
        for peer in names.iter().filter(|p| **p != host) {
            for m in [
                "link.rtt_ms",
                "link.jitter_ms",
                "link.loss_pct",
                "link.heartbeat_loss_pct",
                "clock.offset_ms",
            ] {
                want.push((format!("herd.{m}"), format!(",peer:{peer}")));
            }
        }
        want
    };
    let missing = |lines: &BTreeSet<String>| -> Vec<String> {
        let mut missing = Vec::new();
        for host in names {
            missing.extend(exact(host).into_iter().filter(|l| !lines.contains(l)));
            for (name, tags) in numeric(host) {
                if !lines.iter().any(|l| numeric_gauge(l, &name, host, &tags)) {
                    missing.push(format!("{name}:<number>|g|#host:{host}{tags}"));
                }
            }
        }
        missing
    };
    let mut lines = BTreeSet::new();
    wait_until(Duration::from_secs(20), || {
        lines = statsd.lines().into_iter().map(|l| l.1).collect();
        missing(&lines).is_empty()
    });
    let still = missing(&lines);
    assert!(still.is_empty(), "missing: {still:#?}\nreceived: {lines:#?}");

    // Never a second host tag (Datadog would file the metric under the peer).
    for l in &lines {
        assert_eq!(l.matches("host:").count(), if l.contains('#') { 1 } else { 0 }, "{l}");
    }
    // What the fixture cannot produce is not sent: there is no second sensor.
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("herd.cpu.temperature:"))
            .all(|l| l.contains("sensor:cpu-thermal"))
    );
    let one: Vec<&String> =
        lines.iter().filter(|l| l.contains("#host:psa") && !l.starts_with("baton")).collect();
    println!(
        "metric lines from psa ({}):\n{}",
        one.len(),
        one.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn a_pi5_and_a_pi_zero_w_report_what_each_has() {
    // The Pi 5: an active cooler, two temperatures, the firmware word. The
    // Pi Zero W: no firmware word (under-voltage from hwmon rpi_volt, whose
    // alarm is set), Wi-Fi only, root remounted read-only.
    let statsd = Statsd::start();
    let cluster = Cluster::new("telemetry-mixed");
    let spec = |n: &str, tree: &str| {
        cluster
            .node(n)
            .secret("telemetry")
            .set("baton", "hold", &toml_str("100ms"))
            .statsd(&statsd)
            .set("telemetry", "interval", &toml_str("1s"))
            .set("telemetry", "sysfs_root", &toml_str(&fixture(tree)))
            // Both gossip over Wi-Fi (here: loopback, which the trees lack).
            .set("telemetry", "interface", &toml_str("wlan0"))
    };
    let pi5 = Agent::start(&spec("pi5", "pi5"));
    let zero = Agent::start(&spec("zero", "pizero-w"));
    let want = |host: &str, lines: &[&str]| -> Vec<String> {
        lines.iter().map(|l| format!("{l}|g|#host:{host}")).collect()
    };
    let pi5_lines = want(
        "pi5",
        &[
            "herd.cpu.freq_mhz:2400",
            "herd.throttle.under_voltage:0",
            "herd.throttle.throttled_occurred:0",
            "herd.net.up:1",
            "herd.net.wifi_signal_dbm:-61",
            "herd.net.carrier_changes:2",
            "herd.net.rx_dropped:5",
            "herd.fs.root_readonly:0",
            "herd.system.uptime_s:3600",
        ],
    );
    let mut pi5_lines = pi5_lines;
    pi5_lines.push("herd.cpu.temperature:52.7|g|#host:pi5,sensor:cpu-thermal".into());
    pi5_lines.push("herd.cpu.temperature:43.98|g|#host:pi5,sensor:rp1_adc".into());
    pi5_lines.push("herd.fan.rpm:3120|g|#host:pi5,fan:pwmfan".into());
    let zero_lines = want(
        "zero",
        &[
            "herd.cpu.freq_mhz:1000",
            "herd.throttle.under_voltage:1",
            "herd.net.up:1",
            "herd.net.wifi_signal_dbm:-67",
            "herd.net.carrier_changes:4",
            "herd.net.rx_dropped:41",
            "herd.fs.root_readonly:1",
            "herd.system.uptime_s:1209600",
        ],
    );
    let mut zero_lines = zero_lines;
    zero_lines.push("herd.cpu.temperature:61.224|g|#host:zero,sensor:cpu-thermal".into());
    zero_lines.push("herd.members:2|g|#host:zero".into());
    let expected: Vec<String> = pi5_lines.iter().chain(&zero_lines).cloned().collect();
    let mut lines = BTreeSet::new();
    let offsets = |lines: &BTreeSet<String>| {
        ["#host:pi5,peer:zero", "#host:zero,peer:pi5"]
            .iter()
            .all(|t| lines.iter().any(|l| l.starts_with("herd.clock.offset_ms:") && l.ends_with(t)))
    };
    wait_until(Duration::from_secs(20), || {
        lines = statsd.lines().into_iter().map(|l| l.1).collect();
        expected.iter().all(|l| lines.contains(l)) && offsets(&lines)
    });
    let missing: Vec<&String> = expected.iter().filter(|l| !lines.contains(*l)).collect();
    assert!(missing.is_empty(), "missing {missing:#?}\nreceived: {lines:#?}");
    assert!(offsets(&lines), "a clock offset each way: {lines:#?}");
    // The Zero knows only the live under-voltage bit: no other throttle
    // flag, and no speed or duplex on Wi-Fi, rather than made-up zeros.
    for absent in [
        "herd.throttle.throttled:",
        "herd.throttle.under_voltage_occurred:",
        "herd.net.speed_mbps:",
        "herd.net.full_duplex:",
        "herd.fan.rpm:",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(absent) && l.contains("#host:zero")),
            "{absent} from the Zero"
        );
    }
    // Both warnings, once: the supply and the SD card.
    assert!(zero.line_at("hwmon rpi_volt reports under-voltage").is_some(), "{:#?}", zero.lines());
    assert!(zero.line_at("the root filesystem is mounted read-only").is_some(), "{:#?}", zero.lines());
    assert!(pi5.line_at("under-voltage").is_none());
    // One interval of the Pi 5, for docs/metrics.md.
    let interval: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("#host:pi5") && !l.starts_with("baton") && !l.starts_with("herd.baton"))
        .collect();
    println!(
        "one interval of pi5 ({}):\n{}",
        interval.len(),
        interval.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn an_empty_sysfs_sends_no_sensor_metrics_and_the_agent_runs_on() {
    let statsd = Statsd::start();
    let cluster = Cluster::new("telemetry-empty");
    let spec = |n: &str| {
        cluster
            .node(n)
            .statsd(&statsd)
            .set("telemetry", "interval", &toml_str("500ms"))
            .set("telemetry", "sysfs_root", &toml_str(&fixture("empty")))
            .set("telemetry", "interface", &toml_str("eth0"))
            .log("herd=debug")
    };
    let a = Agent::start(&spec("psa"));
    let _b = Agent::start(&spec("psb"));
    // Link metrics still come; sensor ones never do, and nothing is a fake zero.
    wait_until(Duration::from_secs(10), || {
        statsd.lines().iter().any(|l| l.1.starts_with("herd.link.rtt_ms:"))
    });
    std::thread::sleep(Duration::from_secs(1));
    let lines: Vec<String> = statsd.lines().into_iter().map(|l| l.1).collect();
    assert!(lines.iter().any(|l| l.starts_with("herd.link.rtt_ms:")), "{lines:?}");
    for absent in [
        "herd.cpu.temperature",
        "herd.cpu.freq_mhz",
        "herd.throttle.",
        "herd.net.",
        "herd.fan.",
        "herd.fs.root_readonly",
        "herd.system.uptime_s",
    ] {
        assert!(!lines.iter().any(|l| l.starts_with(absent)), "{absent} sent from an empty sysfs: {lines:?}");
    }
    // Each missing item is explained once, at debug level.
    let why = a.lines().into_iter().filter(|l| l.contains("get_throttled")).count();
    assert_eq!(why, 1, "{:#?}", a.lines());
}
