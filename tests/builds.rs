//! The static ARM builds of `scripts/dist.sh`, verified under emulation:
//! aarch64 (64-bit Pi OS), armv7 (32-bit Pi OS, here on the Pi 2's Cortex-A7)
//! and armv6 (the Pi 1 and Zero, here on their ARM1176). Each is a static ELF
//! of its architecture whose `--version` names its triple and which runs
//! `check` on the shipped config; and all three relay the baton in one cluster
//! with a native agent (static strategy: qemu-user cannot set
//! IP_MULTICAST_IF, a limit of the emulator, not of herd on a Pi).
//!
//! Needs `target/<triple>/release/herd` for the three (`scripts/dist.sh`),
//! `qemu-aarch64-static`, `qemu-arm-static` and `file`; `.ci/run` provides
//! them. Without them the tests fail under `CI=true` and are skipped otherwise.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Agent, Cluster, Statsd, assert_one_baton, gauges, may_run, member, toml_str, wait_until};

/// One ARM build and the emulated core it runs on.
struct Arm {
    triple: &'static str,
    /// What `file` says about the binary's architecture.
    file_says: &'static str,
    qemu: &'static str,
    /// `qemu -cpu`: the Pi's own core, so an instruction it lacks fails here.
    cpu: &'static str,
    /// The agent's name in the mixed cluster.
    node: &'static str,
}

const ARMS: [Arm; 3] = [
    Arm {
        triple: "aarch64-unknown-linux-musl",
        file_says: "ARM aarch64",
        qemu: "qemu-aarch64-static",
        cpu: "cortex-a53",
        node: "psa",
    },
    Arm {
        triple: "armv7-unknown-linux-musleabihf",
        file_says: "32-bit LSB executable, ARM, EABI5",
        qemu: "qemu-arm-static",
        cpu: "cortex-a7",
        node: "psb",
    },
    Arm {
        triple: "arm-unknown-linux-musleabihf",
        file_says: "32-bit LSB executable, ARM, EABI5",
        qemu: "qemu-arm-static",
        cpu: "arm1176",
        node: "psc",
    },
];

impl Arm {
    fn binary(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/{}/release/herd", self.triple))
    }

    /// `herd` of this build under its emulator and core.
    fn command(&self) -> Command {
        let mut c = Command::new(Path::new("/usr/bin").join(self.qemu));
        c.arg("-cpu").arg(self.cpu).arg(self.binary());
        c
    }
}

/// Whether every build and emulator is here (else skipped, or failed in CI).
fn ready() -> bool {
    let mut missing = Vec::new();
    for arm in &ARMS {
        if !Path::new("/usr/bin").join(arm.qemu).exists() {
            missing.push(format!("/usr/bin/{} (Debian package qemu-user-static)", arm.qemu));
        }
        if !arm.binary().exists() {
            missing.push(format!("{} (scripts/dist.sh {})", arm.binary().display(), arm.triple));
        }
    }
    missing.dedup();
    may_run("the ARM builds' tests", (!missing.is_empty()).then(|| format!("missing {}", missing.join(", "))))
}

#[test]
fn each_arm_build_is_a_static_elf_of_its_architecture_that_runs_on_its_pis_core() {
    if !ready() {
        return;
    }
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/herd.toml");
    for arm in &ARMS {
        let file = Command::new("file").arg(arm.binary()).output().expect("the file command");
        let what = String::from_utf8_lossy(&file.stdout);
        println!("{what}");
        assert!(what.contains(arm.file_says) && what.contains("statically linked"), "{what}");
        let size = std::fs::metadata(arm.binary()).unwrap().len();
        assert!(size <= 3 * 1024 * 1024, "{}: {size} bytes, over the 3 MiB budget", arm.triple);

        let version = arm.command().arg("--version").output().unwrap();
        let text = String::from_utf8_lossy(&version.stdout);
        println!("{} on {}: {text}", arm.triple, arm.cpu);
        assert!(version.status.success(), "{} on {}: {:?}", arm.triple, arm.cpu, version.status);
        assert!(text.starts_with("herd ") && text.contains(&format!("({},", arm.triple)), "{text}");

        let check = arm.command().arg("check").arg("-c").arg(&shipped).output().unwrap();
        assert!(check.status.success(), "{}: {}", arm.triple, String::from_utf8_lossy(&check.stderr));
        assert!(String::from_utf8_lossy(&check.stdout).contains("port = 45892"));
    }
}

#[test]
fn the_armv7_build_is_not_enough_for_a_pi_zero() {
    // Why there is an armv6 build: ARMv7 code on the Pi Zero's ARM1176 dies
    // with SIGILL ("Illegal instruction", as exporters that ship only armv7
    // get reported), which install.sh avoids by picking by `uname -m`.
    if !ready() {
        return;
    }
    let v7 = &ARMS[1];
    let out = Command::new("/usr/bin/qemu-arm-static")
        .args(["-cpu", "arm1176"])
        .arg(v7.binary())
        .arg("--version")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.signal() == Some(libc::SIGILL) || out.status.code() == Some(128 + libc::SIGILL),
        "the armv7 build on an ARM1176: {:?}, {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_cluster_of_every_arm_build_and_a_native_agent_relays_the_baton() {
    if !ready() {
        return;
    }
    let statsd = Statsd::start();
    let cluster = Cluster::new("mixed");
    // qemu-user does not emulate IP_MULTICAST_IF, so this cluster uses the
    // static strategy: each agent on its own loopback address, one port.
    let names = ["psa", "psb", "psc", "psd"];
    let ip = |name: &str| format!("127.0.0.{}", 2 + (name.as_bytes()[2] - b'a'));
    let hosts = format!("[{}]", names.map(|n| toml_str(&format!("{}:{}", ip(n), cluster.port))).join(", "));
    let spec = |name: &str| {
        cluster
            .node(name)
            .gossip("strategy", &toml_str("static"))
            .gossip("hosts", &hosts)
            .gossip("if_addr", &toml_str(&ip(name)))
            .secret("mixed")
            .set("baton", "hold", &toml_str("200ms"))
            .statsd(&statsd)
    };
    let mut agents: Vec<(&str, Agent)> =
        ARMS.iter().map(|arm| (arm.node, Agent::start_with(&spec(arm.node), arm.command()))).collect();
    agents.push(("psd", Agent::start(&spec("psd"))));
    for (name, agent) in &agents {
        for other in names.iter().filter(|o| *o != name) {
            agent.expect(&member("up", other), Duration::from_secs(20));
        }
    }
    for (arm, (_, agent)) in ARMS.iter().zip(&agents) {
        assert!(
            agent.lines().iter().any(|l| l.contains(arm.triple)),
            "{} is the {} build",
            arm.node,
            arm.triple
        );
    }

    // Baton gauges from every host, byte-exact: the counter went through
    // every build, one baton, each host's values rising.
    let by_host = || -> BTreeMap<String, Vec<u64>> {
        let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (_, counter, host) in gauges(&statsd, "") {
            out.entry(host).or_default().push(counter);
        }
        out
    };
    wait_until(Duration::from_secs(40), || by_host().values().filter(|v| v.len() >= 3).count() == 4);
    let seen = by_host();
    let hosts: BTreeSet<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(hosts, BTreeSet::from(names), "baton gauges by host: {seen:?}");
    assert_one_baton(&gauges(&statsd, ""));
    for (host, values) in &seen {
        let arch = ARMS.iter().find(|a| a.node == host).map_or("x86_64 (native)", |a| a.triple);
        common::report_line(&format!(
            "CROSS | {host} {arch} | {} baton gauges, counters {}",
            values.len(),
            values.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
        ));
    }
}

#[test]
fn dist_holds_every_build_with_its_checksum() {
    // What scripts/dist.sh leaves (CI runs it before the tests): the four
    // builds, each the target directory's, named by version and triple, each
    // within the budget, and SHA256SUMS that `sha256sum -c` accepts.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dist = root.join("dist");
    let version = env!("CARGO_PKG_VERSION");
    let triples = ARMS.iter().map(|a| a.triple).chain(["x86_64-unknown-linux-musl"]);
    let missing: Vec<String> = triples
        .clone()
        .map(|t| dist.join(format!("herd-{version}-{t}")))
        .chain([dist.join("SHA256SUMS")])
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !may_run(
        "the dist/ test",
        (!missing.is_empty()).then(|| format!("missing {} (scripts/dist.sh)", missing.join(", "))),
    ) {
        return;
    }
    for t in triples {
        let shipped = std::fs::read(dist.join(format!("herd-{version}-{t}"))).unwrap();
        assert!(shipped.len() <= 3 * 1024 * 1024, "{t}: {} bytes", shipped.len());
        // A later cargo build of one target makes dist/ stale: fine on a
        // developer's machine, not in CI, where dist.sh ran just before.
        let built = std::fs::read(root.join(format!("target/{t}/release/herd"))).unwrap_or_default();
        let stale = (shipped != built)
            .then(|| format!("dist/herd-{version}-{t} is not target/{t}/release/herd (run scripts/dist.sh)"));
        if !may_run("the dist/ test", stale) {
            return;
        }
    }
    let check = Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(&dist).output().unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "sha256sum -c SHA256SUMS:\n{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // The four binaries and the three Debian packages made from them.
    let checked: Vec<&str> = out.lines().filter_map(|l| l.strip_suffix(": OK")).collect();
    let binaries = checked.iter().filter(|f| f.starts_with("herd-")).count();
    let packages: Vec<&&str> = checked.iter().filter(|f| f.ends_with(".deb")).collect();
    assert_eq!((binaries, packages.len()), (4, 3), "{out}");
    for arch in ["arm64", "armhf", "amd64"] {
        assert!(packages.iter().any(|p| p.ends_with(&format!("_{arch}.deb"))), "no {arch} package: {out}");
    }
}
