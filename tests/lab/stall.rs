//! Scenario: a stalled Pi. Four hosts relay one baton at the default pace;
//! the baton's holder (the host whose /status says it holds it still) is
//! stopped with SIGSTOP for longer than `down_after`, as a worn SD card
//! stalls every process, and resumed with SIGCONT; three times.
//!
//! - No host's gauge is at or below the highest gauge the cluster sent
//!   before it (arrival order at the StatsD listeners): the resumed holder
//!   never passes the baton it held when it stopped, which the others
//!   regenerated meanwhile, nor sends the gauges it had buffered for StatsD
//!   when it was stopped (one may have been sent just before the stop).
//! - From two heartbeats after SIGCONT, at most one baton is held at any
//!   sample, and one is.
//! - The resumed host is listed alive by everyone and lists everyone, and
//!   sends baton gauges again; it logs no `member down` of its own on
//!   waking (the others rightly mark it down while it is stopped).

use std::thread;
use std::time::{Duration, Instant};

use crate::common::{gauges, wait_until};
use crate::harness::{Lab, report};

const HOSTS: usize = 4;
const ROUNDS: usize = 3;
/// Longer than `down_after` (5 s) and `regenerate_after` (3 s), herd's
/// defaults, which these agents run with.
const STOPPED: Duration = Duration::from_secs(7);
const HEARTBEAT: Duration = Duration::from_secs(1);

fn signal(pid: u32, sig: libc::c_int) -> Instant {
    let at = Instant::now();
    // SAFETY: kill has no memory preconditions; the pid is our own child's,
    // not yet reaped (the agent runs).
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    at
}

#[test]
fn a_stopped_holder_resumes_without_a_stale_gauge_or_a_second_baton() {
    let Some(lab) = Lab::new("stall", HOSTS) else { return };
    let statsd = lab.statsd(HOSTS);
    let mut agents = lab.start_relay(HOSTS, "lab stall secret", &statsd, "the holder is stopped");
    let hosts: Vec<usize> = (1..=HOSTS).collect();
    let (mut listed, mut next_gauge, mut regenerated) = (Vec::new(), Vec::new(), 0);
    for round in 0..ROUNDS {
        // The holder, holding still, at the last moment before the stop.
        let mut holder = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                holder = lab
                    .statuses(&hosts)
                    .into_iter()
                    .find(|(_, s)| s.baton.holding && !s.baton.passing)
                    .map(|(i, _)| i);
                holder.is_some()
            }),
            "round {round}: nobody holds the baton"
        );
        let i = holder.expect("found");
        let agent = &mut agents[i - 1];
        assert!(agent.is_running(), "n{i} runs");
        let regen_before = lab.statuses(&hosts).values().map(|s| s.baton.regenerated).sum::<u64>();
        signal(agent.pid(), libc::SIGSTOP);
        thread::sleep(STOPPED);
        let resumed = signal(agent.pid(), libc::SIGCONT);

        // Everyone lists everyone alive again.
        let all_alive = || {
            let s = lab.statuses(&hosts);
            s.len() == HOSTS
                && s.values().all(|s| s.members.iter().filter(|m| m.state == "alive").count() == HOSTS - 1)
        };
        assert!(wait_until(Duration::from_secs(20), all_alive), "round {round}: n{i} not listed by all");
        listed.push(resumed.elapsed());
        let name = format!("n{i}");
        let back = wait_until(Duration::from_secs(30), || {
            gauges(&statsd, "").iter().any(|(at, _, h)| *at > resumed && *h == name)
        });
        assert!(back, "round {round}: n{i} sends no gauge after SIGCONT");
        let first =
            gauges(&statsd, "").into_iter().find(|(at, _, h)| *at > resumed && *h == name).expect("seen");
        next_gauge.push(first.0 - resumed);

        // One baton from two heartbeats after SIGCONT on.
        let from = resumed + 2 * HEARTBEAT;
        thread::sleep(from.saturating_duration_since(Instant::now()));
        let (mut most, mut ones) = (0, 0);
        for _ in 0..30 {
            let n = lab.batons(&hosts).len();
            most = most.max(n);
            ones += usize::from(n == 1);
            thread::sleep(Duration::from_millis(100));
        }
        assert!(most <= 1, "round {round}: {most} batons held at once after SIGCONT + 2 heartbeats");
        assert!(ones > 0, "round {round}: no baton held after SIGCONT");
        let falsely = agents[i - 1]
            .log_lines()
            .into_iter()
            .filter(|l| l.at >= resumed && l.text.contains("member down"))
            .map(|l| l.text)
            .collect::<Vec<_>>();
        assert!(falsely.is_empty(), "round {round}: n{i} marked members down on waking: {falsely:?}");
        regenerated += lab.statuses(&hosts).values().map(|s| s.baton.regenerated).sum::<u64>() - regen_before;
    }

    // Cluster-wide, in arrival order: never at or below what came before.
    let all = gauges(&statsd, "");
    let mut highest = 0;
    let mut stale = Vec::new();
    for (_, c, h) in &all {
        if *c <= highest {
            stale.push(format!("{h} sent {c} after {highest}"));
        }
        highest = highest.max(*c);
    }
    assert!(stale.is_empty(), "gauges at or below the cluster's counter: {stale:?}");
    let ms =
        |v: &[Duration]| v.iter().map(|d| format!("{} ms", d.as_millis())).collect::<Vec<_>>().join(", ");
    report(
        "10. stall",
        &format!(
            "the holder SIGSTOPped {} s ×{ROUNDS} (4 hosts): no gauge at or below the cluster's ({} gauges), \
             one baton from SIGCONT + 2 heartbeats, back in the relay, no member down by it",
            STOPPED.as_secs(),
            all.len()
        ),
        &format!(
            "SIGCONT → all members listed: {}; → its next baton gauge: {}; batons regenerated while stopped: {regenerated}",
            ms(&listed),
            ms(&next_gauge)
        ),
    );
}
