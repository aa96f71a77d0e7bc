//! Harness for the multi-process tests: runs real `herd` processes on
//! loopback and watches their logs.
//!
//! - [`free_udp_port`] and [`Cluster::new`] give every test its own gossip
//!   port and cluster name, so tests running in parallel threads never hear
//!   each other; [`free_tcp_port`] gives status endpoints theirs (ports.rs).
//! - [`Spec`] builds a node's config file; [`Agent::start`] writes it into a
//!   temporary directory and spawns `herd run -c` on it, with `RUST_LOG` set
//!   explicitly so the caller's environment cannot change what is logged.
//! - A thread per agent reads its stderr line by line, stamping each line with
//!   the [`Instant`] it arrived; [`Agent::wait_for`] returns that instant, so
//!   tests measure join and detection times from the logs themselves.
//! - [`wait_until`] polls any condition; [`Statsd`] receives the agents'
//!   metrics and [`gauges`] reads the baton relay from them, strictly
//!   (statsd.rs).
//! - Agents are killed on drop, so a failing test leaves no processes behind;
//!   when the drop happens during a panic, each agent prints its whole log
//!   (captured by the test harness and shown with the failure), which makes a
//!   CI failure diagnosable without rerunning it.
//!
//! Must not: depend on timing finer than the agent's own (the callers choose
//! timeouts from the configured heartbeat), or leave children running.

// Each test binary (`membership`, `cli`) uses a different part of this module.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

mod ports;
mod statsd;

// As with dead code: each test binary uses some of these.
#[allow(unused_imports)]
pub use ports::{free_tcp_port, free_udp_port};
#[allow(unused_imports)]
pub use statsd::{Statsd, assert_one_baton, baton_gauge, gauges};

/// The `herd` binary Cargo built for these tests.
pub fn herd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herd")
}

/// A `herd` command with an environment that cannot change its behaviour:
/// explicit log filter, no `$HERD_CONFIG`, no journald mode.
pub fn herd() -> Command {
    let mut cmd = Command::new(herd_bin());
    cmd.env("RUST_LOG", "herd=info")
        .env_remove("HERD_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null());
    cmd
}

/// A random number that differs between calls and between processes
/// (std's `RandomState` is randomly keyed), without a `rand` dev-dependency.
fn random_u64() -> u64 {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    RandomState::new().hash_one(CALLS.fetch_add(1, Ordering::Relaxed))
}

/// A cluster name no other test (in this or another process) uses: clusters
/// are bound into the datagram key, so this isolates tests even if two ever
/// shared a port.
pub fn unique_cluster(tag: &str) -> String {
    format!("{tag}-{}-{:x}", std::process::id(), random_u64() & 0xffff_ffff)
}

/// One test's cluster: its name and gossip port, shared by its agents.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub port: u16,
}

impl Cluster {
    pub fn new(tag: &str) -> Cluster {
        Cluster { name: unique_cluster(tag), port: free_udp_port() }
    }

    /// A node of this cluster on loopback multicast (the agent's default
    /// strategy with `multicast_if = "127.0.0.1"`).
    pub fn node(&self, name: &str) -> Spec {
        Spec::new(name, &self.name, self.port)
    }
}

/// psa, psb and psc of a new cluster on loopback, psa serving `[status]
/// listen` on a free TCP port, all three relaying at `hold = "50ms"` and
/// reporting to one StatsD listener: what the status endpoint's tests and the
/// browser test read. Returned once psa has logged its endpoint listening
/// and both peers up.
pub struct StatusTrio {
    pub agents: Vec<Agent>,
    /// psa's status endpoint.
    pub addr: SocketAddr,
    _statsd: Statsd,
}

impl StatusTrio {
    /// Starts the three, each node's spec changed by `tune(name, spec)`.
    pub fn start(tag: &str, tune: impl Fn(&str, Spec) -> Spec) -> StatusTrio {
        let cluster = Cluster::new(tag);
        let statsd = Statsd::start();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let agents: Vec<Agent> = ["psa", "psb", "psc"]
            .iter()
            .map(|name| {
                // A paced relay: the tests share two cores with others.
                let spec = cluster.node(name).set("baton", "hold", &toml_str("50ms"));
                let mut spec = tune(name, spec.set("statsd", "address", &statsd.address()));
                if *name == "psa" {
                    spec = spec.set("status", "listen", &toml_str(&addr.to_string()));
                }
                Agent::start(&spec)
            })
            .collect();
        let psa = &agents[0];
        psa.expect("status endpoint listening", Duration::from_secs(5));
        psa.expect(&member("up", "psb"), Duration::from_secs(5));
        psa.expect(&member("up", "psc"), Duration::from_secs(5));
        StatusTrio { agents, addr, _statsd: statsd }
    }

    pub fn psa(&mut self) -> &mut Agent {
        &mut self.agents[0]
    }
}

/// A node's config. Builds the TOML text of a loopback test node; `[gossip]`
/// keys can be added or replaced with [`Spec::gossip`].
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub cluster: String,
    pub port: u16,
    /// `[gossip]` keys other than `port`, as `(key, TOML value)`.
    gossip: Vec<(String, String)>,
    /// Keys of other sections, as `(section, key, TOML value)`.
    other: Vec<(String, String, String)>,
    /// The agent's `RUST_LOG`.
    pub rust_log: String,
}

impl Spec {
    pub fn new(name: &str, cluster: &str, port: u16) -> Spec {
        Spec {
            name: name.to_owned(),
            cluster: cluster.to_owned(),
            port,
            gossip: vec![
                ("multicast_if".into(), toml_str("127.0.0.1")),
                // Several agents share one host: each takes any free data port.
                ("data_port".into(), "0".into()),
            ],
            // The tests relay at full speed unless they say otherwise (the
            // shipped default, 100ms, paces an always-on agent).
            other: vec![("baton".into(), "hold".into(), toml_str("0ms"))],
            rust_log: "herd=info".into(),
        }
    }

    /// Sets `[section] key = value` for a section other than `[gossip]`
    /// (`value` is TOML).
    pub fn set(mut self, section: &str, key: &str, value: &str) -> Spec {
        self.other.retain(|(s, k, _)| !(s == section && k == key));
        self.other.push((section.to_owned(), key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the agent with this `RUST_LOG` (e.g. `"herd=debug"`).
    pub fn log(mut self, filter: &str) -> Spec {
        self.rust_log = filter.to_owned();
        self
    }

    /// Sets `[gossip] key = value`; `value` is TOML (strings need quotes,
    /// see [`toml_str`]).
    pub fn gossip(mut self, key: &str, value: &str) -> Spec {
        self.gossip.retain(|(k, _)| k != key);
        self.gossip.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn secret(self, secret: &str) -> Spec {
        self.gossip("secret", &toml_str(secret))
    }

    /// Reads its keyring from `path` (`[gossip] secret_file`).
    pub fn secret_file(self, path: &std::path::Path) -> Spec {
        self.gossip("secret_file", &toml_str(&path.display().to_string()))
    }

    /// Reports to `statsd`, every 100 ms.
    pub fn statsd(self, statsd: &Statsd) -> Spec {
        self.set("statsd", "address", &statsd.address()).set("statsd", "flush_interval", &toml_str("100ms"))
    }

    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        writeln!(out, "[node]").unwrap();
        writeln!(out, "name = {}", toml_str(&self.name)).unwrap();
        writeln!(out, "cluster = {}", toml_str(&self.cluster)).unwrap();
        for (_, key, value) in self.other.iter().filter(|(s, ..)| s == "node") {
            writeln!(out, "{key} = {value}").unwrap();
        }
        writeln!(out, "\n[gossip]").unwrap();
        writeln!(out, "port = {}", self.port).unwrap();
        for (key, value) in &self.gossip {
            writeln!(out, "{key} = {value}").unwrap();
        }
        // The status endpoint's fixed default port would clash between agents.
        let mut sections: Vec<(&str, Vec<(&str, &str)>)> = vec![("status", vec![("listen", "\"\"")])];
        for (section, key, value) in self.other.iter().filter(|(s, ..)| s != "node") {
            match sections.iter_mut().find(|(s, _)| s == section) {
                Some((_, keys)) => {
                    keys.retain(|(k, _)| k != key);
                    keys.push((key, value));
                }
                None => sections.push((section, vec![(key, value)])),
            }
        }
        for (section, keys) in sections {
            writeln!(out, "\n[{section}]").unwrap();
            for (key, value) in keys {
                writeln!(out, "{key} = {value}").unwrap();
            }
        }
        out
    }
}

/// A TOML basic string (test values never need escapes beyond these).
pub fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `"member <event> member=<name> "`, the start of a member log line, e.g.
/// `member("up", "psb")`. The trailing space (before `addr=`) keeps `psb`
/// from matching `psb2`.
pub fn member(event: &str, name: &str) -> String {
    format!("member {event} member={name} ")
}

/// The value of `key=<digits>` in a log line, e.g. `field(l, "auth")` on
/// `left the cluster rejected=3 auth=3 ...`.
pub fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let digits: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// One line of an agent's stderr and when the reader thread received it.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub text: String,
}

/// An agent's log so far. The reader thread appends and notifies; waiters
/// search the whole history, so a line that arrived before `wait_for` was
/// called still counts, and several waits can examine the same lines (which
/// a consuming channel would not allow without a copy).
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    arrived: Condvar,
}

impl Log {
    /// The state, even if a panicking test thread held the lock: the lines
    /// are still good, and the dump on panic needs them most.
    fn state(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct LogState {
    lines: Vec<Line>,
    /// stderr reached end of file: the process has exited.
    closed: bool,
}

/// A running `herd run` process.
pub struct Agent {
    pub name: String,
    pub spec: Spec,
    child: Child,
    status: Option<ExitStatus>,
    /// When the process was spawned.
    pub spawned: Instant,
    log: Arc<Log>,
    reader: Option<thread::JoinHandle<()>>,
    /// Holds the config file for the life of the process.
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Writes `spec`'s config and spawns `herd run -c` on it.
    pub fn start(spec: &Spec) -> Agent {
        Agent::start_with(spec, herd())
    }

    /// Like [`Agent::start`], with another `herd` command (e.g. an aarch64
    /// build under `qemu-aarch64-static`); `run -c <config>` is appended.
    pub fn start_with(spec: &Spec, mut command: Command) -> Agent {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path: PathBuf = dir.path().join(format!("{}.toml", spec.name));
        std::fs::write(&path, spec.to_toml()).expect("write config");
        let spawned = Instant::now();
        let mut child = command
            .env("RUST_LOG", &spec.rust_log)
            .env_remove("HERD_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .arg("run")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herd run");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Log::default());
        let sink = Arc::clone(&log);
        let reader = thread::Builder::new()
            .name(format!("log-{}", spec.name))
            .spawn(move || {
                for text in BufReader::new(stderr).lines() {
                    let Ok(text) = text else { break };
                    let at = Instant::now();
                    sink.state().lines.push(Line { at, text });
                    sink.arrived.notify_all();
                }
                sink.state().closed = true;
                sink.arrived.notify_all();
            })
            .expect("spawn log reader");
        Agent {
            name: spec.name.clone(),
            spec: spec.clone(),
            child,
            status: None,
            spawned,
            log,
            reader: Some(reader),
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Rewrites the agent's config file with `spec` (it keeps running on
    /// the old one until [`Agent::sighup`]).
    pub fn rewrite_config(&mut self, spec: &Spec) {
        std::fs::write(self._dir.path().join(format!("{}.toml", self.spec.name)), spec.to_toml())
            .expect("rewrite config");
        self.spec = spec.clone();
    }

    /// Writes `text` as the agent's config file, as is (a broken file).
    pub fn write_config_text(&self, text: &str) {
        std::fs::write(self._dir.path().join(format!("{}.toml", self.spec.name)), text)
            .expect("write config");
    }

    /// Sends SIGHUP (`systemctl reload herd`); when it was sent.
    pub fn sighup(&mut self) -> Instant {
        assert!(self.is_running(), "{}: SIGHUP to an exited agent", self.name);
        let at = Instant::now();
        let ok = Command::new("kill")
            .arg("-HUP")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "{}: kill -HUP {} failed", self.name, self.pid());
        at
    }

    /// When the first line containing `pattern` arrived, waiting up to
    /// `timeout` for it; `None` if it did not come (or the process exited
    /// without logging it).
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> Option<Instant> {
        self.wait_for_after(pattern, self.spawned, timeout)
    }

    /// Like [`Agent::wait_for`], but only lines that arrived at or after
    /// `after` count (e.g. a second `member up` after a restart).
    pub fn wait_for_after(&self, pattern: &str, after: Instant, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let mut state = self.log.state();
        loop {
            let hit = state.lines.iter().find(|l| l.at >= after && l.text.contains(pattern));
            if let Some(line) = hit {
                return Some(line.at);
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = self.log.arrived.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// [`Agent::wait_for`], panicking if the line does not come (the agents'
    /// logs are then printed by their `Drop`).
    pub fn expect(&self, pattern: &str, timeout: Duration) -> Instant {
        self.expect_after(pattern, self.spawned, timeout)
    }

    /// [`Agent::wait_for_after`], panicking if the line does not come.
    pub fn expect_after(&self, pattern: &str, after: Instant, timeout: Duration) -> Instant {
        self.wait_for_after(pattern, after, timeout).unwrap_or_else(|| {
            let exited = self.log.state().closed;
            panic!("{}: no log line containing {pattern:?} within {timeout:?} (exited: {exited})", self.name)
        })
    }

    /// Whether a line containing `pattern` has arrived so far.
    pub fn has_line(&self, pattern: &str) -> bool {
        self.lines().iter().any(|l| l.contains(pattern))
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        let state = self.log.state();
        state.lines.iter().map(|l| l.text.clone()).collect()
    }

    /// Every line so far, with its arrival time.
    pub fn log_lines(&self) -> Vec<Line> {
        self.log.state().lines.clone()
    }

    /// When the first line containing `pattern` arrived, if one has.
    pub fn line_at(&self, pattern: &str) -> Option<Instant> {
        self.log.state().lines.iter().find(|l| l.text.contains(pattern)).map(|l| l.at)
    }

    /// The first line containing `pattern`, waiting up to `timeout` for it.
    pub fn line(&self, pattern: &str, timeout: Duration) -> Option<String> {
        self.wait_for(pattern, timeout)?;
        self.lines().into_iter().find(|l| l.contains(pattern))
    }

    /// The data port the agent bound (from its start line).
    pub fn data_port(&self) -> u16 {
        let start = self
            .line("herd started", Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{}: no start line", self.name));
        let addr = start
            .split_whitespace()
            .find_map(|w| w.strip_prefix("data="))
            .unwrap_or_else(|| panic!("{}: no data= in {start:?}", self.name));
        let port = addr.rsplit(':').next().unwrap_or_default();
        port.parse().unwrap_or_else(|_| panic!("{}: bad data address in {start:?}", self.name))
    }

    /// The log so far, each line prefixed with its arrival time relative to
    /// the spawn, for failure messages.
    pub fn dump(&self) -> String {
        let state = self.log.state();
        let mut out = format!("--- log of {} (pid {}) ---\n", self.name, self.child.id());
        for l in &state.lines {
            let t = l.at.saturating_duration_since(self.spawned).as_secs_f64();
            writeln!(out, "  +{t:7.3}s {}", l.text).unwrap();
        }
        if state.closed {
            out.push_str("  (stderr closed)\n");
        }
        out
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.poll_exit().is_none()
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Sends SIGTERM (through `kill(1)`, as an operator or systemd would) and
    /// returns when it was sent.
    pub fn sigterm(&mut self) -> Instant {
        // Never signal a pid that was already reaped: it may belong to another
        // process by now.
        assert!(self.is_running(), "{}: SIGTERM to an exited agent", self.name);
        let at = Instant::now();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "{}: kill -TERM {} failed", self.name, self.pid());
        at
    }

    /// Sends SIGKILL, reaps the process, and returns when it was sent.
    pub fn sigkill(&mut self) -> Instant {
        let at = Instant::now();
        if self.is_running() {
            self.child.kill().expect("SIGKILL");
            self.status = Some(self.child.wait().expect("wait"));
        }
        at
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None`
    /// if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.poll_exit() {
                // Let the reader drain the last lines, so the summary line is
                // in `lines()` when this returns.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.sigkill();
        if thread::panicking() {
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
            eprintln!("{}", self.dump());
        }
    }
}

/// Sends each of `datagrams` from a fresh socket to `127.0.0.1:port`.
pub fn send_garbage(port: u16, datagrams: &[Vec<u8>]) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    for d in datagrams {
        let sent = sock.send_to(d, ("127.0.0.1", port)).expect("send garbage");
        assert_eq!(sent, d.len());
    }
}

/// `n` pseudo-random bytes (a cheap xorshift seeded from [`random_u64`]).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut x = random_u64() | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Prints a line of figures (`LAB | ...`, `FLEET | ...`) where `cargo test`
/// shows it even without `--nocapture`: the harness captures what `println!`
/// prints, not writes to the stdout handle, so CI's log has the figures of
/// every run.
pub fn report_line(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A secret rotation's cluster (README "Rotating the secret"): agents that
/// each read their keyring from a file of their own, relaying every 20 ms
/// and reporting to a StatsD listener.
pub struct KeyFiles {
    pub cluster: Cluster,
    pub statsd: Statsd,
    dir: tempfile::TempDir,
}

impl KeyFiles {
    pub fn new(tag: &str) -> KeyFiles {
        let cluster = Cluster::new(tag);
        let statsd = Statsd::start();
        KeyFiles { cluster, statsd, dir: tempfile::tempdir().expect("temporary directory") }
    }

    /// The file agent `name` reads its keyring from.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.keys"))
    }

    /// Writes `keys` (one a line, the first seals) to `name`'s file.
    pub fn write(&self, name: &str, keys: &str) {
        std::fs::write(self.path(name), keys).unwrap();
    }

    pub fn spec(&self, name: &str) -> Spec {
        self.cluster
            .node(name)
            .secret_file(&self.path(name))
            .set("baton", "hold", &toml_str("20ms"))
            .statsd(&self.statsd)
    }
}

/// Until every agent of `agents` has logged `member up` for every other
/// (each within `timeout`): a full mesh.
pub fn expect_mesh(agents: &[Agent], timeout: Duration) {
    for a in agents {
        for other in agents.iter().filter(|o| o.name != a.name) {
            a.expect(&member("up", &other.name), timeout);
        }
    }
}

/// Whether this run is CI's (`CI=true`): .ci/run installs every tool the
/// tests need, so there a missing one is a failure, never a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether a test that needs more than Rust may go on. `missing` says what
/// this machine lacks for it (`None`: nothing): then the test is skipped with
/// that printed, or fails under CI (see [`under_ci`]).
pub fn may_run(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else { return true };
    assert!(!under_ci(), "CI=true, but {test} cannot run: {why} (.ci/run must provide it)");
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Whether the tests run as root (the lab and the fleet need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Waits up to `timeout` for `done`, polling every 20 ms; whether it came
/// (`done` is asked once more when the time is up).
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` on a thread that joined the network namespace at `path`
/// (`/var/run/netns/NAME`, or `/proc/PID/ns/net`) and returns its result.
/// Sockets `f` creates belong to that namespace for good.
pub fn in_netns_at<T: Send>(path: &str, f: impl FnOnce() -> T + Send) -> T {
    use std::os::fd::AsRawFd;
    thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a valid namespace fd only changes this thread's
            // network namespace; the fd outlives the call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns into {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}
