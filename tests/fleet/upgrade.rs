//! A rolling upgrade from the previous release (tests/compat/previous-release,
//! built from git history by tests/compat/previous.rs) to this one, with
//! `deploy/install.sh`, one host at a time, as an operator does it: the
//! previous release's own config stays installed. Never a `member down`,
//! never two batons, no regeneration; at the end every Pi speaks this
//! release's wire version to every other.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herd::core::wire::VERSION;

use crate::common::{assert_one_baton, gauges, may_run, wait_until};
use crate::harness::{Fleet, report, secs};
use crate::previous::{previous_build, previous_tree};

const PIS: usize = 3;

#[test]
fn a_rolling_upgrade_from_the_previous_release_never_splits_the_cluster() {
    let old = previous_build();
    if !may_run("the rolling upgrade", old.as_ref().err().cloned()) {
        return;
    }
    let old = old.expect("checked");
    let Some(fleet) = Fleet::new("upgrade", PIS) else { return };
    let statsd = fleet.statsd();
    // The operator installed the previous release with its own
    // config/herd.toml (paced, as its CHANGELOG entry asks); the upgrade
    // keeps that file (install.sh without --force-config), so this release
    // must run on it too.
    let shipped =
        std::fs::read_to_string(previous_tree().join("config/herd.toml")).expect("its config/herd.toml");
    let old_config = fleet.config_of(&shipped.replacen("hold = \"0ms\"", "hold = \"100ms\"", 1));
    let files = fleet.files(&old_config);
    fleet.install_builds(&files, Some(old.clone()), &[]);
    let formed = wait_until(Duration::from_secs(30), || {
        (1..=PIS).all(|i| fleet.status(i).is_some_and(|s| s.live_members == PIS))
    });
    assert!(formed, "the previous release forms a cluster of {PIS}");
    let old_version = fleet.run(1, "herd --version");
    let wire = crate::previous::previous_release().1;
    assert!(old_version.contains(&format!(", wire {wire}, ")), "the previous release runs: {old_version}");
    let names: BTreeSet<String> = (1..=PIS).map(|i| fleet.name(i)).collect();
    let hosts_since = |t: Instant| {
        gauges(&statsd, "").iter().filter(|(at, ..)| *at > t).map(|g| g.2.clone()).collect::<BTreeSet<_>>()
    };
    let t0 = Instant::now();
    assert!(wait_until(Duration::from_secs(30), || hosts_since(t0) == names), "gauges from every Pi");

    // The upgrade, host by host, while every answering Pi is watched.
    let t1 = Instant::now();
    let ((), fewest, most) = fleet.watch(|| {
        fleet.install_builds(&files, None, &[]);
    });
    let upgraded = t1.elapsed();
    assert!(fewest >= PIS - 1, "the cluster dropped to {fewest} live members during the upgrade");
    assert!(most <= 1, "{most} batons held at once during the upgrade");
    let t2 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || hosts_since(t2) == names),
        "gauges from every Pi after it"
    );
    let all_new = wait_until(Duration::from_secs(15), || {
        (1..=PIS).all(|i| {
            fleet
                .status(i)
                .is_some_and(|s| s.live_members == PIS && s.members.iter().all(|m| m.wire == VERSION))
        })
    });
    let wires: Vec<String> = (1..=PIS)
        .map(|i| {
            let s = fleet.status(i);
            let w: Vec<String> = s
                .iter()
                .flat_map(|s| s.members.iter().map(|m| format!("{}:{}:{}", m.name, m.state, m.wire)))
                .collect();
            format!("{} sees {}", fleet.name(i), w.join(" "))
        })
        .collect();
    assert!(all_new, "after the upgrade every Pi speaks wire {VERSION} to every other: {wires:?}");
    let g = gauges(&statsd, "");
    assert_one_baton(&g);
    for i in 1..=PIS {
        let journal = fleet.journal(i);
        for bad in ["member down", "baton regenerated"] {
            assert!(!journal.contains(bad), "{}: `{bad}` during the upgrade:\n{journal}", fleet.name(i));
        }
    }
    report(
        "rolling upgrade",
        "previous release on 3 Pis, then install.sh with this one host by host: never below N-1, one baton, no member down, no regeneration, all on the new wire version after",
        &format!(
            "upgraded 3 Pis in {}, fewest live members seen {fewest} of {PIS}, most batons held at once {most}, {} gauges, every counter once",
            secs(upgraded),
            g.len()
        ),
    );
}
