//! The lab harness: a [`Lab`] is N hosts (network namespaces on one bridge,
//! built by `tests/lab/lab.sh`), and this module runs `herd` in them and
//! watches it from outside.
//!
//! - Agents are real `herd run` processes started with `ip netns exec`, each
//!   with its own eth0 address as `multicast_if` and the default ports, as on
//!   a Pi. They are [`Agent`]s of the loopback harness, so logs, SIGKILL and
//!   SIGTERM work the same.
//! - Each host has a StatsD listener on its own 127.0.0.1:8125 (where a local
//!   dogstatsd would be), all feeding one [`Statsd`]; status endpoints are
//!   read inside the host's namespace. Both keep working across partitions,
//!   so the tests see every side.
//! - [`in_netns`] runs a closure on a thread that joined a namespace
//!   (`setns`): sockets it creates belong to that namespace.
//! - The lab is destroyed on drop, agents first (a panicking test leaves
//!   nothing behind); one left by a killed test process is swept by the next
//!   `lab.sh create`.
//!
//! Must not: send anything outside the lab's namespaces, or run without root
//! (then [`Lab::new`] says why and the test skips, or fails under CI=true).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use herd::agent::snapshot::Snapshot;

use crate::common::{
    Agent, Spec, Statsd, gauges, herd_bin, is_root, may_run, toml_str, unique_cluster, wait_until,
};

/// Where the agents' status endpoints listen (herd's default), inside each host.
pub const STATUS: &str = "127.0.0.1:45894";
/// herd's default gossip and data ports: every host has its own stack.
pub const GOSSIP_PORT: u16 = 45892;
pub const DATA_PORT: u16 = 45893;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh")
}

/// Runs `f` on a thread inside network namespace `ns` and returns its result.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    crate::common::in_netns_at(&format!("/var/run/netns/{ns}"), f)
}

/// Why the lab cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("the network lab needs root (it creates network namespaces)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the network lab needs iproute2 (`ip`): apt-get install iproute2".into());
    }
    None
}

pub struct Lab {
    pub id: String,
    pub hosts: usize,
    pub cluster: String,
}

impl Lab {
    /// A lab of `hosts` hosts (1-based: host 1 is 10.77.0.1), or `None`
    /// after printing why it cannot be built here. Under `CI=true` that is a
    /// failure instead: CI runs as root with iproute2 installed.
    pub fn new(tag: &str, hosts: usize) -> Option<Lab> {
        if !may_run("the network lab", unavailable()) {
            return None;
        }
        let cluster = unique_cluster(tag);
        let id = format!("{}-{}", std::process::id(), cluster.rsplit('-').next().unwrap_or("x"));
        let lab = Lab { id, hosts, cluster };
        lab.script(&["create", &lab.id, &hosts.to_string()]);
        Some(lab)
    }

    /// Runs `lab.sh <args>`, panicking with its stderr if it fails.
    pub fn script(&self, args: &[&str]) {
        let out = Command::new("bash").arg(script()).args(args).output().expect("run lab.sh");
        assert!(out.status.success(), "lab.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Host `i`'s namespace (0 = the switch).
    pub fn ns(&self, i: usize) -> String {
        if i == 0 { format!("herdlab-{}-hub", self.id) } else { format!("herdlab-{}-n{i}", self.id) }
    }

    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, i as u8)
    }

    /// Host `i`'s agent config: name `n<i>`, this lab's cluster, multicast on
    /// its eth0, status endpoint and ports at herd's defaults, StatsD to the
    /// host's own listener flushed every 50 ms.
    pub fn spec(&self, i: usize) -> Spec {
        Spec::new(&format!("n{i}"), &self.cluster, GOSSIP_PORT)
            .gossip("multicast_if", &toml_str(&self.addr(i).to_string()))
            .gossip("data_port", &DATA_PORT.to_string())
            .set("status", "listen", &toml_str(STATUS))
            .set("statsd", "address", &toml_str("127.0.0.1:8125"))
            .set("statsd", "flush_interval", &toml_str("50ms"))
    }

    /// Starts `herd run` with `spec` on host `i`.
    pub fn start(&self, i: usize, spec: &Spec) -> Agent {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(i), herd_bin()]);
        Agent::start_with(spec, cmd)
    }

    /// Starts [`Lab::spec`] on hosts `1..=n`, each changed by `f`.
    pub fn start_all(&self, n: usize, f: impl Fn(usize, Spec) -> Spec) -> Vec<Agent> {
        (1..=n).map(|i| self.start(i, &f(i, self.spec(i)))).collect()
    }

    /// Hosts `1..=n` relaying with `secret` at `hold = "100ms"`: returned once
    /// they see each other (5 s) and `statsd` has 20 gauges (15 s), else a
    /// panic saying the baton should move before `next` (what the test does
    /// to them then).
    pub fn start_relay(&self, n: usize, secret: &str, statsd: &Statsd, next: &str) -> Vec<Agent> {
        let agents =
            self.start_all(n, |_, spec| spec.secret(secret).set("baton", "hold", &toml_str("100ms")));
        expect_mesh(&agents, Duration::from_secs(5));
        assert!(
            wait_until(Duration::from_secs(15), || gauges(statsd, "").len() >= 20),
            "the baton should move before {next}: {} gauges",
            gauges(statsd, "").len()
        );
        agents
    }

    /// A StatsD listener on 127.0.0.1:8125 in each of hosts `1..=n`.
    pub fn statsd(&self, n: usize) -> Statsd {
        let socks = (1..=n)
            .map(|i| in_netns(&self.ns(i), || UdpSocket::bind("127.0.0.1:8125").expect("bind statsd")))
            .collect();
        Statsd::start_on(socks)
    }

    /// Host `i`'s GET /status, or `None` if it does not answer.
    pub fn status(&self, i: usize) -> Option<Snapshot> {
        let text =
            in_netns(&self.ns(i), || herd::agent::status::client(STATUS, herd::agent::status::View::Json))
                .ok()?;
        Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("n{i}: bad /status JSON ({e}): {text}")))
    }

    /// The status of every host in `hosts` that answers, read in parallel
    /// (one thread each) so the picture is close to one instant.
    pub fn statuses(&self, hosts: &[usize]) -> BTreeMap<usize, Snapshot> {
        thread::scope(|s| {
            let handles: Vec<_> = hosts.iter().map(|&i| (i, s.spawn(move || self.status(i)))).collect();
            handles.into_iter().filter_map(|(i, h)| Some((i, h.join().ok()??))).collect()
        })
    }

    /// Distinct batons held among `hosts` right now (by baton id; the same id
    /// at two hosts is one baton in mid-pass).
    pub fn batons(&self, hosts: &[usize]) -> BTreeSet<String> {
        self.statuses(hosts).into_values().filter_map(|s| s.baton.held_id).collect()
    }

    /// Moves `group` to a second switch: it and the rest cannot reach each other.
    pub fn partition(&self, group: &[usize]) -> Instant {
        let mut args = vec!["partition".to_owned(), self.id.clone()];
        args.extend(group.iter().map(usize::to_string));
        self.script(&args.iter().map(String::as_str).collect::<Vec<_>>());
        Instant::now()
    }

    pub fn heal(&self) -> Instant {
        // The heal takes effect somewhere inside the script (a rejoin can
        // be logged before it returns): the instant before it, so nothing
        // that followed the heal is missed.
        let began = Instant::now();
        self.script(&["heal", &self.id]);
        began
    }

    /// Runs `ip <args>` in host `i`'s namespace, panicking with its stderr
    /// if it fails.
    pub fn ip(&self, i: usize, args: &str) {
        let out = Command::new("ip")
            .args(["-n", &self.ns(i)])
            .args(args.split_whitespace())
            .output()
            .expect("run ip");
        assert!(out.status.success(), "ip -n n{i} {args}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// What a DHCP lease gives host `i`: `addr`/24 on its eth0 and a default
    /// route through the lab's router 10.77.0.254 (which does not exist:
    /// multicast needs only the route, peers are on the link).
    pub fn lease(&self, i: usize, addr: Ipv4Addr) {
        self.ip(i, &format!("addr add {addr}/24 broadcast 10.77.0.255 dev eth0"));
        self.ip(i, "route replace default via 10.77.0.254 dev eth0");
    }

    /// Hosts `hosts` drop `pct` % of incoming packets (0 = none).
    pub fn loss(&self, pct: u32, hosts: &[usize]) {
        let mut args = vec!["loss".to_owned(), self.id.clone(), pct.to_string()];
        args.extend(hosts.iter().map(usize::to_string));
        self.script(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Agents are dropped (killed) by their owners; destroy kills anything
        // still inside, so the namespaces can go.
        let _ = Command::new("bash").arg(script()).args(["destroy", &self.id]).status();
    }
}

/// Panics unless every host's gauges increase strictly in arrival order
/// (the counter never goes backwards, a value is never reported twice).
pub fn assert_monotonic(gauges: &[(Instant, u64, String)]) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, c, h) in gauges {
        if let Some(prev) = last.insert(h, *c) {
            assert!(*c > prev, "{h}: baton gauge {c} after {prev}");
        }
    }
}

/// A scenario's line for the report (`cargo test --test lab -- --nocapture | grep LAB`).
pub fn report(scenario: &str, checked: &str, figures: &str) {
    crate::common::report_line(&format!("LAB | {scenario} | {checked} | {figures}"));
}

/// When `agent` logged `name` back (`member up`, or `member restarted` for a
/// new life) at or after `after`, waiting up to `timeout` for it.
pub fn rejoined(agent: &Agent, name: &str, after: Instant, timeout: Duration) -> Option<Instant> {
    let end = Instant::now() + timeout;
    loop {
        let hit = ["up", "restarted"]
            .iter()
            .filter_map(|e| agent.wait_for_after(&crate::common::member(e, name), after, Duration::ZERO))
            .min();
        if hit.is_some() || Instant::now() >= end {
            return hit;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl Lab {
    /// A UDP socket of host `i` that is no agent: bound to its address on
    /// an ephemeral port, sending multicast through its eth0 with TTL 1 (so
    /// it can reach the group and every host's ports).
    pub fn udp(&self, i: usize) -> UdpSocket {
        let ip = self.addr(i);
        in_netns(&self.ns(i), || {
            let sock = UdpSocket::bind((ip, 0)).expect("bind a host socket");
            sock.set_multicast_ttl_v4(1).expect("multicast TTL");
            socket2::SockRef::from(&sock).set_multicast_if_v4(&ip).expect("multicast interface");
            sock
        })
    }

    /// A socket in host `i` that hears what an agent's gossip socket hears:
    /// bound to the gossip port beside it (SO_REUSEADDR, SO_REUSEPORT) and a
    /// member of herd's default multicast group on host `i`'s eth0.
    pub fn gossip_listener(&self, i: usize) -> UdpSocket {
        let ip = self.addr(i);
        in_netns(&self.ns(i), || {
            use socket2::{Domain, Protocol, Socket, Type};
            let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
            sock.set_reuse_address(true).expect("SO_REUSEADDR");
            sock.set_reuse_port(true).expect("SO_REUSEPORT");
            let any = std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, GOSSIP_PORT);
            sock.bind(&any.into()).expect("bind the gossip port beside the agent");
            sock.join_multicast_v4(&GROUP, &ip).expect("join the multicast group");
            sock.into()
        })
    }
}

/// herd's default multicast group (`[gossip] multicast_addr`).
pub const GROUP: Ipv4Addr = Ipv4Addr::new(230, 1, 1, 251);

/// Resident memory of process `pid` in KiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Every host's `rejected` counters (hosts that answer).
pub fn rejections(lab: &Lab, hosts: &[usize]) -> BTreeMap<usize, BTreeMap<String, u64>> {
    lab.statuses(hosts).into_iter().map(|(i, s)| (i, s.rejected)).collect()
}

/// Panics unless every agent logs `member up` for every other within `timeout`.
pub fn expect_mesh(agents: &[Agent], timeout: Duration) {
    for a in agents {
        for b in agents.iter().filter(|b| b.name != a.name) {
            a.expect(&crate::common::member("up", &b.name), timeout);
        }
    }
}

/// The longest time without a gauge in `during` (arrival order) between
/// `start` and `end`, counting the edges; `Duration::MAX` if there was none.
pub fn longest_gap(during: &[&(Instant, u64, String)], start: Instant, end: Instant) -> Duration {
    during
        .windows(2)
        .map(|w| w[1].0.saturating_duration_since(w[0].0))
        .chain([
            during.first().map_or(Duration::MAX, |g| g.0.saturating_duration_since(start)),
            during.last().map_or(Duration::MAX, |g| end.saturating_duration_since(g.0)),
        ])
        .max()
        .unwrap_or(Duration::MAX)
}
