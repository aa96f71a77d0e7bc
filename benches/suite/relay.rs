//! Baton throughput: a raw UDP ring of N processes on loopback (the physical
//! reference: each process receives a counter, increments it and sends it on,
//! nothing else) against N `herd run` agents at `hold = "0ms"` with the gauge
//! sent at every pass, with and without a secret.
//!
//! This machine has slow spells: for seconds at a time every process runs at
//! about half its instructions per cycle (the same instruction count per pass,
//! ring and herd alike: a neighbour on the host, not our code). A ring
//! measured a minute away from its herd run can land in another spell, so the
//! herd cluster is started once per configuration and paused (SIGSTOP) while
//! the ring runs: ring and herd windows alternate a second apart, each
//! round's ratio is taken from one adjacent pair, and the median of the
//! rounds is reported with their spread.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::free_udp_port;
use crate::procfs::cpu_ns;
use crate::{Row, Setup, median};

/// Before the first window of a freshly started cluster or ring.
const WARMUP: Duration = Duration::from_secs(2);
/// After a paused cluster resumes (a pass may have waited for `pass_timeout`).
const SETTLE: Duration = Duration::from_millis(500);
/// Before the first window of a ring started between two herd windows.
const RING_WARMUP: Duration = Duration::from_millis(300);

pub fn run(s: &Setup, rows: &mut Vec<Row>) {
    for &n in &s.relay_nodes {
        for secret in [true, false] {
            let label = if secret { "secret" } else { "no secret" };
            let (mut rings, mut rates, mut ratios, mut cpus) = (vec![], vec![], vec![], vec![]);
            let cluster = Relay::start(&s.herd, n, secret);
            for round in 1..=s.rounds {
                cluster.pause(true);
                let ring = raw_ring(n, s.window, RING_WARMUP);
                cluster.pause(false);
                std::thread::sleep(SETTLE);
                let (rate, cpu) = cluster.measure(s.window);
                eprintln!("  relay {n} nodes, {label}, round {round}: ring {ring:.0}/s, herd {rate:.0}/s");
                rings.push(ring);
                rates.push(rate);
                ratios.push(rate / ring);
                cpus.push(cpu);
            }
            drop(cluster);
            let (lo, hi) = spread(&ratios);
            let ratio = median(&mut ratios);
            let cpu = if secret { format!(", {:.0} % CPU/agent", median(&mut cpus)) } else { String::new() };
            let rate = median(&mut rates);
            // Passes are counted as the Elixir baton server counted them:
            // every lap includes its holder, so one pass in n is to itself
            // and sends nothing.
            // The ring sends a datagram for every hop.
            let hops = rate * (n - 1) as f64 / n as f64;
            rows.push(Row {
                section: "throughput",
                figure: format!("baton passes/s, {n} agents, {label}"),
                value: format!(
                    "{rate:.0}/s ({hops:.0} hops/s between agents){cpu}; round ratios {lo:.2}-{hi:.2}"
                ),
                target: "≥ 0.6 × ring".into(),
                reference: format!("raw UDP ring of {n}: {:.0}/s", median(&mut rings)),
                ratio: Some(ratio),
                met: Some(ratio >= 0.6),
            });
        }
    }
}

/// The lowest and highest of the per-round ratios: on this 2-vCPU machine
/// the scheduler's placement can halve a round's rate, so the spread is
/// shown beside the median.
fn spread(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)))
}

/// One process of the raw ring: `ring-node <my port> <next port> <first> <window ms> <warm-up ms>`.
/// The first node injects the counter and reports the rate over the window.
pub fn ring_node(args: &[String]) {
    let port: u16 = args[0].parse().unwrap();
    let next: u16 = args[1].parse().unwrap();
    let first = args[2] == "1";
    let window = Duration::from_millis(args[3].parse().unwrap());
    let warmup = Duration::from_millis(args[4].parse().unwrap());
    let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    // Not connected: a connected UDP socket only accepts datagrams from its
    // peer, and this one receives from the previous node but sends to the next.
    let next = std::net::SocketAddr::from(([127, 0, 0, 1], next));
    let mut buf = [0u8; 64];
    let start = Instant::now();
    let mut marks: Option<(Instant, u64)> = None;
    if first {
        // Started last, once every other node said it is bound.
        sock.send_to(&0u64.to_be_bytes(), next).unwrap();
    } else {
        println!("ready");
    }
    loop {
        let n = sock.recv(&mut buf).expect("ring receive");
        let v = u64::from_be_bytes(buf[..8.min(n)].try_into().unwrap_or([0; 8])) + 1;
        let _ = sock.send_to(&v.to_be_bytes(), next);
        if first {
            let now = Instant::now();
            match marks {
                None if now - start >= warmup => marks = Some((now, v)),
                Some((t0, v0)) if now - t0 >= window => {
                    println!("{}", (v - v0) as f64 / (now - t0).as_secs_f64());
                    return;
                }
                _ => {}
            }
        }
    }
}

fn raw_ring(n: usize, window: Duration, warmup: Duration) -> f64 {
    let ports: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
    let exe = std::env::current_exe().unwrap();
    let spawn = |i: usize| {
        Command::new(&exe)
            .args([
                "ring-node",
                &ports[i].to_string(),
                &ports[(i + 1) % n].to_string(),
                if i == 0 { "1" } else { "0" },
                &window.as_millis().to_string(),
                &warmup.as_millis().to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut children: Vec<Child> = (1..n).map(spawn).collect();
    for c in &mut children {
        let mut ready = String::new();
        BufReader::new(c.stdout.as_mut().unwrap()).read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready");
    }
    let first = spawn(0);
    let out = first.wait_with_output().unwrap();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("ring rate")
}

/// `n` agents reporting to a StatsD listener here; a rate is the growth of
/// the highest `baton:` gauge over a window.
struct Relay {
    agents: Vec<Child>,
    high: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Relay {
    fn start(herd: &str, n: usize, secret: bool) -> Relay {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        listener.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let statsd = listener.local_addr().unwrap();
        let high = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (high, stop) = (high.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(len) = listener.recv(&mut buf) else {
                        continue;
                    };
                    // An agent batches its gauges in the order it sends them, so
                    // the last baton line of a datagram holds its highest counter:
                    // read only that one, to keep this listener's CPU (which the
                    // ring does not have to share) small.
                    let data = &buf[..len];
                    let last = data.split(|b| *b == b'\n').rev().find_map(|l| l.strip_prefix(b"baton:"));
                    if let Some(rest) = last {
                        let digits = rest.iter().take_while(|b| b.is_ascii_digit());
                        let v = digits.fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
                        high.fetch_max(v, Ordering::Relaxed);
                    }
                }
            })
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let cluster = format!("bench{}", std::process::id());
        let secret = if secret { "secret = \"bench secret\"\n" } else { "" };
        let mut agents: Vec<Child> = Vec::new();
        for i in 0..n {
            let name = format!("ps{}", (b'a' + i as u8) as char);
            let path = dir.path().join(format!("{name}.toml"));
            let config = format!(
                "[node]\nname = \"{name}\"\ncluster = \"{cluster}\"\n\
                 [gossip]\nport = {port}\nmulticast_if = \"127.0.0.1\"\ndata_port = 0\n{secret}\
                 [baton]\nhold = \"0ms\"\n[statsd]\naddress = \"{statsd}\"\n[status]\nlisten = \"\"\n[log]\nlevel = \"error\"\n"
            );
            std::fs::write(&path, config).unwrap();
            let child = Command::new(herd)
                .args(["run", "-c"])
                .arg(&path)
                .env_remove("RUST_LOG")
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            agents.push(child);
        }
        // The baton starts two heartbeats after the agents, then warms up.
        let began = Instant::now();
        while high.load(Ordering::Relaxed) == 0 && began.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(WARMUP);
        Relay { agents, high, stop, reader: Some(reader), _dir: dir }
    }

    /// SIGSTOP (or SIGCONT) every agent: a paused cluster leaves the
    /// machine to the ring. Paused for about a second, less than
    /// `suspect_after`, so nobody is suspected.
    fn pause(&self, stop: bool) {
        let signal = if stop { "-STOP" } else { "-CONT" };
        let pids: Vec<String> = self.agents.iter().map(|c| c.id().to_string()).collect();
        let ok = Command::new("kill").arg(signal).args(&pids).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pids:?} failed");
    }

    /// (passes/s, CPU % per agent) over `window`.
    fn measure(&self, window: Duration) -> (f64, f64) {
        let pids: Vec<u32> = self.agents.iter().map(Child::id).collect();
        let cpu0: u64 = pids.iter().map(|p| cpu_ns(*p)).sum();
        let (t0, v0) = (Instant::now(), self.high.load(Ordering::Relaxed));
        std::thread::sleep(window);
        let (t1, v1) = (Instant::now(), self.high.load(Ordering::Relaxed));
        let cpu1: u64 = pids.iter().map(|p| cpu_ns(*p)).sum();
        let secs = (t1 - t0).as_secs_f64();
        let cpu_pct = crate::procfs::cpu_pct(cpu1 - cpu0, secs) / pids.len() as f64;
        ((v1 - v0) as f64 / secs, cpu_pct)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for c in &mut self.agents {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
