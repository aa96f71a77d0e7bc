//! The status endpoint and `herd status` against real agents: a 3-node
//! cluster on loopback whose first node (psa) serves `[status] listen` on a
//! free port and reads the Raspberry Pi 4 sysfs fixture, so its sensors are
//! known exactly.
//!
//! - `/status`: the JSON fields an operator reads (node, incarnation, uptime,
//!   members with state, address, last heard, RTT and loss; the baton; sensors);
//! - `/metrics`: parsed by the `prometheus-parse` crate, values checked;
//! - the limits: refused methods, bodies and oversized heads; idle
//!   connections beyond the connection limit, which must not stop the agent
//!   from serving once the head timeout has closed them;
//! - `herd status` (human and `--json`), and its error when nothing listens.
//!
//! Requests are raw HTTP/1.1 over `std::net::TcpStream` (one request per
//! connection, `Connection: close`), so the tests see exactly what the agent
//! sends, status line and headers included.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{StatusTrio, free_tcp_port, herd, toml_str};
use serde_json::Value;

/// How long a 3-node cluster may take to converge, start its baton and
/// measure its links (heartbeat and probe interval 1 s).
const CONVERGE: Duration = Duration::from_secs(15);

fn pi4_sysfs() -> String {
    format!("{}/tests/fixtures/pi4/sys", env!("CARGO_MANIFEST_DIR"))
}

/// The status tests' cluster: psa also reads the Pi 4 fixture, and all three
/// share a secret.
fn start(tag: &str) -> StatusTrio {
    StatusTrio::start(tag, |name, spec| {
        let spec = spec.secret("status-tests");
        match name {
            "psa" => spec
                .set("telemetry", "interval", &toml_str("1s"))
                .set("telemetry", "sysfs_root", &toml_str(&pi4_sysfs()))
                .set("telemetry", "interface", &toml_str("wlan0")),
            _ => spec,
        }
    })
}

impl StatusTrio {
    /// `GET path` until `ready` accepts the body, or [`CONVERGE`] passes.
    fn get_until(&self, path: &str, ready: impl Fn(&str) -> bool) -> Reply {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let reply = request(self.addr, &get(path));
            if reply.status == 200 && ready(&reply.body) {
                return reply;
            }
            assert!(Instant::now() < deadline, "GET {path}: not ready within {CONVERGE:?}; last:\n{reply:?}");
            thread::sleep(Duration::from_millis(200));
        }
    }
}

#[derive(Debug, Default)]
struct Reply {
    /// 0 when the connection closed without a status line.
    status: u16,
    /// Lower-cased names.
    headers: HashMap<String, String>,
    body: String,
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
}

/// Sends `raw` on a fresh connection and reads until the agent closes it (5 s
/// at most). A reset or refused connection reads as an empty reply.
fn request(addr: SocketAddr, raw: &str) -> Reply {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return Reply::default();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if s.write_all(raw.as_bytes()).is_err() {
        return Reply::default();
    }
    parse(&read_to_close(&mut s))
}

fn read_to_close(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn parse(text: &str) -> Reply {
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return Reply::default() };
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: body.to_owned() }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn status_json_has_members_baton_and_sensors() {
    let mut trio = start("status-json");
    let ports: HashMap<String, u16> = trio.agents.iter().map(|a| (a.name.clone(), a.data_port())).collect();
    // Converged: both peers alive with a measured RTT, a known baton holder.
    let reply = trio.get_until("/status", |body| {
        let s = json(body);
        let members = s["members"].as_array().unwrap();
        s["live_members"] == 3
            && members.iter().all(|m| m["state"] == "alive" && m["rtt_ms"].is_f64())
            && s["baton"]["holder"].is_string()
            && s["baton"]["passes"].as_u64() > Some(0)
    });
    assert_eq!(reply.headers["content-type"], "application/json");
    let s = json(&reply.body);
    assert_eq!(s["node"], "psa");
    assert_eq!(s["cluster"], trio.psa().spec.cluster.as_str());
    assert!(s["incarnation"].as_u64().unwrap() > 0, "{s:#}");
    assert!(s["version"].as_str().unwrap().starts_with(env!("CARGO_PKG_VERSION")), "{s:#}");
    let uptime = s["uptime_s"].as_f64().unwrap();
    assert!(uptime > 0.0 && uptime < 60.0, "{s:#}");

    let members = s["members"].as_array().unwrap();
    let names: Vec<&str> = members.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["psb", "psc"], "in name order, self excluded");
    for m in members {
        let name = m["name"].as_str().unwrap();
        let addr: SocketAddr = m["addr"].as_str().unwrap().parse().unwrap();
        assert_eq!(addr.port(), ports[name], "{name}: its data address");
        assert!(m["incarnation"].as_u64().unwrap() > 0);
        assert!(m["last_heard_ms"].as_u64().unwrap() < 3000, "{m}");
        let rtt = m["rtt_ms"].as_f64().unwrap();
        assert!(rtt > 0.0 && rtt < 200.0, "{m}");
        assert!(m["loss_pct"].as_f64().unwrap() <= 50.0, "{m}");
        // Measured once enough probes and heartbeats have arrived; null until then.
        for key in ["jitter_ms", "heartbeat_loss_pct"] {
            assert!(m.get(key).is_some_and(|v| v.is_null() || v.is_f64()), "{key}: {m}");
        }
        assert_eq!(m["relays"], true);
    }

    let b = &s["baton"];
    assert_eq!(b["enabled"], true);
    assert!(b["epoch"].is_u64(), "{b}");
    assert!(b["counter"].as_u64().unwrap() > 0, "{b}");
    assert!(["psa", "psb", "psc"].contains(&b["holder"].as_str().unwrap()), "{b}");
    assert_eq!(b["holding"], b["holder"] == "psa", "{b}");
    assert!(b["regenerated"].is_u64());

    // The Pi 4 fixture: one sensor, 0x50005 throttled word, wlan0 down.
    let t = &s["sensors"];
    assert_eq!(t["temperatures"]["cpu-thermal"], 48.312, "{t}");
    assert_eq!(t["cpu_freq_mhz"], 1500.0, "{t}");
    assert_eq!(t["throttle"]["under_voltage"], true, "{t}");
    assert_eq!(t["throttle"]["throttled_occurred"], true, "{t}");
    assert_eq!(t["throttle"]["freq_capped"], false, "{t}");
    assert_eq!(t["net"]["interface"], "wlan0", "{t}");
    assert_eq!(t["net"]["up"], false, "{t}");
    assert_eq!(t["net"]["rx_errors"], 3, "{t}");
    assert_eq!(t["net"]["wifi_signal_dbm"], -52.0, "{t}");
    assert_eq!(s["rejected"]["auth"], 0, "{s:#}");

    // The page, server-rendered: every member is listed without running its script.
    let page = request(trio.addr, &get("/"));
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    for name in ["psa", "psb", "psc"] {
        assert!(page.body.contains(&format!("<tr data-member=\"{name}\">")), "{name}:\n{}", page.body);
    }
    assert_eq!(request(trio.addr, &get("/nowhere")).status, 404);
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let trio = start("status-metrics");
    // Converged, and every link measured (jitter needs two probes).
    let links =
        ["rtt_seconds", "jitter_seconds", "loss_ratio", "heartbeat_loss_ratio", "clock_offset_seconds"];
    let reply = trio.get_until("/metrics", |body| {
        body.contains("herd_members 3\n")
            && ["psb", "psc"].iter().all(|peer| {
                links.iter().all(|link| {
                    let family = if link.starts_with("clock") {
                        format!("herd_{link}")
                    } else {
                        format!("herd_link_{link}")
                    };
                    body.contains(&format!("{family}{{peer=\"{peer}\"}} "))
                })
            })
    });
    assert_eq!(reply.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let scrape = prometheus_parse::Scrape::parse(reply.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |metric: &str, label: Option<(&str, &str)>| -> prometheus_parse::Value {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {metric} {label:?} in\n{}", reply.body))
            .value
            .clone()
    };
    use prometheus_parse::Value::{Counter, Gauge};
    assert_eq!(value("herd_up", None), Gauge(1.0));
    assert_eq!(value("herd_members", None), Gauge(3.0));
    for peer in ["psb", "psc"] {
        assert_eq!(value("herd_member_up", Some(("member", peer))), Gauge(1.0));
        // Seconds and ratios, as Prometheus names want.
        let Gauge(rtt) = value("herd_link_rtt_seconds", Some(("peer", peer))) else {
            panic!("rtt not a gauge")
        };
        assert!(rtt > 0.0 && rtt < 0.2, "{peer}: {rtt}");
        let Gauge(loss) = value("herd_link_loss_ratio", Some(("peer", peer))) else {
            panic!("loss not a gauge")
        };
        assert!((0.0..=0.5).contains(&loss), "{peer}: {loss}");
        assert!(matches!(value("herd_link_jitter_seconds", Some(("peer", peer))), Gauge(_)));
        assert!(matches!(value("herd_link_heartbeat_loss_ratio", Some(("peer", peer))), Gauge(_)));
        // One machine, one clock: the offset is the measurement's error only.
        let Gauge(offset) = value("herd_clock_offset_seconds", Some(("peer", peer))) else {
            panic!("offset not a gauge")
        };
        assert!(offset.abs() < 0.05, "{peer}: clock offset {offset} s on one machine");
    }
    assert_eq!(value("herd_cpu_temperature_celsius", Some(("sensor", "cpu-thermal"))), Gauge(48.312));
    assert_eq!(value("herd_cpu_frequency_hertz", None), Gauge(1.5e9));
    assert_eq!(value("herd_throttle", Some(("flag", "under_voltage"))), Gauge(1.0));
    assert_eq!(value("herd_throttle", Some(("flag", "soft_temp_limit"))), Gauge(0.0));
    assert_eq!(value("herd_net_up", Some(("interface", "wlan0"))), Gauge(0.0));
    assert_eq!(value("herd_net_wifi_signal_dbm", None), Gauge(-52.0));
    assert_eq!(value("herd_rejected_total", Some(("class", "auth"))), Counter(0.0));
    assert!(matches!(value("herd_baton_passes_total", None), Counter(n) if n >= 0.0));
    assert!(matches!(value("herd_baton_value", None), Gauge(n) if n >= 0.0));
    // The Pi 4 fixture's wlan0 flaps counted; uptime from its proc/uptime.
    assert_eq!(value("herd_net_carrier_changes_total", Some(("interface", "wlan0"))), Counter(0.0));
    assert_eq!(value("herd_system_uptime_seconds", None), Gauge(86523.41));
    assert_eq!(value("herd_fs_root_readonly", None), Gauge(0.0));
    assert!(matches!(value("herd_clock_synced", None), Gauge(v) if v == 0.0 || v == 1.0));
    assert!(matches!(value("herd_uptime_seconds", None), Gauge(n) if n > 0.0));
    // Every family is documented, and the text has nothing the parser skipped.
    for family in ["herd_members", "herd_link_rtt_seconds", "herd_baton_passes_total", "herd_throttle"] {
        assert!(scrape.docs.contains_key(family), "no HELP for {family}");
    }
    let samples = reply.body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    assert_eq!(scrape.samples.len(), samples, "every sample line parsed");
}

#[test]
fn promtool_check_metrics_finds_nothing_to_complain_about() {
    // Prometheus' own linter on a live /metrics with every family present:
    // sensors from the Pi 4 fixture, links and clock offsets measured.
    let which = std::process::Command::new("promtool").arg("--version").output();
    let missing = which.is_err().then(|| "promtool (Debian package prometheus)".to_owned());
    if !common::may_run("promtool_check_metrics_finds_nothing_to_complain_about", missing) {
        return;
    }
    let trio = start("status-promtool");
    let reply = trio.get_until("/metrics", |body| {
        ["psb", "psc"].iter().all(|p| body.contains(&format!("herd_clock_offset_seconds{{peer=\"{p}\"}} ")))
            && body.contains("herd_link_jitter_seconds{peer=\"psc\"}")
    });
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    child.stdin.take().unwrap().write_all(reply.body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    common::report_line(&format!(
        "PROMTOOL | promtool check metrics on a live /metrics ({} families) | exit {}, said {:?}",
        reply.body.lines().filter(|l| l.starts_with("# TYPE")).count(),
        out.status.code().unwrap_or(-1),
        said.trim()
    ));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}\n{}",
        reply.body
    );
}

#[test]
fn limits_refuse_bad_requests_and_idle_connections_do_not_lock_it_up() {
    let mut trio = start("status-limits");
    let addr = trio.addr;
    assert_eq!(request(addr, &get("/status")).status, 200);

    let post = request(addr, "POST /status HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}");
    assert_eq!(post.status, 405, "{post:?}");
    assert_eq!(post.headers["allow"], "GET, HEAD");
    let with_body = request(addr, "GET /status HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(with_body.status, 413, "{with_body:?}");
    let huge = format!("GET /status HTTP/1.1\r\nHost: t\r\nX-Filler: {}\r\n\r\n", "x".repeat(20_000));
    let huge = request(addr, &huge);
    assert!(huge.status == 431 || huge.status == 0, "oversized head: {huge:?}");
    trio.psa().expect("request head too large", Duration::from_secs(2));

    // 20 connections that send nothing (one sends half a request head): 16
    // hold every slot, the others are refused at once.
    let t0 = Instant::now();
    let mut idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    idle[0].write_all(b"GET /status HTTP/1.1\r\nHost: t\r\n").unwrap();
    thread::sleep(Duration::from_millis(300));
    let refused = request(addr, &get("/status"));
    assert!(refused.status == 503 || refused.status == 0, "a 21st connection is refused: {refused:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "refused at once, not queued");
    trio.psa().expect("too many connections", Duration::from_secs(2));

    // The head timeout (5 s) frees the slots; the 21st request is then served.
    let served = loop {
        let reply = request(addr, &get("/status"));
        if reply.status == 200 {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "never served again: {reply:?}");
        thread::sleep(Duration::from_millis(250));
    };
    assert!(served >= Duration::from_secs(4), "served after {served:?}, before the head timeout?");
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let text = read_to_close(s);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 503 "), "idle connection got {text:?}");
    }
    trio.psa().expect("slow request head", Duration::from_secs(2));
    assert!(trio.psa().is_running());
    assert_eq!(json(&request(addr, &get("/status")).body)["live_members"], 3);
}

#[test]
fn herd_status_prints_the_member_table_and_json() {
    let trio = start("status-cli");
    let addr = trio.addr.to_string();
    let cluster = trio.agents[0].spec.cluster.clone();
    // Wait until the baton runs, so the view shows a holder.
    trio.get_until("/status", |body| json(body)["baton"]["holder"].is_string());

    let out = herd().args(["status", "--addr", &addr]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with(&format!("psa · cluster {cluster} · up ")), "{stdout}");
    assert!(lines[0].ends_with(" · 3 live members"), "{stdout}");
    let header = lines.iter().position(|l| l.starts_with("NODE  ")).unwrap_or_else(|| panic!("{stdout}"));
    let header_cols: Vec<&str> = lines[header].split("  ").filter(|c| !c.is_empty()).map(str::trim).collect();
    assert_eq!(header_cols, ["NODE", "STATE", "ADDR", "LAST HEARD", "RTT", "LOSS", "CLOCK"]);
    let rows: Vec<Vec<&str>> =
        lines[header + 1..header + 4].iter().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..2], ["psa", "self"], "{stdout}");
    assert_eq!(rows[1][..2], ["psb", "alive"], "{stdout}");
    assert_eq!(rows[2][..2], ["psc", "alive"], "{stdout}");
    for section in ["\nbaton\n", "\n  epoch ", "\n  counter ", "\n  holder ", "\n  passes ", "\nsensors\n"] {
        assert!(stdout.contains(section), "no {section:?} in\n{stdout}");
    }
    assert!(stdout.contains("\n  cpu-thermal    48.3 °C\n"), "{stdout}");
    let throttle =
        "\n  throttle       throttled, throttled_occurred, under_voltage, under_voltage_occurred\n";
    assert!(stdout.contains(throttle), "{stdout}");
    assert!(
        stdout.contains(
            "\n  net            wlan0 down · rx errors 3 · tx errors 0 · Wi-Fi -52 dBm · 0 carrier changes · 0 rx dropped\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("\n  root fs        "), "{stdout}");
    assert!(stdout.contains("\n  booted         1d 00h ago\n"), "{stdout}");
    assert!(stdout.ends_with('\n') && !stdout.ends_with("\n\n"));

    let out = herd().args(["status", "--json", "--addr", &addr]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("{\n  \"node\": \"psa\",\n"), "pretty, in the agent's order:\n{stdout}");
    let s = json(&stdout);
    assert_eq!(s["members"].as_array().unwrap().len(), 2);
    assert_eq!(s["live_members"], 3);
}

#[test]
fn herd_status_without_an_agent_fails_clearly() {
    let port = free_tcp_port();
    let out = herd().args(["status", "--addr", &format!("127.0.0.1:{port}")]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "herd: no herd agent answers at 127.0.0.1:{port} (is `herd run` running, and is [status] \
             listen set?): connection refused\n"
        )
    );
}

fn fixture(pi: &str) -> String {
    format!("{}/tests/fixtures/{pi}/sys", env!("CARGO_MANIFEST_DIR"))
}

/// Any node shows the whole cluster (gossiped health and links). psa (a Pi
/// 4), psb (a Pi 5) and psc (a Pi Zero W) read their own fixtures; psa's
/// `/status` and `herd status --cluster` must show each one's own
/// temperature, version and throttle state, and the 3×3 link matrix, from
/// gossip alone.
#[test]
fn status_has_the_whole_clusters_health_and_link_matrix() {
    let trio = StatusTrio::start("status-cluster", |name, spec| {
        let pi = match name {
            "psa" => "pi4",
            "psb" => "pi5",
            _ => "pizero-w",
        };
        spec.secret("status-tests").set("telemetry", "interval", &toml_str("1s")).set(
            "telemetry",
            "sysfs_root",
            &toml_str(&fixture(pi)),
        )
    });
    let names = ["psa", "psb", "psc"];
    let complete = |body: &str| {
        let s = json(body);
        let health = s["health"].as_array().cloned().unwrap_or_default();
        let all_health = health.len() == 3 && health.iter().all(|h| h["temp_c"].is_number());
        let all_links = names.iter().all(|from| {
            names.iter().filter(|to| *to != from).all(|to| s["links"][from][to]["loss_pct"].is_number())
        });
        all_health && all_links
    };
    let deadline = Instant::now() + 2 * CONVERGE;
    let body = loop {
        let reply = request(trio.addr, &get("/status"));
        if reply.status == 200 && complete(&reply.body) {
            break reply.body;
        }
        assert!(
            Instant::now() < deadline,
            "no whole-cluster view within {:?}:\n{}",
            2 * CONVERGE,
            reply.body
        );
        thread::sleep(Duration::from_millis(250));
    };
    let s = json(&body);
    let health = s["health"].as_array().unwrap();
    let by_name = |n: &str| health.iter().find(|h| h["name"] == n).unwrap_or_else(|| panic!("{n}: {body}"));
    // Each fixture's hottest sensor, to the tenth the wire carries.
    assert_eq!(by_name("psa")["temp_c"], 48.3);
    assert_eq!(by_name("psb")["temp_c"], 52.7);
    assert_eq!(by_name("psc")["temp_c"], 61.2);
    // The Pi 4's throttled word 0x50005 (under-voltage, throttled); the Pi 5
    // has none set; the Zero W has no word, only hwmon's under-voltage alarm.
    assert_eq!(by_name("psa")["throttle"], serde_json::json!(["under_voltage", "throttled"]));
    assert_eq!(by_name("psb")["throttle"], serde_json::json!([]));
    assert_eq!(by_name("psc")["throttle"], serde_json::json!(["under_voltage"]));
    assert_eq!(by_name("psb")["fan_rpm"], 3120);
    assert_eq!(by_name("psc")["root_readonly"], true);
    for h in health {
        assert_eq!(h["state"], "alive", "{h}");
        assert!(h["version"].as_str().unwrap().starts_with(env!("CARGO_PKG_VERSION")), "{h}");
        assert!(h["age_ms"].as_u64().unwrap() < 30_000, "{h}");
    }
    assert_eq!(by_name("psa")["age_ms"], 0);

    let out = herd().args(["status", "--cluster", "--addr", &trio.addr.to_string()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    println!("{stdout}");
    let line = |start: &str| {
        stdout.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{start}:\n{stdout}"))
    };
    assert!(
        line("psa (this) ").contains("48.3 °C") && line("psa (this) ").contains("under_voltage,throttled")
    );
    assert!(line("psb ").contains("52.7 °C") && line("psb ").contains("3120 rpm"));
    assert!(line("psc ").contains("61.2 °C") && line("psc ").contains("READ-ONLY"));
    let matrix = &stdout[stdout.find("from \\ to").unwrap_or_else(|| panic!("no matrix:\n{stdout}"))..];
    let rows: Vec<Vec<&str>> =
        matrix.lines().skip(1).take(3).map(|l| l.split_whitespace().collect()).collect();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 4, "{matrix}");
        assert_eq!(row[0], names[i]);
        assert_eq!(row[i + 1], "·");
        for (j, cell) in row[1..].iter().enumerate().filter(|(j, _)| *j != i) {
            assert!(cell.contains('/'), "{} -> {}: {cell}\n{matrix}", names[i], names[j]);
        }
    }
    assert_eq!(matrix.matches('*').count(), 1, "one slowest link:\n{stdout}");
}

#[test]
fn two_agents_with_one_name_show_the_conflict_in_status_and_herd_status() {
    let cluster = common::Cluster::new("namesake");
    let addr = format!("127.0.0.1:{}", free_tcp_port());
    let first = common::Agent::start(&cluster.node("raspberrypi").set("status", "listen", &toml_str(&addr)));
    // A life is its start's millisecond: two namesakes on one address started
    // in the same one are one life to everyone (docs/troubleshooting.md).
    first.line("herd started", Duration::from_secs(5)).expect("a start line");
    std::thread::sleep(Duration::from_millis(2));
    let second = common::Agent::start(&cluster.node("raspberrypi"));
    let started = second.line("herd started", Duration::from_secs(5)).expect("a start line");
    let incarnation = common::field(&started, "incarnation").expect("its incarnation");
    let line = first
        .line("name conflict: the node at 127.0.0.1 also runs as \"raspberrypi\"", CONVERGE)
        .expect("an error naming the other node");
    assert!(line.contains("ERROR") && line.contains(&format!("incarnation={incarnation}")), "{line}");

    let addr: SocketAddr = addr.parse().unwrap();
    let reply = request(addr, &get("/status"));
    let status: Value = serde_json::from_str(&reply.body).expect("JSON");
    let conflicts = status["name_conflicts"].as_array().expect("name_conflicts");
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["addr"], "127.0.0.1");
    assert_eq!(conflicts[0]["incarnation"], incarnation);
    assert!(conflicts[0]["last_heard_ms"].as_u64().is_some_and(|ms| ms < 15_000), "{conflicts:?}");

    let out = herd().args(["status", "--addr", &addr.to_string()]).output().expect("run herd status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines = text.lines();
    assert!(
        lines.next().is_some_and(|l| l.starts_with("NAME CONFLICT: 127.0.0.1 (heard ")
            && l.contains(" also runs as \"raspberrypi\"")),
        "{text}"
    );
    assert!(lines.next().is_some_and(|l| l.contains("hostnamectl set-hostname")), "{text}");
    let metrics = request(addr, &get("/metrics")).body;
    assert!(metrics.contains("\nherd_name_conflicts 1\n"), "{metrics}");
}
