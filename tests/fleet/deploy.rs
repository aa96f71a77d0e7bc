//! Scenarios 1 and 6: a deploy from nothing, and the sandbox the unit gives
//! the running agent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::{gauges, wait_until};
use crate::harness::{Fleet, report, secs};

/// amd64 containers, then aarch64 guests.
const CONTAINERS: usize = 3;
const GUESTS: usize = 1;
const PIS: usize = CONTAINERS + GUESTS;

#[test]
fn deploy_from_nothing_forms_one_cluster_by_multicast() {
    let Some(fleet) = Fleet::mixed("deploy", CONTAINERS, GUESTS) else { return };
    let statsd = fleet.statsd();
    let files = fleet.operator_files();
    // install.sh asks each Pi its machine over ssh and picks its build: the
    // dry run's plan for the whole mixed fleet at once.
    let planned = fleet.planned_builds();
    let want: Vec<(String, String)> = (1..=PIS)
        .map(|i| {
            let triple =
                if fleet.is_guest(i) { "aarch64-unknown-linux-musl" } else { "x86_64-unknown-linux-musl" };
            (
                fleet.name(i),
                crate::harness::repo().join(format!("target/{triple}/release/herd")).display().to_string(),
            )
        })
        .collect();
    assert_eq!(planned, want, "install.sh's pick by uname -m");
    let t0 = Instant::now();
    let (amd64, arm64) = fleet.install(&files, &[]);
    let installed = t0.elapsed();

    for i in 1..=PIS {
        let name = fleet.name(i);
        assert_eq!(fleet.run(i, "systemctl is-active herd").trim(), "active", "{name}");
        assert_eq!(fleet.run(i, "systemctl is-enabled herd").trim(), "enabled", "{name}");
        let mode = fleet.run(i, "sudo stat -c '%a %G' /etc/herd/secret");
        assert_eq!(mode.trim(), "640 herd-secret", "{name}: the secret's mode and group");
        let arch = if fleet.is_guest(i) { "aarch64" } else { "x86_64" };
        assert_eq!(fleet.run(i, "uname -m").trim(), arch, "{name}'s kernel");
        let version = fleet.run(i, "herd --version");
        assert!(
            version.contains(&format!("{arch}-unknown-linux-musl")),
            "{name} runs the {arch} build: {version}"
        );
    }
    let formed = wait_until(Duration::from_secs(30), || {
        (1..=PIS).all(|i| fleet.status(i).is_some_and(|s| s.live_members == PIS))
    });
    let formed_at = t0.elapsed();
    assert!(formed, "every Pi lists {PIS} live members within 30 s of the install");
    // Found by multicast (the shipped strategy), across both kinds of Pi: each
    // member at its Pi's address, from a container and from the guest.
    for i in [1, PIS] {
        let s = fleet.status(i).expect("status");
        let addrs: BTreeSet<String> = s.members.iter().map(|m| m.addr.clone()).collect();
        let want: BTreeSet<String> =
            (1..=PIS).filter(|&j| j != i).map(|j| format!("10.78.0.{j}:45893")).collect();
        assert_eq!(addrs, want, "{}'s members", fleet.name(i));
    }

    let names: BTreeSet<String> = (1..=PIS).map(|i| fleet.name(i)).collect();
    let all_sent = wait_until(Duration::from_secs(30), || {
        gauges(&statsd, "").iter().map(|(_, _, h)| h.clone()).collect::<BTreeSet<_>>() == names
    });
    let g = gauges(&statsd, "");
    assert!(
        all_sent,
        "baton gauges from every Pi (containers at their own 127.0.0.1:8125, the guest at the laptop's): {:?}",
        &g[..g.len().min(20)]
    );
    // The sandbox lets herd read the kernel's clock state (no ProtectClock=,
    // which would refuse adjtimex), the root filesystem and the uptime: every
    // Pi, container and guest, sends them from the real unit.
    let system = [
        "herd.clock.synced",
        "herd.clock.error_ms",
        "herd.fs.root_used_pct",
        "herd.fs.root_readonly",
        "herd.system.uptime_s",
    ];
    let sent_all = wait_until(Duration::from_secs(15), || {
        let lines = statsd.lines();
        names.iter().all(|n| {
            system.iter().all(|m| {
                lines
                    .iter()
                    .any(|(_, l)| l.starts_with(&format!("{m}:")) && l.ends_with(&format!("#host:{n}")))
            })
        })
    });
    let clock_lines: Vec<String> =
        statsd.lines().into_iter().map(|(_, l)| l).filter(|l| l.starts_with("herd.clock.")).collect();
    assert!(sent_all, "{system:?} from every Pi under the unit's sandbox; clock lines: {clock_lines:?}");
    // ProtectSystem=strict shows herd a read-only /, but the card is fine:
    // no Pi reports its root filesystem read-only.
    let readonly: Vec<String> = statsd
        .lines()
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| l.starts_with("herd.fs.root_readonly:1"))
        .collect();
    assert!(readonly.is_empty(), "a healthy Pi reported a read-only root: {readonly:?}");
    // The guest's clock (its own kernel's, no NTP) as psa measures it.
    let guest = fleet.name(PIS);
    let offset_of = |tags: &str| {
        statsd.lines().into_iter().rev().find_map(|(_, l)| {
            l.strip_prefix("herd.clock.offset_ms:")?
                .strip_suffix(tags)?
                .strip_suffix("|g|")?
                .parse::<f64>()
                .ok()
        })
    };
    let (there, back) = (format!("#host:psa,peer:{guest}"), format!("#host:{guest},peer:psa"));
    // The first offsets go out with the second telemetry interval (10 s).
    wait_until(Duration::from_secs(25), || offset_of(&there).is_some() && offset_of(&back).is_some());
    let (guest_offset, seen_back) = (offset_of(&there), offset_of(&back));
    // Measured from both ends, the two estimates are one offset, opposite.
    let (a, b) = (
        guest_offset.expect("psa's estimate of the guest's clock"),
        seen_back.expect("the guest's of psa's"),
    );
    assert!((a + b).abs() < 20.0, "psa says the guest is {a:+.1} ms off, the guest says psa is {b:+.1} ms");
    for i in [1, PIS] {
        let log = fleet.run(i, "journalctl -u herd --no-pager");
        assert!(
            log.contains("herd started"),
            "journalctl -u herd as the pi user on {}:\n{log}",
            fleet.name(i)
        );
    }
    // A real kernel with pure cgroup2 enforces the unit's MemoryMax (the
    // containers here cannot: this VM's cgroup v1/v2 mix).
    let max = fleet.run(PIS, "cat /sys/fs/cgroup/system.slice/herd.service/memory.max");
    assert_eq!(max.trim(), (32u64 << 20).to_string(), "MemoryMax=32M on the guest");

    report(
        "deploy",
        &format!(
            "{CONTAINERS} amd64 containers + {GUESTS} aarch64 guest from nothing: install.sh, active and enabled, each its own build, one cluster by multicast, baton gauges from every Pi, journalctl, MemoryMax on the guest"
        ),
        &format!(
            "images {}, boot to ssh {}, install {} ({} for {CONTAINERS} amd64, {} for the aarch64), all {PIS} listed by all {} after the install started, {} gauges; the guest's clock (no NTP) from psa {a:+.1} ms, psa's from the guest {b:+.1} ms",
            secs(fleet.image_time),
            secs(fleet.boot_time),
            secs(installed),
            secs(amd64),
            secs(arm64),
            secs(formed_at),
            g.len(),
        ),
    );
}

#[test]
fn the_running_agent_is_sandboxed_as_the_unit_says() {
    let Some(fleet) = Fleet::new("sandbox", 1) else { return };
    fleet.install(&fleet.operator_files(), &[]);
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
