//! Cost: the instructions an agent executes, projected onto the smallest Pi.
//!
//! - **idle**: one agent of a 4-agent cluster at the shipped defaults
//!   (multicast, a secret, `hold = "100ms"`, telemetry every 10 s, probes
//!   every 1 s) runs under `valgrind --tool=callgrind` for the idle window
//!   (60 s); its instructions ÷ seconds. Its counters are zeroed once the
//!   cluster has settled, so start-up is not counted.
//! - **per pass**: the same with `hold = "0ms"`: the agent under callgrind
//!   is the slowest, so the relay runs at its pace and nearly all it does is
//!   passes; its instructions ÷ the baton gauges it sent. The reference is a
//!   node of the raw UDP ring (receive, add one, send) under callgrind.
//! - **on the Pis' own instruction sets**: callgrind runs x86_64 only, and
//!   instruction counts differ between instruction sets (32-bit ARM needs two
//!   instructions for each 64-bit add). So the armv6 build runs under
//!   `qemu-arm-static -cpu arm1176` and the aarch64 build under
//!   `qemu-aarch64-static -cpu cortex-a72`, one instruction per translation
//!   block (`-singlestep`) with every block's execution logged (`-d
//!   exec,nochain`): the log's lines are the ARM instructions executed. qemu-
//!   user cannot set IP_MULTICAST_IF, so this cluster uses static discovery,
//!   which sends each heartbeat to every peer instead of one multicast: a
//!   little more work than the defaults, so the projection errs high.
//!
//! Projection: share of a core = instructions/s ÷ (clock × instructions per
//! cycle). The IPCs are assumptions, stated in the rows: the Pi Zero's
//! ARM1176JZF-S is single-issue (at most 1 instruction a cycle; ARM1176JZF-S
//! TRM, "Pipeline stages"), assumed 0.33 for its small caches, slow SDRAM and
//! branchy code; the Pi 4's Cortex-A72 is 3-wide out of order, assumed 1.0.
//! Kernel work (the UDP stack, epoll, timers) is in neither count.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Agent, Cluster, Spec, Statsd, free_udp_port, gauges, member, toml_str};
use crate::{Row, Setup};

/// The target (benches/README.md): at the defaults, at most this share of a
/// Pi Zero core.
const PI_ZERO_TARGET_PCT: f64 = 0.5;
const PI_ZERO_HZ: f64 = 1.0e9;
const PI_ZERO_IPC: f64 = 0.33;
const PI_4_HZ: f64 = 1.5e9;
const PI_4_IPC: f64 = 1.0;
pub const ARMV6: &str = "target/arm-unknown-linux-musleabihf/release/herd";
pub const AARCH64: &str = "target/aarch64-unknown-linux-musl/release/herd";
const SETTLE: Duration = Duration::from_secs(10);

pub fn run(s: &Setup, rows: &mut Vec<Row>) {
    let window = s.idle;
    let pass_window = if s.quick { Duration::from_secs(3) } else { Duration::from_secs(20) };
    if !installed("valgrind") || !installed("callgrind_control") {
        rows.push(unavailable("instructions (callgrind)", "apt-get install valgrind"));
    } else {
        let idle = idle_x86(&s.herd, window, s.profiles.as_deref());
        rows.push(Row {
            section: "cost",
            figure: format!(
                "idle instructions/s, 1 of 4 agents, defaults, {} s (x86_64, callgrind)",
                window.as_secs()
            ),
            value: format!("{:.0}", idle),
            target: "-".into(),
            reference: "-".into(),
            ratio: None,
            met: None,
        });
        let (per_pass, passes) = per_pass_x86(&s.herd, pass_window, s.profiles.as_deref());
        let hop = ring_hop_x86();
        rows.push(Row {
            section: "cost",
            figure: format!("instructions per baton pass, hold 0ms, secret ({passes} passes, x86_64)"),
            value: format!("{per_pass:.0}"),
            target: "-".into(),
            reference: format!("raw UDP ring, per hop: {hop:.0}"),
            ratio: Some(per_pass / hop),
            met: None,
        });
    }
    for (arch, path, qemu, cpu, hz, ipc, pi) in [
        (
            "armv6",
            s.armv6.as_str(),
            "qemu-arm-static",
            "arm1176",
            PI_ZERO_HZ,
            PI_ZERO_IPC,
            "Pi Zero (ARM1176 at 1 GHz",
        ),
        (
            "aarch64",
            s.aarch64.as_str(),
            "qemu-aarch64-static",
            "cortex-a72",
            PI_4_HZ,
            PI_4_IPC,
            "Pi 4 (Cortex-A72 at 1.5 GHz",
        ),
    ] {
        let qemu_path = Path::new("/usr/bin").join(qemu);
        if !Path::new(path).exists() {
            rows.push(unavailable(
                &format!("idle instructions/s, {arch}"),
                &format!("not built: scripts/dist.sh ({path})"),
            ));
            continue;
        }
        if !qemu_path.exists() {
            rows.push(unavailable(
                &format!("idle instructions/s, {arch}"),
                "apt-get install qemu-user-static",
            ));
            continue;
        }
        let rate = idle_emulated(&s.herd, &qemu_path, cpu, path, window);
        rows.push(Row {
            section: "cost",
            figure: format!(
                "idle instructions/s, {arch} build on {cpu} (qemu), static discovery, {} s",
                window.as_secs()
            ),
            value: format!("{rate:.0}"),
            target: "-".into(),
            reference: "-".into(),
            ratio: None,
            met: None,
        });
        let share = rate / (hz * ipc) * 100.0;
        let is_zero = arch == "armv6";
        rows.push(Row {
            section: "cost",
            figure: format!("share of a {pi}, assumed IPC {ipc}), idle"),
            value: format!("{share:.3} %"),
            target: if is_zero { format!("≤ {PI_ZERO_TARGET_PCT} %") } else { "-".into() },
            reference: if is_zero { "the target".into() } else { "-".into() },
            ratio: is_zero.then(|| share / PI_ZERO_TARGET_PCT),
            met: is_zero.then_some(share <= PI_ZERO_TARGET_PCT),
        });
    }
}

fn installed(tool: &str) -> bool {
    Command::new("which").arg(tool).output().is_ok_and(|o| o.status.success())
}

fn unavailable(figure: &str, why: &str) -> Row {
    Row {
        section: "cost",
        figure: figure.into(),
        value: format!("not measured: {why}"),
        target: "-".into(),
        reference: "-".into(),
        ratio: None,
        met: None,
    }
}

/// `herd` under callgrind, writing to `dir`; `run -c` is appended by the Agent.
fn callgrind(herd: &str, dir: &Path) -> Command {
    let mut c = Command::new("valgrind");
    c.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", dir.join("callgrind.out").display()))
        .arg(herd);
    c
}

/// A callgrind run's instruction total, from the output file's `totals:` line.
fn totals(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("totals: ").or_else(|| l.strip_prefix("summary: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}: no totals line", file.display()))
}

fn control(flag: &str, pid: u32) {
    let out =
        Command::new("callgrind_control").arg(flag).arg(pid.to_string()).output().expect("callgrind_control");
    assert!(out.status.success(), "callgrind_control {flag} {pid}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Instructions psa executes over `window`, counters zeroed at its start;
/// and when that window began and ended. With `keep`, the window's profile
/// is copied there (to read by function with `callgrind_annotate`).
fn measured_window(
    psa: &Agent,
    dir: &Path,
    window: Duration,
    keep: Option<PathBuf>,
) -> (u64, Instant, Instant) {
    control("-z", psa.pid());
    let t0 = Instant::now();
    std::thread::sleep(window);
    control("-d", psa.pid());
    let t1 = Instant::now();
    let out = dir.join("callgrind.out.1");
    if let Some(keep) = keep {
        std::fs::create_dir_all(keep.parent().expect("a directory")).expect("--profiles DIR");
        std::fs::copy(&out, &keep).unwrap_or_else(|e| panic!("copy the profile to {}: {e}", keep.display()));
        eprintln!("cost: kept {} (callgrind_annotate --inclusive=yes {0})", keep.display());
    }
    (totals(&out), t0, t1)
}

/// A 4-agent cluster, psa started by `psa`, the others native; all of
/// `tune`'s spec, reporting to `statsd`. Returned once psa sees the others.
fn cluster(tag: &str, herd: &str, statsd: &Statsd, tune: impl Fn(Spec) -> Spec, psa: Command) -> Vec<Agent> {
    let cluster = Cluster::new(tag);
    let spec = |name: &str| {
        tune(cluster.node(name).secret("cost secret").set("statsd", "address", &statsd.address()))
    };
    let mut agents = vec![Agent::start_with(&spec("psa"), psa)];
    for name in ["psb", "psc", "psd"] {
        agents.push(Agent::start_with(&spec(name), Command::new(herd)));
    }
    for other in ["psb", "psc", "psd"] {
        agents[0].expect(&member("up", other), Duration::from_secs(60));
    }
    agents
}

fn idle_x86(herd: &str, window: Duration, profiles: Option<&Path>) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let statsd = Statsd::start();
    let agents = cluster(
        "cost-idle",
        herd,
        &statsd,
        |s| s.set("baton", "hold", &toml_str("100ms")),
        callgrind(herd, dir.path()),
    );
    std::thread::sleep(SETTLE);
    let keep = profiles.map(|p| p.join("idle.callgrind.out"));
    let (ir, t0, t1) = measured_window(&agents[0], dir.path(), window, keep);
    ir as f64 / (t1 - t0).as_secs_f64()
}

/// (instructions per pass, passes counted).
fn per_pass_x86(herd: &str, window: Duration, profiles: Option<&Path>) -> (f64, usize) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let statsd = Statsd::start();
    let agents = cluster("cost-pass", herd, &statsd, |s| s, callgrind(herd, dir.path()));
    agents[0].wait_for("baton started", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let keep = profiles.map(|p| p.join("pass.callgrind.out"));
    let (ir, t0, t1) = measured_window(&agents[0], dir.path(), window, keep);
    drop(agents);
    let passes =
        gauges(&statsd, "").iter().filter(|(at, _, host)| host == "psa" && *at >= t0 && *at <= t1).count();
    (ir as f64 / passes.max(1) as f64, passes)
}

/// Instructions per hop of one node of a 2-node raw UDP ring under callgrind
/// (its start-up spread over 20,000 hops).
fn ring_hop_x86() -> f64 {
    const HOPS: u64 = 40_000;
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("callgrind.out");
    let (a, b) = (free_udp_port(), free_udp_port());
    let exe = std::env::current_exe().expect("the suite's own path");
    let mut measured = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args(["ring-hops", &b.to_string(), &a.to_string(), "0", &HOPS.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("valgrind");
    let mut ready = [0u8; 6];
    measured.stdout.as_mut().expect("piped").read_exact(&mut ready).expect("ring node ready");
    let first = Command::new(&exe)
        .args(["ring-hops", &a.to_string(), &b.to_string(), "1", &HOPS.to_string()])
        .status()
        .expect("ring node");
    assert!(first.success());
    assert!(measured.wait().expect("valgrind").success());
    totals(&out) as f64 / (HOPS / 2) as f64
}

/// `ring-hops <my port> <next port> <first> <hops>`: a raw ring node that
/// receives the counter, adds one and sends it on until it reaches `hops`,
/// then exits (the suite's own process, for [`ring_hop_x86`]).
pub fn ring_hops(args: &[String]) {
    let port: u16 = args[0].parse().unwrap();
    let next = std::net::SocketAddr::from(([127, 0, 0, 1], args[1].parse::<u16>().unwrap()));
    let first = args[2] == "1";
    let hops: u64 = args[3].parse().unwrap();
    let sock = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    if first {
        sock.send_to(&0u64.to_be_bytes(), next).unwrap();
    } else {
        println!("ready!");
    }
    let mut buf = [0u8; 64];
    loop {
        let Ok(n) = sock.recv(&mut buf) else { return };
        let v = u64::from_be_bytes(buf[..8.min(n)].try_into().unwrap_or([0; 8])) + 1;
        let _ = sock.send_to(&v.to_be_bytes(), next);
        if v + 1 >= hops {
            return;
        }
    }
}

/// Idle instructions/s of `binary` under `qemu -cpu cpu` as psa of a
/// static-discovery cluster of 4 at the defaults otherwise.
fn idle_emulated(herd: &str, qemu: &Path, cpu: &str, binary: &str, window: Duration) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let fifo = dir.path().join("exec.log");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    // The reader counts the log's lines (one per instruction) as they come.
    let count = Arc::new(AtomicU64::new(0));
    let reader = {
        let (fifo, count) = (fifo.clone(), Arc::clone(&count));
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(&fifo).expect("open the fifo");
            let mut buf = vec![0u8; 1 << 20];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let lines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                count.fetch_add(lines, Ordering::Relaxed);
            }
        })
    };
    let statsd = Statsd::start();
    let names = ["psa", "psb", "psc", "psd"];
    let ip = |i: usize| format!("127.0.0.{}", 2 + i);
    let cluster = Cluster::new(&format!("cost-{cpu}"));
    let port = cluster.port;
    let hosts = format!(
        "[{}]",
        (0..4).map(|i| toml_str(&format!("{}:{port}", ip(i)))).collect::<Vec<_>>().join(", ")
    );
    let spec = |i: usize| {
        cluster
            .node(names[i])
            .gossip("strategy", &toml_str("static"))
            .gossip("hosts", &hosts)
            .gossip("if_addr", &toml_str(&ip(i)))
            .secret("cost secret")
            .set("baton", "hold", &toml_str("100ms"))
            .set("statsd", "address", &statsd.address())
    };
    let mut emulated = Command::new(qemu);
    emulated.args(["-cpu", cpu, "-singlestep", "-d", "exec,nochain", "-D"]).arg(&fifo).arg(binary);
    let mut agents = vec![Agent::start_with(&spec(0), emulated)];
    for i in 1..4 {
        agents.push(Agent::start_with(&spec(i), Command::new(herd)));
    }
    for other in &names[1..] {
        agents[0].expect(&member("up", other), Duration::from_secs(60));
    }
    std::thread::sleep(SETTLE);
    let (c0, t0) = (count.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(window);
    let (c1, t1) = (count.load(Ordering::Relaxed), Instant::now());
    drop(agents);
    let _ = reader.join();
    (c1 - c0) as f64 / (t1 - t0).as_secs_f64()
}
