//! Membership across real `herd run` agents on loopback, judged by their
//! logs: joins, crash detection and leaves, a wrong secret, the secret
//! rotated by restarts, a restart as a new life, the static, dns and
//! broadcast strategies, and garbage datagrams. Each test has its own gossip
//! port and cluster name (see `common::Cluster`), so the tests run in
//! parallel threads.
//!
//! Timings use the defaults (heartbeat 1 s, suspect after 3 s, down after
//! 5 s). The measured join, detection and leave times are printed; run
//! `cargo test --test membership -- --nocapture` to see them.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    Agent, Cluster, KeyFiles, Spec, assert_one_baton, expect_mesh, field, gauges, member, random_bytes,
    send_garbage, toml_str, wait_until,
};

const HEARTBEAT: Duration = Duration::from_secs(1);
const SUSPECT_AFTER: Duration = Duration::from_secs(3);
const DOWN_AFTER: Duration = Duration::from_secs(5);
/// Slack for scheduling and log delivery on a loaded CI machine.
const SLACK: Duration = Duration::from_millis(100);
/// How long any expected line is waited for before the test gives up; the
/// bounds under test are asserted on the measured times, not on this.
const PATIENCE: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// `later - earlier`, or zero when `later` came first.
fn since(later: Instant, earlier: Instant) -> Duration {
    later.saturating_duration_since(earlier)
}

/// SIGTERMs `agent` and asserts it exits 0 within 2 s; returns its
/// `left the cluster` summary line.
fn leave(agent: &mut Agent) -> String {
    let sent = agent.sigterm();
    let status = agent.wait_exit(Duration::from_secs(2));
    let took = since(Instant::now(), sent);
    match status {
        Some(s) => assert!(s.success(), "{}: exited with {s} after SIGTERM", agent.name),
        None => panic!("{}: still running 2 s after SIGTERM", agent.name),
    }
    println!("{}: exited 0 {} ms after SIGTERM", agent.name, ms(took));
    agent
        .line("left the cluster", Duration::ZERO)
        .unwrap_or_else(|| panic!("{}: no `left the cluster` summary", agent.name))
}

/// The value of `key=` in a summary line, which must be there.
fn count(summary: &str, key: &str) -> u64 {
    field(summary, key).unwrap_or_else(|| panic!("no {key}= in {summary:?}"))
}

#[test]
fn four_agents_join_detect_a_crash_and_see_a_leave() {
    let cluster = Cluster::new("four");
    let names = ["psa", "psb", "psc", "psd"];
    let mut agents: Vec<Agent> =
        names.iter().map(|n| Agent::start(&cluster.node(n).secret("four legs good"))).collect();

    // Join: every agent logs every other one up, within one heartbeat (plus
    // slack) of the moment the last agent had started.
    let last_started = agents.iter().map(|a| a.expect("herd started", PATIENCE)).max().unwrap();
    for a in &agents {
        let mut slowest = Duration::ZERO;
        for peer in names.iter().filter(|&&p| p != a.name) {
            let t = a.expect(&member("up", peer), PATIENCE);
            slowest = slowest.max(since(t, last_started));
        }
        println!("join: {} saw all 3 peers {} ms after the last agent started", a.name, ms(slowest));
        assert!(
            slowest <= HEARTBEAT + SLACK,
            "{} took {} ms to see all peers (bound {} ms)",
            a.name,
            ms(slowest),
            ms(HEARTBEAT + SLACK)
        );
    }

    // Crash: psd is SIGKILLed; the others mark it down within down_after
    // plus one heartbeat (its last heartbeat may predate the kill by up to
    // one interval, and timers fire on the next loop turn).
    // Not in its first interval: a node's first heartbeat goes out in the
    // previous release's wire (it knows no member yet), so until its second
    // a peer may take it for the previous release's and fail it by silence
    // alone, without the failure detector's news (docs/design.md,
    // "Compatibility between releases").
    std::thread::sleep((last_started + HEARTBEAT + HEARTBEAT / 2).saturating_duration_since(Instant::now()));
    let killed_at = agents[3].sigkill();
    for a in &agents[..3] {
        let t = a.expect_after(&member("down", "psd"), killed_at, PATIENCE);
        let took = since(t, killed_at);
        println!("crash: {} marked psd down {} ms after SIGKILL", a.name, ms(took));
        assert!(took <= DOWN_AFTER + HEARTBEAT, "{} took {} ms to mark psd down", a.name, ms(took));
    }

    // Leave: psc gets SIGTERM, exits 0 within 2 s, and the other two drop it
    // at once (the leave is announced, not waited out).
    let termed_at = Instant::now();
    let summary = leave(&mut agents[2]);
    assert_eq!(count(&summary, "rejected"), 0, "psc: {summary}");
    for a in &agents[..2] {
        let t = a.expect_after(&member("left", "psc"), termed_at, PATIENCE);
        let took = since(t, termed_at);
        println!("leave: {} saw psc leave {} ms after SIGTERM", a.name, ms(took));
        assert!(took <= Duration::from_millis(500), "{} took {} ms to see psc leave", a.name, ms(took));
    }

    // No false alarms: only psd was ever suspected or marked down.
    for a in &agents[..3] {
        for peer in ["psa", "psb", "psc"] {
            for event in ["suspect", "down"] {
                assert!(!a.has_line(&member(event, peer)), "{}: false `member {event}` of {peer}", a.name);
            }
        }
    }
    for a in &mut agents[..2] {
        let summary = leave(a);
        assert_eq!(count(&summary, "rejected"), 0, "{}: {summary}", a.name);
    }
}

#[test]
fn an_agent_with_the_wrong_secret_never_joins_and_is_counted() {
    let cluster = Cluster::new("secret");
    let mut psa = Agent::start(&cluster.node("psa").secret("right"));
    let mut psb = Agent::start(&cluster.node("psb").secret("right"));
    let mut psx = Agent::start(&cluster.node("psx").secret("wrong"));

    psa.expect(&member("up", "psb"), PATIENCE);
    psb.expect(&member("up", "psa"), PATIENCE);
    // Its datagrams name a key (derived from its secret) that psa and psb
    // do not have.
    for a in [&psa, &psb] {
        a.expect("reason=sealed with a key this node does not have", PATIENCE);
    }

    // Three heartbeats of psx's (its first goes out at start) without psx
    // joining anyone, or anyone joining psx.
    let started = psx.expect("herd started", PATIENCE);
    let quiet_until = started + 3 * HEARTBEAT + Duration::from_millis(500);
    for a in [&psa, &psb] {
        let left = quiet_until.saturating_duration_since(Instant::now());
        assert!(a.wait_for(&member("up", "psx"), left).is_none(), "{} let psx (wrong secret) join", a.name);
    }
    assert!(!psx.has_line("member up"), "psx (wrong secret) joined someone");

    for a in [&mut psa, &mut psb, &mut psx] {
        let summary = leave(a);
        let auth = count(&summary, "auth");
        println!("{}: {summary}", a.name);
        assert!(auth > 0, "{}: no authentication failures counted: {summary}", a.name);
    }
}

/// docs/operating.md, "Rotating the secret", by restarts: four agents, each with its own
/// `secret_file`, taken through the three steps one agent at a time. Never a
/// `member down`, one baton throughout; then an agent holding only a key
/// nobody else has stays out.
#[test]
fn the_secret_is_rotated_step_by_step_without_a_split() {
    let rotation = KeyFiles::new("rotate");
    let statsd = &rotation.statsd;
    let names = ["psa", "psb", "psc", "psd"];
    for n in names {
        rotation.write(n, "old key\n");
    }
    let mut agents: Vec<Agent> = names.iter().map(|n| Agent::start(&rotation.spec(n))).collect();
    expect_mesh(&agents, PATIENCE);
    let relaying_since = |t: Instant| {
        let all = || {
            gauges(statsd, "")
                .iter()
                .filter(|(at, ..)| *at > t)
                .map(|g| g.2.clone())
                .collect::<BTreeSet<_>>()
                .len()
                == 4
        };
        assert!(wait_until(PATIENCE, all), "gauges from all four");
    };
    let t0 = Instant::now();
    relaying_since(t0);
    for keys in ["old key\nnew key\n", "new key\nold key\n", "new key\n"] {
        for i in 0..names.len() {
            rotation.write(names[i], keys);
            let stopped = agents[i].sigterm();
            assert!(agents[i].wait_exit(Duration::from_secs(3)).is_some(), "{} exits", names[i]);
            agents[i] = Agent::start(&rotation.spec(names[i]));
            for (j, a) in agents.iter().enumerate() {
                if j != i {
                    a.expect_after(&member("up", names[i]), stopped, PATIENCE);
                }
            }
            // The restarted one sees all three others again.
            for other in names.iter().filter(|o| **o != names[i]) {
                agents[i].expect(&member("up", other), PATIENCE);
            }
        }
    }
    let rotated = t0.elapsed();
    relaying_since(Instant::now());
    let g = gauges(statsd, "");
    assert_one_baton(&g);
    for a in &agents {
        assert!(
            !a.has_line("member down"),
            "{}: a `member down` during the rotation:\n{}",
            a.name,
            a.lines().join("\n")
        );
    }
    // A straggler with the old key only: refused by all, as a key they lack.
    rotation.write("psx", "old key\n");
    let psx = Agent::start(&rotation.cluster.node("psx").secret_file(&rotation.path("psx")));
    let started = psx.expect("herd started", PATIENCE);
    let quiet_until = started + 3 * HEARTBEAT + Duration::from_millis(500);
    for a in &agents {
        let left = quiet_until.saturating_duration_since(Instant::now());
        assert!(a.wait_for(&member("up", "psx"), left).is_none(), "{} let psx (old key only) in", a.name);
    }
    assert!(!psx.has_line("member up"), "psx (old key only) joined someone");
    assert!(
        psx.has_line("sealed with a key this node does not have"),
        "psx names the unknown key of the rotated cluster's datagrams:\n{}",
        psx.lines().join("\n")
    );
    println!(
        "rotated 4 agents through 3 steps (12 restarts) in {} ms, {} gauges, one baton",
        rotated.as_millis(),
        g.len()
    );
}

#[test]
fn a_restarted_agent_is_recognised_as_a_new_life() {
    let cluster = Cluster::new("restart");
    let spec_b = cluster.node("psb").secret("phoenix");
    let mut psa = Agent::start(&cluster.node("psa").secret("phoenix"));
    let mut first = Agent::start(&spec_b);
    psa.expect(&member("up", "psb"), PATIENCE);
    first.expect(&member("up", "psa"), PATIENCE);

    // Back before psa could mark it down: the same member in a new life.
    let killed_at = first.sigkill();
    let mut second = Agent::start(&spec_b);
    let t = psa.expect_after(&member("restarted", "psb"), killed_at, PATIENCE);
    println!("restart: psa saw psb restarted {} ms after its relaunch", ms(since(t, second.spawned)));
    second.expect(&member("up", "psa"), PATIENCE);
    assert!(
        psa.wait_for_after(&member("suspect", "psb"), killed_at, Duration::ZERO).is_none(),
        "psa suspected psb although it restarted at once"
    );

    // Back after psa marked it down: up again, not "restarted".
    let killed_at = second.sigkill();
    let down = psa.expect_after(&member("down", "psb"), killed_at, PATIENCE);
    println!("restart: psa marked psb down {} ms after SIGKILL", ms(since(down, killed_at)));
    let third = Agent::start(&spec_b);
    let t = psa.expect_after(&member("up", "psb"), third.spawned, PATIENCE);
    println!("restart: psa saw psb up again {} ms after its relaunch", ms(since(t, third.spawned)));
    assert!(
        psa.wait_for_after(&member("restarted", "psb"), down, Duration::ZERO).is_none(),
        "psa reported a down member's return as a restart"
    );
    third.expect(&member("up", "psa"), PATIENCE);
    leave(&mut psa);
}

/// Starts two agents, checks they see each other within a few heartbeats and
/// that a SIGTERMed one is seen leaving.
fn pair_forms_a_cluster(what: &str, a: Spec, b: Spec) {
    let mut a = Agent::start(&a);
    let mut b = Agent::start(&b);
    let started = b.expect("herd started", PATIENCE);
    for (x, y) in [(&a, &b), (&b, &a)] {
        let t = x.expect(&member("up", &y.name), PATIENCE);
        let took = since(t, started);
        println!("{what}: {} saw {} {} ms after both had started", x.name, y.name, ms(took));
        // Unicast strategies learn their targets from a resolver after the
        // first heartbeat, so allow one interval more than multicast.
        assert!(took <= 2 * HEARTBEAT + SLACK, "{what}: {} took {} ms to see {}", x.name, ms(took), y.name);
    }
    let termed_at = Instant::now();
    leave(&mut b);
    let t = a.expect_after(&member("left", &b.name), termed_at, PATIENCE);
    println!("{what}: {} saw {} leave {} ms after SIGTERM", a.name, b.name, ms(since(t, termed_at)));
    assert!(since(t, termed_at) <= Duration::from_millis(500));
    leave(&mut a);
}

#[test]
fn static_hosts_form_a_cluster() {
    let cluster = Cluster::new("static");
    let hosts = format!(
        "[{}, {}]",
        toml_str(&format!("127.0.0.2:{}", cluster.port)),
        toml_str(&format!("127.0.0.3:{}", cluster.port))
    );
    let node = |name: &str, ip: &str| {
        cluster
            .node(name)
            .gossip("strategy", "\"static\"")
            .gossip("hosts", &hosts)
            .gossip("if_addr", &toml_str(ip))
    };
    pair_forms_a_cluster("static", node("psa", "127.0.0.2"), node("psb", "127.0.0.3"));
}

#[test]
fn dns_discovery_forms_a_cluster() {
    // Both resolve localhost to 127.0.0.1: psb heartbeats to psa, which
    // learns psb's address from the datagram and heartbeats back.
    let cluster = Cluster::new("dns");
    let node = |name: &str, ip: &str| {
        cluster
            .node(name)
            .gossip("strategy", "\"dns\"")
            .gossip("dns_name", "\"localhost\"")
            .gossip("if_addr", &toml_str(ip))
    };
    pair_forms_a_cluster("dns", node("psa", "127.0.0.1"), node("psb", "127.0.0.2"));
}

#[test]
fn broadcast_only_forms_a_cluster() {
    let cluster = Cluster::new("bcast");
    let node = |name: &str| {
        cluster.node(name).gossip("broadcast_only", "true").gossip("multicast_addr", "\"127.255.255.255\"")
    };
    pair_forms_a_cluster("broadcast", node("psa"), node("psb"));
}

#[test]
fn garbage_datagrams_are_counted_and_change_nothing() {
    let cluster = Cluster::new("garbage");
    let mut psa = Agent::start(&cluster.node("psa").secret("tidy"));
    let mut psb = Agent::start(&cluster.node("psb").secret("tidy"));
    psa.expect(&member("up", "psb"), PATIENCE);
    psb.expect(&member("up", "psa"), PATIENCE);

    let mut noise = random_bytes(200);
    noise[0] = 0xff; // not the "HD" magic, whatever the random draw
    let garbage = vec![noise, b"HD".to_vec(), random_bytes(60_000)];
    // The gossip port is shared by both agents (SO_REUSEPORT), so the kernel
    // gives these to one of them; psa's data port is psa's alone.
    send_garbage(cluster.port, &garbage);
    send_garbage(psa.data_port(), &garbage);
    let sent_at = Instant::now();
    psa.expect("reason=not a herd datagram", PATIENCE);

    // psa is still running, still hears psb, and still admits newcomers.
    let psc = Agent::start(&cluster.node("psc").secret("tidy"));
    psa.expect(&member("up", "psc"), PATIENCE);
    let quiet_until = sent_at + SUSPECT_AFTER + Duration::from_millis(500);
    assert!(
        psa.wait_for_after(
            &member("suspect", "psb"),
            sent_at,
            quiet_until.saturating_duration_since(Instant::now())
        )
        .is_none(),
        "psa lost psb after the garbage"
    );
    assert!(psa.is_running(), "psa died of garbage");

    let a = leave(&mut psa);
    let b = leave(&mut psb);
    println!("garbage: psa {a}\ngarbage: psb {b}");
    assert!(count(&a, "malformed") >= 3, "psa: {a}");
    assert!(
        count(&a, "malformed") + count(&b, "malformed") >= 2 * garbage.len() as u64,
        "not every garbage datagram was counted:\n{a}\n{b}"
    );
    drop(psc);
}
