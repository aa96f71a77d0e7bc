//! `deploy/herd.service`: it carries the hardening herd is run with (and
//! nothing that would break herd), and passes `systemd-analyze verify`
//! (skipped without `systemd-analyze`, except under CI, which installs the
//! `systemd` package).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::common::may_run;
use crate::harness::{UNIT, read, text};

/// The unit's directives (`Key=value`, comments and sections left out).
fn unit_directives() -> Vec<String> {
    read(UNIT)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_unit_is_hardened() {
    let directives = unit_directives();
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/herd run -c /etc/herd/herd.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        "RestartSec=2",
        "Wants=network-online.target",
        "After=network-online.target",
        "DynamicUser=yes",
        "StateDirectory=herd",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "ProtectHostname=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        // Reading the clock's NTP state; no ProtectClock= (it blocks that).
        "SystemCallFilter=adjtimex clock_adjtime",
        "UMask=0077",
        "MemoryMax=32M",
        "WantedBy=multi-user.target",
    ] {
        assert!(directives.iter().any(|d| d == line), "{UNIT} lacks {line:?}");
    }
    // ProtectClock= would make adjtimex fail (EPERM) even to read.
    assert!(
        !directives.iter().any(|d| d.starts_with("ProtectClock=")),
        "{UNIT}: ProtectClock= blocks herd.clock.*"
    );
    // Exactly the socket families herd uses.
    let families: BTreeSet<&str> = directives
        .iter()
        .find_map(|d| d.strip_prefix("RestrictAddressFamilies="))
        .expect("RestrictAddressFamilies=")
        .split_whitespace()
        .collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"]));
    // Nothing that would break herd: it reads /sys and /proc/net, has no
    // watchdog ping, needs the host's network and no root.
    for key in [
        "WatchdogSec=",
        "ProcSubset=",
        "PrivateNetwork=",
        "User=root",
        "TemporaryFileSystem=",
        "InaccessiblePaths=",
    ] {
        assert!(!directives.iter().any(|d| d.starts_with(key)), "{UNIT} must not set {key}");
    }
    // The secret's group, which install.sh creates, is the unit's.
    assert!(directives.iter().any(|d| d == "SupplementaryGroups=herd-secret"));
    assert!(read("deploy/install.sh").contains("groupadd -f --system herd-secret"));
}

/// `systemd-analyze`, or `None` with a message (a failure under CI).
fn systemd_analyze() -> Option<Command> {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    let missing = (!found).then(|| "systemd-analyze is not installed (apt-get install systemd)".to_owned());
    may_run("the unit's checks", missing).then(|| Command::new("systemd-analyze"))
}

/// A copy of the unit in a temporary directory, its ExecStart pointing at the
/// herd Cargo built (verify checks that the binary exists).
fn unit_copy() -> (tempfile::TempDir, PathBuf) {
    let original = read(UNIT);
    let exec = "ExecStart=/usr/local/bin/herd run";
    assert_eq!(original.matches(exec).count(), 1, "{UNIT} has one ExecStart");
    let unit = original.replace(exec, &format!("ExecStart={} run", env!("CARGO_BIN_EXE_herd")));
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("herd.service");
    std::fs::write(&path, unit).expect("write unit copy");
    (dir, path)
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Some(mut analyze) = systemd_analyze() else { return };
    let (_dir, path) = unit_copy();
    // --man=no: `Documentation=man:herd(1)` is the package's page, not
    // installed on the machine that runs the tests.
    let out = analyze.args(["verify", "--man=no"]).arg(&path).output().expect("run systemd-analyze verify");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify {UNIT}:\n{all}");
    // Unknown keys and bad values are only warnings: none may concern the unit.
    let about_unit: Vec<&str> =
        all.lines().filter(|l| l.contains("herd.service") || l.contains("herd")).collect();
    assert!(about_unit.is_empty(), "systemd-analyze verify {UNIT} warns:\n{}", about_unit.join("\n"));

    // systemd's own hardening score (systemd >= 252); 1.5 when written.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let report = text(&out.stdout);
    match report.lines().find_map(|l| l.split("Overall exposure level for herd.service: ").nth(1)) {
        Some(level) => {
            let score: f64 =
                level.split_whitespace().next().and_then(|s| s.parse().ok()).expect("exposure score");
            assert!(score <= 2.5, "exposure {score} of {UNIT} (systemd-analyze security):\n{report}");
        }
        None => eprintln!("no offline security report from this systemd-analyze: {}", text(&out.stderr)),
    }
}
