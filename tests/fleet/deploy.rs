//! Scenarios 1 and 6: a deploy from nothing, and the sandbox the unit gives
//! the running agent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::{gauges, wait_until};
use crate::harness::{Fleet, report, secs};

const PIS: usize = 3;

#[test]
fn deploy_from_nothing_forms_one_cluster_by_multicast() {
    let Some(fleet) = Fleet::new("deploy", PIS) else { return };
    let statsd = fleet.statsd();
    let (_dir, config, secret) = fleet.operator_files();
    let t0 = Instant::now();
    fleet.install(&["--config", &config, "--secret", &secret]);
    let installed = t0.elapsed();

    for i in 1..=PIS {
        assert_eq!(fleet.run(i, "systemctl is-active herd").trim(), "active", "{}", fleet.name(i));
        assert_eq!(fleet.run(i, "systemctl is-enabled herd").trim(), "enabled", "{}", fleet.name(i));
        let mode = fleet.run(i, "sudo stat -c '%a %G' /etc/herd/secret");
        assert_eq!(mode.trim(), "640 herd-secret", "{}: the secret's mode and group", fleet.name(i));
    }
    let formed = wait_until(Duration::from_secs(10), || {
        (1..=PIS).all(|i| fleet.status(i).is_some_and(|s| s.live_members == PIS))
    });
    let formed_at = t0.elapsed();
    assert!(formed, "every Pi lists {PIS} live members within 10 s of the install");
    // Found by multicast (the shipped strategy): each member at its Pi's address.
    let s = fleet.status(1).expect("status of psa");
    let addrs: BTreeSet<String> = s.members.iter().map(|m| m.addr.clone()).collect();
    let want: BTreeSet<String> = (2..=PIS).map(|i| format!("10.78.0.{i}:45893")).collect();
    assert_eq!(addrs, want, "psa's members");

    let names: BTreeSet<String> = (1..=PIS).map(|i| fleet.name(i)).collect();
    let all_sent = wait_until(Duration::from_secs(15), || {
        gauges(&statsd, "").iter().map(|(_, _, h)| h.clone()).collect::<BTreeSet<_>>() == names
    });
    let g = gauges(&statsd, "");
    assert!(all_sent, "baton gauges from every Pi at its own 127.0.0.1:8125: {:?}", &g[..g.len().min(20)]);
    let log = fleet.run(1, "journalctl -u herd --no-pager");
    assert!(log.contains("herd started"), "journalctl -u herd as the pi user:\n{log}");

    report(
        "deploy",
        &format!(
            "{PIS} amd64 Pis from nothing: install.sh, active and enabled, one cluster by multicast, baton gauges from every Pi, journalctl"
        ),
        &format!(
            "image {}, boot to ssh {}, install {} ({} per Pi), all {PIS} listed by all {} after the install started, {} gauges",
            secs(fleet.image_time),
            secs(fleet.boot_time),
            secs(installed),
            secs(installed / PIS as u32),
            secs(formed_at),
            g.len()
        ),
    );
}

#[test]
fn the_running_agent_is_sandboxed_as_the_unit_says() {
    let Some(fleet) = Fleet::new("sandbox", 1) else { return };
    let (_dir, config, secret) = fleet.operator_files();
    fleet.install(&["--config", &config, "--secret", &secret]);
    let pid = fleet.run(1, "systemctl show -p MainPID --value herd");
    let pid = pid.trim();
    let status = fleet.run(1, &format!("grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' /proc/{pid}/status"));
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
    };
    let uid: u32 = field("Uid:").and_then(|u| u.parse().ok()).expect("Uid");
    // systemd's dynamic users are 61184-65519.
    assert!((61184..=65519).contains(&uid), "a dynamic uid, got {uid}");
    assert_eq!(field("CapEff:").as_deref(), Some("0000000000000000"), "{status}");
    assert_eq!(field("NoNewPrivs:").as_deref(), Some("1"), "{status}");
    assert_eq!(field("Seccomp:").as_deref(), Some("2"), "{status}");
    // As herd's uid, in herd's mount namespace: /etc and /sys refuse writes.
    for path in ["/etc/herd/x", "/sys/kernel/x", "/usr/local/bin/x"] {
        let out = fleet.ssh(
            1,
            &format!("sudo nsenter --target {pid} --mount --setuid {uid} --setgid {uid} sh -c 'echo x > {path}' 2>&1"),
        );
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!out.status.success(), "writing {path} as herd's uid must fail");
        assert!(said.contains("Read-only file system"), "{path}: {said}");
    }
    let security = fleet.run(1, "sudo systemd-analyze security herd --no-pager");
    let exposure = security.lines().last().unwrap_or_default().trim().to_owned();
    println!("{security}");
    report(
        "sandbox",
        "on the running agent: dynamic uid, CapEff 0, NoNewPrivs 1, Seccomp 2, /etc /sys /usr read-only for its uid",
        &format!("uid {uid}; systemd-analyze security: {exposure}"),
    );
}
