//! The static aarch64 build, verified under emulation: it is a static aarch64
//! ELF, it runs (`--version`, `check` on the shipped config) under
//! `qemu-aarch64-static`, and it relays the baton in a mixed-architecture
//! cluster with two native agents (static strategy: qemu-user cannot set
//! IP_MULTICAST_IF, a limit of the emulator, not of herd on a Pi).
//!
//! Needs `target/aarch64-unknown-linux-musl/release/herd` (or
//! `$HERD_AARCH64_BIN`), `qemu-aarch64-static` and `file`; `.ci/run` provides
//! them. Without them the tests fail under `CI=true` and are skipped otherwise.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Agent, Cluster, Statsd, gauges, may_run, member, toml_str, wait_until};

fn tools() -> Option<(PathBuf, PathBuf)> {
    let bin = std::env::var_os("HERD_AARCH64_BIN").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/aarch64-unknown-linux-musl/release/herd")
    });
    let qemu = ["/usr/bin/qemu-aarch64-static", "/usr/bin/qemu-aarch64"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let missing = match (&qemu, bin.exists()) {
        (None, _) => Some("qemu-aarch64-static (Debian package qemu-user-static)".to_owned()),
        (_, false) => {
            Some(format!("{} (cargo build --release --target aarch64-unknown-linux-musl)", bin.display()))
        }
        _ => None,
    };
    may_run("the aarch64 tests", missing.map(|what| format!("missing {what}")))
        .then(|| (qemu.expect("checked"), bin))
}

fn emulated(qemu: &PathBuf, bin: &PathBuf) -> Command {
    let mut c = Command::new(qemu);
    c.arg(bin);
    c
}

#[test]
fn the_aarch64_build_is_a_static_elf_that_runs_under_emulation() {
    let Some((qemu, bin)) = tools() else { return };
    let file = Command::new("file").arg(&bin).output().expect("the file command");
    let what = String::from_utf8_lossy(&file.stdout);
    println!("{what}");
    assert!(what.contains("ARM aarch64") && what.contains("statically linked"), "{what}");

    let version = emulated(&qemu, &bin).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    println!("{version}");
    assert!(version.starts_with("herd ") && version.contains("aarch64-unknown-linux-musl"), "{version}");

    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/herd.toml");
    let check = emulated(&qemu, &bin).arg("check").arg("-c").arg(&shipped).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("port = 45892"));
}

#[test]
fn a_mixed_architecture_cluster_relays_the_baton_through_every_node() {
    let Some((qemu, bin)) = tools() else { return };
    let statsd = Statsd::start();
    let cluster = Cluster::new("mixed");
    // qemu-user does not emulate IP_MULTICAST_IF, so this cluster uses the
    // static strategy: each agent on its own loopback address, one port.
    let ip = |name: &str| format!("127.0.0.{}", 2 + (name.as_bytes()[2] - b'a'));
    let hosts = format!(
        "[{}]",
        ["psa", "psb", "psc"].map(|n| toml_str(&format!("{}:{}", ip(n), cluster.port))).join(", ")
    );
    let spec = |name: &str| {
        cluster
            .node(name)
            .gossip("strategy", &toml_str("static"))
            .gossip("hosts", &hosts)
            .gossip("if_addr", &toml_str(&ip(name)))
            .secret("mixed")
            .set("baton", "hold", &toml_str("200ms"))
            .set("statsd", "address", &statsd.address())
            .set("statsd", "flush_interval", &toml_str("100ms"))
    };
    let arm = Agent::start_with(&spec("psa"), emulated(&qemu, &bin));
    let b = Agent::start(&spec("psb"));
    let c = Agent::start(&spec("psc"));
    for (agent, others) in [(&arm, ["psb", "psc"]), (&b, ["psa", "psc"]), (&c, ["psa", "psb"])] {
        for o in others {
            agent.expect(&member("up", o), Duration::from_secs(10));
        }
    }
    let hosts = || -> BTreeSet<String> { gauges(&statsd, "").into_iter().map(|g| g.2).collect() };
    wait_until(Duration::from_secs(30), || hosts().len() >= 3);
    let lines: Vec<String> =
        statsd.lines().into_iter().map(|l| l.1).filter(|l| l.starts_with("baton:")).collect();
    println!("baton gauges, mixed cluster (psa = aarch64 under qemu):\n{}", lines.join("\n"));
    assert_eq!(hosts(), BTreeSet::from(["psa".into(), "psb".into(), "psc".into()]), "{lines:?}");
    assert!(arm.line_at("herd started").is_some());
    assert!(
        arm.lines().iter().any(|l| l.contains("aarch64-unknown-linux-musl")),
        "the emulated agent is the aarch64 build"
    );
}
