//! Scale: 8, 16, 32 and 64 agents on this machine (loopback multicast, the
//! baton at `hold = "100ms"`, defaults otherwise). For each size:
//! convergence (from the last start until every agent has logged every other
//! up), then over a window the datagrams and bytes each agent sends and
//! receives (its own counters, read from `/status`) and its CPU, then a crash
//! (kill -9: until every survivor logs it down) and a graceful leave (until
//! every other logs it). Per-agent figures are set against the smallest size
//! of the run: flat is a ratio of 1, and the goal is within 2.
//!
//! Beside each size, hashicorp/memberlist (`DefaultLANConfig`, Debian's
//! 0.2.2) as the same-run reference: one node per process on loopback
//! (benches/peers/memberlist, built here in GOPATH mode), each counting its
//! own UDP datagrams and TCP push-pull bytes, and printing its membership
//! events. Like with like, each pair measured one after the other:
//! "encrypted" rows set herd with a secret (XChaCha20-Poly1305 on every
//! datagram) beside memberlist with a `SecretKey` (AES-256-GCM on every
//! packet and push-pull sync, gossip verified both ways: its defaults);
//! "plain" rows set herd without a secret beside memberlist without
//! encryption (a full run only: a quick run measures the encrypted pair).
//! Rows give herd / memberlist. herd's own rows (health, convergence, flat)
//! are its encrypted run's, the configuration it is deployed with.

use std::process::Command;
use std::time::{Duration, Instant};

use herd::agent::snapshot::Traffic;

use crate::common::{Agent, Cluster, Statsd, free_tcp_port, member, toml_str};
use crate::procfs::{cpu_ns, cpu_pct};
use crate::{Row, Setup};

const HEARTBEAT: Duration = Duration::from_secs(1);

/// Both sides of a pair encrypt and authenticate their gossip, or neither does.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Encrypted,
    Plain,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Encrypted => "encrypted",
            Mode::Plain => "plain",
        }
    }
}

#[derive(Clone, Copy)]
struct Figures {
    n: usize,
    converge: Option<Duration>,
    /// Per agent per second, mean over the agents.
    sent: f64,
    received: f64,
    sent_bytes: f64,
    received_bytes: f64,
    /// Of the bytes, health and links in heartbeats (the cluster view).
    health_sent: f64,
    health_received: f64,
    cpu_pct: f64,
    /// kill -9 → every survivor saw it down; SIGTERM → every other saw it leave.
    crash: Option<Duration>,
    leave: Option<Duration>,
}

/// `Some(d)` as milliseconds, or what happened instead.
fn ms(d: Option<Duration>, none: &str) -> String {
    d.map_or(none.into(), |d| format!("{} ms", d.as_millis()))
}

pub fn run(s: &Setup, rows: &mut Vec<Row>) {
    // A full run's window holds several heartbeat refreshes (every 10 to
    // N/2 intervals) and memberlist's 30 s push-pull.
    let window = if s.quick { Duration::from_secs(3) } else { Duration::from_secs(40) };
    // The like-for-like pair first; a quick run stops there.
    let modes: &[Mode] = if s.quick { &[Mode::Encrypted] } else { &[Mode::Encrypted, Mode::Plain] };
    let peer = memberlist::build();
    let mut base: Option<Figures> = None;
    for &n in &s.scale_nodes {
        let mut own = None;
        for &mode in modes {
            let f = measure(&s.herd, n, window, mode);
            if mode == Mode::Encrypted {
                own = Some(f);
            }
            match &peer {
                // memberlist syncs its whole state over TCP every 30 s
                // (push-pull): a full run's window takes one in.
                Ok(bin) => against_memberlist(&f, &memberlist::measure(bin, n, window, mode), mode, rows),
                Err(why) if mode == modes[0] => rows.push(Row {
                    section: "scale",
                    figure: format!("{n} agents: memberlist reference"),
                    value: "-".into(),
                    target: "-".into(),
                    reference: why.clone(),
                    ratio: None,
                    met: None,
                }),
                Err(_) => {}
            }
        }
        let f = own.expect("the encrypted run");
        let base = *base.get_or_insert(f);
        // Gossiped health: under half of herd's gossip budget per node
        // (600 B/s sent, 1.5 KB/s received; benches/README.md).
        for (what, value, budget) in [("sent", f.health_sent, 600.0), ("received", f.health_received, 1500.0)]
        {
            rows.push(Row {
                section: "scale",
                figure: format!("{} agents: health bytes/s {what} per node", f.n),
                value: format!("{value:.1}"),
                target: format!("≤ {:.0} (half the budget)", budget / 2.0),
                reference: format!(
                    "all bytes {what}: {:.1}",
                    if what == "sent" { f.sent_bytes } else { f.received_bytes }
                ),
                ratio: None,
                met: Some(value <= budget / 2.0),
            });
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
        // Per-agent figures against the smallest cluster's: flat is 1; the
        // goal is within 2 (linear growth would be N / base N = {growth}).
        let linear = |figure: &str, value: String, reference: String, ratio: Option<f64>| Row {
            section: "scale",
            figure: format!("{} agents: {figure}", f.n),
            value,
            target: format!("flat: ratio ≤ 2 (linear would be {growth:.1})"),
            reference: format!("{} agents: {reference}", base.n),
            ratio,
            met: ratio.map(|r| r <= 2.0),
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

/// herd's traffic, CPU and failure timings beside memberlist's, both run
/// `mode`: "N agents, encrypted: …" or "N agents, plain: …", herd / memberlist.
fn against_memberlist(f: &Figures, m: &memberlist::Figures, mode: Mode, rows: &mut Vec<Row>) {
    let label = mode.label();
    for (what, herd, reference) in [
        ("datagrams/s sent per node", f.sent, m.sent),
        ("datagrams/s received per node", f.received, m.received),
        ("bytes/s sent per node", f.sent_bytes, m.sent_bytes),
        ("bytes/s received per node", f.received_bytes, m.received_bytes),
    ] {
        rows.push(Row {
            section: "scale",
            figure: format!("{} agents, {label}: {what}", f.n),
            value: format!("{herd:.1}"),
            target: "-".into(),
            reference: format!("memberlist {reference:.1}"),
            ratio: (reference > 0.0).then(|| herd / reference),
            met: None,
        });
    }
    rows.push(Row {
        section: "scale",
        figure: format!("{} agents, {label}: CPU per node", f.n),
        value: format!("{:.2} %", f.cpu_pct),
        target: "-".into(),
        reference: format!("memberlist {:.2} %, RSS {:.1} MiB", m.cpu_pct, m.rss_kib / 1024.0),
        ratio: (m.cpu_pct > 0.0).then(|| f.cpu_pct / m.cpu_pct),
        met: None,
    });
    for (what, herd, reference) in
        [("crash seen by all", f.crash, m.crash), ("leave seen by all", f.leave, m.leave)]
    {
        rows.push(Row {
            section: "scale",
            figure: format!("{} agents, {label}: {what}", f.n),
            value: ms(herd, "not within 15 s"),
            target: "-".into(),
            reference: format!("memberlist {}", ms(reference, "not within 15 s")),
            ratio: herd.zip(reference).map(|(h, r)| h.as_secs_f64() / r.as_secs_f64().max(1e-6)),
            met: None,
        });
    }
}

/// `n` agents of a new cluster, with a secret (`Mode::Encrypted`) or without.
fn measure(herd: &str, n: usize, window: Duration, mode: Mode) -> Figures {
    let statsd = Statsd::start();
    let cluster = Cluster::new("scale");
    let names: Vec<String> = (0..n).map(|i| format!("s{i:02}")).collect();
    let ports: Vec<u16> = (0..n).map(|_| free_tcp_port()).collect();
    let agents: Vec<Agent> = names
        .iter()
        .zip(&ports)
        .map(|(name, port)| {
            let spec = cluster.node(name);
            let spec = if mode == Mode::Encrypted { spec.secret("scale secret") } else { spec };
            let spec = spec
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
    // Past the heartbeats of the start (three, an interval apart).
    std::thread::sleep(3 * HEARTBEAT);
    let traffic = || -> Vec<Traffic> {
        ports
            .iter()
            .map(|p| {
                let text =
                    herd::agent::status::client(&format!("127.0.0.1:{p}"), herd::agent::status::View::Json)
                        .expect("status");
                serde_json::from_str::<herd::agent::snapshot::Snapshot>(&text).expect("status JSON").traffic
            })
            .collect()
    };
    let pids: Vec<u32> = agents.iter().map(Agent::pid).collect();
    let (t0, before, ns0) = (Instant::now(), traffic(), pids.iter().map(|p| cpu_ns(*p)).sum::<u64>());
    std::thread::sleep(window);
    let (after, ns1) = (traffic(), pids.iter().map(|p| cpu_ns(*p)).sum::<u64>());
    let secs = t0.elapsed().as_secs_f64();
    let mut agents = agents;
    let (crash, leave) = failures(&mut agents);
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
        health_sent: per(|t| t.health_sent_bytes),
        health_received: per(|t| t.health_received_bytes),
        cpu_pct: cpu_pct(ns1.saturating_sub(ns0), secs) / n as f64,
        crash,
        leave,
    }
}

/// kill -9 of the last agent, then SIGTERM of the one before: how long until
/// every other agent logged each (`member down`, `member left`).
fn failures(agents: &mut [Agent]) -> (Option<Duration>, Option<Duration>) {
    let n = agents.len();
    let seen_by_all = |agents: &[Agent], who: &str, event: &str, since: Instant, skip: &[usize]| {
        let mut last = since;
        for (i, a) in agents.iter().enumerate().filter(|(i, _)| !skip.contains(i)) {
            let _ = i;
            last = last.max(a.wait_for_after(&member(event, who), since, Duration::from_secs(15))?);
        }
        Some(last - since)
    };
    let crashed = agents[n - 1].name.clone();
    let t = agents[n - 1].sigkill();
    let crash = seen_by_all(agents, &crashed, "down", t, &[n - 1]);
    let left = agents[n - 2].name.clone();
    let t = agents[n - 2].sigterm();
    let leave = seen_by_all(agents, &left, "left", t, &[n - 1, n - 2]);
    (crash, leave)
}

/// The memberlist reference peers.
mod memberlist {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use base64::Engine as _;

    use super::Mode;
    use crate::common::free_tcp_port;

    const GOPATH: &str = "/usr/share/gocode";

    /// `Config.SecretKey` of an encrypted run: 32 bytes, AES-256-GCM (the
    /// strongest memberlist offers; herd's XChaCha20 key is 32 bytes too).
    const SECRET_KEY: &[u8; 32] = b"herd scale bench: AES-256-GCM k.";

    /// A node's "leave" events as they are read: (who, when).
    type Leaves = Arc<Mutex<Vec<(String, Instant)>>>;

    pub struct Figures {
        pub sent: f64,
        pub received: f64,
        pub sent_bytes: f64,
        pub received_bytes: f64,
        pub crash: Option<Duration>,
        pub leave: Option<Duration>,
        /// Per node, percent of one core over the window.
        pub cpu_pct: f64,
        /// Per node, mean VmRSS at the end of the window.
        pub rss_kib: f64,
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

    /// `n` memberlist nodes joined into one cluster, encrypting with
    /// [`SECRET_KEY`] or not as `mode` says; per node per second over
    /// `window` once all see `n` members (UDP datagrams; bytes include the
    /// TCP push-pull syncs; all of them as sent, encrypted or not).
    pub fn measure(bin: &Path, n: usize, window: Duration, mode: Mode) -> Figures {
        let key = base64::engine::general_purpose::STANDARD.encode(SECRET_KEY);
        let ports: Vec<u16> = (0..n).map(|_| free_tcp_port()).collect();
        let latest: Vec<Arc<Mutex<Option<serde_json::Value>>>> = (0..n).map(|_| Arc::default()).collect();
        // Each node's "leave" events: (who, when read).
        let leaves: Vec<Leaves> = (0..n).map(|_| Arc::default()).collect();
        let mut children = Vec::new();
        for i in 0..n {
            let mut cmd = Command::new(bin);
            cmd.args(["-name", &format!("m{i:02}"), "-port", &ports[i].to_string()]);
            if i > 0 {
                cmd.args(["-join", &format!("127.0.0.1:{}", ports[0])]);
            }
            if mode == Mode::Encrypted {
                cmd.args(["-key", &key]);
            }
            let mut child =
                cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("memberlist-peer");
            let stdout = child.stdout.take().expect("piped");
            let slot = Arc::clone(&latest[i]);
            let left = Arc::clone(&leaves[i]);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                    if v.get("members").is_some() {
                        *slot.lock().unwrap() = Some(v);
                    } else if v["event"] == "leave" {
                        let who = v["node"].as_str().unwrap_or_default().to_owned();
                        left.lock().unwrap().push((who, Instant::now()));
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
        let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
        let ns = || pids.iter().map(|p| crate::procfs::cpu_ns(*p)).sum::<u64>();
        let (t0, ns0) = (Instant::now(), ns());
        let before = sample();
        std::thread::sleep(window);
        let after = sample();
        let cpu_pct = crate::procfs::cpu_pct(ns().saturating_sub(ns0), t0.elapsed().as_secs_f64()) / n as f64;
        let rss_kib =
            pids.iter().filter_map(|p| crate::procfs::status_kib(*p, "VmRSS")).sum::<u64>() as f64 / n as f64;
        // A crash (SIGKILL of the last), then a graceful leave (SIGTERM of
        // the one before): until every other node has printed its leave.
        let seen_by_all = |who: &str, since: Instant, skip: &[usize]| {
            let deadline = since + Duration::from_secs(15);
            loop {
                let at: Option<Vec<Instant>> = (0..n)
                    .filter(|i| !skip.contains(i))
                    .map(|i| {
                        leaves[i]
                            .lock()
                            .unwrap()
                            .iter()
                            .find(|(w, t)| w == who && *t >= since)
                            .map(|(_, t)| *t)
                    })
                    .collect();
                if let Some(at) = at {
                    return at.into_iter().max().map(|t| t - since);
                }
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let t = Instant::now();
        let _ = children[n - 1].kill();
        let crash = seen_by_all(&format!("m{:02}", n - 1), t, &[n - 1]);
        let t = Instant::now();
        let _ = Command::new("kill").arg("-TERM").arg(children[n - 2].id().to_string()).status();
        let leave = seen_by_all(&format!("m{:02}", n - 2), t, &[n - 1, n - 2]);
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
            crash,
            leave,
            cpu_pct,
            rss_kib,
        }
    }
}
