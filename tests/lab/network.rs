//! Scenario 8: the networks Pis have. Agents run with the shipped
//! `multicast_if = "0.0.0.0"` and each host has what a DHCP lease gives a
//! Pi (an address and a default route); then one host's network misbehaves
//! as a Pi's does, and the agent must follow it without a restart:
//!
//! - started before its network (eth0 down, no address), the network up 5 s
//!   later: the agent waits (says so once, in its log, `/status` and `herd
//!   status`) and joins;
//! - its link dropped for longer than `down_after` and back;
//! - renumbered (old address gone, a new one a second later): back in the
//!   relay under its new address within a few seconds, not at the next
//!   periodic check;
//! - its interface deleted and created again (a USB dongle replugged): the
//!   group joined again (the kernel dropped it with the interface), so it
//!   hears a newcomer started afterwards.
//!
//! Each prints the time from the network's return to every member listing
//! every other alive, and to the host's next baton gauge.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Agent, Statsd, gauges, herd_bin, toml_str, wait_until};
use crate::harness::{Lab, assert_monotonic, expect_mesh, report};

const HOSTS: usize = 4;

/// Host `i`'s agent with herd's shipped multicast settings (the route picks
/// the interface), pacing the baton at the default 100 ms.
fn shipped(lab: &Lab, i: usize) -> crate::common::Spec {
    lab.spec(i).gossip("multicast_if", &toml_str("0.0.0.0")).secret("networks").set(
        "baton",
        "hold",
        &toml_str("100ms"),
    )
}

/// A lab of `hosts` hosts with a default route each (the lease of their
/// address), StatsD listeners, and agents started on `1..=running`.
fn lab_with(tag: &str, hosts: usize, running: usize) -> Option<(Lab, Statsd, Vec<Agent>)> {
    let lab = Lab::new(tag, hosts)?;
    for i in 1..=hosts {
        lab.ip(i, "route add default via 10.77.0.254 dev eth0");
    }
    let statsd = lab.statsd(hosts);
    let agents: Vec<Agent> = (1..=running).map(|i| lab.start(i, &shipped(&lab, i))).collect();
    Some((lab, statsd, agents))
}

/// Waits until the baton has moved `n` more times.
fn baton_moves(statsd: &Statsd, n: usize, what: &str) {
    let before = gauges(statsd, "").len();
    assert!(
        wait_until(Duration::from_secs(20), || gauges(statsd, "").len() >= before + n),
        "the baton should move {what}: {} gauges",
        gauges(statsd, "").len()
    );
}

/// When every host of `hosts` listed every other alive (and `also(status)`
/// held for each), polled from `since`; panics after `within`.
fn all_listed(
    lab: &Lab,
    hosts: &[usize],
    since: Instant,
    within: Duration,
    also: impl Fn(usize, &herd::agent::snapshot::Snapshot) -> bool,
) -> Duration {
    let done = wait_until(within, || {
        let s = lab.statuses(hosts);
        s.len() == hosts.len()
            && s.iter().all(|(i, st)| {
                let alive = st.members.iter().filter(|m| m.state == "alive").count();
                st.live_members == hosts.len() && alive == hosts.len() - 1 && also(*i, st)
            })
    });
    let took = since.elapsed();
    let picture: Vec<String> = lab
        .statuses(hosts)
        .iter()
        .map(|(i, s)| {
            let members: Vec<String> =
                s.members.iter().map(|m| format!("{} {} {}", m.name, m.state, m.addr)).collect();
            format!("n{i}: {} live [{}] network {:?}", s.live_members, members.join(", "), s.network)
        })
        .collect();
    assert!(done, "every host should list every other alive within {within:?}:\n{}", picture.join("\n"));
    took
}

/// The time from `since` to the first gauge host `n<i>` sent after it.
fn next_gauge(statsd: &Statsd, i: usize, since: Instant) -> Duration {
    let host = format!("n{i}");
    let mut at = None;
    let sent = wait_until(Duration::from_secs(20), || {
        at = gauges(statsd, "").into_iter().find(|(t, _, h)| *t >= since && *h == host).map(|(t, ..)| t);
        at.is_some()
    });
    assert!(sent, "{host} should send a baton gauge again");
    at.unwrap().saturating_duration_since(since)
}

/// Panics unless the agent is still its first life (no restart) and never
/// logged a send error per datagram.
fn still_running(agent: &mut Agent) {
    assert!(agent.is_running(), "{} exited:\n{}", agent.name, agent.dump());
    assert!(!agent.has_line("cannot send datagram"), "send errors logged per datagram:\n{}", agent.dump());
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

#[test]
fn started_before_its_network_it_waits_then_joins() {
    let Some((lab, statsd, mut agents)) = lab_with("late", HOSTS, HOSTS - 1) else { return };
    // Host 4 as a Pi whose Wi-Fi has not associated: link down, no address.
    lab.ip(4, "addr flush dev eth0");
    lab.ip(4, "link set eth0 down");
    agents.push(lab.start(4, &shipped(&lab, 4)));
    let started = Instant::now();
    expect_mesh(&agents[..3], Duration::from_secs(5));
    baton_moves(&statsd, 10, "between the three with a network");

    let late = &mut agents[3];
    let waiting = late.expect("waiting for a network", Duration::from_secs(5));
    assert!(late.is_running(), "herd must not exit for want of a network:\n{}", late.dump());
    let status = lab.status(4).expect("the waiting agent serves /status");
    assert_eq!(status.network.state, "waiting", "{:?}", status.network);
    let why = status.network.waiting_for.clone().unwrap_or_default();
    assert!(why.contains("no IPv4 address"), "{why}");
    let out = Command::new("ip").args(["netns", "exec", &lab.ns(4), herd_bin(), "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("WAITING FOR A NETWORK"), "herd status should say so first:\n{text}");
    assert!(text.contains("no IPv4 address"), "{text}");

    // The network comes 5 s after the agent: link, lease, route.
    let up_at = started + Duration::from_secs(5);
    std::thread::sleep(up_at.saturating_duration_since(Instant::now()));
    let back = Instant::now();
    lab.ip(4, "link set eth0 up");
    lab.lease(4, lab.addr(4));
    let listed = all_listed(&lab, &[1, 2, 3, 4], back, Duration::from_secs(10), |_, _| true);
    let gauge = next_gauge(&statsd, 4, back);

    let late = &mut agents[3];
    still_running(late);
    let warned =
        late.lines().iter().filter(|l| l.contains("WARN") && l.contains("waiting for a network")).count();
    assert_eq!(warned, 1, "said once at WARN:\n{}", late.dump());
    late.expect("network ready", Duration::from_secs(1));
    assert_eq!(lab.status(4).unwrap().network.state, "ready");
    assert_monotonic(&gauges(&statsd, ""));
    report(
        "8a. started before its network",
        "eth0 down and no address at start: runs, WARN once, /status and `herd status` say what it waits for; network up 5 s later: joins, same process",
        &format!(
            "waiting said {} after start; network back -> all members listed {}, -> its next baton gauge {}",
            ms(waiting.saturating_duration_since(late.spawned)),
            ms(listed),
            ms(gauge)
        ),
    );
}

#[test]
fn a_link_that_drops_and_returns_rejoins() {
    let Some((lab, statsd, mut agents)) = lab_with("linkdrop", HOSTS, HOSTS) else { return };
    expect_mesh(&agents, Duration::from_secs(5));
    baton_moves(&statsd, 10, "before the link drops");
    // Longer than down_after + a heartbeat: the others mark it down.
    lab.script(&["cut", &lab.id, "2"]);
    let cut = Instant::now();
    let marked_down = wait_until(Duration::from_secs(10), || {
        lab.status(1).is_some_and(|s| s.members.iter().any(|m| m.name == "n2" && m.state == "down"))
    });
    assert!(marked_down, "n1 should mark n2 down while its link is cut");
    // n2 itself says what it waits for: its link.
    let network = lab.status(2).expect("n2 answers /status").network;
    assert_eq!(network.state, "waiting", "{network:?}");
    assert!(network.waiting_for.as_deref().unwrap_or("").contains("eth0 has no link"), "{network:?}");
    std::thread::sleep((cut + Duration::from_secs(7)).saturating_duration_since(Instant::now()));
    lab.script(&["uncut", &lab.id, "2"]);
    let back = Instant::now();
    let listed = all_listed(&lab, &[1, 2, 3, 4], back, Duration::from_secs(10), |_, _| true);
    let gauge = next_gauge(&statsd, 2, back);
    still_running(&mut agents[1]);
    assert_monotonic(&gauges(&statsd, ""));
    report(
        "8b. link drop and return",
        "n2's cable out 7 s (marked down by its peers; it says it waits for its link) and back, no restart",
        &format!("link back -> all members listed {}, -> its next baton gauge {}", ms(listed), ms(gauge)),
    );
}

#[test]
fn a_renumbered_pi_is_back_in_the_relay_at_its_new_address() {
    let Some((lab, statsd, mut agents)) = lab_with("renumber", HOSTS, HOSTS) else { return };
    expect_mesh(&agents, Duration::from_secs(5));
    baton_moves(&statsd, 10, "before the renumbering");
    // The DHCP server hands out another address: the old one goes (with
    // the routes through it), the new one comes a second later.
    let new = Ipv4Addr::new(10, 77, 0, 33);
    lab.ip(3, "addr del 10.77.0.3/24 dev eth0");
    std::thread::sleep(Duration::from_secs(1));
    let back = Instant::now();
    lab.lease(3, new);
    let prefix = format!("{new}:");
    // Within a few seconds (a heartbeat announces the new address at once),
    // not at a periodic check: the others send to the new address.
    let listed = all_listed(&lab, &[1, 2, 3, 4], back, Duration::from_secs(5), |i, s| {
        i == 3 || s.members.iter().any(|m| m.name == "n3" && m.addr.starts_with(&prefix))
    });
    let gauge = next_gauge(&statsd, 3, back);
    let renumbered = &mut agents[2];
    still_running(renumbered);
    // The old address took the default route with it: the agent waited
    // for the second between (said once), then joined as the new address.
    let lines = renumbered.lines();
    let ready = lines.iter().rfind(|l| l.contains("network ready")).cloned().unwrap_or_default();
    assert!(ready.contains(&format!("ip={new}")), "{}", renumbered.dump());
    let network = lab.status(3).unwrap().network;
    assert_eq!(network.address, new.to_string(), "{network:?}");
    assert_monotonic(&gauges(&statsd, ""));
    report(
        "8c. renumbered",
        "n3's 10.77.0.3 removed, 10.77.0.33 added 1 s later: every peer lists it alive at the new address",
        &format!("new address -> all members listed {}, -> its next baton gauge {}", ms(listed), ms(gauge)),
    );
}

#[test]
fn an_interface_created_again_is_joined_again() {
    let Some((lab, statsd, mut agents)) = lab_with("replug", HOSTS + 1, HOSTS) else { return };
    expect_mesh(&agents, Duration::from_secs(5));
    baton_moves(&statsd, 10, "before the interface goes");
    lab.script(&["unplug", &lab.id, "2"]);
    std::thread::sleep(Duration::from_secs(2));
    lab.script(&["plug", &lab.id, "2"]);
    let back = Instant::now();
    lab.lease(2, lab.addr(2));
    let listed = all_listed(&lab, &[1, 2, 3, 4], back, Duration::from_secs(10), |_, _| true);
    let gauge = next_gauge(&statsd, 2, back);
    // The kernel dropped the group with the old interface: only a join on
    // the new one lets n2 hear multicast again.
    let out = Command::new("ip").args(["-n", &lab.ns(2), "maddr", "show", "dev", "eth0"]).output().unwrap();
    let maddr = String::from_utf8_lossy(&out.stdout);
    assert!(maddr.contains("230.1.1.251"), "n2's new eth0 should be in the group:\n{maddr}");
    // A newcomer is heard by all, n2 too (its heartbeats are multicast).
    agents.push(lab.start(5, &shipped(&lab, 5)));
    let newcomer = Instant::now();
    let heard = all_listed(&lab, &[1, 2, 3, 4, 5], newcomer, Duration::from_secs(10), |_, _| true);
    still_running(&mut agents[1]);
    assert_monotonic(&gauges(&statsd, ""));
    report(
        "8d. interface created again",
        "n2's eth0 deleted, created 2 s later with its lease: group joined again, a newcomer n5 listed by all",
        &format!(
            "interface back -> all members listed {}, -> its next baton gauge {}; newcomer listed by all {}",
            ms(listed),
            ms(gauge),
            ms(heard)
        ),
    );
}
