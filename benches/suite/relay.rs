//! Baton throughput benchmark: in one invocation, a raw UDP ring of N
//! processes on loopback (the physical reference: each process receives a
//! counter, increments it and sends it on, nothing else) and N `herd run`
//! agents at `hold = "0ms"` with a secret and the gauge sent at every pass.
//! Prints both rates and their ratio (PRODUCT.md target: herd ≥ 0.6 × ring).
//!
//!   cargo bench --bench baton                      # 4 nodes, 5 rounds of 5 s each
//!   cargo bench --bench baton -- --nodes 8 --seconds 10 --rounds 5
//!   cargo bench --bench baton -- --herd /path/to/other/herd   # compare builds
//!
//! Figures, not assertions: this machine is noisy, so the two are measured in
//! alternating rounds and the medians compared.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WARMUP: Duration = Duration::from_secs(2);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("ring-node") {
        return ring_node(&args[1..]);
    }
    let mut nodes = 4usize;
    let mut seconds = 5u64;
    let mut rounds = 5usize;
    let mut herd = env!("CARGO_BIN_EXE_herd").to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--nodes" => nodes = it.next().and_then(|v| v.parse().ok()).expect("--nodes N"),
            "--seconds" => seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--herd" => herd = it.next().expect("--herd PATH").clone(),
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            _ => {} // cargo bench passes --bench
        }
    }
    let window = Duration::from_secs(seconds);
    println!(
        "baton throughput: {nodes} nodes on loopback; {rounds} rounds of raw ring then herd, \
         {seconds} s each after {WARMUP:?} warm-up; medians"
    );
    let (mut rings, mut herds, mut cpus, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let ring = raw_ring(nodes, window);
        let (relay, cpu) = herd_relay(&herd, nodes, window);
        println!("  round {round}: ring {ring:>9.0}/s   herd {relay:>9.0}/s   ratio {:.2}", relay / ring);
        rings.push(ring);
        herds.push(relay);
        cpus.push(cpu);
        ratios.push(relay / ring);
    }
    let (ring, relay, cpu) = (median(&mut rings), median(&mut herds), median(&mut cpus));
    println!("  raw UDP ring ({nodes} processes)                 {ring:>10.0} passes/s");
    println!(
        "  herd agents (hold 0ms, secret, gauge/pass)     {relay:>10.0} passes/s   ({cpu:.0} % CPU per agent)"
    );
    // The ratio of each round (both measured within seconds of each other),
    // then the median: the scheduler's placement of the processes on the
    // cores shifts both rates from one minute to the next.
    let ratio = median(&mut ratios);
    println!("  ratio herd / raw ring (median of rounds)       {ratio:>10.2}   (target >= 0.60)");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One process of the raw ring: `ring-node <my port> <next port> <first> <window ms>`.
/// The first node injects the counter and reports the rate over the window.
fn ring_node(args: &[String]) {
    let port: u16 = args[0].parse().unwrap();
    let next: u16 = args[1].parse().unwrap();
    let first = args[2] == "1";
    let window = Duration::from_millis(args[3].parse().unwrap());
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
                None if now - start >= WARMUP => marks = Some((now, v)),
                Some((t0, v0)) if now - t0 >= window => {
                    println!("{}", (v - v0) as f64 / (now - t0).as_secs_f64());
                    return;
                }
                _ => {}
            }
        }
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn raw_ring(n: usize, window: Duration) -> f64 {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let exe = std::env::current_exe().unwrap();
    let spawn = |i: usize| {
        Command::new(&exe)
            .args([
                "ring-node",
                &ports[i].to_string(),
                &ports[(i + 1) % n].to_string(),
                if i == 0 { "1" } else { "0" },
                &window.as_millis().to_string(),
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
    children.push(spawn(0));
    let first = children.pop().unwrap();
    let out = first.wait_with_output().unwrap();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("ring rate")
}

/// Runs `n` agents reporting to a StatsD listener here; the rate is the growth
/// of the highest `baton:` gauge over the window.
fn herd_relay(herd: &str, n: usize, window: Duration) -> (f64, f64) {
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
    let port = free_port();
    let cluster = format!("bench{}", std::process::id());
    let agents: Mutex<Vec<Child>> = Mutex::new(Vec::new());
    for i in 0..n {
        let name = format!("ps{}", (b'a' + i as u8) as char);
        let path = dir.path().join(format!("{name}.toml"));
        let config = format!(
            "[node]\nname = \"{name}\"\ncluster = \"{cluster}\"\n\
             [gossip]\nport = {port}\nmulticast_if = \"127.0.0.1\"\ndata_port = 0\nsecret = \"bench secret\"\n\
             [baton]\nhold = \"0ms\"\n[statsd]\naddress = \"{statsd}\"\n[status]\nlisten = \"\"\n[log]\nlevel = \"warn\"\n"
        );
        std::fs::write(&path, config).unwrap();
        let child = Command::new(herd)
            .args(["run", "-c"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        agents.lock().unwrap().push(child);
    }
    // The baton starts two heartbeats after the agents, then warms up.
    let began = Instant::now();
    while high.load(Ordering::Relaxed) == 0 && began.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(WARMUP);
    let pids: Vec<u32> = agents.lock().unwrap().iter().map(Child::id).collect();
    let cpu0: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let (t0, v0) = (Instant::now(), high.load(Ordering::Relaxed));
    std::thread::sleep(window);
    let (t1, v1) = (Instant::now(), high.load(Ordering::Relaxed));
    let cpu1: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    for c in agents.lock().unwrap().iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let secs = (t1 - t0).as_secs_f64();
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cpu_pct = (cpu1 - cpu0) as f64 / ticks_per_sec / secs / n as f64 * 100.0;
    ((v1 - v0) as f64 / secs, cpu_pct)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}
