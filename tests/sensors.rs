//! Sensor parsing against fixture trees under `tests/fixtures/` shaped like a Raspberry Pi 4 and a
//! Pi 5 (`<tree>/sys` and the sibling `<tree>/proc`), and against empty and corrupt trees.
//!
//! Everything read from the fixtures is checked exactly. CPU usage, load and memory come from sysinfo,
//! which reads this machine's real /proc, so only their presence and range are checked.

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use herd::agent::sensors::{NetState, Reading, Sensors, Throttle};

const AUTO: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).join("sys")
}

/// Every test makes its `Sensors` here, so that the log capture is in place before any of the module's
/// log callsites is first hit: tracing caches a callsite's interest process-wide, and a callsite first
/// hit with no subscriber would stay silent for the test that checks the logs.
fn sensors(sysfs_root: &Path, interface: Option<&str>, multicast_if: Ipv4Addr) -> Sensors {
    static CAPTURE: Once = Once::new();
    CAPTURE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| ThreadLog)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
    });
    Sensors::new(sysfs_root, interface, multicast_if)
}

fn read(tree: &str, interface: Option<&str>) -> Reading {
    sensors(&fixture(tree), interface, AUTO).read()
}

fn temps(list: &[(&str, f64)]) -> Vec<(String, f64)> {
    list.iter().map(|(label, celsius)| (label.to_string(), *celsius)).collect()
}

fn set_flags(t: Throttle) -> Vec<&'static str> {
    t.flags().iter().filter(|(_, set)| *set).map(|(name, _)| *name).collect()
}

fn assert_system_values_in_range(r: &Reading) {
    if let Some(pct) = r.cpu_usage_pct {
        assert!((0.0..=100.0).contains(&pct), "cpu usage {pct}");
    }
    let load = r.load_1.expect("load average from the real /proc");
    assert!(load >= 0.0, "load {load}");
    let mem = r.mem_used_pct.expect("memory use from the real /proc");
    assert!(mem > 0.0 && mem <= 100.0, "memory used {mem}%");
}

#[test]
fn pi4_tree_reads_exactly() {
    let r = read("pi4", Some("eth0"));
    // thermal_zone0 `cpu-thermal` and hwmon0 `cpu_thermal` are one sensor; rpi_volt has no temperature.
    assert_eq!(r.temperatures, temps(&[("cpu-thermal", 48.312)]));
    assert_eq!(r.cpu_freq_mhz, Some(1500.0));
    assert_eq!(r.throttle, Some(Throttle(0x50005)));
    assert_eq!(
        r.net,
        Some(NetState {
            interface: "eth0".into(),
            up: true,
            rx_errors: 0,
            tx_errors: 0,
            wifi_signal_dbm: None,
        })
    );
    assert_system_values_in_range(&r);
}

#[test]
fn pi4_wlan0_is_down_with_its_signal() {
    let r = read("pi4", Some("wlan0"));
    assert_eq!(
        r.net,
        Some(NetState {
            interface: "wlan0".into(),
            up: false,
            rx_errors: 3,
            tx_errors: 0,
            wifi_signal_dbm: Some(-52.0),
        })
    );
}

#[test]
fn pi5_tree_reads_exactly() {
    let r = read("pi5", None);
    // rp1_adc is a second sensor; rpi_volt and the fan have no temperature input.
    assert_eq!(r.temperatures, temps(&[("cpu-thermal", 52.7), ("rp1_adc", 43.98)]));
    assert_eq!(r.cpu_freq_mhz, Some(2400.0));
    assert_eq!(r.throttle, Some(Throttle(0)));
    assert!(set_flags(Throttle(0)).is_empty());
    assert!(Throttle(0).newly_set(None).is_empty());
    // Auto-detected from proc/net/route: wlan0 carries the only default route.
    assert_eq!(
        r.net,
        Some(NetState {
            interface: "wlan0".into(),
            up: true,
            rx_errors: 3,
            tx_errors: 1,
            wifi_signal_dbm: Some(-61.0),
        })
    );
    assert_system_values_in_range(&r);
}

#[test]
fn throttled_word_decodes_live_and_sticky_bits() {
    // pi4's get_throttled is "50005": under-voltage and throttled, now and since boot.
    let t = read("pi4", None).throttle.expect("pi4 throttled word");
    assert_eq!(
        t.flags(),
        [
            ("under_voltage", true),
            ("freq_capped", false),
            ("throttled", true),
            ("soft_temp_limit", false),
            ("under_voltage_occurred", true),
            ("freq_capped_occurred", false),
            ("throttled_occurred", true),
            ("soft_temp_limit_occurred", false),
        ]
    );
    assert_eq!(t.newly_set(None), ["under_voltage", "throttled"]);
    assert_eq!(t.newly_set(Some(Throttle(0x50001))), ["throttled"]);
    assert!(t.newly_set(Some(t)).is_empty());
    // Only live bits are news: a sticky bit appearing alone is not.
    assert!(Throttle(0x10000).newly_set(None).is_empty());
    assert_eq!(Throttle(0xf).newly_set(Some(Throttle(0x1))), ["freq_capped", "throttled", "soft_temp_limit"]);
}

#[test]
fn interface_is_auto_detected_from_the_lowest_metric_default_route() {
    // pi4's route table lists wlan0's default route (metric 303) before eth0's (metric 202).
    let net = read("pi4", None).net.expect("pi4 default route interface");
    assert_eq!(net.interface, "eth0");
    assert!(net.up);
}

#[test]
fn missing_configured_interface_means_no_net_state() {
    assert_eq!(read("pi4", Some("eth1")).net, None);
    // A name that is not a plain path component never leads outside class/net.
    assert_eq!(read("pi4", Some("../net/eth0")).net, None);
}

#[test]
fn interface_is_the_owner_of_multicast_if() {
    // 127.0.0.1 belongs to `lo` on any Linux host; the route table names another interface, which
    // multicast_if takes precedence over.
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    write(&sys.join("class/net/lo/operstate"), "unknown\n");
    write(&sys.join("class/net/lo/statistics/rx_errors"), "0\n");
    write(&sys.join("class/net/lo/statistics/tx_errors"), "7\n");
    write(
        &dir.path().join("proc/net/route"),
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
         eth0\t00000000\t0101A8C0\t0003\t0\t0\t202\t00000000\t0\t0\t0\n",
    );
    let net = sensors(&sys, None, Ipv4Addr::LOCALHOST).read().net;
    let expected =
        NetState { interface: "lo".into(), up: false, rx_errors: 0, tx_errors: 7, wifi_signal_dbm: None };
    assert_eq!(net, Some(expected));
    // No interface has this address (TEST-NET-1): no state, rather than the default route's.
    assert_eq!(sensors(&sys, None, Ipv4Addr::new(192, 0, 2, 77)).read().net, None);
}

#[test]
fn empty_tree_gives_nothing_from_sysfs() {
    for interface in [None, Some("eth0")] {
        let r = read("empty", interface);
        assert!(r.temperatures.is_empty());
        assert_eq!(r.cpu_freq_mhz, None);
        assert_eq!(r.throttle, None);
        assert_eq!(r.net, None);
        assert_system_values_in_range(&r);
    }
}

#[test]
fn missing_root_gives_nothing_from_sysfs() {
    let r = read("no-such-tree", None);
    assert!(r.temperatures.is_empty());
    assert_eq!((r.cpu_freq_mhz, r.throttle, r.net), (None, None, None));
}

#[test]
fn corrupt_tree_keeps_only_what_parses() {
    let r = read("corrupt", Some("wlan0"));
    // Dropped: zone0 (temp "hot"), zone1 (no type), zone2 (empty temp), zone3 (empty type), hwmon1 (no
    // name), nvme temp2 ("zz"). cpu_thermal stays: its thermal zone gave no value to stand for it.
    assert_eq!(
        r.temperatures,
        temps(&[
            ("cpu_thermal", 47.0),
            ("nvme_Composite", 31.85),
            ("nvme_temp3", 38.85),
            ("soc-thermal", 45.0)
        ])
    );
    assert_eq!(r.cpu_freq_mhz, None, "empty scaling_cur_freq");
    assert_eq!(r.throttle, None, "throttled word \"zz\"");
    // operstate "dormant" is not up; the wireless level "weak" is no signal.
    assert_eq!(
        r.net,
        Some(NetState {
            interface: "wlan0".into(),
            up: false,
            rx_errors: 0,
            tx_errors: 0,
            wifi_signal_dbm: None,
        })
    );
    assert_system_values_in_range(&r);
    // eth0's tx_errors is "-": no made-up count, so no state at all.
    assert_eq!(read("corrupt", Some("eth0")).net, None);
    // The route table is garbage: nothing to auto-detect.
    assert_eq!(read("corrupt", None).net, None);
}

#[test]
fn cpu_usage_comes_once_sysinfo_can_tell() {
    let mut sensors = sensors(&fixture("empty"), None, AUTO);
    let first = sensors.read().cpu_usage_pct;
    if let Some(pct) = first {
        assert!((0.0..=100.0).contains(&pct));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pct = sensors.read().cpu_usage_pct.expect("usage 300 ms after the previous read");
    assert!((0.0..=100.0).contains(&pct), "cpu usage {pct}");
}

#[test]
fn a_missing_item_is_logged_once_until_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    let freq = sys.join("devices/system/cpu/cpu0/cpufreq/scaling_cur_freq");
    let mut sensors = sensors(&sys, None, AUTO);
    let mentions = || logged_lines().iter().filter(|l| l.contains("scaling_cur_freq")).count();

    assert_eq!(sensors.read().cpu_freq_mhz, None);
    assert_eq!(mentions(), 1);
    assert!(logged_lines().iter().all(|l| l.contains("DEBUG")), "{:?}", logged_lines());
    assert_eq!(sensors.read().cpu_freq_mhz, None);
    assert_eq!(mentions(), 1, "logged again while still missing");

    write(&freq, "600000\n");
    assert_eq!(sensors.read().cpu_freq_mhz, Some(600.0));
    write(&freq, "garbage\n");
    assert_eq!(sensors.read().cpu_freq_mhz, None);
    assert_eq!(mentions(), 2, "not logged after it came back and broke");
    let last = logged_lines().into_iter().rfind(|l| l.contains("scaling_cur_freq")).unwrap();
    assert!(last.contains("garbage"), "the line says why: {last}");
}

fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

thread_local! {
    /// What this test's thread logged (libtest runs each test on its own thread).
    static LOGGED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn logged_lines() -> Vec<String> {
    LOGGED.with_borrow(|bytes| String::from_utf8_lossy(bytes).lines().map(str::to_owned).collect())
}

/// The tracing writer: appends to the calling thread's [`LOGGED`].
struct ThreadLog;

impl Write for ThreadLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LOGGED.with_borrow_mut(|bytes| bytes.extend_from_slice(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
