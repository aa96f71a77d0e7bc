//! `herd demo` end to end: the built binary, run as a newcomer would (no
//! config, no root, stdout not a terminal), must start its agents, show them
//! finding each other and relaying the baton in its table, stop on
//! `--seconds` or Ctrl-C, and end with a summary line whose passes/s is
//! positive and which says every node saw every other.
//!
//! Each demo picks its own free gossip port and cluster name, so these tests
//! may run in parallel with each other and with the multi-process tests.
//! Must not: leave a demo running (a demo that outlives its deadline is
//! killed and the test fails with its output).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A run of `--seconds 5` stops at its fifth table; the rest is margin for a
/// loaded machine (the agents leave within milliseconds).
const DEADLINE: Duration = Duration::from_secs(15);

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn context(&self) -> String {
        format!("exit: {:?}\n--- stdout ---\n{}--- stderr ---\n{}", self.status, self.stdout, self.stderr)
    }

    fn summary(&self) -> &str {
        let line = self.stdout.lines().rfind(|l| l.starts_with("summary: "));
        line.unwrap_or_else(|| panic!("no summary line\n{}", self.context()))
    }
}

/// `herd demo <args>` with an environment that cannot change its behaviour.
fn demo(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herd"));
    cmd.arg("demo")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("HERD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Reads a pipe to its end on a thread (so a chatty child never blocks on a
/// full pipe), sending each line as it arrives.
fn read_lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the child to exit within [`DEADLINE`], killing it (and failing)
/// if it does not; collects everything it printed.
fn finish(mut child: Child, started: Instant, out: mpsc::Receiver<String>, mut seen: Vec<String>) -> Run {
    let err = read_lines(child.stderr.take().expect("stderr piped"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            seen.extend(out.try_iter());
            panic!("herd demo still running after {DEADLINE:?}; stdout so far:\n{}", seen.join("\n"));
        }
        thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    // The pipes close when the process exits: these iterations end.
    seen.extend(out.iter());
    let stderr: Vec<String> = err.iter().collect();
    let join = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    Run { status, stdout: join(&seen), stderr: join(&stderr), took }
}

fn run_demo(args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = demo(args).spawn().expect("spawn herd demo");
    let out = read_lines(child.stdout.take().expect("stdout piped"));
    finish(child, started, out, Vec::new())
}

/// The number `<n> passes/s` at the end of a summary line.
fn passes_per_second(summary: &str) -> Option<f64> {
    let rest = summary.strip_suffix(" passes/s")?;
    rest.rsplit_once("= ")?.1.parse().ok()
}

/// The tables printed: blocks that start with the header line. Each is the
/// list of its lines.
fn tables(stdout: &str) -> Vec<Vec<&str>> {
    let mut tables: Vec<Vec<&str>> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("herd demo: cluster ") {
            tables.push(vec![line]);
        } else if let Some(t) = tables.last_mut()
            && !line.is_empty()
            && !line.starts_with("summary: ")
        {
            t.push(line);
        }
    }
    tables
}

/// Checks the plain-text tables: the column titles and one row per node, in
/// order, in every table.
fn assert_tables(run: &Run, nodes: &[&str], at_least: usize) {
    assert!(!run.stdout.contains('\x1b'), "escape codes on a non-terminal stdout\n{}", run.context());
    let tables = tables(&run.stdout);
    assert!(
        tables.len() >= at_least,
        "{} tables, expected at least {at_least}\n{}",
        tables.len(),
        run.context()
    );
    for t in &tables {
        assert_eq!(
            t.get(1).copied(),
            Some("node  members  passes/s  counter  temp°C  rtt ms"),
            "{}",
            run.context()
        );
        let names: Vec<&str> = t[2..].iter().filter_map(|l| l.split_whitespace().next()).collect();
        assert_eq!(names, nodes, "rows of a table\n{}", run.context());
    }
}

#[test]
fn four_nodes_relay_and_see_each_other() {
    let run = run_demo(&["--seconds", "5"]);
    assert!(run.status.success(), "herd demo --seconds 5 failed\n{}", run.context());
    assert!(run.took < Duration::from_secs(10), "took {:?}\n{}", run.took, run.context());
    assert_tables(&run, &["psa", "psb", "psc", "psd"], 4);
    let summary = run.summary();
    assert!(summary.starts_with("summary: 4 nodes, every node saw 3 peers, "), "{}", run.context());
    let rate = passes_per_second(summary).unwrap_or_else(|| panic!("no passes/s\n{}", run.context()));
    assert!(rate > 0.0, "{}", run.context());
    // The last table shows every node with the baton's counter.
    let tables = tables(&run.stdout);
    let last = tables.last().expect("a table");
    for row in &last[2..] {
        let counter = row.split_whitespace().nth(3).unwrap_or("-");
        assert!(counter.parse::<u64>().is_ok_and(|c| c > 0), "no counter in {row:?}\n{}", run.context());
    }
}

#[test]
fn two_nodes() {
    let run = run_demo(&["--nodes", "2", "--seconds", "4"]);
    assert!(run.status.success(), "herd demo --nodes 2 failed\n{}", run.context());
    assert_tables(&run, &["psa", "psb"], 3);
    let summary = run.summary();
    assert!(summary.starts_with("summary: 2 nodes, every node saw 1 peer, "), "{}", run.context());
    assert!(passes_per_second(summary).is_some_and(|r| r > 0.0), "{}", run.context());
}

/// Ctrl-C (SIGINT) ends a demo without `--seconds`: the agents are stopped,
/// the summary printed, and the exit code is 0.
#[test]
fn ctrl_c_stops_it_cleanly() {
    let started = Instant::now();
    let mut child = demo(&["--nodes", "3"]).spawn().expect("spawn herd demo");
    let out = read_lines(child.stdout.take().expect("stdout piped"));
    // Wait for the second table: the agents have met by then.
    let mut seen = Vec::new();
    let mut headers = 0;
    while headers < 2 {
        let Ok(line) = out.recv_timeout(DEADLINE.saturating_sub(started.elapsed())) else {
            let _ = child.kill();
            panic!("no second table; stdout so far:\n{}", seen.join("\n"));
        };
        headers += usize::from(line.starts_with("herd demo: cluster "));
        seen.push(line);
    }
    let interrupted = Instant::now();
    let ok = Command::new("kill").arg("-INT").arg(child.id().to_string()).status().expect("run kill");
    assert!(ok.success(), "kill -INT failed");
    let run = finish(child, started, out, seen);
    assert!(run.status.success(), "Ctrl-C should exit 0\n{}", run.context());
    assert!(interrupted.elapsed() < Duration::from_secs(3), "slow to stop\n{}", run.context());
    assert!(run.summary().starts_with("summary: 3 nodes, every node saw 2 peers, "), "{}", run.context());
}

#[test]
fn refuses_a_bad_node_count() {
    let run = run_demo(&["--nodes", "0", "--seconds", "1"]);
    assert!(!run.status.success(), "--nodes 0 accepted\n{}", run.context());
    assert!(run.stderr.contains("--nodes"), "{}", run.context());
    assert!(run.stdout.is_empty(), "{}", run.context());
}
