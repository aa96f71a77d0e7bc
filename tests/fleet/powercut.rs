//! Scenario 8: a power cut of the whole fleet. Every container and the
//! aarch64 guest killed at once (their disks kept, the guest's page cache
//! lost with its kernel), then booted again: herd comes back from its state
//! file in /var/lib/herd (the unit's StateDirectory=), and the first baton
//! gauge received after the cut is above the last one before it.

use std::time::{Duration, Instant};

use crate::common::{gauges, wait_until};
use crate::harness::{Fleet, report, secs};

#[test]
fn after_a_power_cut_of_the_whole_fleet_the_counter_continues() {
    // psa and psb are containers, psc the aarch64 guest.
    let Some(fleet) = Fleet::mixed("powercut", 2, 1) else { return };
    let statsd = fleet.statsd();
    let _files = fleet.deploy(&statsd);
    let n = fleet.pis;
    // Every Pi has reserved before the cut.
    for i in 1..=n {
        let dir = fleet.run(i, "systemctl show -p StateDirectory --value herd");
        assert_eq!(dir.trim(), "herd", "{}", fleet.name(i));
        let ok = wait_until(Duration::from_secs(30), || {
            fleet.ssh(i, "sudo test -s /var/lib/private/herd/counter").status.success()
        });
        assert!(ok, "{} wrote /var/lib/herd/counter", fleet.name(i));
    }
    std::thread::sleep(Duration::from_secs(2));
    fleet.cut();
    // What the Pis flushed as the power went is in by now.
    std::thread::sleep(Duration::from_secs(1));
    let before = gauges(&statsd, "").iter().map(|g| g.1).max().expect("gauges before the cut");
    let t0 = Instant::now();
    fleet.power();
    for i in 1..=n {
        assert!(fleet.wait_ssh(i, Duration::from_secs(300)), "{} boots again", fleet.name(i));
    }
    let booted = t0.elapsed();
    // The containers' Agents are listened to anew (new namespaces); the
    // guest's go on arriving at the laptop's.
    let again = fleet.statsd_on(&[1, 2]);
    let back = wait_until(Duration::from_secs(60), || {
        (1..=n).all(|i| fleet.status(i).is_some_and(|s| s.live_members == n))
    });
    let why = || {
        (1..=n)
            .map(|i| {
                let s = fleet.status(i).map(|s| s.live_members);
                let unit = fleet.ssh(i, "systemctl status herd --no-pager -n 5 2>&1 | tail -8").stdout;
                format!("{}: live {s:?}\n{}", fleet.name(i), String::from_utf8_lossy(&unit))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(back, "the fleet forms again:\n{}", why());
    let after =
        |s: &crate::common::Statsd| gauges(s, "").into_iter().filter(|(at, ..)| *at > t0).collect::<Vec<_>>();
    let relaying =
        wait_until(Duration::from_secs(60), || !after(&again).is_empty() || !after(&statsd).is_empty());
    assert!(relaying, "the baton moves again");
    let relayed = t0.elapsed();
    let mut first: Vec<_> = after(&again).into_iter().chain(after(&statsd)).collect();
    first.sort_by_key(|(at, c, _)| (*at, *c));
    let (_, first, host) = first[0].clone();
    assert!(first > before, "first gauge after the cut {first} (from {host}), highest before {before}");
    for i in 1..=n {
        let journal = fleet.journal(i);
        assert!(journal.contains("counter reservations restored"), "{}:\n{journal}", fleet.name(i));
    }
    report(
        "power cut",
        "2 containers + the aarch64 guest killed at once and booted again: herd back from /var/lib/herd, the first gauge after above the last before",
        &format!(
            "highest before {before}, first after {first} (from {host}); all answering ssh {} after the power came back, relaying {}",
            secs(booted),
            secs(relayed)
        ),
    );
}
