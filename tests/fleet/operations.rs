//! Scenarios 4 and 5: a container and an aarch64 guest rebooted (herd is
//! back after boot: enabled, after network-online), and a changed config rolled out host by host with
//! `install.sh --force-config` (it takes effect; the cluster never drops
//! below N-1). One baton throughout.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Statsd, baton_gauge, gauges, wait_until};
use crate::harness::{Fleet, report, secs};

const PIS: usize = 3;

/// Samples the fleet's batons for `d`: the most distinct held ids seen at once.
fn most_batons(fleet: &Fleet, d: Duration) -> usize {
    let end = Instant::now() + d;
    let mut most = 0;
    while Instant::now() < end {
        most = most.max(fleet.batons().len());
    }
    most
}

/// `systemctl reboot` of Pi `i`: it boots again, herd is active after
/// network-online, every Pi lists it, it relays, one baton; (ssh back,
/// rejoined by all) after the reboot began.
fn reboot(fleet: &Fleet, statsd: &Statsd, i: usize) -> (Duration, Duration) {
    let name = fleet.name(i);
    let before = fleet.pid(i);
    let t0 = Instant::now();
    // The connection may drop before ssh returns: its status is not the test.
    let _ = fleet.ssh(i, "sudo systemctl reboot");
    let rebooted = wait_until(Duration::from_secs(120), || fleet.try_pid(i).is_some_and(|p| p != before));
    assert!(rebooted, "{name} booted again within 120 s");
    let booting = Instant::now();
    assert!(fleet.wait_ssh(i, Duration::from_secs(300)), "{name} answers ssh after the reboot");
    let booted = t0.elapsed();
    let active = wait_until(Duration::from_secs(60), || {
        fleet.ssh(i, "systemctl is-active --quiet herd").status.success()
    });
    assert!(active, "herd is active on {name} after boot (enabled, after network-online)");
    let ordered = fleet.run(i, "systemctl show -p After --value herd");
    assert!(ordered.contains("network-online.target"), "{ordered}");
    let n = fleet.pis;
    let back = wait_until(Duration::from_secs(30), || {
        (1..=n).all(|j| fleet.status(j).is_some_and(|s| s.live_members == n))
    });
    let rejoined = t0.elapsed();
    assert!(back, "every Pi lists {name} again");
    // A rebooted container has a new network namespace: its Agent is
    // listened to anew. A guest's metrics go on arriving at the laptop's.
    let again = (!fleet.is_guest(i)).then(|| fleet.statsd_on(&[i]));
    let relays = wait_until(Duration::from_secs(30), || {
        gauges(again.as_ref().unwrap_or(statsd), "").iter().any(|(at, _, h)| *at > booting && *h == name)
    });
    assert!(relays, "{name} relays the baton after its reboot");
    let most = most_batons(fleet, Duration::from_secs(3));
    assert!(most <= 1, "one baton after {name}'s reboot, saw {most} held at once");
    let boots = fleet.run(i, "journalctl --list-boots --no-pager | wc -l");
    let journal = fleet.journal(i);
    assert!(
        journal.matches("herd started").count() >= 2,
        "two boots in {name}'s journal ({} boots listed):\n{journal}",
        boots.trim()
    );
    (booted, rejoined)
}

#[test]
fn a_rebooted_pi_runs_herd_again_after_boot() {
    // psa and psb are containers, psc the aarch64 guest.
    let Some(fleet) = Fleet::mixed("reboot", 2, 1) else { return };
    let statsd = fleet.statsd();
    let _files = fleet.deploy(&statsd);
    let (container_ssh, container_back) = reboot(&fleet, &statsd, 2);
    let (guest_ssh, guest_back) = reboot(&fleet, &statsd, 3);
    report(
        "reboot",
        "systemctl reboot of a container, then of the aarch64 guest: booted, herd active after network-online, rejoined, relaying, one baton",
        &format!(
            "container: ssh back {} after the reboot, rejoined by all {}; guest: ssh back {}, rejoined by all {}",
            secs(container_ssh),
            secs(container_back),
            secs(guest_ssh),
            secs(guest_back)
        ),
    );
}

#[test]
fn a_config_push_host_by_host_takes_effect_without_dropping_the_cluster() {
    let Some(fleet) = Fleet::new("push", PIS) else { return };
    let statsd = fleet.statsd();
    let _files = fleet.deploy(&statsd);

    // The change: a constant tag on every metric.
    let text = fleet.config().replacen("tags = []", "tags = [\"rollout:2\"]", 1);
    assert!(text.contains("tags = [\"rollout:2\"]"), "config/herd.toml has a `tags = []` line");
    let pushed = fleet.files(&text);

    // While it rolls out, every answering Pi's view is sampled.
    let done = AtomicBool::new(false);
    let fewest = Mutex::new(usize::MAX);
    let t0 = Instant::now();
    thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                for i in 1..=PIS {
                    if let Some(n) = fleet.cluster_view(i) {
                        let mut f = fewest.lock().unwrap();
                        *f = (*f).min(n);
                    }
                }
            }
        });
        fleet.install(&pushed, &["--force-config"]);
        done.store(true, Ordering::Relaxed);
    });
    let rolled = t0.elapsed();
    let fewest = *fewest.lock().unwrap();
    assert!(fewest >= PIS - 1, "the cluster dropped to {fewest} live members during the rollout");
    let names: BTreeSet<String> = (1..=PIS).map(|i| fleet.name(i)).collect();
    // Both kinds of line are in the listener now: the untagged ones of before.
    let tagged = wait_until(Duration::from_secs(15), || {
        let lines = statsd.lines();
        let hosts: BTreeSet<&str> =
            lines.iter().filter_map(|(_, l)| baton_gauge(l, ",rollout:2")).map(|(_, h)| h).collect();
        hosts.len() == names.len() && hosts.iter().all(|h| names.contains(*h))
    });
    assert!(tagged, "every Pi sends with the pushed tag");
    let most = most_batons(&fleet, Duration::from_secs(3));
    assert!(most <= 1, "one baton after the rollout, saw {most} held at once");
    report(
        "config push",
        "install.sh --force-config host by host: the new tag on every Pi's metrics, never below N-1, one baton",
        &format!("rolled out to {PIS} Pis in {}, fewest live members seen {fewest} of {PIS}", secs(rolled)),
    );
}

#[test]
fn systemctl_reload_applies_a_changed_config_in_place() {
    let Some(fleet) = Fleet::new("reload", PIS) else { return };
    let statsd = fleet.statsd();
    let _files = fleet.deploy(&statsd);
    let before = fleet.status(1).expect("status of psa");
    // The operator edits the installed config on psa and reloads.
    fleet.run(1, "sudo sed -i 's/^tags = \\[\\]/tags = [\"reloaded:1\"]/' /etc/herd/herd.toml");
    let t0 = Instant::now();
    fleet.run(1, "sudo systemctl reload herd");
    let tagged = wait_until(Duration::from_secs(15), || {
        statsd
            .lines()
            .iter()
            .any(|(at, l)| *at > t0 && baton_gauge(l, ",reloaded:1").is_some_and(|(_, h)| h == "psa"))
    });
    let took = t0.elapsed();
    assert!(tagged, "psa's gauges carry the reloaded tag");
    let after = fleet.status(1).expect("status of psa");
    assert_eq!(after.incarnation, before.incarnation, "the same life: reloaded, not restarted");
    assert_eq!(after.config_file.as_deref(), Some("/etc/herd/herd.toml"));
    let journal = fleet.journal(1);
    assert!(journal.contains("config reloaded"), "{journal}");
    assert!(fleet.run(1, "systemctl is-active herd").trim() == "active");
    for i in 2..=PIS {
        let log = fleet.journal(i);
        for event in ["member left", "member down", "member restarted"] {
            assert!(!log.contains(event), "{}: `{event}` after psa's reload:\n{log}", fleet.name(i));
        }
    }
    report(
        "reload",
        "sed on /etc/herd/herd.toml, systemctl reload herd: the new tag on psa's metrics, same incarnation, peers log nothing",
        &format!("reload to the first tagged gauge {}", secs(took)),
    );
}
