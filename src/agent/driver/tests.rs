//! The driver over an in-memory network: two whole agents.

use super::*;
use crate::agent::setup::node_config;
use crate::agent::statsd::spy;
use crate::agent::transport::memory::{Endpoint, Network};
use crate::core::membership::MemberState;

type Lines = Box<dyn Fn() -> Vec<String>>;

/// `ip` is advertised in heartbeats, so it must be the endpoint's.
fn config(name: &str, ip: std::net::IpAddr) -> Config {
    let text = format!(
        "[node]\nname = \"{name}\"\ncluster = \"unit\"\n\
         [gossip]\nif_addr = \"{ip}\"\nsecret = \"unit secret\"\nheartbeat_interval = \"100ms\"\n\
         suspect_after = \"300ms\"\ndown_after = \"500ms\"\n\
         [links]\nprobe_interval = \"100ms\"\n\
         [baton]\nhold = \"5ms\"\n[status]\nlisten = \"\"\n\
         [telemetry]\nsysfs_root = \"/nonexistent\"\n"
    );
    Config::from_toml_str(&text, "unit.toml").unwrap()
}

/// A whole agent over endpoint `i`; its metrics go to a spy, whose lines
/// the returned closure takes.
fn agent(net: &Network, i: u8, name: &str) -> (Driver<Endpoint>, Lines) {
    let endpoint = net.endpoint(i);
    let config = config(name, endpoint.data.ip());
    let node = Node::new(node_config(&config, endpoint.data.port(), None), rand::make_rng(), Instant::now());
    let mut driver = Driver::new(&config, node, endpoint, Inputs::default());
    let (metrics, lines) = spy::metrics(&config, name);
    driver.set_reporter(Reporter::with_metrics(&config, metrics));
    (driver, Box::new(lines))
}

/// Turns both drivers until `done` holds; fails after 5 s.
async fn drive_until(
    a: &mut Driver<Endpoint>,
    b: &mut Driver<Endpoint>,
    done: impl Fn(&Node<SmallRng>, &Node<SmallRng>) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(5);
    while !done(&a.node, &b.node) {
        assert!(Instant::now() < end, "not done within 5 s");
        tokio::select! {
            _ = a.turn() => {}
            _ = b.turn() => {}
        }
    }
}

fn state(n: &Node<SmallRng>, peer: &str) -> Option<MemberState> {
    n.members().get(peer).map(|m| m.state)
}

/// A config handed in (`run_with`'s control channel) is applied as a
/// reload: a keyring the peer does not share cuts the two apart (each
/// sees the other down, its datagrams refused as auth), and the shared
/// secret again brings them back.
#[tokio::test]
async fn a_config_handed_in_rekeys_like_a_reload() {
    let net = Network::default();
    let (mut a, _) = agent(&net, 0, "psa");
    let (mut b, _) = agent(&net, 1, "psb");
    let (tx, rx) = mpsc::channel(1);
    b.inputs.apply = Some(rx);
    let alive = Some(MemberState::Alive);
    drive_until(&mut a, &mut b, |a, b| state(a, "psb") == alive && state(b, "psa") == alive).await;

    let shared = b.running.config().clone();
    let mut apart = shared.clone();
    apart.gossip.keys = vec![crate::config::Secret(b"another secret".to_vec())];
    tx.try_send(apart).unwrap();
    let down = Some(MemberState::Down);
    drive_until(&mut a, &mut b, |a, b| state(a, "psb") == down && state(b, "psa") == down).await;
    assert!(a.node.rejections().auth > 0 && b.node.rejections().auth > 0);
    assert_eq!(b.node.key_ids().len(), 1);
    assert_ne!(b.node.key_ids(), a.node.key_ids());

    tx.try_send(shared).unwrap();
    drive_until(&mut a, &mut b, |a, b| state(a, "psb") == alive && state(b, "psa") == alive).await;
    assert_eq!(b.node.key_ids(), a.node.key_ids());
}

#[tokio::test]
async fn two_drivers_over_memory_join_relay_one_baton_and_leave() {
    let net = Network::default();
    let (mut a, a_lines) = agent(&net, 0, "psa");
    let (mut b, b_lines) = agent(&net, 1, "psb");
    let alive = Some(MemberState::Alive);
    drive_until(&mut a, &mut b, |a, b| state(a, "psb") == alive && state(b, "psa") == alive).await;
    drive_until(&mut a, &mut b, |a, b| a.relay().high() >= 20 && b.relay().high() >= 20).await;

    // Each driver reported its own passes as `baton:<n>|g|#host:<node>`,
    // and together they are one rising counter: one baton.
    let gauges = |lines: Vec<String>, host: &str| -> Vec<u64> {
        let suffix = format!("|g|#host:{host}");
        let mut out = Vec::new();
        for l in lines.iter().filter(|l| l.starts_with("baton:")) {
            let n = l.strip_prefix("baton:").and_then(|r| r.strip_suffix(suffix.as_str()));
            out.push(n.unwrap_or_else(|| panic!("{l:?}")).parse::<u64>().unwrap());
        }
        out
    };
    let (from_a, from_b) = (gauges(a_lines(), "psa"), gauges(b_lines(), "psb"));
    assert!(!from_a.is_empty() && !from_b.is_empty(), "{from_a:?} {from_b:?}");
    assert_eq!(from_a.len() as u64, a.reporter.totals().passes);
    let mut all: Vec<u64> = from_a.iter().chain(&from_b).copied().collect();
    all.sort_unstable();
    let distinct = all.len();
    all.dedup();
    assert_eq!(all.len(), distinct, "a counter sent twice: {from_a:?} {from_b:?}");
    assert!(from_a.windows(2).all(|w| w[0] < w[1]), "{from_a:?}");

    a.leave();
    assert_eq!(a.node.poll_timeout(), None, "a node that left has no deadline");
    drive_until(&mut a, &mut b, |_, b| state(b, "psa") == Some(MemberState::Left)).await;
    let last = a_lines();
    assert!(last.iter().any(|l| l == "herd.members:2|g|#host:psa"), "final flush: {last:?}");
}

/// The page's charts are sampled on: a reload rebuilds the other periodic
/// jobs from the new config, and no reloadable key touches the charts.
#[tokio::test]
async fn a_reload_keeps_the_charts_sampled() {
    let net = Network::default();
    let (mut a, _) = agent(&net, 0, "psa");
    let start = Instant::now();
    a.history = Some(History::new());
    a.jobs.history = Some(Every::around(history::EVERY, start));
    let mut faster = a.running.config().clone();
    faster.statsd.flush_interval = Duration::from_millis(500);
    a.apply(faster, "unit.toml");
    assert!(a.jobs.history.is_some(), "the charts' job outlived the reload");
    a.drive_jobs(start + history::EVERY);
    let h = a.history.as_ref().unwrap();
    assert_eq!(h.samples.len(), 1, "sampled after the reload");
}

/// A job whose period is a rate runs in a turn within its slack either
/// side of its time and keeps its period on average however early or late
/// each run was; after a long stop it runs once and starts again from then.
#[test]
fn a_job_rides_on_nearby_turns_and_keeps_its_rate() {
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let mut job = Some(Every::around(ms(1000), t0 + ms(1000)));
    assert!(!Jobs::due(&mut job, t0 + ms(899)), "before its slack");
    assert!(Jobs::due(&mut job, t0 + ms(900)), "early, in a turn taken anyway");
    assert_eq!(job.unwrap().next, t0 + ms(2000), "the next run a period after this one's time");
    assert!(!Jobs::due(&mut job, t0 + ms(1500)));
    assert_eq!(job.unwrap().latest(), t0 + ms(2100), "the timer is set for the end of the window");
    assert!(Jobs::due(&mut job, t0 + ms(2100)), "late, at the end of its window");
    assert_eq!(job.unwrap().next, t0 + ms(3000));
    // Stopped for seconds: one run, then a period from then.
    assert!(Jobs::due(&mut job, t0 + ms(9000)));
    assert_eq!(job.unwrap().next, t0 + ms(10_000));
    assert!(!Jobs::due(&mut job, t0 + ms(9001)), "no bunching up");
    // Late past its window but by less than a period: from then, too.
    assert!(Jobs::due(&mut job, t0 + ms(10_950)));
    assert_eq!(job.unwrap().next, t0 + ms(11_950));
    assert!(!Jobs::due(&mut job, t0 + ms(10_960)), "no second run right after a late one");
    // A short period's slack is an eighth of it.
    let mut fast = Some(Every::around(ms(80), t0 + ms(80)));
    assert!(!Jobs::due(&mut fast, t0 + ms(69)));
    assert!(Jobs::due(&mut fast, t0 + ms(70)));
}

/// The flush may run early, never late, and never more than a period after
/// the previous one: a metric recorded after a flush goes out within
/// `flush_interval`.
#[test]
fn the_flush_runs_early_never_late() {
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let mut flush = Some(Every { period: ms(1000), next: t0 + ms(1000), window: Window::Early });
    assert_eq!(flush.unwrap().latest(), t0 + ms(1000), "the timer at its time");
    assert!(!Jobs::due(&mut flush, t0 + ms(899)));
    assert!(Jobs::due(&mut flush, t0 + ms(950)));
    assert_eq!(flush.unwrap().next, t0 + ms(1950), "a period after the run");
}
