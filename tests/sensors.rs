//! Sensor parsing against fixture trees under `tests/fixtures/` shaped like a Raspberry Pi 4 (its
//! eth0 on a bad cable: 100 Mbit/s, 7 link flaps), a Pi 5 (active cooler, Wi-Fi) and a Pi Zero W
//! (no firmware throttled word, the hwmon under-voltage alarm set, Wi-Fi only, root remounted
//! read-only), each as `<tree>/sys` and the sibling `<tree>/proc`, and against empty and corrupt
//! trees.
//!
//! Everything read from the fixtures is checked exactly. CPU usage, load and memory come from sysinfo,
//! which reads this machine's real /proc, and the clock state and root fill from this machine's
//! kernel (adjtimex, statvfs), so only their presence and range are checked.

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
    let clock = r.clock.expect("adjtimex of this machine's kernel");
    assert!(clock.error_ms >= 0.0, "clock error {clock:?}");
    let used = r.root_used_pct.expect("statvfs of /");
    assert!((0.0..=100.0).contains(&used), "root used {used}%");
}

/// A [`NetState`] with only the fields every interface has; the tests add the rest.
fn nic(interface: &str, up: bool, rx_errors: u64, tx_errors: u64) -> NetState {
    NetState {
        interface: interface.into(),
        up,
        rx_errors,
        tx_errors,
        wifi_signal_dbm: None,
        speed_mbps: None,
        full_duplex: None,
        carrier_changes: None,
        rx_dropped: None,
    }
}

#[test]
fn pi4_tree_reads_exactly() {
    let r = read("pi4", Some("eth0"));
    // thermal_zone0 `cpu-thermal` and hwmon0 `cpu_thermal` are one sensor; rpi_volt has no temperature.
    assert_eq!(r.temperatures, temps(&[("cpu-thermal", 48.312)]));
    assert_eq!(r.cpu_freq_mhz, Some(1500.0));
    assert_eq!(r.throttle, Some(Throttle(0x50005)));
    // rpi_volt's alarm is read too (telemetry uses it only without the firmware word).
    assert_eq!(r.under_voltage_alarm, Some(false));
    assert!(r.fans.is_empty(), "a gpio-fan cooling device has no hwmon fan input");
    // The bad cable: negotiated 100 Mbit/s, 7 carrier changes, 12 drops.
    assert_eq!(
        r.net,
        Some(NetState {
            speed_mbps: Some(100.0),
            full_duplex: Some(true),
            carrier_changes: Some(7),
            rx_dropped: Some(12),
            ..nic("eth0", true, 0, 0)
        })
    );
    // Seen from inside ProtectSystem=strict: the mount on / is read-only, the
    // filesystem is not. Only the latter is a failing card.
    assert_eq!(r.root_readonly, Some(false));
    assert_eq!(r.uptime_s, Some(86523.41));
    assert_system_values_in_range(&r);
}

#[test]
fn pi4_wlan0_is_down_with_its_signal() {
    let r = read("pi4", Some("wlan0"));
    assert_eq!(
        r.net,
        Some(NetState {
            wifi_signal_dbm: Some(-52.0),
            carrier_changes: Some(0),
            rx_dropped: Some(0),
            ..nic("wlan0", false, 3, 0)
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
    // The active cooler's fan.
    assert_eq!(r.fans, temps(&[("pwmfan", 3120.0)]));
    assert_eq!(r.under_voltage_alarm, Some(false));
    // Auto-detected from proc/net/route: wlan0 carries the only default route. Wi-Fi has no speed
    // or duplex file.
    assert_eq!(
        r.net,
        Some(NetState {
            wifi_signal_dbm: Some(-61.0),
            carrier_changes: Some(2),
            rx_dropped: Some(5),
            ..nic("wlan0", true, 3, 1)
        })
    );
    assert_eq!((r.root_readonly, r.uptime_s), (Some(false), Some(3600.02)));
    assert_system_values_in_range(&r);
}

#[test]
fn an_nfs_root_is_not_asked_for_its_fill() {
    // statvfs on NFS waits on the server; the event loop must not.
    let r = read("nfsroot", None);
    assert_eq!(r.root_used_pct, None);
    assert_eq!(r.root_readonly, Some(false));
}

#[test]
fn pi5_eth0_down_has_no_speed_and_an_unknown_duplex() {
    // A link that is down: the kernel says -1 and "unknown"; neither is a value.
    let r = read("pi5", Some("eth0"));
    assert_eq!(r.net, Some(NetState { carrier_changes: Some(1), ..nic("eth0", false, 0, 0) }));
}

#[test]
fn pi_zero_w_tree_reads_exactly() {
    let r = read("pizero-w", None);
    assert_eq!(r.temperatures, temps(&[("cpu-thermal", 61.224)]));
    assert_eq!(r.cpu_freq_mhz, Some(1000.0));
    // No firmware word on this kernel: under-voltage comes from hwmon rpi_volt.
    assert_eq!(r.throttle, None);
    assert_eq!(r.under_voltage_alarm, Some(true));
    assert!(r.fans.is_empty());
    assert_eq!(
        r.net,
        Some(NetState {
            wifi_signal_dbm: Some(-67.0),
            carrier_changes: Some(4),
            rx_dropped: Some(41),
            ..nic("wlan0", true, 0, 0)
        })
    );
    // / was remounted read-only after the rw boot mount: the last one counts.
    assert_eq!(r.root_readonly, Some(true));
    assert_eq!(r.uptime_s, Some(1209600.77));
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
    assert_eq!(net, Some(nic("lo", false, 0, 7)));
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
        assert_eq!((r.under_voltage_alarm, r.root_readonly, r.uptime_s), (None, None, None));
        assert!(r.fans.is_empty());
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
    assert_eq!(r.net, Some(nic("wlan0", false, 0, 0)));
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
