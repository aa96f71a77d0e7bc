//! Scenario: wall-clock steps. A Pi has no RTC: NTP steps its clock after
//! boot, forward or back, by hours or years. Three hosts relay one baton;
//! host 3 runs under libfaketime (its wall clock only: the monotonic clock,
//! which herd's deadlines run on, is left alone), stepped while it runs
//! +3 days forward, then back to an hour behind true time; then it is
//! restarted (SIGTERM, start) with its wall clock two days behind its
//! previous life, so the new life's incarnation (its start time) is lower.
//!
//! - Nobody logs `member down`, in any life; every gauge of every host
//!   keeps increasing.
//! - After each step host 3 stays in the relay (its next gauge comes); the
//!   restarted life is listed by the others and lists them (`member up`).
//!
//! libfaketime comes from Debian's `faketime` package (.ci/run installs
//! it); without it the test skips, or fails under CI=true. It needs a glibc
//! build of herd, which the test binary is.

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Agent, Spec, gauges, herd_bin, may_run, wait_until};
use crate::harness::{Lab, expect_mesh, rejoined, report};

const HOSTS: usize = 3;
const STEPPED: usize = 3;
/// How long each step is watched: past `down_after` (5 s) and two probe
/// rounds of the three hosts.
const WATCH: Duration = Duration::from_secs(10);

/// libfaketime's thread-safe build, wherever Debian put it for this
/// architecture.
fn libfaketime() -> Option<PathBuf> {
    let dirs = std::fs::read_dir("/usr/lib").ok()?;
    dirs.filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1")])
        .find(|p| p.exists())
}

/// `herd run` on host `i` with its wall clock at the offset in `offset_file`
/// (libfaketime syntax, e.g. `+3d`), read again at every clock reading so a
/// write to it steps the running agent's clock.
fn start_faked(lab: &Lab, i: usize, spec: &Spec, lib: &PathBuf, offset_file: &PathBuf) -> Agent {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.ns(i), herd_bin()])
        .env("LD_PRELOAD", lib)
        .env("FAKETIME_TIMESTAMP_FILE", offset_file)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("DONT_FAKE_MONOTONIC", "1");
    Agent::start_with(spec, cmd)
}

fn set_offset(file: &PathBuf, offset: &str) -> Instant {
    std::fs::write(file, format!("{offset}\n")).expect("write the faketime offset");
    Instant::now()
}

#[test]
fn wall_clock_steps_and_a_restart_behind_mark_nobody_down() {
    let lib = libfaketime();
    let missing = lib.is_none().then(|| "libfaketime is missing: apt-get install faketime".to_owned());
    if !may_run("the wall-clock lab", missing) {
        return;
    }
    let lib = lib.expect("checked");
    let Some(lab) = Lab::new("clock", HOSTS) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let offset_file = dir.path().join("faketime.rc");
    set_offset(&offset_file, "+0");
    let statsd = lab.statsd(HOSTS);
    let spec = |i: usize| lab.spec(i).secret("lab clock secret");
    let mut agents: Vec<Agent> = (1..HOSTS).map(|i| lab.start(i, &spec(i))).collect();
    agents.push(start_faked(&lab, STEPPED, &spec(STEPPED), &lib, &offset_file));
    expect_mesh(&agents, Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(20), || gauges(&statsd, "").len() >= 20), "the baton moves");
    let name = format!("n{STEPPED}");
    let next_gauge = |after: Instant| {
        let came = wait_until(Duration::from_secs(20), || {
            gauges(&statsd, "").iter().any(|(at, _, h)| *at > after && *h == name)
        });
        assert!(came, "{name} sends no gauge after the step");
        let g = gauges(&statsd, "").into_iter().find(|(at, _, h)| *at > after && *h == name).expect("seen");
        g.0 - after
    };

    let mut figures = Vec::new();
    for (what, offset) in [("+3 days", "+3d"), ("back to 1 h behind", "-1h")] {
        let at = set_offset(&offset_file, offset);
        let first = next_gauge(at);
        thread::sleep(WATCH);
        figures.push(format!("step {what}: its next gauge after {} ms", first.as_millis()));
    }

    // A restart two days behind its previous life (which ran an hour behind).
    let old = lab.status(STEPPED).expect("n3 answers").incarnation;
    agents[STEPPED - 1].sigterm();
    assert!(agents[STEPPED - 1].wait_exit(Duration::from_secs(5)).is_some(), "n3 exits on SIGTERM");
    set_offset(&offset_file, "-49h");
    agents[STEPPED - 1] = start_faked(&lab, STEPPED, &spec(STEPPED), &lib, &offset_file);
    let started = Instant::now();
    let mut rejoins = Vec::new();
    for a in &agents[..STEPPED - 1] {
        let at = rejoined(a, &name, started, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{} does not list the restarted {name}", a.name));
        rejoins.push(format!(
            "{} lists it after {} ms",
            a.name,
            at.saturating_duration_since(started).as_millis()
        ));
        let back = rejoined(&agents[STEPPED - 1], &a.name, started, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("the restarted {name} does not list {}", a.name));
        rejoins.push(format!(
            "it lists {} after {} ms",
            a.name,
            back.saturating_duration_since(started).as_millis()
        ));
    }
    let new = lab.status(STEPPED).expect("n3 answers").incarnation;
    assert!(new < old, "the restarted life's clock is behind: incarnation {new} after {old}");
    let first = next_gauge(started);
    thread::sleep(WATCH);

    for a in &agents {
        let downs: Vec<String> = a.lines().into_iter().filter(|l| l.contains("member down")).collect();
        assert!(downs.is_empty(), "{}: {downs:?}", a.name);
    }
    crate::harness::assert_monotonic(&gauges(&statsd, ""));
    report(
        "11. wall-clock steps",
        "n3's wall clock stepped +3 days, back to 1 h behind, then restarted 2 days behind its previous life: \
         nobody logs member down, gauges keep increasing, n3 stays in the relay and rejoins",
        &format!(
            "{}; restart: {}; its next gauge after {} ms",
            figures.join("; "),
            rejoins.join(", "),
            first.as_millis()
        ),
    );
}
