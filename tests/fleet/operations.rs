//! Scenarios 4 and 5: a Pi rebooted (herd is back after boot: enabled,
//! after network-online), and a changed config rolled out host by host with
//! `install.sh --force-config` (it takes effect; the cluster never drops
//! below N-1). One baton throughout.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{baton_gauge, gauges, wait_until};
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

#[test]
fn a_rebooted_pi_runs_herd_again_after_boot() {
    let Some(fleet) = Fleet::new("reboot", PIS) else { return };
    let statsd = fleet.statsd();
    let _files = fleet.deploy(&statsd);
    let psb = fleet.name(2);
    let init_before = fleet.pid(2);

    let t0 = Instant::now();
    // The connection may drop before ssh returns: its status is not the test.
    let _ = fleet.ssh(2, "sudo systemctl reboot");
    let rebooted = wait_until(Duration::from_secs(60), || {
        let out = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fleet/fleet.sh"))
            .args(["pid", &fleet.id, "2"])
            .output()
            .expect("fleet.sh pid");
        let pid = String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().ok();
        pid.is_some_and(|p| p != init_before)
    });
    assert!(rebooted, "psb booted again within 60 s");
    assert!(fleet.wait_ssh(2, Duration::from_secs(60)), "psb answers ssh after the reboot");
    let booted = t0.elapsed();
    let active = wait_until(Duration::from_secs(30), || {
        fleet.ssh(2, "systemctl is-active --quiet herd").status.success()
    });
    assert!(active, "herd is active after boot (enabled, after network-online)");
    let ordered = fleet.run(2, "systemctl show -p After --value herd");
    assert!(ordered.contains("network-online.target"), "{ordered}");
    let back = wait_until(Duration::from_secs(15), || {
        (1..=PIS).all(|i| fleet.status(i).is_some_and(|s| s.live_members == PIS))
    });
    let rejoined = t0.elapsed();
    assert!(back, "every Pi lists psb again");
    // The rebooted Pi has a new network namespace: its Agent is listened to anew.
    let again = fleet.statsd_on(&[2]);
    let relays = wait_until(Duration::from_secs(15), || gauges(&again, "").iter().any(|(_, _, h)| *h == psb));
    assert!(relays, "psb relays the baton after its reboot");
    let most = most_batons(&fleet, Duration::from_secs(3));
    assert!(most <= 1, "one baton after the reboot, saw {most} held at once");
    let journal = fleet.journal(2);
    assert!(journal.matches("herd started").count() >= 2, "two boots in psb's journal:\n{journal}");
    report(
        "reboot",
        "systemctl reboot of a container: booted, herd active after network-online, rejoined, relaying, one baton",
        &format!("ssh back {} after the reboot, rejoined by all {}", secs(booted), secs(rejoined)),
    );
}

#[test]
fn a_config_push_host_by_host_takes_effect_without_dropping_the_cluster() {
    let Some(fleet) = Fleet::new("push", PIS) else { return };
    let statsd = fleet.statsd();
    let _files = fleet.deploy(&statsd);

    // The change: a constant tag on every metric.
    let (dir, _, secret) = fleet.operator_files();
    let pushed = dir.path().join("pushed.toml");
    let text = fleet.config().replacen("tags = []", "tags = [\"rollout:2\"]", 1);
    assert!(text.contains("tags = [\"rollout:2\"]"), "config/herd.toml has a `tags = []` line");
    std::fs::write(&pushed, text).expect("write the pushed config");

    // While it rolls out, every answering Pi's view is sampled.
    let done = AtomicBool::new(false);
    let fewest = Mutex::new(usize::MAX);
    let t0 = Instant::now();
    thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                for i in 1..=PIS {
                    if let Some(st) = fleet.status(i) {
                        let mut f = fewest.lock().unwrap();
                        *f = (*f).min(st.live_members);
                    }
                }
            }
        });
        fleet.install(&["--config", &pushed.display().to_string(), "--secret", &secret, "--force-config"]);
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
