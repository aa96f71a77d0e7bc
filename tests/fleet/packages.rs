//! Scenario 10: herd's Debian packages on the Pis, as Raspberry Pi OS
//! installs every other service: `install.sh --deb` puts the `amd64`
//! package on the containers and the `arm64` one on the aarch64 guest with
//! `apt-get install`; herd runs under systemd from `/usr/bin` and forms one
//! cluster. An upgrade to a higher version keeps an edited
//! `/etc/herd/herd.toml`, restarts herd and never splits the cluster;
//! `apt-get remove` stops it with a leave the others log; `apt-get purge`
//! leaves no file of the package behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{gauges, may_run, member, wait_until};
use crate::harness::{Fleet, repo, report, secs};

const CONTAINERS: usize = 2;
const PIS: usize = CONTAINERS + 1;
const EDIT: &str = "# edited on this Pi: dpkg keeps this file across upgrades";

/// The `amd64` and `arm64` packages `scripts/dist.sh` left in dist/.
fn built_packages() -> Result<PathBuf, String> {
    let dist = repo().join("dist");
    for arch in ["amd64", "arm64"] {
        let found = std::fs::read_dir(&dist)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(&format!("_{arch}.deb"))))
            .unwrap_or(false);
        if !found {
            return Err(format!("no herd_*_{arch}.deb in {} (scripts/dist.sh makes it)", dist.display()));
        }
    }
    Ok(dist)
}

/// The same binaries (those dist.sh built) packaged again as Debian revision
/// `revision`, into `out`: an upgrade an operator would install.
fn repackage(out: &Path, revision: &str) {
    let status = Command::new("bash")
        .arg(repo().join("scripts/dist.sh"))
        .args(["--no-build", "--deb-revision", revision, "--out"])
        .arg(out)
        .args(["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"])
        .env_remove("RUSTFLAGS")
        .status()
        .expect("run scripts/dist.sh");
    assert!(status.success(), "scripts/dist.sh --deb-revision {revision}: {status}");
}

/// The installed package's version on Pi `i`, or "" when none is installed.
fn version(fleet: &Fleet, i: usize) -> String {
    fleet.run(i, "dpkg-query -W -f='${Status} ${Version}' herd 2>/dev/null | sed -n 's/^install ok installed //p'; true")
        .trim()
        .to_owned()
}

fn main_pid(fleet: &Fleet, i: usize) -> String {
    fleet.run(i, "systemctl show -p MainPID --value herd").trim().to_owned()
}

#[test]
fn packages_install_upgrade_remove_and_purge_like_any_pi_service() {
    let debs = built_packages();
    if !may_run("the package scenario", debs.as_ref().err().cloned()) {
        return;
    }
    let debs = debs.expect("checked");
    let Some(fleet) = Fleet::mixed("packages", CONTAINERS, 1) else { return };
    let statsd = fleet.statsd();
    let files = fleet.operator_files();
    let all = || (1..=PIS).all(|i| fleet.status(i).is_some_and(|s| s.live_members == PIS));

    // Install: each Pi's package, herd from /usr/bin under the package's unit.
    let (containers, guest) = fleet.install_packages(&files, &debs);
    assert!(wait_until(Duration::from_secs(30), all), "every Pi lists {PIS} live members after the install");
    let names: BTreeSet<String> = (1..=PIS).map(|i| fleet.name(i)).collect();
    let since = |t: Instant| {
        gauges(&statsd, "").iter().filter(|(at, ..)| *at > t).map(|g| g.2.clone()).collect::<BTreeSet<_>>()
    };
    let t0 = Instant::now();
    assert!(wait_until(Duration::from_secs(30), || since(t0) == names), "baton gauges from every Pi");
    let first = version(&fleet, 1);
    for i in 1..=PIS {
        let arch = if fleet.is_guest(i) { "arm64" } else { "amd64" };
        assert_eq!(fleet.run(i, "dpkg --print-architecture").trim(), arch);
        assert_eq!(version(&fleet, i), first, "{}: one version everywhere", fleet.name(i));
        let unit = fleet.run(i, "systemctl show -p UnitFileState,ActiveState herd");
        for want in ["UnitFileState=enabled", "ActiveState=active"] {
            assert!(unit.contains(want), "{}: {want} in {unit}", fleet.name(i));
        }
        // /lib is /usr/lib on a merged-/usr system (bookworm's containers).
        let fragment = fleet.run(i, "readlink -f \"$(systemctl show -p FragmentPath --value herd)\"");
        assert_eq!(
            fragment.trim(),
            "/usr/lib/systemd/system/herd.service",
            "{}: the package's unit runs",
            fleet.name(i)
        );
        let exe = fleet.run(i, &format!("sudo readlink /proc/{}/exe", main_pid(&fleet, i)));
        assert_eq!(exe.trim(), "/usr/bin/herd", "{}", fleet.name(i));
        assert!(fleet.run(i, "getent group herd-secret").starts_with("herd-secret:"));
        assert!(
            fleet
                .ssh(i, "test ! -e /usr/local/bin/herd && test ! -e /etc/systemd/system/herd.service")
                .status
                .success()
        );
    }

    // Upgrade: an edited config on psa, then a higher Debian revision, host
    // by host, while every Pi is watched.
    let upgrade = tempfile::tempdir().expect("temporary directory");
    let t = Instant::now();
    repackage(upgrade.path(), "2");
    let packaged = t.elapsed();
    let second = {
        let name = std::fs::read_dir(upgrade.path())
            .expect("read the upgrade")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with("_amd64.deb"))
            .expect("the amd64 upgrade");
        name.split('_').nth(1).expect("herd_<version>_<arch>.deb").to_owned()
    };
    let newer =
        Command::new("dpkg").args(["--compare-versions", &second, "gt", &first]).status().expect("dpkg");
    assert!(newer.success(), "{second} is newer than {first}");
    fleet.run(1, &format!("echo '{EDIT}' | sudo tee -a /etc/herd/herd.toml >/dev/null"));
    let pids: Vec<String> = (1..=PIS).map(|i| main_pid(&fleet, i)).collect();
    let t1 = Instant::now();
    let ((up_containers, up_guest), fewest, most) =
        fleet.watch(|| fleet.install_packages(&files, upgrade.path()));
    let upgraded = t1.elapsed();
    assert!(fewest >= PIS - 1, "the cluster dropped to {fewest} live members during the upgrade");
    assert!(most <= 1, "{most} batons at once during the upgrade");
    assert!(wait_until(Duration::from_secs(30), all), "every Pi lists {PIS} live members after the upgrade");
    for i in 1..=PIS {
        assert_eq!(version(&fleet, i), second, "{} upgraded", fleet.name(i));
        assert_ne!(main_pid(&fleet, i), pids[i - 1], "{}: the upgrade restarted herd", fleet.name(i));
        let log = fleet.journal(i);
        for j in (1..=PIS).filter(|&j| j != i) {
            assert!(
                !log.contains(&member("down", &fleet.name(j))),
                "{} marked {} down:\n{log}",
                fleet.name(i),
                fleet.name(j)
            );
        }
    }
    let config = fleet.run(1, "cat /etc/herd/herd.toml");
    assert!(
        config.contains(EDIT) && config.contains(&fleet.cluster),
        "psa's edited config was kept:\n{config}"
    );
    let leftovers = fleet.run(1, "ls /etc/herd");
    assert!(!leftovers.contains(".dpkg-"), "no .dpkg-new/.dpkg-dist/.dpkg-old beside it: {leftovers}");

    // Remove: psb stops with a leave the others log; its config stays.
    let psb = fleet.name(2);
    let listed = fleet.run(2, "dpkg -L herd");
    let t2 = Instant::now();
    fleet.run(2, "sudo DEBIAN_FRONTEND=noninteractive apt-get remove -y -q herd");
    let removed = t2.elapsed();
    let left = wait_until(Duration::from_secs(5), || {
        [1, 3].iter().all(|&i| fleet.journal(i).contains(&member("left", &psb)))
    });
    let left_seen = t2.elapsed();
    assert!(left, "psa and the guest log psb's leave after apt-get remove");
    assert_eq!(fleet.run(2, "systemctl is-active herd || true").trim(), "inactive");
    assert!(
        fleet
            .ssh(2, "test ! -e /usr/bin/herd && test -e /etc/herd/herd.toml && test -e /etc/herd/secret")
            .status
            .success(),
        "remove takes the program, keeps the config and the secret"
    );

    // Purge: nothing of the package is left, nor its state and secret.
    let t3 = Instant::now();
    fleet.run(2, "sudo DEBIAN_FRONTEND=noninteractive apt-get purge -y -q herd");
    let purged = t3.elapsed();
    let paths: Vec<&str> =
        listed.lines().map(str::trim).filter(|p| p.starts_with('/') && *p != "/.").collect();
    assert!(paths.contains(&"/usr/bin/herd") && paths.contains(&"/etc/herd/herd.toml"), "dpkg -L: {listed}");
    // What is still there: a path dpkg listed (a directory other packages
    // still own, like /usr/bin, may stay), or herd's own beyond the list.
    let extra = [
        "/etc/herd",
        "/var/lib/herd",
        "/var/lib/private/herd",
        "/etc/systemd/system/multi-user.target.wants/herd.service",
    ];
    let script = format!(
        "for p in {}; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then if [ -d \"$p\" ] && [ ! -L \"$p\" ] && dpkg -S \"$p\" >/dev/null 2>&1; then :; else echo \"$p\"; fi; fi; done; for p in {}; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"$p\"; fi; done",
        paths.join(" "),
        extra.join(" ")
    );
    let left_behind = fleet.run(2, &format!("sudo sh -c '{script}'"));
    assert!(left_behind.trim().is_empty(), "purge left behind:\n{left_behind}");
    assert_eq!(version(&fleet, 2), "", "no herd package on psb");

    report(
        "packages",
        "install.sh --deb: amd64 package on 2 containers, arm64 on the aarch64 guest, herd from /usr/bin under /usr/lib/systemd/system/herd.service, one cluster; upgrade to a higher revision keeps psa's edited herd.toml, restarts every Pi, never splits; apt-get remove: leave logged by the others, config kept; purge: nothing of dpkg -L left, nor /etc/herd, /var/lib/herd",
        &format!(
            "install {first}: containers {}, guest {}; upgrade to {second} (packaged in {}): containers {}, guest {}, {} in all, fewest live members {fewest}, most batons {most}; remove {} (leave logged by both {}); purge {} ({} paths checked)",
            secs(containers),
            secs(guest),
            secs(packaged),
            secs(up_containers),
            secs(up_guest),
            secs(upgraded),
            secs(removed),
            secs(left_seen),
            secs(purged),
            paths.len()
        ),
    );
}
