//! Reload on SIGHUP (`systemctl reload herd`), as docs/configuration.md's
//! "Reload" says: a live key takes effect at once, a key that needs a restart
//! is named and keeps its running value, a bad file changes nothing, and the
//! agent keeps its life, its members and the baton (peers log nothing). The
//! keyring reloads too: a secret rotated by reloads alone.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    Agent, Cluster, KeyFiles, Spec, Statsd, assert_one_baton, baton_gauge, expect_mesh, free_tcp_port,
    gauges, herd, member, toml_str, wait_until,
};
use herd::agent::snapshot::Snapshot;

const PATIENCE: Duration = Duration::from_secs(10);

fn status(addr: SocketAddr) -> Snapshot {
    let out = herd().args(["status", "--json", "--addr", &addr.to_string()]).output().expect("herd status");
    assert!(out.status.success(), "herd status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// Nothing a peer would log about `name` since `t`.
fn peers_saw_nothing(agents: &[Agent], name: &str, t: Instant) {
    for a in agents.iter().filter(|a| a.name != name) {
        for event in ["left", "down", "up", "restarted", "suspect"] {
            assert!(
                a.wait_for_after(&member(event, name), t, Duration::ZERO).is_none(),
                "{}: `member {event}` of {name} after its reload",
                a.name
            );
        }
    }
}

#[test]
fn a_reload_applies_live_keys_holds_restart_keys_and_refuses_a_bad_file() {
    let cluster = Cluster::new("reload");
    let statsd = Statsd::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let spec = |name: &str| -> Spec {
        let spec =
            cluster.node(name).secret("reload").set("baton", "hold", &toml_str("50ms")).statsd(&statsd);
        if name == "psa" { spec.set("status", "listen", &toml_str(&addr.to_string())) } else { spec }
    };
    let mut agents: Vec<Agent> = ["psa", "psb", "psc"].iter().map(|n| Agent::start(&spec(n))).collect();
    expect_mesh(&agents, PATIENCE);
    assert!(wait_until(PATIENCE, || gauges(&statsd, "").len() > 10), "the baton moves");
    let before = status(addr);
    assert!(
        before.config_file.as_deref().is_some_and(|f| f.ends_with("psa.toml")),
        "{:?}",
        before.config_file
    );

    // A live key: psa's metrics carry the new tag from the next flush on.
    let psa = 0;
    let tagged = spec("psa").set("statsd", "tags", "[\"reload:2\"]");
    agents[psa].rewrite_config(&tagged);
    std::thread::sleep(Duration::from_millis(1100)); // a new `config_loaded` second
    let t0 = agents[psa].sighup();
    let done = agents[psa].expect_after("config reloaded", t0, PATIENCE);
    let line = agents[psa].lines().into_iter().rev().find(|l| l.contains("config reloaded")).unwrap();
    assert!(line.contains("statsd.tags"), "the reload names what changed: {line}");
    let seen = wait_until(PATIENCE, || {
        statsd
            .lines()
            .iter()
            .any(|(at, l)| *at > done && baton_gauge(l, ",reload:2").is_some_and(|(_, h)| h == "psa"))
    });
    assert!(seen, "psa's baton gauges carry reload:2 after the reload");
    let after = status(addr);
    assert_eq!(after.incarnation, before.incarnation, "a reload keeps the node's life");
    assert_eq!(after.live_members, 3);
    assert_ne!(after.config_loaded, before.config_loaded, "/status says when the config was loaded");
    println!("reload of a live key: SIGHUP to `config reloaded` {} ms", done.duration_since(t0).as_millis());

    // A key that needs a restart: named, kept; the rest still applies.
    let mut moved = tagged.clone().set("statsd", "tags", "[\"reload:3\"]");
    moved.port = common::free_udp_port();
    agents[psa].rewrite_config(&moved);
    let t1 = agents[psa].sighup();
    agents[psa].expect_after("need a restart and keep their running values: gossip.port", t1, PATIENCE);
    agents[psa].expect_after("config reloaded", t1, PATIENCE);
    let t1b = Instant::now();
    let seen = wait_until(PATIENCE, || {
        statsd
            .lines()
            .iter()
            .any(|(at, l)| *at > t1b && baton_gauge(l, ",reload:3").is_some_and(|(_, h)| h == "psa"))
    });
    assert!(seen, "the live part of that file applied");
    assert_eq!(status(addr).live_members, 3, "still on the old port, still in the cluster");

    // A bad file: every problem logged as `herd check` says it, nothing changes.
    agents[psa].write_config_text("[baton]\nhold = \"soon\"\n[gossip]\nsuspect_after = \"1ms\"\n");
    let t2 = agents[psa].sighup();
    agents[psa].expect_after("reload refused: the config is unchanged", t2, PATIENCE);
    let problems: Vec<String> =
        agents[psa].lines().into_iter().filter(|l| l.contains("reload: ") && l.contains("WARN")).collect();
    assert!(problems.iter().any(|l| l.contains("baton.hold")), "{problems:?}");
    assert!(problems.iter().any(|l| l.contains("gossip.suspect_after")), "{problems:?}");
    let t2b = Instant::now();
    let still = wait_until(PATIENCE, || {
        statsd
            .lines()
            .iter()
            .any(|(at, l)| *at > t2b && baton_gauge(l, ",reload:3").is_some_and(|(_, h)| h == "psa"))
    });
    assert!(still, "psa runs on with the config it had");
    assert!(agents[psa].is_running());

    peers_saw_nothing(&agents, "psa", t0);
    // Every baton line, whichever tags psa had when it sent it.
    let all: Vec<(Instant, u64, String)> = statsd
        .lines()
        .into_iter()
        .filter(|(_, l)| l.starts_with("baton"))
        .map(|(at, l)| {
            let (c, h) = ["", ",reload:2", ",reload:3"]
                .iter()
                .find_map(|tags| baton_gauge(&l, tags))
                .unwrap_or_else(|| panic!("not a baton gauge: {l:?}"));
            (at, c, h.to_owned())
        })
        .collect();
    assert_one_baton(&all);
    for a in &agents {
        assert!(!a.has_line("baton regenerated"), "{}: a regeneration", a.name);
    }
}

/// docs/operating.md, "Rotating the secret", with reloads only: never a leave, never a
/// `member down`, one baton.
#[test]
fn the_secret_is_rotated_by_reloads_alone() {
    let rotation = KeyFiles::new("rekey");
    let statsd = &rotation.statsd;
    let names = ["psa", "psb", "psc"];
    for n in names {
        rotation.write(n, "old key\n");
    }
    let mut agents: Vec<Agent> = names.iter().map(|n| Agent::start(&rotation.spec(n))).collect();
    expect_mesh(&agents, PATIENCE);
    let t0 = Instant::now();
    for keys in ["old key\nnew key\n", "new key\nold key\n", "new key\n"] {
        for (i, n) in names.iter().enumerate() {
            rotation.write(n, keys);
            let at = agents[i].sighup();
            agents[i].expect_after("config reloaded", at, PATIENCE);
            // A heartbeat round under the new keyring before the next node.
            std::thread::sleep(Duration::from_millis(1200));
        }
    }
    let after = Instant::now();
    let moving = wait_until(PATIENCE, || {
        let hosts: std::collections::BTreeSet<String> =
            gauges(statsd, "").into_iter().filter(|(at, ..)| *at > after).map(|g| g.2).collect();
        hosts.len() == 3
    });
    assert!(moving, "all three relay on the new key alone");
    for n in names {
        peers_saw_nothing(&agents, n, t0);
    }
    assert_one_baton(&gauges(statsd, ""));
    println!(
        "rotated 3 agents through 3 steps by 9 reloads in {:.1} s, no member event",
        after.duration_since(t0).as_secs_f64()
    );
}

/// `[baton] enabled = false` reloaded into both agents of a relay, then
/// `true` again, as an operator does it (edit both files, reload both), at
/// the shipped pace and unpaced: while off, no baton gauge from either (for
/// longer than `regenerate_after`: none is regenerated either); back on,
/// the same baton goes on from both hosts within a few seconds, above its
/// last counter, with no regeneration.
#[test]
fn the_relay_stops_and_goes_on_when_reloads_turn_it_off_and_on() {
    for hold in ["100ms", "0ms"] {
        relay_off_and_on(hold);
    }
}

fn relay_off_and_on(hold: &str) {
    let cluster = Cluster::new("reload-baton");
    let statsd = Statsd::start();
    let names = ["psa", "psb"];
    let spec = |name: &str, on: bool| -> Spec {
        let baton = cluster.node(name).set("baton", "hold", &toml_str(hold));
        baton.secret("reload").set("baton", "enabled", &on.to_string()).statsd(&statsd)
    };
    let mut agents: Vec<Agent> = names.iter().map(|n| Agent::start(&spec(n, true))).collect();
    expect_mesh(&agents, PATIENCE);
    assert!(wait_until(PATIENCE, || gauges(&statsd, "").len() > 10), "hold {hold}: the baton moves");

    let reload_all = |agents: &mut [Agent], on: bool| {
        for a in agents.iter_mut() {
            let name = a.name.clone();
            a.rewrite_config(&spec(&name, on));
        }
        for a in agents.iter_mut() {
            let at = a.sighup();
            a.expect_after("config reloaded", at, PATIENCE);
        }
    };
    reload_all(&mut agents, false);
    // A pass on its way as the reloads land may still be gauged.
    std::thread::sleep(Duration::from_millis(500));
    let quiet = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let off: Vec<_> = gauges(&statsd, "").into_iter().filter(|g| g.0 > quiet).collect();
    let (first, last) = (off.first(), off.last());
    assert!(
        off.is_empty(),
        "hold {hold}: {} baton gauges with the relay off: {first:?} .. {last:?}",
        off.len()
    );
    let last = gauges(&statsd, "").last().map(|g| g.1).expect("gauges");

    reload_all(&mut agents, true);
    let on = Instant::now();
    let both = wait_until(Duration::from_secs(5), || {
        let hosts: std::collections::BTreeSet<String> =
            gauges(&statsd, "").into_iter().filter(|g| g.0 > on).map(|g| g.2).collect();
        hosts.len() == 2
    });
    let after: Vec<_> = gauges(&statsd, "").into_iter().filter(|g| g.0 > on).collect();
    assert!(
        both,
        "hold {hold}: not from both hosts within 5 s of the reloads (last gauge {last}): {after:?}"
    );
    assert!(after[0].1 > last, "hold {hold}: above its last counter {last}: {:?}", after[0]);
    println!(
        "hold {hold}: relay back on, first gauge {} ms after the reloads",
        after[0].0.saturating_duration_since(on).as_millis()
    );
    assert_one_baton(&gauges(&statsd, ""));
    for a in &agents {
        assert!(!a.has_line("baton regenerated"), "hold {hold}: {}: a regeneration", a.name);
    }
    for n in names {
        peers_saw_nothing(&agents, n, on);
    }
}

#[test]
fn a_reload_does_not_repeat_the_warnings_already_given() {
    // A Pi Zero W whose card went read-only and whose supply sags: each is
    // warned about once, and a reload (which rebuilds telemetry) says
    // neither again, while both stay true.
    let cluster = Cluster::new("reload-warn");
    let statsd = Statsd::start();
    let sysfs = format!("{}/tests/fixtures/pizero-w/sys", env!("CARGO_MANIFEST_DIR"));
    let spec = |name: &str| -> Spec {
        cluster
            .node(name)
            .set("statsd", "address", &statsd.address())
            .set("telemetry", "interval", &toml_str("200ms"))
            .set("telemetry", "sysfs_root", &toml_str(&sysfs))
            .set("telemetry", "interface", &toml_str("wlan0"))
    };
    let mut a = Agent::start(&spec("psz"));
    a.expect("the root filesystem is mounted read-only", PATIENCE);
    a.expect("hwmon rpi_volt reports under-voltage", PATIENCE);
    a.rewrite_config(&spec("psz").set("statsd", "tags", "[\"reload:warn\"]"));
    let t0 = a.sighup();
    a.expect_after("config reloaded", t0, PATIENCE);
    // Five telemetry intervals after the reload.
    std::thread::sleep(Duration::from_secs(1));
    let count = |what: &str| a.lines().iter().filter(|l| l.contains(what)).count();
    assert_eq!(count("the root filesystem is mounted read-only"), 1, "{:#?}", a.lines());
    assert_eq!(count("hwmon rpi_volt reports under-voltage"), 1, "{:#?}", a.lines());
    assert!(
        statsd.lines().iter().any(|(_, l)| l.starts_with("herd.fs.root_readonly:1|g|#host:psz,reload:warn")),
        "still reported, with the new tag"
    );
}
