//! Scenarios 2 and 3: a Pi's herd stopped and started with systemctl, and
//! killed (systemd restarts it). The cluster sees each at once, the baton
//! goes on without a regeneration, and the counter never goes back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::{gauges, member, wait_until};
use crate::harness::{Fleet, report, secs};

const PIS: usize = 3;

/// Pi `i`'s view of member `name`: its state, if listed.
fn state_of(fleet: &Fleet, i: usize, name: &str) -> Option<String> {
    fleet.status(i)?.members.into_iter().find(|m| m.name == name).map(|m| m.state)
}

/// Every host's gauges strictly increase, and the highest counter after
/// `after` is above every counter before it.
fn assert_counter_goes_on(g: &[(Instant, u64, String)], after: Instant) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, c, h) in g {
        if let Some(prev) = last.insert(h, *c) {
            assert!(*c > prev, "{h} went from {prev} to {c}");
        }
    }
    let before = g.iter().filter(|(at, ..)| *at < after).map(|(_, c, _)| *c).max().unwrap_or(0);
    let later = g.iter().filter(|(at, ..)| *at >= after).map(|(_, c, _)| *c).max().unwrap_or(0);
    assert!(later > before, "the counter went on: highest {before} before, {later} after");
}

fn regenerations(fleet: &Fleet) -> u64 {
    (1..=PIS).filter_map(|i| fleet.status(i)).map(|s| s.baton.regenerated).sum()
}

#[test]
fn systemctl_stop_is_a_leave_and_start_a_rejoin() {
    let Some(fleet) = Fleet::new("stop", PIS) else { return };
    let statsd = fleet.statsd();
    let _files = fleet.deploy(&statsd);
    let psb = fleet.name(2);

    let t0 = Instant::now();
    fleet.run(2, "sudo systemctl stop herd");
    let stopped = t0.elapsed();
    let left = wait_until(Duration::from_secs(2), || {
        [1, 3].iter().all(|&i| state_of(&fleet, i, &psb).as_deref() == Some("left"))
    });
    let seen = t0.elapsed();
    assert!(left, "psa and psc list psb as left within 2 s of `systemctl stop`");
    for i in [1, 3] {
        let log = fleet.journal(i);
        assert!(log.contains(&member("left", &psb)), "{}'s journal:\n{log}", fleet.name(i));
    }
    let stopped_at = Instant::now();
    let moving = wait_until(Duration::from_secs(5), || {
        gauges(&statsd, "").iter().any(|(at, _, h)| *at > stopped_at && *h != psb)
    });
    assert!(moving, "the baton goes on between psa and psc");
    assert_eq!(regenerations(&fleet), 0, "a leave hands the baton off: no regeneration");

    let t1 = Instant::now();
    fleet.run(2, "sudo systemctl start herd");
    let back = wait_until(Duration::from_secs(10), || {
        (1..=PIS).all(|i| fleet.status(i).is_some_and(|s| s.live_members == PIS))
    });
    let rejoined = t1.elapsed();
    assert!(back, "psb is back in every Pi's table within 10 s of `systemctl start`");
    let restarted_at = Instant::now();
    let relays = wait_until(Duration::from_secs(10), || {
        gauges(&statsd, "").iter().any(|(at, _, h)| *at > restarted_at && *h == psb)
    });
    assert!(relays, "psb relays the baton again");
    assert_eq!(regenerations(&fleet), 0, "still no regeneration");
    assert_counter_goes_on(&gauges(&statsd, ""), stopped_at);
    report(
        "stop and start",
        "systemctl stop: peers list and log the leave, the baton goes on, no regeneration; start: rejoined, relaying, counter never back",
        &format!(
            "stop returned in {}, leave seen by both peers {} after the stop began, rejoined by all {} after start",
            secs(stopped),
            secs(seen),
            secs(rejoined)
        ),
    );
}

#[test]
fn a_killed_agent_is_restarted_by_systemd_and_the_counter_goes_on() {
    let Some(fleet) = Fleet::new("crash", PIS) else { return };
    let statsd = fleet.statsd();
    let _files = fleet.deploy(&statsd);
    let psb = fleet.name(2);
    let pid_before = fleet.run(2, "systemctl show -p MainPID --value herd");

    let t0 = Instant::now();
    let killed_at = Instant::now();
    // The main process only: the cgroup-wide kill of these containers fails with
    // EIO on this kernel ("Failed to send signal SIGKILL to auxiliary processes").
    fleet.run(2, "sudo systemctl kill --kill-who=main -s KILL herd");
    let restarted = wait_until(Duration::from_secs(10), || {
        let pid = fleet.run(2, "systemctl show -p MainPID --value herd");
        pid.trim() != pid_before.trim()
            && pid.trim() != "0"
            && fleet.run(2, "systemctl is-active herd || true").trim() == "active"
    });
    let up_again = t0.elapsed();
    assert!(restarted, "Restart=always brings herd back within 10 s (RestartSec=2)");
    let rejoined = wait_until(Duration::from_secs(10), || {
        [1, 3].iter().all(|&i| {
            let log = fleet.journal(i);
            log.contains(&member("restarted", &psb))
                || log.contains(&member("up", &psb)) && log.contains(&member("down", &psb))
        }) && (1..=PIS).all(|i| fleet.status(i).is_some_and(|s| s.live_members == PIS))
    });
    let seen = t0.elapsed();
    assert!(rejoined, "psa and psc log psb's new life (member restarted, or down then up) and list it alive");
    let after = Instant::now();
    let relays = wait_until(Duration::from_secs(10), || {
        gauges(&statsd, "").iter().any(|(at, _, h)| *at > after && *h == psb)
    });
    assert!(relays, "the restarted psb relays the baton again");
    assert_counter_goes_on(&gauges(&statsd, ""), killed_at);
    report(
        "crash",
        "systemctl kill --kill-who=main -s KILL: systemd restarts herd, peers log the new life, the counter goes on",
        &format!("active again {} after the kill, rejoined by all {}", secs(up_again), secs(seen)),
    );
}
