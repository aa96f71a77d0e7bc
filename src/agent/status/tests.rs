//! Renderers on a hand-made snapshot, and the server's limits against a
//! fake event loop (a task answering snapshot requests), with short
//! limits so the timeouts take milliseconds.

use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::*;
use super::*;
use crate::agent::snapshot::{
    BatonStatus, LinkCell, MemberHealth, NetStatus, NetworkStatus, SensorStatus, Traffic,
};

fn member(name: &str, state: &str, rtt: Option<f64>) -> MemberStatus {
    MemberStatus {
        name: name.into(),
        state: state.into(),
        addr: "127.0.0.1:40001".into(),
        incarnation: 7,
        last_heard_ms: 312,
        relays: true,
        rtt_ms: rtt,
        jitter_ms: rtt.map(|r| r / 10.0),
        loss_pct: rtt.map(|_| 0.0),
        heartbeat_loss_pct: rtt.map(|_| 1.5),
        wire: 3,
        clock_offset_ms: rtt.map(|_| -2.5),
    }
}

fn sample() -> Snapshot {
    Snapshot {
        node: "psa".into(),
        cluster: "lab".into(),
        incarnation: 1_732_000_000_123,
        version: "0.1.0 (x86_64-unknown-linux-gnu, git abc1234)".into(),
        uptime_s: 3723.4,
        live_members: 3,
        members: vec![
            member("psb", "alive", Some(0.372)),
            member("psc", "alive", Some(0.696)),
            member("psd", "down", None),
        ],
        baton: BatonStatus {
            enabled: true,
            epoch: Some(3),
            counter: 1841,
            holding: false,
            passing: false,
            held_id: None,
            holder: Some("psb".into()),
            passes: 120,
            regenerated: 1,
        },
        sensors: SensorStatus {
            temperatures: [("cpu-thermal".to_owned(), 48.312)].into(),
            cpu_freq_mhz: Some(1500.0),
            cpu_usage_pct: Some(1.97),
            load_1: Some(0.84),
            mem_used_pct: Some(2.245),
            throttle: Some(
                [("under_voltage", true), ("throttled", true), ("freq_capped", false)]
                    .map(|(k, v)| (k.to_owned(), v))
                    .into(),
            ),
            net: Some(NetStatus {
                interface: "eth0".into(),
                up: true,
                rx_errors: 3,
                tx_errors: 0,
                wifi_signal_dbm: Some(-52.0),
                speed_mbps: Some(100.0),
                full_duplex: Some(true),
                carrier_changes: Some(7),
                rx_dropped: Some(12),
            }),
            fans: [("pwmfan".to_owned(), 3120.0)].into(),
            clock_synced: Some(true),
            clock_error_ms: Some(16.5),
            root_used_pct: Some(41.5),
            root_readonly: Some(false),
            system_uptime_s: Some(86523.0),
        },
        rejected: [("auth", 3), ("replay", 0)].map(|(k, v)| (k.to_owned(), v)).into(),
        keys: vec!["1a2b3c4d".into()],
        config_file: Some("/etc/herd/herd.toml".into()),
        config_loaded: "2026-12-02T01:30:00Z".into(),
        traffic: Traffic {
            sent_datagrams: 4210,
            sent_bytes: 612_345,
            received_datagrams: 4198,
            received_bytes: 610_001,
            health_sent_bytes: 2_100,
            health_received_bytes: 61_000,
        },
        member_suspects: 4,
        health: vec![
            health("psa", "alive", Some(48.3), &["under_voltage", "throttled"]),
            health("psb", "alive", Some(52.7), &[]),
            health("psc", "alive", Some(61.2), &[]),
            health("psd", "down", None, &[]),
        ],
        links: [
            ("psa", [("psb", Some(0.37), 0.0), ("psc", Some(0.7), 0.0)].as_slice()),
            ("psb", &[("psa", Some(0.41), 0.0), ("psc", Some(2.9), 8.0)]),
            ("psc", &[("psa", Some(0.66), 0.0), ("psb", Some(3.1), 12.0)]),
        ]
        .into_iter()
        .map(|(from, row)| {
            let row = row
                .iter()
                .map(|(to, rtt_ms, loss_pct)| {
                    ((*to).to_owned(), LinkCell { rtt_ms: *rtt_ms, loss_pct: *loss_pct, age_ms: 900 })
                })
                .collect();
            (from.to_owned(), row)
        })
        .collect(),
        network: NetworkStatus {
            state: "ready".into(),
            waiting_for: None,
            interface: Some("eth0".into()),
            address: "10.0.0.11".into(),
            since_ms: 3_600_000,
            changes: 0,
        },
        name_conflicts: Vec::new(),
        history: None,
    }
}

fn health(name: &str, state: &str, temp_c: Option<f64>, throttle: &[&str]) -> MemberHealth {
    MemberHealth {
        name: name.into(),
        state: state.into(),
        age_ms: temp_c.map(|_| 1200),
        temp_c,
        throttle: temp_c.map(|_| throttle.iter().map(|t| (*t).to_owned()).collect()),
        load_1: temp_c.map(|_| 0.84),
        mem_used_pct: temp_c.map(|_| 27.0),
        fan_rpm: None,
        root_readonly: temp_c.map(|_| false),
        clock_synced: temp_c.map(|_| true),
        uptime_s: temp_c.map(|_| 86523),
        version: temp_c.map(|_| "0.1.0+abc1234".into()),
    }
}

/// No sensors at all and no link measurements: what a fresh agent in a
/// container reports.
fn bare() -> Snapshot {
    let mut s = sample();
    s.sensors = SensorStatus::default();
    s.members = vec![member("psb", "alive", None)];
    s.baton.epoch = None;
    s.baton.holder = None;
    s.rejected = BTreeMap::new();
    s.config_file = None;
    s.keys = Vec::new();
    s
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parse")
}

fn value(scrape: &prometheus_parse::Scrape, metric: &str, label: Option<(&str, &str)>) -> Option<f64> {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))?;
    match sample.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => Some(v),
        ref other => panic!("{metric}: untyped or histogram sample {other:?}"),
    }
}

/// Every sample's family has exactly one HELP and one TYPE line, before
/// its samples, and a family's samples are contiguous.
fn assert_well_formed(text: &str) {
    let mut seen = std::collections::HashSet::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(seen.insert(name.clone()), "family {name} twice");
            current = name;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            assert_eq!(rest.split(' ').next().unwrap(), current, "TYPE without HELP: {line}");
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(name, current, "sample outside its family: {line}");
        }
    }
}

#[test]
fn metrics_are_parsed_by_a_prometheus_parser() {
    let text = metrics(&sample());
    assert_well_formed(&text);
    let m = scrape(&text);
    assert_eq!(value(&m, "herd_up", None), Some(1.0));
    assert_eq!(value(&m, "herd_members", None), Some(3.0));
    assert_eq!(value(&m, "herd_uptime_seconds", None), Some(3723.4));
    assert_eq!(value(&m, "herd_member_up", Some(("member", "psb"))), Some(1.0));
    assert_eq!(value(&m, "herd_member_up", Some(("member", "psd"))), Some(0.0));
    assert_eq!(value(&m, "herd_member_last_heard_seconds", Some(("member", "psc"))), Some(0.312));
    // Base units: seconds and ratios, not ms and percent.
    assert_eq!(value(&m, "herd_link_rtt_seconds", Some(("peer", "psb"))), Some(0.000372));
    assert_eq!(value(&m, "herd_link_rtt_seconds", Some(("peer", "psc"))), Some(0.000696));
    assert_eq!(value(&m, "herd_link_rtt_seconds", Some(("peer", "psd"))), None, "no fake zero for psd");
    assert_eq!(value(&m, "herd_link_heartbeat_loss_ratio", Some(("peer", "psb"))), Some(0.015));
    assert_eq!(value(&m, "herd_baton_value", None), Some(1841.0));
    assert_eq!(value(&m, "herd_clock_offset_seconds", Some(("peer", "psb"))), Some(-0.0025));
    assert_eq!(value(&m, "herd_member_suspect_total", None), Some(4.0));
    assert_eq!(value(&m, "herd_cpu_frequency_hertz", None), Some(1.5e9));
    assert_eq!(value(&m, "herd_memory_used_ratio", None), Some(0.02245));
    assert_eq!(value(&m, "herd_fan_rpm", Some(("fan", "pwmfan"))), Some(3120.0));
    assert_eq!(value(&m, "herd_net_speed_bytes", None), Some(12_500_000.0));
    assert_eq!(value(&m, "herd_net_carrier_changes_total", None), Some(7.0));
    assert_eq!(value(&m, "herd_net_rx_dropped_total", None), Some(12.0));
    assert_eq!(value(&m, "herd_net_full_duplex", None), Some(1.0));
    assert_eq!(value(&m, "herd_clock_synced", None), Some(1.0));
    assert_eq!(value(&m, "herd_clock_error_seconds", None), Some(0.0165));
    assert_eq!(value(&m, "herd_fs_root_used_ratio", None), Some(0.415));
    assert_eq!(value(&m, "herd_fs_root_readonly", None), Some(0.0));
    assert_eq!(value(&m, "herd_system_uptime_seconds", None), Some(86523.0));
    assert_eq!(value(&m, "herd_baton_epoch", None), Some(3.0));
    assert_eq!(value(&m, "herd_baton_holding", None), Some(0.0));
    assert_eq!(value(&m, "herd_baton_passes_total", None), Some(120.0));
    assert_eq!(value(&m, "herd_baton_regenerated_total", None), Some(1.0));
    assert_eq!(value(&m, "herd_cpu_temperature_celsius", Some(("sensor", "cpu-thermal"))), Some(48.312));
    assert_eq!(value(&m, "herd_throttle", Some(("flag", "under_voltage"))), Some(1.0));
    assert_eq!(value(&m, "herd_throttle", Some(("flag", "freq_capped"))), Some(0.0));
    assert_eq!(value(&m, "herd_net_up", Some(("interface", "eth0"))), Some(1.0));
    assert_eq!(value(&m, "herd_net_rx_errors_total", Some(("interface", "eth0"))), Some(3.0));
    assert_eq!(value(&m, "herd_net_wifi_signal_dbm", None), Some(-52.0));
    assert_eq!(value(&m, "herd_rejected_total", Some(("class", "auth"))), Some(3.0));
    assert_eq!(value(&m, "herd_datagrams_sent_total", None), Some(4210.0));
    assert_eq!(value(&m, "herd_datagram_bytes_received_total", None), Some(610_001.0));
    assert!(text.contains("# TYPE herd_baton_passes_total counter\n"), "{text}");
    assert!(text.contains("# TYPE herd_members gauge\n"), "{text}");
}

#[test]
fn metrics_leave_out_what_the_snapshot_lacks() {
    let text = metrics(&bare());
    assert_well_formed(&text);
    for absent in [
        "herd_cpu_temperature_celsius",
        "herd_cpu_frequency_hertz",
        "herd_load1",
        "herd_throttle",
        "herd_fan_rpm",
        "herd_net_up",
        "herd_net_wifi_signal_dbm",
        "herd_clock_synced",
        "herd_fs_root_readonly",
        "herd_system_uptime_seconds",
        "herd_link_rtt_seconds",
        "herd_baton_epoch",
        "herd_rejected_total",
    ] {
        assert!(!text.contains(absent), "{absent} present without data:\n{text}");
    }
    assert!(text.contains("herd_member_up{member=\"psb\",state=\"alive\"} 1\n"), "{text}");
}

#[test]
fn metric_label_values_are_escaped() {
    let mut s = bare();
    s.members[0].name = "a\"b\\c\nd".into();
    let text = metrics(&s);
    assert!(text.contains(r#"herd_member_up{member="a\"b\\c\nd",state="alive"} 1"#), "{text}");
    assert_eq!(prometheus_value(f64::NAN), "NaN");
    assert_eq!(prometheus_value(f64::NEG_INFINITY), "-Inf");
    assert_eq!(prometheus_value(0.5), "0.5");
}

#[test]
fn page_is_complete_before_its_script_runs_and_has_no_external_assets() {
    let mut s = sample();
    s.members.push(member("<b>evil</b>", "alive", None));
    let html = page(&s);
    for name in ["psa", "psb", "psc", "psd"] {
        assert!(html.contains(&format!("<tr data-member=\"{name}\"><td>{name}</td>")), "{name}:\n{html}");
    }
    assert!(html.contains("&#60;b&#62;evil&#60;/b&#62;") && !html.contains("<b>evil"), "not escaped");
    assert!(
        html.contains("<dt>epoch</dt><dd>3</dd><dt>counter</dt><dd>1841</dd><dt>holder</dt><dd>psb</dd>")
    );
    assert!(html.contains("<dt>throttle</dt><dd>throttled, under_voltage</dd>"), "{html}");
    assert!(html.contains("<dt>cpu-thermal</dt><dd>48.3 °C</dd>"), "{html}");
    assert!(html.contains("fetch(\"/app\""));
    for external in ["src=", "href=\"http", "url(", "@import"] {
        assert!(!html.contains(external), "external asset ({external})");
    }
}

#[test]
fn human_view_has_the_member_table_baton_and_sensors() {
    let text = human(&sample());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "psa · cluster lab · up 1h 02m · 3 live members");
    assert!(text.contains("NODE  STATE  ADDR             LAST HEARD  RTT       LOSS   CLOCK\n"), "{text}");
    assert!(text.contains("psb   alive  127.0.0.1:40001  312 ms      0.372 ms  0.0 %  -2.5 ms\n"), "{text}");
    assert!(text.contains("psd   down   127.0.0.1:40001  312 ms      -         -      -\n"), "{text}");
    assert!(text.contains("  holder   psb\n"), "{text}");
    assert!(text.contains("  passes   120 by this node, 1 regenerated\n"), "{text}");
    assert!(text.contains("  throttle       throttled, under_voltage\n"), "{text}");
    assert!(
        text.contains(
            "  net            eth0 up · rx errors 3 · tx errors 0 · Wi-Fi -52 dBm · 100 Mbit/s full duplex · 7 carrier changes · 12 rx dropped\n"
        ),
        "{text}"
    );
    assert!(text.contains("  fan pwmfan     3120 rpm\n"), "{text}");
    assert!(text.contains("  clock          synchronised · 16.5 ms estimated error\n"), "{text}");
    assert!(text.contains("  root fs        41.5 % used · read-write\n"), "{text}");
    assert!(text.contains("  booted         1d 00h ago\n"), "{text}");
    assert!(text.contains("\nrejected datagrams\n  auth  3\n"), "{text}");
    assert!(
        text.ends_with(
            "\nconfig\n  file  /etc/herd/herd.toml (loaded 2026-12-02T01:30:00Z)\n  keys  1a2b3c4d (the first seals)\n"
        ),
        "{text}"
    );
    let bare = human(&bare());
    assert!(
        bare.contains("  epoch    no baton seen yet\n") && bare.contains("  holder   unknown\n"),
        "{bare}"
    );
    assert!(bare.contains("no sensor reading yet\n"), "{bare}");
    assert!(bare.ends_with("\nconfig\n  file  built-in defaults\n"), "{bare}");
}

#[test]
fn pretty_keeps_order_and_strings() {
    let json = r#"{"node":"p{s,a}:\"x\"","b":[ ],"c":{},"d":[1,{"e":null}],"f":-1.5e3}"#;
    let want = "{\n  \"node\": \"p{s,a}:\\\"x\\\"\",\n  \"b\": [],\n  \"c\": {},\n  \"d\": [\n    1,\n    {\n      \
                \"e\": null\n    }\n  ],\n  \"f\": -1.5e3\n}";
    assert_eq!(pretty(json), want);
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&pretty(json)).unwrap(), v);
}

#[test]
fn formats() {
    assert_eq!(uptime(45.9), "45s");
    assert_eq!(uptime(123.0), "2m 03s");
    assert_eq!(uptime(3723.0), "1h 02m");
    assert_eq!(uptime(3.0 * 86400.0 + 4.0 * 3600.0), "3d 04h");
    assert_eq!(ago(999), "999 ms");
    assert_eq!(ago(4230), "4.2 s");
}

const FAST: Limits = Limits {
    connections: 4,
    head_bytes: 8 * 1024,
    head_timeout: Duration::from_millis(400),
    lifetime: Duration::from_secs(30),
    snapshot_timeout: Duration::from_millis(200),
};

/// An event loop that answers every request with `s`.
fn fake_loop(s: Snapshot) -> mpsc::Sender<SnapshotRequest> {
    let (tx, mut rx) = mpsc::channel::<SnapshotRequest>(8);
    tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let _ = reply.send(s.clone());
        }
    });
    tx
}

async fn start(requests: mpsc::Sender<SnapshotRequest>, limits: Limits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_with(listener, requests, limits));
    addr
}

/// Sends `request` as is and reads until the server closes (or 3 s pass,
/// or the connection is reset); what arrived, as text.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_all(&mut s).await
}

async fn read_all(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn serves_json_html_and_metrics() {
    let addr = start(fake_loop(sample()), FAST).await;
    let resp = raw(addr, &get("/status")).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("content-type: application/json\r\n"), "{resp}");
    let back: Snapshot = serde_json::from_str(body(&resp)).unwrap();
    assert_eq!(back, sample());

    let resp = raw(addr, &get("/metrics")).await;
    assert!(resp.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{resp}");
    assert_eq!(body(&resp), metrics(&sample()));

    let resp = raw(addr, &get("/")).await;
    assert!(resp.contains("content-type: text/html; charset=utf-8\r\n"), "{resp}");
    assert!(resp.contains("content-security-policy: default-src 'none';"), "{resp}");
    assert!(body(&resp).contains("<tr data-member=\"psc\">"));

    let resp = raw(addr, b"HEAD /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n") && body(&resp).is_empty(), "{resp}");

    let resp = raw(addr, &get("/status?pretty=1")).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "query strings are ignored: {resp}");
    let resp = raw(addr, &get("/nope")).await;
    assert!(resp.starts_with("HTTP/1.1 404 Not Found\r\n"), "{resp}");
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let addr = start(fake_loop(sample()), FAST).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        let mut buf = vec![0; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
}

#[tokio::test]
async fn refuses_other_methods_and_bodies() {
    let addr = start(fake_loop(sample()), FAST).await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let req = format!("{method} /status HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        let resp = raw(addr, req.as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{method}: {resp}");
        assert!(resp.contains("allow: GET, HEAD\r\n"), "{resp}");
    }
    let resp = raw(addr, b"GET /status HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello").await;
    assert!(resp.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{resp}");
    let chunked = b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let resp = raw(addr, chunked).await;
    assert!(resp.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{resp}");
}

#[tokio::test]
async fn refuses_an_oversized_request_head() {
    let addr = start(fake_loop(sample()), FAST).await;
    let big = format!("GET /status HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let resp = raw(addr, big.as_bytes()).await;
    assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 431 "), "{resp}");
    // Just under the limit is fine.
    let fits = format!(
        "GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(7000)
    );
    assert!(raw(addr, fits.as_bytes()).await.starts_with("HTTP/1.1 200 OK\r\n"));
}

#[tokio::test]
async fn answers_503_when_the_loop_is_gone_or_silent() {
    let (gone, rx) = mpsc::channel::<SnapshotRequest>(1);
    drop(rx);
    let addr = start(gone, FAST).await;
    let resp = raw(addr, &get("/status")).await;
    assert!(resp.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{resp}");

    let (silent, _rx) = mpsc::channel::<SnapshotRequest>(8);
    let addr = start(silent, FAST).await;
    let t = Instant::now();
    let resp = raw(addr, &get("/metrics")).await;
    assert!(resp.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{resp}");
    let waited = t.elapsed();
    assert!(waited >= FAST.snapshot_timeout && waited < FAST.snapshot_timeout * 5, "{waited:?}");
}

#[tokio::test]
async fn connection_limit_refuses_extra_connections_until_slots_free_up() {
    let addr = start(fake_loop(sample()), FAST).await;
    let mut idle = Vec::new();
    for _ in 0..FAST.connections {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resp = raw(addr, &get("/status")).await;
    assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{resp}");
    // The idle ones are closed by the head timeout, which frees their slots.
    for s in &mut idle {
        assert_eq!(read_all(s).await, "", "idle connection closed without an answer");
    }
    let resp = raw(addr, &get("/status")).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let addr = start(fake_loop(sample()), FAST).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    let t = Instant::now();
    assert_eq!(read_all(&mut s).await, "");
    assert!(t.elapsed() < FAST.head_timeout * 3, "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_connection_is_closed_after_its_lifetime() {
    let limits = Limits { lifetime: Duration::from_millis(500), ..FAST };
    let addr = start(fake_loop(sample()), limits).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    let mut served = 0;
    let mut buf = vec![0; 64 * 1024];
    while t.elapsed() < Duration::from_secs(3) {
        if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => served += 1,
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served >= 2, "served {served}");
    assert!(t.elapsed() < Duration::from_secs(2), "still open after {:?}", t.elapsed());
}

/// Runs a server on its own thread (the client makes its own runtime).
fn server_thread(s: Snapshot) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let addr = start(fake_loop(s), FAST).await;
            tx.send(addr).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

#[test]
fn client_prints_json_and_the_human_view() {
    let addr = server_thread(sample()).to_string();
    let json = client(&addr, View::Json).unwrap();
    assert!(json.starts_with("{\n  \"node\": \"psa\",\n"), "{json}");
    assert!(json.ends_with("\n}\n"), "{json}");
    assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), sample());
    assert_eq!(client(&format!("http://{addr}/"), View::Node).unwrap(), human(&sample()));
}

#[test]
fn client_says_clearly_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = client(&format!("127.0.0.1:{port}"), View::Node).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "no herd agent answers at 127.0.0.1:{port} (is `herd run` running, and is [status] listen set?): \
             connection refused"
        )
    );
}

/// A one-shot TCP server on loopback: reads its first client's request,
/// sends `answer` and closes.
fn canned(answer: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut s, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = s.read(&mut request);
        let _ = s.write_all(answer.as_bytes());
    });
    addr
}

#[test]
fn client_refuses_what_is_not_a_herd_status() {
    let addr = canned("SSH-2.0-OpenSSH_9.2\r\n");
    let err = client(&addr, View::Node).unwrap_err().to_string();
    assert_eq!(err, format!("the agent at {addr} did not answer HTTP (is it a herd agent?)"));
    let addr = canned("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let err = client(&addr, View::Json).unwrap_err().to_string();
    assert_eq!(err, format!("the answer of {addr} is not JSON (is it a herd agent?)"));
    let addr = canned("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}");
    let err = client(&addr, View::Json).unwrap_err().to_string();
    assert_eq!(err, format!("the answer of {addr} was cut short (2 of 50 bytes)"));
    let addr = canned("HTTP/1.0 200 OK\r\n\r\n{\"node\":1}");
    let err = client(&addr, View::Node).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("the answer of {addr} is not a herd status (another version?): ")),
        "{err}"
    );
}

#[test]
fn client_reports_an_agent_that_cannot_answer() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (silent, _rx) = mpsc::channel::<SnapshotRequest>(8);
            tx.send(start(silent, FAST).await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let addr = rx.recv().unwrap();
    let err = client(&addr.to_string(), View::Json).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "the agent at {addr} answered 503 Service Unavailable: the agent's event loop is not answering"
        )
    );
}

#[test]
fn cluster_view_has_a_row_per_member_and_the_marked_matrix() {
    let text = format::cluster_view(&sample());
    println!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    let row =
        |name: &str| *lines.iter().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}\n{text}"));
    assert!(row("psa (this)").contains("48.3 °C") && row("psa (this)").contains("under_voltage,throttled"));
    assert!(row("psb ").contains("52.7 °C") && row("psb ").contains("0.1.0+abc1234"));
    assert!(row("psc ").contains("61.2 °C"));
    assert!(row("psd ").contains("down") && row("psd ").contains("none heard"));
    // The matrix: the slowest link (psc -> psb, 3.1 ms) gets `*`, both lossy ones `!`.
    let matrix = &text[text.find("from \\ to").expect("matrix")..];
    let mrow = |name: &str| {
        matrix.lines().find(|l| l.starts_with(name)).unwrap().split_whitespace().collect::<Vec<_>>()
    };
    assert_eq!(mrow("psa"), ["psa", "·", "0.37/0", "0.70/0", "-"]);
    assert_eq!(mrow("psb"), ["psb", "0.41/0", "·", "2.90/8!", "-"]);
    assert_eq!(mrow("psc"), ["psc", "0.66/0", "3.10/12*!", "·", "-"]);
    assert_eq!(mrow("psd"), ["psd", "-", "-", "-", "·"]);
}

#[test]
fn the_cluster_view_is_refused_for_an_agent_without_health() {
    let mut old = sample();
    old.health.clear();
    let addr = server_thread(old).to_string();
    let err = client(&addr, View::Cluster).unwrap_err().to_string();
    assert!(err.contains("gossips no cluster health"), "{err}");
    let addr = server_thread(sample()).to_string();
    assert_eq!(client(&addr, View::Cluster).unwrap(), format::cluster_view(&sample()));
}

#[test]
fn page_shows_a_card_per_node_the_heat_map_and_the_charts() {
    use crate::agent::history::{History, MAX_NODES, Sample};
    let mut s = sample();
    let html = page(&s);
    for (name, temp) in [("psa", "48.3"), ("psb", "52.7"), ("psc", "61.2")] {
        let card = "<article class=\"card s-alive";
        assert!(html.contains(card));
        assert!(
            html.contains(&format!("data-node=\"{name}\" data-state=\"alive\" data-temp=\"{temp}\"")),
            "{name}:\n{html}"
        );
    }
    assert!(html.contains("data-node=\"psd\" data-state=\"down\"><header>"), "{html}");
    // psa is throttled: its card is an alarm.
    assert!(html.contains("<article class=\"card s-alive alarm\" data-node=\"psa\""), "{html}");
    let cells = html.matches("<td data-from=").count()
        + html.matches("<td class=\"self\" data-from=").count()
        + html.matches("<td class=\"none\" data-from=").count();
    assert_eq!(cells, 16, "a 4x4 matrix:\n{html}");
    // The lossy link is red; a sub-millisecond one green.
    assert!(html.contains("data-from=\"psc\" data-to=\"psb\" data-rtt=\"3.10\" data-loss=\"12\" style=\"background:hsl(0 70% 50% / .35)\""), "{html}");
    assert!(html.contains("data-from=\"psa\" data-to=\"psb\" data-rtt=\"0.37\" data-loss=\"0\" style=\"background:hsl(120 70% 50% / .35)\""), "{html}");
    assert!(html.contains("the charts start after two samples"));
    // With samples: three charts, a line per node for temperatures.
    let mut h = History::new();
    h.nodes = vec!["psa".into(), "psb".into()];
    for i in 0..10u16 {
        let mut temps_dc = [i16::MIN; MAX_NODES];
        temps_dc[0] = 480 + i as i16;
        temps_dc[1] = if i == 5 { i16::MIN } else { 520 };
        h.samples.push_back(Sample {
            t_s: u32::from(i) * 5,
            passes_per_s: if i == 0 { f32::NAN } else { 10.0 },
            members: 4,
            temps_dc,
        });
    }
    s.history = Some(h);
    let html = page(&s);
    for id in ["chart-passes", "chart-temps", "chart-members"] {
        assert!(html.contains(&format!("<figure class=\"chart\" id=\"{id}\">")), "{id}");
    }
    assert_eq!(html.matches("<polyline data-series=\"psa\"").count(), 1);
    // psb's missing sample splits its line in two.
    assert_eq!(html.matches("<polyline data-series=\"psb\"").count(), 2);
    assert!(html.contains("psa 48.9</span>"), "the legend shows the last value");
}

/// `sample()` whose name two other nodes use as well.
fn conflicted() -> Snapshot {
    use crate::agent::snapshot::NameConflict;
    let mut s = sample();
    s.name_conflicts = [("10.77.0.2", 1204), ("10.77.0.3", 312)]
        .into_iter()
        .map(|(addr, heard)| NameConflict {
            addr: addr.into(),
            source: addr.into(),
            advertised: Some(addr.into()),
            incarnation: 1_764_000_000_123,
            last_heard_ms: heard,
            since_ms: 93_410,
        })
        .collect();
    s
}

#[test]
fn a_name_conflict_heads_herd_status_the_cluster_view_and_the_page() {
    let headline = "NAME CONFLICT: 10.77.0.2 (heard 1.2 s ago) and 10.77.0.3 (heard 312 ms ago) also run as \
                    \"psa\": nodes that share a name refuse each other, so they are not in one cluster";
    let fix = "Give each node its own name: set [node] name in /etc/herd/herd.toml, or rename the host \
               (sudo hostnamectl set-hostname <new name>), then restart herd (sudo systemctl restart herd)";
    let s = conflicted();
    let text = human(&s);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..3], [headline, fix, ""], "{text}");
    assert_eq!(lines[3], "psa · cluster lab · up 1h 02m · 3 live members");
    let cluster = format::cluster_view(&s);
    assert!(cluster.starts_with(&format!("{headline}\n{fix}\n\ncluster lab seen from psa")), "{cluster}");
    let html = page(&s);
    assert!(
        html.contains(&format!(
            "<section id=\"conflict\" class=\"banner\" role=\"alert\"><p><b>{}</b></p><p>{}</p></section>",
            esc(headline),
            esc(fix)
        )),
        "{html}"
    );
    // One other node: "runs"; none: nothing anywhere.
    let mut one = conflicted();
    one.name_conflicts.truncate(1);
    assert!(human(&one).starts_with("NAME CONFLICT: 10.77.0.2 (heard 1.2 s ago) also runs as \"psa\": "));
    let clean = sample();
    assert!(!human(&clean).contains("NAME CONFLICT") && !page(&clean).contains("id=\"conflict\""));
    assert!(!format::cluster_view(&clean).contains("NAME CONFLICT"));
    // Prometheus: how many other nodes use the name now.
    assert_eq!(value(&scrape(&metrics(&s)), "herd_name_conflicts", None), Some(2.0));
    assert_eq!(value(&scrape(&metrics(&clean)), "herd_name_conflicts", None), Some(0.0));
    // An older agent's answer (no field) still parses, as no conflict.
    let mut json: serde_json::Value = serde_json::to_value(&s).unwrap();
    json.as_object_mut().unwrap().remove("name_conflicts");
    assert!(serde_json::from_value::<Snapshot>(json).unwrap().name_conflicts.is_empty());
}
