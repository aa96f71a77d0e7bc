//! Scenario 7: broken neighbours on the host. Three hosts, each with one
//! thing wrong around the agent: n1's StatsD server is down (nothing on
//! 127.0.0.1:8125), n2's StatsD Unix socket does not exist, n3's status port
//! is taken by another program. Each agent must say so once in a clear log
//! line (not once per metric), keep running and keep relaying; when the
//! StatsD server or socket appears, metrics flow without a restart.

use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::common::{Statsd, baton_gauge, gauges, toml_str, wait_until};
use crate::harness::{Lab, STATUS, expect_mesh, in_netns, report};

/// How long the agents run with their neighbours broken.
const BROKEN_FOR: Duration = Duration::from_secs(25);

#[test]
fn statsd_down_socket_missing_and_status_port_taken_are_survived() {
    let Some(lab) = Lab::new("neighbours", 3) else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dsd.socket");
    // n3's status port is held by someone else before herd starts.
    let squatter = in_netns(&lab.ns(3), || TcpListener::bind(STATUS).expect("bind the status port"));
    // Only n3 has a StatsD server; n1's address has no listener.
    let n3_statsd =
        Statsd::start_on(vec![in_netns(&lab.ns(3), || UdpSocket::bind("127.0.0.1:8125").unwrap())]);
    let hold = toml_str("100ms");
    let agents = lab.start_all(3, |i, spec| {
        let spec = spec.set("baton", "hold", &hold);
        match i {
            2 => spec.set("statsd", "address", &toml_str(&format!("unix://{}", socket.display()))),
            _ => spec,
        }
    });
    let started = Instant::now();
    expect_mesh(&agents, Duration::from_secs(5));
    agents[0].expect("cannot send metrics", Duration::from_secs(15));
    agents[1].expect("cannot send metrics", Duration::from_secs(5));
    agents[2].expect("cannot listen for the status endpoint; running without it", Duration::from_secs(5));
    let refused = agents[0].line("cannot send metrics", Duration::ZERO).unwrap();
    assert!(
        refused.contains("address=127.0.0.1:8125") && refused.contains("Connection refused"),
        "the log names the address and the error: {refused}"
    );
    let missing = agents[1].line("cannot send metrics", Duration::ZERO).unwrap();
    assert!(
        missing.contains(&socket.display().to_string()) && missing.contains("No such file"),
        "the log names the socket and the error: {missing}"
    );

    // The relay goes on among all three while their neighbours stay broken.
    let passes = |i: usize| lab.status(i).map(|s| s.baton.passes);
    let before = (passes(1).expect("n1 status"), passes(2).expect("n2 status"));
    std::thread::sleep(BROKEN_FOR.saturating_sub(started.elapsed()));
    let after = (passes(1).expect("n1 status"), passes(2).expect("n2 status"));
    assert!(after.0 > before.0 && after.1 > before.1, "n1/n2 passes: {before:?} -> {after:?}");
    let n3_gauges = gauges(&n3_statsd, "").len();
    assert!(n3_gauges > 20, "n3 (StatsD up) kept reporting passes: {n3_gauges} gauges");
    let mut agents = agents;
    for a in &mut agents {
        assert!(a.is_running(), "{} exited:\n{}", a.name, a.dump());
        assert!(!a.has_line("member down"), "{}: a member went down:\n{}", a.name, a.dump());
    }
    // Said once per 10 s, not once per metric or per flush (50 ms).
    let complaints = |i: usize, what: &str| agents[i].lines().iter().filter(|l| l.contains(what)).count();
    let (n1_says, n2_says) = (complaints(0, "cannot send metrics"), complaints(1, "cannot send metrics"));
    for (name, says) in [("n1", n1_says), ("n2", n2_says)] {
        assert!(
            (1..=4).contains(&says),
            "{name} logged `cannot send metrics` {says} times in {BROKEN_FOR:?}"
        );
    }
    // The squatter's port still answers the squatter, and herd never took it.
    assert_eq!(squatter.local_addr().unwrap().to_string(), STATUS);

    // Repaired: metrics flow without a restart.
    let repaired = Instant::now();
    let n1_statsd =
        Statsd::start_on(vec![in_netns(&lab.ns(1), || UdpSocket::bind("127.0.0.1:8125").unwrap())]);
    let uds = UnixDatagram::bind(&socket).expect("bind the StatsD socket");
    uds.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || gauges(&n1_statsd, "").iter().any(|g| g.2 == "n1")),
        "n1's gauges after its StatsD server came up"
    );
    let n1_back = repaired.elapsed();
    let mut buf = vec![0u8; 65536];
    let n2_back = loop {
        assert!(repaired.elapsed() < Duration::from_secs(5), "n2's metrics after its socket appeared");
        if let Ok(n) = uds.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| baton_gauge(l, "").is_some_and(|(_, host)| host == "n2"))
        {
            break repaired.elapsed();
        }
    };

    report(
        "7. broken neighbours",
        "StatsD down (n1), StatsD socket missing (n2), status port taken (n3): clear log, keeps relaying, recovers",
        &format!(
            "over {:.0} s: `cannot send metrics` (connection refused / no such file) logged {n1_says}× by n1 and {n2_says}× by n2, \
             n3 warned once and ran without /status; passes n1 {}→{}, n2 {}→{}, n3 {n3_gauges} gauges; \
             0 exits, 0 downs; metrics back without restart after {} ms (n1, UDP) and {} ms (n2, socket)",
            BROKEN_FOR.as_secs_f64(),
            before.0,
            after.0,
            before.1,
            after.1,
            n1_back.as_millis(),
            n2_back.as_millis()
        ),
    );
}
