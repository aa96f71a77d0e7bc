//! Scenario 9: an aarch64 Pi whose network comes well after herd has
//! started under systemd, as a Pi whose Wi-Fi associates late. herd must
//! not exit for want of a network (it did: `cannot join multicast group`,
//! then systemd's restart loop): it runs, says once what it waits for, and
//! joins when the link returns, in the same process.
//!
//! The guest is deployed with its network up, then given a unit of the
//! test's (`herd-late-link.service`, installed over ssh so the image stays
//! as it is) and rebooted. At boot that unit, ordered after
//! network-online.target (networkd has configured the link) and before
//! herd.service, sets the link down; it holds it down until herd has been
//! active 10 s, keeps what `herd status` and the unit's sd_notify status
//! said while herd waited, sets the link up, and sends one datagram to the
//! operator's machine on the bridge. The link's return is that datagram's
//! arrival at the test, on the host's clock, and so is the guest's next baton
//! gauge (at the laptop's DogStatsD) and the container listing the guest
//! alive (polled over ssh). The guest's own view is timed on its own clock
//! instead, its journal's monotonic stamps from its `link up` to herd's
//! `member up` of each other Pi (its first ssh login after a boot takes
//! seconds under emulation, which polling would count), and so is the
//! interval from `link up` to herd's `network ready`. "All members listed"
//! is the later of the two views.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::common::{Statsd, gauges, in_netns_at, member, wait_until};
use crate::harness::{Fleet, report, secs};

/// Where the guest's unit says the link is back: the operator's machine on
/// the bridge.
const LINK_REPORT: &str = "10.78.0.254:45900";

/// How long the link stays down once herd is active.
const HELD_S: u32 = 10;

/// The unit and its script for NIC: at boot, the link down before herd
/// starts, up again `HELD_S` s after herd is active.
fn late_link(nic: &str) -> (String, String) {
    let (ip, port) = LINK_REPORT.split_once(':').expect("host:port");
    let unit = format!(
        "[Unit]
Description=the link held down at boot until herd has run {HELD_S} s (a network that comes late)
Wants=network-online.target
After=network-online.target
Before=herd.service

[Service]
Type=simple
ExecStartPre=/bin/sh -c 'ip link set {nic} down'
ExecStart=/bin/bash /usr/local/sbin/herd-late-link

[Install]
WantedBy=multi-user.target
"
    );
    let script = format!(
        "#!/bin/bash
# herd-late-link: {nic} is down (ExecStartPre); up again once herd has been
# active {HELD_S} s, keeping what herd said while it waited. A herd that never
# gets active (exiting for want of a network, restarted by systemd) gets the
# link back after 120 s, so that the test can tell what it did.
# (By the clock: under emulation each systemctl call takes a while.)
end=$((SECONDS + 120))
until systemctl is-active --quiet herd || ((SECONDS >= end)); do sleep 0.2; done
sleep {HELD_S}
herd status >/run/herd-late-link.status 2>&1
systemctl show -p StatusText --value herd >/run/herd-late-link.unit
ip link set {nic} up
echo 'link up'
# The host's clock times the return: the first datagram that leaves.
for _ in $(seq 600); do
  echo \"link up $(hostname)\" 2>/dev/null >/dev/udp/{ip}/{port} && break
  sleep 0.1
done
"
    );
    (unit, script)
}

/// Seconds on the guest's monotonic clock of the first line of `journal`
/// (`journalctl -o short-monotonic`) that contains `what`.
fn monotonic(journal: &str, what: &str) -> Option<f64> {
    let line = journal.lines().find(|l| l.contains(what))?;
    line.trim_start().strip_prefix('[')?.split(']').next()?.trim().parse().ok()
}

#[test]
fn a_guest_whose_network_comes_late_waits_then_joins_without_a_restart() {
    // psa is a container, psb the aarch64 guest.
    let Some(fleet) = Fleet::mixed("network", 1, 1) else { return };
    let statsd = fleet.statsd();
    let _files = fleet.deploy(&statsd);
    let (n, guest) = (fleet.pis, fleet.pis);
    let name = fleet.name(guest);

    // The guest's NIC (networkd names it; the .network file matches any
    // Ethernet): the one with its 10.78.0.x address.
    // `2: enp0s1    inet 10.78.0.2/24 ...`
    let addrs = fleet.run(guest, "ip -o -4 addr show to 10.78.0.0/24");
    let nic = addrs.split_whitespace().nth(1).unwrap_or_else(|| panic!("{name} has a 10.78.0.x address"));
    let (unit, script) = late_link(nic);
    fleet.run(
        guest,
        &format!(
            "sudo tee /usr/local/sbin/herd-late-link >/dev/null <<'EOF'\n{script}EOF\n\
             sudo tee /etc/systemd/system/herd-late-link.service >/dev/null <<'EOF'\n{unit}EOF\n\
             sudo systemctl daemon-reload && sudo systemctl enable --quiet herd-late-link"
        ),
    );
    let links =
        Statsd::start_on(vec![in_netns_at(&format!("/run/netns/herdfleet-{}-hub", fleet.id), || {
            UdpSocket::bind(LINK_REPORT).expect("bind the link report's listener on the bridge")
        })]);
    let highest_before = gauges(&statsd, "").iter().map(|g| g.1).max().expect("gauges before the reboot");

    let before = fleet.pid(guest);
    let t0 = Instant::now();
    // The connection may drop before ssh returns: its status is not the test.
    let _ = fleet.ssh(guest, "sudo systemctl reboot");
    let rebooted = wait_until(Duration::from_secs(120), || fleet.try_pid(guest).is_some_and(|p| p != before));
    assert!(rebooted, "{name} booted again within 120 s");
    // Booting an emulated aarch64 on a busy 2-core machine takes minutes.
    let returned = wait_until(Duration::from_secs(420), || !links.lines().is_empty());
    let console = || {
        std::fs::read_to_string(format!("/run/herd-fleet/{}/pi{guest}/console.log", fleet.id))
            .map(|c| c.lines().rev().take(15).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    };
    assert!(returned, "{name}'s link came back within 420 s of the reboot; its console ends:\n{}", console());
    let (back, said) = links.lines()[0].clone();
    assert_eq!(said, format!("link up {name}"));
    let booted = back.saturating_duration_since(t0);

    // From the link's return: every Pi lists every other alive. psa's view
    // is polled over ssh (a container answers in milliseconds); the guest's
    // first login after its boot takes seconds, so its view is timed by its
    // own journal below (`member up` of psa after `link up`).
    let all_alive = |i: usize| {
        fleet.status(i).is_some_and(|s| {
            s.live_members == n && s.members.iter().filter(|m| m.state == "alive").count() == n - 1
        })
    };
    let containers: Vec<usize> = (1..=n).filter(|&i| !fleet.is_guest(i)).collect();
    let seen = wait_until(Duration::from_secs(60), || containers.iter().all(|&i| all_alive(i)));
    let seen_by_containers = back.elapsed();
    assert!(seen, "the containers list {name} alive within 60 s of its link's return");
    assert!(fleet.wait_ssh(guest, Duration::from_secs(120)), "{name} answers ssh once its link is back");
    let listed = wait_until(Duration::from_secs(60), || (1..=n).all(all_alive));
    assert!(
        listed,
        "every Pi lists every other alive within 60 s of the link's return: {:?}",
        (1..=n).map(|i| fleet.status(i).map(|s| (s.live_members, s.network))).collect::<Vec<_>>()
    );
    // ... and the guest's next baton gauge, at the laptop's DogStatsD.
    let next = || {
        gauges(&statsd, "").into_iter().find(|(at, _, h)| *at >= back && *h == name).map(|(at, c, _)| (at, c))
    };
    assert!(wait_until(Duration::from_secs(60), || next().is_some()), "{name} relays the baton again");
    let (at, counter) = next().expect("a gauge");
    let gauge_after = at.saturating_duration_since(back);
    assert!(
        counter > highest_before,
        "{name}'s first gauge {counter}, highest before its reboot {highest_before}"
    );

    // The same process all along: active, never restarted by systemd.
    assert_eq!(fleet.run(guest, "systemctl is-active herd").trim(), "active");
    let restarts = fleet.run(guest, "systemctl show -p NRestarts --value herd");
    let restarts: u32 = restarts.trim().parse().expect("NRestarts");
    assert_eq!(restarts, 0, "systemd restarted herd {restarts} times this boot");
    // What it said while it waited: `herd status`, the unit's status line,
    // and its log (once at WARN, then `network ready` as it joined).
    let shown = fleet.run(guest, "cat /run/herd-late-link.status");
    assert!(shown.starts_with("WAITING FOR A NETWORK"), "herd status while the link was down:\n{shown}");
    let unit_status = fleet.run(guest, "cat /run/herd-late-link.unit");
    assert!(unit_status.starts_with("waiting for a network: "), "StatusText: {unit_status}");
    let why = unit_status.trim().trim_start_matches("waiting for a network: ").to_owned();
    let journal = fleet.run(guest, "journalctl -b -u herd --no-pager -o cat");
    let warned: Vec<&str> =
        journal.lines().filter(|l| l.contains("WARN") && l.contains("waiting for a network")).collect();
    assert_eq!(warned.len(), 1, "`waiting for a network` once at WARN:\n{journal}");
    let ready = journal.lines().find(|l| l.contains("network ready")).unwrap_or_default();
    assert!(!ready.is_empty(), "`network ready` in the journal:\n{journal}");
    let (w, r) = (journal.find(warned[0]), journal.find(ready));
    assert!(w < r, "waiting said before ready:\n{journal}");
    assert!(ready.contains(&format!("ip=10.78.0.{guest}")), "{ready}");
    let every_boot = fleet.journal(guest);
    assert!(!every_boot.contains("cannot join multicast group"), "{every_boot}");
    let waited = ready.split_whitespace().find_map(|f| f.strip_prefix("waited=")).unwrap_or("?").to_owned();
    // The guest's own intervals, on its monotonic clock: link up -> herd
    // following it, -> the guest listing every other Pi.
    let guest_log = fleet.run(guest, "journalctl -b -u herd -u herd-late-link --no-pager -o short-monotonic");
    let link_up = monotonic(&guest_log, "link up").expect("`link up` in the guest's journal");
    let after_link = |what: &str| {
        let at = monotonic(&guest_log, what).unwrap_or_else(|| panic!("`{what}` in:\n{guest_log}"));
        assert!(at >= link_up, "`{what}` before the link was up:\n{guest_log}");
        Duration::from_secs_f64(at - link_up)
    };
    let noticed = after_link("network ready");
    let guest_lists = (1..=n)
        .filter(|&i| i != guest)
        .map(|i| after_link(&member("up", &fleet.name(i))))
        .max()
        .unwrap_or_default();
    let all_listed = seen_by_containers.max(guest_lists);

    report(
        "late network",
        &format!(
            "the aarch64 guest's link held down at boot until herd had run {HELD_S} s under systemd: active all along, NRestarts=0, `waiting for a network` once at WARN ({why}), `herd status` said WAITING FOR A NETWORK, then `network ready` and joined; no `cannot join multicast group`"
        ),
        &format!(
            "link back {} after the reboot began; link back -> all members listed {} (the container listed the guest {}, the guest the container {} by its clock), -> the guest's next baton gauge {}; herd said network ready {} ms after the link (guest clock), waited={waited}; restarts {restarts}",
            secs(booted),
            secs(all_listed),
            secs(seen_by_containers),
            secs(guest_lists),
            secs(gauge_after),
            noticed.as_millis(),
        ),
    );
}
