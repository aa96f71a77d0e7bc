//! Footprint: what one agent costs a Pi. A 4-agent cluster with all
//! telemetry on and the baton at `hold = "100ms"` runs for the idle window
//! (60 s); its CPU per agent and its RSS are set beside those of
//! prometheus-node-exporter (Debian's package, when installed) running over
//! the same window and scraped every 15 s, as Prometheus would. The shipped
//! form, the static x86_64 musl build, is measured too when it is built.
//! Binary sizes are read from the target directory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Agent, Cluster, Statsd, free_tcp_port, member, toml_str};
use crate::procfs::{cpu_ns, cpu_pct, status_kib};
use crate::{Row, Setup};

/// The target (benches/README.md): RSS of one agent (static build) ≤ 3 MiB.
const RSS_TARGET_KIB: u64 = 3072;
const IDLE_CPU_TARGET_PCT: f64 = 0.5;
const SIZE_TARGET: u64 = 3 << 20;
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const MUSL_X86: &str = "target/x86_64-unknown-linux-musl/release/herd";

pub fn run(s: &Setup, rows: &mut Vec<Row>) {
    let exporter = NodeExporter::start();
    let idle = measure_cluster(&s.herd, s.idle, exporter.as_ref());
    let exporter_figures = exporter.map(|e| e.finish(idle.window_start));
    let reference_rss = exporter_figures.map(|(rss, _, _)| rss);
    let reference_anon = exporter_figures.map(|(_, anon, _)| anon);
    let reference = |what: &str, v: Option<String>| {
        v.unwrap_or_else(|| format!("{what}: not installed (apt-get install prometheus-node-exporter)"))
    };
    rows.push(Row {
        section: "footprint",
        figure: format!("idle CPU per agent, 4 agents, hold 100ms, {} s", s.idle.as_secs()),
        value: format!("{:.2} %", idle.cpu_pct),
        target: format!("≤ {IDLE_CPU_TARGET_PCT} % of a core and ≤ node_exporter"),
        reference: reference(
            "node_exporter",
            exporter_figures.map(|(.., cpu)| format!("node_exporter {cpu:.2} %")),
        ),
        ratio: exporter_figures.map(|(.., cpu)| idle.cpu_pct / cpu),
        // The target is both: the absolute bound, and no more than
        // node_exporter in the same run (when it is installed).
        met: Some(
            idle.cpu_pct <= IDLE_CPU_TARGET_PCT
                && exporter_figures.is_none_or(|(.., cpu)| idle.cpu_pct <= cpu),
        ),
    });
    let rss_row = |figure: &str, rss: u64| Row {
        section: "footprint",
        figure: figure.to_owned(),
        value: format!("{rss} KiB"),
        target: format!("≤ {RSS_TARGET_KIB} KiB"),
        reference: reference("node_exporter", reference_rss.map(|r| format!("node_exporter {r} KiB"))),
        ratio: reference_rss.map(|r| rss as f64 / r as f64),
        met: Some(rss <= RSS_TARGET_KIB),
    };
    // The build under test is usually the dynamically linked one (cargo's
    // own): its VmRSS also counts glibc's shared pages and more of the
    // binary's file pages, so the target is judged on the shipped static
    // build below; this row is for comparison.
    rows.push(Row {
        target: "- (the target is for the static build)".into(),
        met: None,
        ..rss_row("RSS of one agent, 4-node cluster, telemetry on (this build)", idle.rss_kib)
    });
    rows.push(Row {
        section: "footprint",
        figure: "private memory (RssAnon) of one agent (this build)".into(),
        value: format!("{} KiB", idle.anon_kib),
        target: "-".into(),
        reference: reference("node_exporter", reference_anon.map(|r| format!("node_exporter {r} KiB"))),
        ratio: reference_anon.map(|r| idle.anon_kib as f64 / r as f64),
        met: None,
    });
    if Path::new(MUSL_X86).exists() {
        let musl = measure_cluster(MUSL_X86, Duration::from_secs(if s.quick { 3 } else { 15 }), None);
        rows.push(rss_row("RSS of one agent, 4-node cluster, telemetry on (static musl)", musl.rss_kib));
    } else {
        rows.push(missing("RSS, static musl build", MUSL_X86, "x86_64-unknown-linux-musl"));
    }
    let reference_size = std::fs::metadata(NODE_EXPORTER).ok().map(|m| m.len());
    for (arch, triple) in [
        ("aarch64", "aarch64-unknown-linux-musl"),
        ("armv7", "armv7-unknown-linux-musleabihf"),
        ("armv6", "arm-unknown-linux-musleabihf"),
        ("x86_64", "x86_64-unknown-linux-musl"),
    ] {
        let (figure, path) = (format!("binary size, static {arch}"), format!("target/{triple}/release/herd"));
        let (figure, path) = (figure.as_str(), path.as_str());
        let Ok(meta) = std::fs::metadata(path) else {
            rows.push(missing(figure, path, triple));
            continue;
        };
        rows.push(Row {
            section: "footprint",
            figure: figure.into(),
            value: format!("{} B", meta.len()),
            target: format!("≤ {SIZE_TARGET} B (3 MiB)"),
            reference: reference(
                "node_exporter",
                reference_size.map(|r| format!("node_exporter (amd64) {r} B")),
            ),
            ratio: reference_size.map(|r| meta.len() as f64 / r as f64),
            met: Some(meta.len() <= SIZE_TARGET),
        });
    }
}

fn missing(figure: &str, path: &str, triple: &str) -> Row {
    Row {
        section: "footprint",
        figure: figure.into(),
        value: format!("not built ({path})"),
        target: format!("scripts/dist.sh {triple}"),
        reference: "-".into(),
        ratio: None,
        met: None,
    }
}

struct Idle {
    /// Mean over the agents.
    cpu_pct: f64,
    /// The largest agent's VmRSS and RssAnon.
    rss_kib: u64,
    anon_kib: u64,
    /// When the window began, and node_exporter's CPU time then (0 without it).
    window_start: (Instant, u64),
}

/// Runs 4 agents of `herd` (psa serving /status, queried once, as an
/// operator would) for `window` after they settle.
fn measure_cluster(herd: &str, window: Duration, exporter: Option<&NodeExporter>) -> Idle {
    let statsd = Statsd::start();
    let cluster = Cluster::new("footprint");
    let status = format!("127.0.0.1:{}", free_tcp_port());
    let agents: Vec<Agent> = ["psa", "psb", "psc", "psd"]
        .iter()
        .map(|name| {
            let mut spec = cluster
                .node(name)
                .secret("footprint secret")
                .set("baton", "hold", &toml_str("100ms"))
                .set("statsd", "address", &statsd.address());
            if *name == "psa" {
                spec = spec.set("status", "listen", &toml_str(&status));
            }
            let mut cmd = Command::new(herd);
            cmd.env("RUST_LOG", "herd=info");
            Agent::start_with(&spec, cmd)
        })
        .collect();
    for a in &agents {
        a.expect(&member("up", if a.name == "psa" { "psd" } else { "psa" }), Duration::from_secs(10));
        a.expect("herd started", Duration::from_secs(1));
    }
    agents[0].wait_for("baton started", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    let pids: Vec<u32> = agents.iter().map(Agent::pid).collect();
    let ns0: Vec<u64> = pids.iter().map(|p| cpu_ns(*p)).collect();
    let t0 = Instant::now();
    let exporter_ns = exporter.map_or(0, |e| cpu_ns(e.child.id()));
    let mut next_scrape = t0;
    let mut queried = false;
    while t0.elapsed() < window {
        if let Some(e) = exporter
            && Instant::now() >= next_scrape
        {
            e.scrape();
            next_scrape += Duration::from_secs(15);
        }
        if !queried && t0.elapsed() >= window / 2 {
            let _ = herd::agent::status::client(&status, herd::agent::status::View::Json);
            let _ = http_get(&status, "/metrics");
            queried = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = t0.elapsed().as_secs_f64();
    let ns: u64 = pids.iter().zip(&ns0).map(|(p, t)| cpu_ns(*p).saturating_sub(*t)).sum();
    let largest = |key: &str| pids.iter().filter_map(|p| status_kib(*p, key)).max().unwrap_or(0);
    Idle {
        cpu_pct: cpu_pct(ns, secs) / pids.len() as f64,
        rss_kib: largest("VmRSS"),
        anon_kib: largest("RssAnon"),
        window_start: (t0, exporter_ns),
    }
}

struct NodeExporter {
    child: Child,
    addr: String,
}

impl NodeExporter {
    fn start() -> Option<NodeExporter> {
        if !Path::new(NODE_EXPORTER).exists() {
            return None;
        }
        let addr = format!("127.0.0.1:{}", free_tcp_port());
        let child = Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let exporter = NodeExporter { child, addr };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(&exporter.addr).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(exporter)
    }

    fn scrape(&self) {
        let _ = http_get(&self.addr, "/metrics");
    }

    /// (VmRSS KiB, RssAnon KiB, CPU % of a core since `since`), and stops it.
    fn finish(mut self, (t0, ns0): (Instant, u64)) -> (u64, u64, f64) {
        let pid = self.child.id();
        let (rss, anon) = (status_kib(pid, "VmRSS").unwrap_or(0), status_kib(pid, "RssAnon").unwrap_or(0));
        let cpu = cpu_pct(cpu_ns(pid).saturating_sub(ns0), t0.elapsed().as_secs_f64());
        let _ = self.child.kill();
        let _ = self.child.wait();
        (rss, anon, cpu)
    }
}

/// The body of `GET path` (HTTP/1.0), or "" on any failure.
fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
