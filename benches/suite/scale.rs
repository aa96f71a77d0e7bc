//! Scale: 8, 16 and 32 agents on this machine (loopback multicast, a secret,
//! the baton at `hold = "100ms"`, defaults otherwise). For each size:
//! convergence (from the last start until every agent has logged every other
//! up), then over a window the datagrams and bytes each agent sends and
//! receives (its own counters, read from `/status`) and its CPU. The reference
//! of each size is the smallest size of the run: per-agent traffic growing
//! linearly with N shows as a ratio equal to N / N₀.
//!
//! Beside each size, hashicorp/memberlist (`DefaultLANConfig`, Debian's
//! 0.2.2) as the same-run reference: one node per process on loopback
//! (benches/peers/memberlist, built here in GOPATH mode), each counting its
//! own UDP datagrams and TCP push-pull bytes. Rows give herd / memberlist.

use std::process::Command;
use std::time::{Duration, Instant};

use herd::agent::snapshot::Traffic;

use crate::common::{Agent, Cluster, Statsd, free_tcp_port, member, toml_str};
use crate::procfs::{cpu_ns, cpu_pct};
use crate::{Row, Setup};

const HEARTBEAT: Duration = Duration::from_secs(1);

struct Figures {
    n: usize,
    converge: Option<Duration>,
    /// Per agent per second, mean over the agents.
    sent: f64,
    received: f64,
    sent_bytes: f64,
    received_bytes: f64,
    cpu_pct: f64,
}

pub fn run(s: &Setup, rows: &mut Vec<Row>) {
    let window = if s.quick { Duration::from_secs(3) } else { Duration::from_secs(10) };
    let figures: Vec<Figures> = s.scale_nodes.iter().map(|&n| measure(&s.herd, n, window)).collect();
    let base = &figures[0];
    let peer = memberlist::build();
    for f in &figures {
        match &peer {
            Ok(bin) => {
                // memberlist syncs its whole state over TCP every 30 s
                // (push-pull): a full run's window takes one in.
                let m = memberlist::measure(
                    bin,
                    f.n,
                    if s.quick { window } else { window.max(Duration::from_secs(31)) },
                );
                for (what, herd, reference) in [
                    ("datagrams/s sent per node", f.sent, m.sent),
                    ("datagrams/s received per node", f.received, m.received),
                    ("bytes/s sent per node", f.sent_bytes, m.sent_bytes),
                    ("bytes/s received per node", f.received_bytes, m.received_bytes),
                ] {
                    rows.push(Row {
                        section: "scale",
                        figure: format!("{} agents: {what}", f.n),
                        value: format!("{herd:.1}"),
                        target: "-".into(),
                        reference: format!("memberlist {reference:.1}"),
                        ratio: (reference > 0.0).then(|| herd / reference),
                        met: None,
                    });
                }
            }
            Err(why) => rows.push(Row {
                section: "scale",
                figure: format!("{} agents: memberlist reference", f.n),
                value: "-".into(),
                target: "-".into(),
                reference: why.clone(),
                ratio: None,
                met: None,
            }),
        }
        let growth = f.n as f64 / base.n as f64;
        rows.push(Row {
            section: "scale",
            figure: format!("{} agents: convergence", f.n),
            value: f.converge.map_or("not within 10 s".into(), |d| format!("{} ms", d.as_millis())),
            target: format!("≤ {} ms (2 heartbeats)", (2 * HEARTBEAT).as_millis()),
            reference: "the bound".into(),
            ratio: f.converge.map(|d| d.as_secs_f64() / (2 * HEARTBEAT).as_secs_f64()),
            met: Some(f.converge.is_some_and(|d| d <= 2 * HEARTBEAT)),
        });
        // Per-agent figures against the smallest cluster's: linear growth is
        // a ratio of N / base N (met with 10 % slack for this noisy machine).
        let linear = |figure: &str, value: String, reference: String, ratio: Option<f64>| Row {
            section: "scale",
            figure: format!("{} agents: {figure}", f.n),
            value,
            target: format!("grows ≤ linearly: ratio ≤ {growth:.1}"),
            reference: format!("{} agents: {reference}", base.n),
            ratio,
            met: ratio.map(|r| r <= growth * 1.1),
        };
        rows.push(linear(
            "datagrams/s per agent (sent / received)",
            format!("{:.1} / {:.1}", f.sent, f.received),
            format!("{:.1} / {:.1}", base.sent, base.received),
            Some((f.sent + f.received) / (base.sent + base.received)),
        ));
        rows.push(linear(
            "bytes/s sent per agent",
            format!("{:.0} B/s", f.sent_bytes),
            format!("{:.0} B/s", base.sent_bytes),
            Some(f.sent_bytes / base.sent_bytes),
        ));
        rows.push(linear(
            "CPU per agent",
            format!("{:.2} %", f.cpu_pct),
            format!("{:.2} %", base.cpu_pct),
            // A short (quick) window can read no CPU time at all.
            (base.cpu_pct > 0.0).then(|| f.cpu_pct / base.cpu_pct),
        ));
    }
}

fn measure(herd: &str, n: usize, window: Duration) -> Figures {
    let statsd = Statsd::start();
    let cluster = Cluster::new("scale");
    let names: Vec<String> = (0..n).map(|i| format!("s{i:02}")).collect();
    let ports: Vec<u16> = (0..n).map(|_| free_tcp_port()).collect();
    let agents: Vec<Agent> = names
        .iter()
        .zip(&ports)
        .map(|(name, port)| {
            let spec = cluster
                .node(name)
                .secret("scale secret")
                .set("baton", "hold", &toml_str("100ms"))
                .set("statsd", "address", &statsd.address())
                .set("status", "listen", &toml_str(&format!("127.0.0.1:{port}")));
            Agent::start_with(&spec, Command::new(herd))
        })
        .collect();
    let last_start = agents.iter().map(|a| a.spawned).max().unwrap();
    let mut converged = Some(last_start);
    for a in &agents {
        for other in names.iter().filter(|o| **o != a.name) {
            let seen = a.wait_for(&member("up", other), Duration::from_secs(10));
            converged = match (converged, seen) {
                (Some(c), Some(s)) => Some(c.max(s)),
                _ => None,
            };
        }
    }
    let converge = converged.map(|c| c - last_start);
    std::thread::sleep(2 * HEARTBEAT);
    let traffic = || -> Vec<Traffic> {
        ports
            .iter()
            .map(|p| {
                let text = herd::agent::status::client(&format!("127.0.0.1:{p}"), true).expect("status");
                serde_json::from_str::<herd::agent::snapshot::Snapshot>(&text).expect("status JSON").traffic
            })
            .collect()
    };
    let pids: Vec<u32> = agents.iter().map(Agent::pid).collect();
    let (t0, before, ns0) = (Instant::now(), traffic(), pids.iter().map(|p| cpu_ns(*p)).sum::<u64>());
    std::thread::sleep(window);
    let (after, ns1) = (traffic(), pids.iter().map(|p| cpu_ns(*p)).sum::<u64>());
    let secs = t0.elapsed().as_secs_f64();
    let per = |f: fn(&Traffic) -> u64| {
        // Each status query is one TCP exchange, not counted (UDP only).
        before.iter().zip(&after).map(|(b, a)| (f(a) - f(b)) as f64).sum::<f64>() / n as f64 / secs
    };
    Figures {
        n,
        converge,
        sent: per(|t| t.sent_datagrams),
        received: per(|t| t.received_datagrams),
        sent_bytes: per(|t| t.sent_bytes),
        received_bytes: per(|t| t.received_bytes),
        cpu_pct: cpu_pct(ns1.saturating_sub(ns0), secs) / n as f64,
    }
}

/// The memberlist reference peers.
mod memberlist {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use crate::common::free_tcp_port;

    const GOPATH: &str = "/usr/share/gocode";

    pub struct Figures {
        pub sent: f64,
        pub received: f64,
        pub sent_bytes: f64,
        pub received_bytes: f64,
    }

    /// benches/peers/memberlist built into target/, or why not.
    pub fn build() -> Result<PathBuf, String> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/memberlist");
        if !Path::new(GOPATH).join("src/github.com/hashicorp/memberlist").exists() {
            return Err(
                "not installed (apt-get install golang-go golang-github-hashicorp-memberlist-dev)".into()
            );
        }
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/memberlist-peer");
        let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/go-cache");
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&src)
            .env("GOPATH", GOPATH)
            .env("GO111MODULE", "off")
            .env("GOCACHE", &cache)
            .env("GOFLAGS", "-mod=mod")
            .output()
            .map_err(|e| format!("go: {e} (apt-get install golang-go)"))?;
        if !built.status.success() {
            return Err(format!("go build failed: {}", String::from_utf8_lossy(&built.stderr).trim()));
        }
        Ok(out)
    }

    /// `n` memberlist nodes joined into one cluster; per node per second over
    /// `window` once all see `n` members (UDP datagrams; bytes include the
    /// TCP push-pull syncs).
    pub fn measure(bin: &Path, n: usize, window: Duration) -> Figures {
        let ports: Vec<u16> = (0..n).map(|_| free_tcp_port()).collect();
        let latest: Vec<Arc<Mutex<Option<serde_json::Value>>>> = (0..n).map(|_| Arc::default()).collect();
        let mut children = Vec::new();
        for i in 0..n {
            let mut cmd = Command::new(bin);
            cmd.args(["-name", &format!("m{i:02}"), "-port", &ports[i].to_string()]);
            if i > 0 {
                cmd.args(["-join", &format!("127.0.0.1:{}", ports[0])]);
            }
            let mut child =
                cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("memberlist-peer");
            let stdout = child.stdout.take().expect("piped");
            let slot = Arc::clone(&latest[i]);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && v.get("members").is_some()
                    {
                        *slot.lock().unwrap() = Some(v);
                    }
                }
            });
            children.push(child);
            if i == 0 {
                // The seed listens before anyone joins it.
                let t = Instant::now();
                while latest[0].lock().unwrap().is_none() && t.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let all_in = || latest.iter().all(|l| l.lock().unwrap().as_ref().is_some_and(|v| v["members"] == n));
        let t = Instant::now();
        while !all_in() && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(2));
        let sample = || -> Vec<serde_json::Value> {
            latest.iter().map(|l| l.lock().unwrap().clone().unwrap_or_default()).collect()
        };
        let before = sample();
        std::thread::sleep(window);
        let after = sample();
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let per = |keys: &[&str]| {
            let mut total = 0.0;
            let mut secs = 0.0;
            for (b, a) in before.iter().zip(&after) {
                for k in keys {
                    total += a[k].as_f64().unwrap_or(0.0) - b[k].as_f64().unwrap_or(0.0);
                }
                secs += a["t"].as_f64().unwrap_or(0.0) - b["t"].as_f64().unwrap_or(0.0);
            }
            if secs > 0.0 { total / secs } else { 0.0 }
        };
        Figures {
            sent: per(&["sent_packets"]),
            received: per(&["recv_packets"]),
            sent_bytes: per(&["sent_bytes", "stream_sent_bytes"]),
            received_bytes: per(&["recv_bytes", "stream_recv_bytes"]),
        }
    }
}
