//! `herd ping` against a running 3-node cluster on loopback: it joins
//! briefly, prints RTT/jitter/loss for every member, and leaves; with the
//! wrong secret nobody answers and it says why.

mod common;

use std::time::Duration;

use common::{Agent, Cluster, herd, member};

fn ping(spec: &common::Spec, count: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ping.toml");
    std::fs::write(&path, spec.to_toml()).unwrap();
    herd().args(["ping", "--count", count, "-c"]).arg(&path).output().expect("run herd ping")
}

#[test]
fn ping_reports_every_member_and_leaves() {
    let cluster = Cluster::new("ping");
    let names = ["psa", "psb", "psc"];
    let agents: Vec<Agent> = names.iter().map(|n| Agent::start(&cluster.node(n).secret("pong"))).collect();
    for a in &agents {
        for other in names.iter().filter(|n| **n != a.name) {
            a.expect(&member("up", other), Duration::from_secs(3));
        }
    }
    let out = ping(&cluster.node("psa").secret("pong"), "3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for (row, name) in rows.iter().zip(names) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[0], name);
        assert!(cols[1].starts_with("127.0.0.1:"), "{row}");
        assert!(cols[2].parse::<f64>().is_ok_and(|rtt| rtt > 0.0), "rtt in {row}");
        assert_eq!(cols[4], "0.0", "loss in {row}");
    }
    // The pinger was a member for a moment, and left.
    agents[1].expect("member left member=psa-ping-", Duration::from_secs(2));
    assert!(!agents[1].lines().iter().any(|l| l.contains("member down member=psa-ping-")));
}

#[test]
fn ping_with_the_wrong_secret_says_nobody_answered() {
    let cluster = Cluster::new("ping-wrong");
    let a = Agent::start(&cluster.node("psa").secret("right"));
    a.expect("herd started", Duration::from_secs(2));
    let out = ping(&cluster.node("psb").secret("wrong"), "1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no member of cluster") && stderr.contains("failed authentication"), "{stderr}");
}
