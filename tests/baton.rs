//! The baton relay across real `herd` processes on loopback, watched through
//! a StatsD listener: the exact gauge bytes, failover after SIGKILL of the
//! holder, disabled nodes, constant tags, and the Unix-socket sink.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Agent, Cluster, Statsd, baton_gauge, gauges, member, toml_str, wait_until};

const HOLD_MS: u64 = 500;

fn start(cluster: &Cluster, name: &str, statsd: &Statsd, extra: &[(&str, &str, &str)]) -> Agent {
    let mut spec = cluster
        .node(name)
        .secret("relay secret")
        .set("baton", "hold", &toml_str(&format!("{HOLD_MS}ms")))
        .set("statsd", "address", &statsd.address())
        .set("statsd", "flush_interval", &toml_str("20ms"))
        .log("herd=debug");
    for (section, key, value) in extra {
        spec = spec.set(section, key, value);
    }
    Agent::start(&spec)
}

#[test]
fn four_agents_relay_exact_gauges_and_resume_after_the_holder_is_killed() {
    let statsd = Statsd::start();
    let cluster = Cluster::new("baton");
    let names = ["psa", "psb", "psc", "psd"];
    let mut agents: Vec<Agent> = names.iter().map(|n| start(&cluster, n, &statsd, &[])).collect();

    // Gauges from all four, byte-exact, each host's counters increasing, and
    // no counter sent twice (one baton).
    let all_hosts = wait_until(Duration::from_secs(20), || {
        gauges(&statsd, "").iter().map(|g| g.2.clone()).collect::<BTreeSet<_>>().len() == 4
    });
    assert!(all_hosts, "gauges from all 4 hosts: {:?}", gauges(&statsd, ""));
    let seen = gauges(&statsd, "");
    let mut per_host: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (_, c, h) in &seen {
        per_host.entry(h).or_default().push(*c);
    }
    for (host, counters) in &per_host {
        assert!(counters.windows(2).all(|w| w[0] < w[1]), "{host}: {counters:?}");
    }
    let unique: BTreeSet<u64> = seen.iter().map(|g| g.1).collect();
    assert_eq!(unique.len(), seen.len(), "a counter was sent twice: {seen:?}");
    println!(
        "gauges before the kill: {:?}",
        seen.iter().map(|g| format!("{}@{}", g.1, g.2)).collect::<Vec<_>>()
    );

    // The holder is the agent with the most recent "baton taken" line, taken
    // less than half a hold ago (so it is still holding when killed).
    let holder = loop {
        let latest = agents
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let at = a.log_lines().into_iter().rev().find(|l| l.text.contains("baton taken"))?.at;
                Some((at, i))
            })
            .max();
        if let Some((at, i)) = latest
            && at.elapsed() < Duration::from_millis(HOLD_MS / 2)
        {
            break i;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let killed_at = agents[holder].sigkill();
    std::thread::sleep(Duration::from_millis(100));
    let last = gauges(&statsd, "").iter().map(|g| g.1).max().unwrap();

    let resumed = wait_until(Duration::from_secs(8), || gauges(&statsd, "").iter().any(|g| g.1 > last));
    assert!(resumed, "relay did not resume after the holder {} was killed", names[holder]);
    let next = gauges(&statsd, "").into_iter().find(|g| g.1 > last).unwrap();
    let survivors: Vec<usize> = (0..4).filter(|&i| i != holder).collect();
    let regenerated: Vec<(Instant, &str)> = survivors
        .iter()
        .filter_map(|&i| agents[i].line_at("baton regenerated").map(|at| (at, names[i])))
        .collect();
    assert_eq!(regenerated.len(), 1, "one node regenerates: {regenerated:?}");
    let regen_after = regenerated[0].0 - killed_at;
    println!(
        "killed holder {} at counter {last}; {} regenerated after {:?}; next gauge {} from {} after {:?}",
        names[holder],
        regenerated[0].1,
        regen_after,
        next.1,
        next.2,
        next.0 - killed_at
    );
    // regenerate_after (3 s) + one heartbeat (1 s).
    assert!(regen_after <= Duration::from_secs(4), "regenerated after {regen_after:?}");
    assert!(next.1 > last && next.2 != names[holder]);

    // The survivors see the dead node go down, and the relay goes on among them.
    for &i in &survivors {
        agents[i].expect(&member("down", names[holder]), Duration::from_secs(7));
    }
    let after = gauges(&statsd, "").len();
    assert!(wait_until(Duration::from_secs(5), || gauges(&statsd, "").len() > after + 3));

    // Other metrics of the relay, with the host tag.
    let lines: BTreeSet<String> = statsd.lines().into_iter().map(|l| l.1).collect();
    for host in names.iter().filter(|n| **n != names[holder]) {
        let has = |prefix: &str, suffix: &str| {
            lines.iter().any(|l| l.starts_with(prefix) && l.ends_with(&format!("{suffix}|#host:{host}")))
        };
        assert!(has("herd.baton.passes:", "|c"), "passes counter of {host}");
        assert!(has("herd.baton.hop_ms:", "|h"), "hop histogram of {host}");
        assert!(lines.contains(&format!("herd.members:3|g|#host:{host}")), "members gauge of {host}");
    }
    assert!(lines.iter().any(|l| l.starts_with("herd.baton.regenerated:1|c|#host:")));
}

#[test]
fn nodes_with_the_baton_disabled_are_skipped_and_tags_are_added() {
    let statsd = Statsd::start();
    let cluster = Cluster::new("baton-off");
    let tags = [("statsd", "tags", "[\"env:lab\", \"rack:1\"]")];
    let off = [("baton", "enabled", "false"), tags[0]];
    let _a = start(&cluster, "psa", &statsd, &off);
    let _b = start(&cluster, "psb", &statsd, &tags);
    let _c = start(&cluster, "psc", &statsd, &tags);
    let suffix = ",env:lab,rack:1";
    assert!(wait_until(Duration::from_secs(15), || {
        gauges(&statsd, suffix).iter().map(|g| g.2.clone()).collect::<BTreeSet<_>>().len() == 2
    }));
    std::thread::sleep(Duration::from_secs(2));
    let hosts: BTreeSet<String> = gauges(&statsd, suffix).into_iter().map(|g| g.2).collect();
    assert_eq!(hosts, BTreeSet::from(["psb".to_owned(), "psc".to_owned()]));
}

#[test]
fn metrics_go_to_a_unix_socket_and_a_missing_socket_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsd.socket");
    let cluster = Cluster::new("baton-uds");
    let address = toml_str(&format!("unix://{}", path.display()));
    let dummy = Statsd::start();
    let spec = |name: &str| {
        cluster.node(name).set("baton", "hold", &toml_str("100ms")).set("statsd", "address", &address).set(
            "statsd",
            "flush_interval",
            &toml_str("20ms"),
        )
    };
    // No socket yet: the agents run, relay, and say they cannot send.
    let a = Agent::start(&spec("psa"));
    let b = Agent::start(&spec("psb"));
    a.expect("cannot send metrics", Duration::from_secs(10));
    b.expect(&member("up", "psa"), Duration::from_secs(3));
    drop(dummy);
    // The socket appears: metrics arrive without a restart.
    let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut text = String::new();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && !text.contains("baton:") {
        if let Ok(n) = server.recv(&mut buf) {
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            text.push('\n');
        }
    }
    let gauge = text.lines().find(|l| l.starts_with("baton:")).expect("baton gauge over the Unix socket");
    assert!(baton_gauge(gauge, "").is_some(), "{gauge:?}");
}

#[test]
fn plain_statsd_flavor_puts_the_host_in_the_name_and_sends_no_tags() {
    let statsd = Statsd::start();
    let cluster = Cluster::new("baton-plain");
    let plain = [("statsd", "flavor", "\"statsd\""), ("statsd", "tags", "[\"env:lab\"]")];
    let _a = start(&cluster, "psa", &statsd, &plain);
    let _b = start(&cluster, "psb", &statsd, &plain);
    let ok = wait_until(Duration::from_secs(10), || {
        let lines: Vec<String> = statsd.lines().into_iter().map(|l| l.1).collect();
        let gauge = |host: &str| {
            lines.iter().any(|l| {
                l.strip_prefix(&format!("baton.{host}:"))
                    .and_then(|r| r.strip_suffix("|g"))
                    .is_some_and(|n| n.parse::<u64>().is_ok())
            })
        };
        gauge("psa") && gauge("psb") && lines.contains(&"herd.psa.members:2|g".to_owned())
    });
    let lines: Vec<String> = statsd.lines().into_iter().map(|l| l.1).collect();
    assert!(ok, "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('#')), "no tags in plain StatsD: {lines:?}");
}

/// A process that stalls (SIGSTOP here; a worn SD card blocking it for
/// seconds on a Pi) with baton gauges buffered for StatsD drops them on
/// waking: sent seconds late they would arrive after the cluster's newer
/// counters, and StatsD would take them as current. psa flushes once a
/// minute, so its gauges are all still buffered when it is stopped.
#[test]
fn gauges_buffered_before_a_stall_are_dropped_not_sent_late() {
    let statsd = Statsd::start();
    let cluster = Cluster::new("stallbuf");
    let hold = ("baton", "hold", "\"100ms\"");
    let mut psa = start(&cluster, "psa", &statsd, &[hold, ("statsd", "flush_interval", "\"60s\"")]);
    let psb = start(&cluster, "psb", &statsd, &[hold]);
    // psb takes only what psa passes: three passes of psa, three gauges in its buffer.
    let passed = wait_until(Duration::from_secs(20), || {
        psb.lines().iter().filter(|l| l.contains("baton taken")).count() >= 3
    });
    assert!(passed, "psa passes to psb: {}\n{}", psa.dump(), psb.dump());
    let pid = psa.pid() as libc::pid_t;
    // SAFETY: kill has no memory preconditions; the pid is our running child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_secs(7));
    let resumed = Instant::now();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let stall = psa.line("not running for a while", Duration::from_secs(10)).expect("psa notices its stall");
    let dropped = common::field(&stall, "dropped_lines").expect("dropped_lines=");
    assert!(dropped >= 3, "psa dropped its {dropped} buffered lines (3 passes or more): {stall}");
    // psa back in the relay, then its last gauges sent by its leave's flush.
    let back = psb.wait_for_after("baton taken", resumed + Duration::from_secs(1), Duration::from_secs(20));
    assert!(back.is_some(), "psa passes again after SIGCONT: {}", psa.dump());
    psa.sigterm();
    psa.wait_exit(Duration::from_secs(10)).expect("psa leaves");

    let all = gauges(&statsd, "");
    let before = all.iter().filter(|g| g.0 < resumed).map(|g| g.1).max().expect("gauges before SIGCONT");
    let late: Vec<u64> = all.iter().filter(|g| g.0 >= resumed && g.2 == "psa").map(|g| g.1).collect();
    assert!(!late.is_empty(), "psa's gauges after SIGCONT reach StatsD at its leave");
    assert!(
        late.iter().all(|&c| c > before),
        "psa sent {late:?} after SIGCONT, the cluster was at {before} before it: gauges from before the stall"
    );
    assert!(
        all.iter().all(|g| g.0 >= resumed || g.2 != "psa"),
        "psa's gauges waited in its buffer (flushed once a minute)"
    );
    println!("stalled 7 s: {dropped} lines dropped; after SIGCONT psa sent {late:?}, all above {before}");
}

/// The parser every test reads the relay through (tests/common/statsd.rs)
/// takes exact gauges only: a near miss is refused, not read leniently.
#[test]
fn the_baton_gauge_parser_takes_exact_gauges_only() {
    assert_eq!(baton_gauge("baton:42|g|#host:psa", ""), Some((42, "psa")));
    assert_eq!(baton_gauge("baton:0|g|#host:n1", ""), Some((0, "n1")));
    let tags = ",env:lab,rack:1";
    assert_eq!(baton_gauge("baton:7|g|#host:psb,env:lab,rack:1", tags), Some((7, "psb")));
    let near_misses = [
        ("baton:42|g|#host:psa,env:lab", ""),
        ("baton:42|g|#host:psa", ",env:lab"),
        ("baton:7|g|#host:psb,rack:1,env:lab", tags),
        ("baton:7|g|#host:psb,x,env:lab,rack:1", tags),
        ("baton:042|g|#host:psa", ""),
        ("baton:+42|g|#host:psa", ""),
        ("baton:-1|g|#host:psa", ""),
        ("baton:4.2|g|#host:psa", ""),
        ("baton:18446744073709551616|g|#host:psa", ""),
        ("baton:|g|#host:psa", ""),
        ("baton:42|c|#host:psa", ""),
        ("baton:42|g|#host:", ""),
        ("baton:42|g|#host:psa ", ""),
        ("baton:42|g|#host:psa\n", ""),
        ("baton:42|g|#host:psa|x", ""),
        ("baton:42|g", ""),
        ("baton.psa:42|g", ""),
        ("herd.baton:42|g|#host:psa", ""),
        (" baton:42|g|#host:psa", ""),
    ];
    for (line, tags) in near_misses {
        assert_eq!(baton_gauge(line, tags), None, "{line:?} with tags {tags:?}");
    }
}
