//! A power cut of the whole cluster (docs/operating.md): with a
//! `[node] state_dir`, four agents SIGKILLed together and started again
//! continue the counter above every value sent before; without one, the
//! counter starts again from 1 (what the state file is for). Without a
//! state_dir nothing is written to disk, ever (`/proc/<pid>/io`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Agent, Cluster, Spec, Statsd, expect_mesh, gauges, member, toml_str, wait_until};

const PATIENCE: Duration = Duration::from_secs(15);
const NAMES: [&str; 4] = ["psa", "psb", "psc", "psd"];

/// Bytes this process caused to be written to a block device (`write_bytes`
/// of `/proc/<pid>/io`).
fn write_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("read /proc/<pid>/io");
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes")
}

/// Starts the four, until the baton has gone round (gauges from all four).
fn start_all(spec: &dyn Fn(&str) -> Spec, statsd: &Statsd, since: Instant) -> Vec<Agent> {
    let agents: Vec<Agent> = NAMES.iter().map(|n| Agent::start(&spec(n))).collect();
    expect_mesh(&agents, PATIENCE);
    let all = wait_until(PATIENCE, || {
        let hosts: std::collections::BTreeSet<String> =
            gauges(statsd, "").into_iter().filter(|(at, ..)| *at > since).map(|g| g.2).collect();
        hosts.len() == 4
    });
    assert!(all, "gauges from all four");
    agents
}

/// (highest counter before the cut, first counter after it) for a cluster
/// whose nodes keep state in `dirs` (`None`: no state_dir).
fn cut_and_restart(tag: &str, dirs: Option<&Path>) -> (u64, u64, Vec<Agent>) {
    let cluster = Cluster::new(tag);
    let statsd = Statsd::start();
    let spec = |name: &str| {
        let spec =
            cluster.node(name).secret("power strip").set("baton", "hold", &toml_str("20ms")).statsd(&statsd);
        match dirs {
            Some(d) => {
                let dir = d.join(name);
                std::fs::create_dir_all(&dir).unwrap();
                spec.set("node", "state_dir", &toml_str(&dir.display().to_string()))
            }
            None => spec,
        }
    };
    let mut agents = start_all(&spec, &statsd, Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    // The cut: every agent killed at once, nothing flushed, no leave.
    for a in &mut agents {
        a.sigkill();
    }
    let cut = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let before = gauges(&statsd, "").iter().map(|g| g.1).max().expect("gauges before the cut");
    let again = start_all(&spec, &statsd, cut);
    let first = gauges(&statsd, "")
        .into_iter()
        .filter(|(at, ..)| *at > cut)
        .min_by_key(|(at, c, _)| (*at, *c))
        .map(|g| g.1)
        .expect("a gauge after the cut");
    (before, first, again)
}

#[test]
fn after_a_power_cut_of_every_node_the_counter_continues_above_all_it_sent() {
    let dirs = tempfile::tempdir().expect("temporary directory");
    let (before, first, agents) = cut_and_restart("powercut", Some(dirs.path()));
    assert!(first > before, "first gauge after the cut {first}, highest before {before}");
    for a in &agents {
        assert!(a.has_line("counter reservations restored"), "{}:\n{}", a.name, a.lines().join("\n"));
    }
    let files: Vec<String> = NAMES
        .iter()
        .map(|n| std::fs::read_to_string(dirs.path().join(n).join("counter")).unwrap().replace('\n', " "))
        .collect();
    // The control: the same cut without state directories starts again low.
    let (before_plain, first_plain, _) = cut_and_restart("powercut-plain", None);
    assert!(
        first_plain <= before_plain,
        "without a state_dir the counter restarts ({first_plain} after {before_plain})"
    );
    common::report_line(&format!(
        "POWERCUT | 4 agents SIGKILLed at once and restarted | with state_dir: highest before {before}, first after {first} \
         (files: {files:?}); without: highest before {before_plain}, first after {first_plain}"
    ));
}

#[test]
fn without_a_state_dir_nothing_is_written_to_disk() {
    let cluster = Cluster::new("nowrite");
    let dirs = tempfile::tempdir().expect("temporary directory");
    let plain = Agent::start(&cluster.node("psa").set("baton", "hold", &toml_str("10ms")));
    let dir = dirs.path().join("psb");
    std::fs::create_dir_all(&dir).unwrap();
    let stateful = Agent::start(&cluster.node("psb").set("baton", "hold", &toml_str("10ms")).set(
        "node",
        "state_dir",
        &toml_str(&dir.display().to_string()),
    ));
    plain.expect(&member("up", "psb"), PATIENCE);
    let wrote = wait_until(PATIENCE, || dir.join("counter").exists());
    assert!(wrote, "psb (with a state_dir) reserves");
    std::thread::sleep(Duration::from_secs(3));
    // The measure works: psb's reservation reached the disk...
    assert!(write_bytes(stateful.pid()) > 0, "psb's write_bytes");
    // ...and psa, relaying the same baton without a state_dir, wrote nothing.
    assert_eq!(write_bytes(plain.pid()), 0, "psa wrote to disk");
}

#[test]
fn a_corrupt_state_file_is_a_warning_and_the_agent_runs_on() {
    let cluster = Cluster::new("corrupt");
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("counter"), "not what herd wrote\n").unwrap();
    let spec = |name: &str| {
        cluster.node(name).set("baton", "hold", &toml_str("20ms")).set(
            "node",
            "state_dir",
            &toml_str(&dir.path().display().to_string()),
        )
    };
    let psa = Agent::start(&spec("psa"));
    let psb = Agent::start(&cluster.node("psb").set("baton", "hold", &toml_str("20ms")));
    let warned = psa.expect("is not a herd state file", PATIENCE);
    let line = psa.lines().into_iter().find(|l| l.contains("is not a herd state file")).unwrap();
    assert!(line.contains("WARN") && line.contains("counter"), "names the file: {line}");
    psa.expect(&member("up", "psb"), PATIENCE);
    psb.expect(&member("up", "psa"), PATIENCE);
    // It reserves afresh: the file is herd's again.
    let rewritten = wait_until(PATIENCE, || {
        std::fs::read_to_string(dir.path().join("counter"))
            .is_ok_and(|t| t.starts_with("herd counter ceiling v1\n"))
    });
    assert!(rewritten, "psa writes a valid state file after the warning");
    assert!(warned.elapsed() < PATIENCE * 2);
}
