//! The failure detector alone, with the node's side played by hand: rounds,
//! checks and their deadlines, helpers' answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::{INDIRECT, ProbeConfig, Prober, Ring, Target};
use crate::core::effects::{Effect, Effects, Rumored, Unicast, Verdict};
use crate::core::wire::Rumor;

const SECOND: Duration = Duration::from_secs(1);

fn config() -> ProbeConfig {
    ProbeConfig { period: SECOND, suspect_after: 3 * SECOND, down_after: 5 * SECOND, sweep: false }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 45893))
}

/// The pings queued: (address, token).
fn pings(out: &Effects) -> Vec<(SocketAddr, u64)> {
    let ping = |e: &Effect| match e {
        Effect::Send { to, msg: Unicast::Ping { token } } => Some((*to, *token)),
        _ => None,
    };
    out.iter().filter_map(ping).collect()
}

/// The ping requests queued: (helper, token, target, its incarnation).
fn ping_reqs(out: &Effects) -> Vec<(SocketAddr, u64, String, u64)> {
    let req = |e: &Effect| match e {
        Effect::Send { to, msg: Unicast::PingReq { token, target, incarnation } } => {
            Some((*to, *token, target.clone(), *incarnation))
        }
        _ => None,
    };
    out.iter().filter_map(req).collect()
}

fn verdicts(out: &Effects) -> Vec<Verdict> {
    let verdict = |e: &Effect| if let Effect::Verdict(v) = e { Some(v.clone()) } else { None };
    out.iter().filter_map(verdict).collect()
}

fn news(out: &Effects) -> Vec<Rumored> {
    let news = |e: &Effect| if let Effect::News(r) = e { Some(r.clone()) } else { None };
    out.iter().filter_map(news).collect()
}

/// Over n - 1 periods of agreeing wall clocks, each of n nodes probes
/// every other exactly once, and in each period every node is probed by
/// exactly one other.
#[test]
fn the_ring_checks_everyone_once_a_period_and_each_peer_once_a_round() {
    let n = 7;
    let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    let t0 = Instant::now();
    let wall0: i64 = 1_796_169_600_000; // a period boundary, ms
    let mut probers: Vec<Prober> = (0..n).map(|_| Prober::new(config(), t0)).collect();
    let mut rng = SmallRng::seed_from_u64(3);
    let mut pairs = std::collections::BTreeSet::new();
    for period in 1..n as i64 {
        let mut probed = vec![0; n];
        for (i, p) in probers.iter_mut().enumerate() {
            let targets: Vec<Target<'_>> = (0..n)
                .filter(|&j| j != i)
                .map(|j| Target { name: &names[j], incarnation: 1, addr: addr(j), live: true })
                .collect();
            let at = t0 + SECOND * period as u32;
            let view = Ring { me: &names[i], members: &targets, wall_ms: Some(wall0 + 1000 * period) };
            (p.round_opens, p.next_round) = (at, at);
            let mut out = Effects::default();
            p.handle_timeout(at, view, &mut rng, &mut out);
            let pings = pings(&out);
            assert_eq!(pings.len(), 1, "one probe per period");
            let j = (0..n).find(|&j| addr(j) == pings[0].0).expect("a member");
            assert!(p.on_ack(at, &names[j], pings[0].1, &mut Effects::default()), "its round's ack");
            probed[j] += 1;
            assert!(pairs.insert((i, j)), "n{i} probed n{j} twice in a round");
            // The next round opens on the wall clock's next boundary and
            // must start within the first quarter of its period.
            assert_eq!(p.round_opens, at + SECOND);
            assert!(
                p.next_round >= at + SECOND + SECOND / 8 && p.next_round <= at + SECOND + SECOND / 4,
                "{:?}",
                p.next_round - at
            );
        }
        assert_eq!(probed, vec![1; n], "period {period}: each probed once");
    }
    assert_eq!(pairs.len(), n * (n - 1));
}

/// A round waits for a turn the node takes anyway: nothing before its
/// period starts, the round at any turn after, and the timer is only
/// needed by the round's latest start.
#[test]
fn a_round_starts_at_the_first_turn_of_its_period() {
    let t0 = Instant::now();
    let wall0: i64 = 1_796_169_600_000; // a period boundary, ms
    let mut p = Prober::new(config(), t0);
    let mut rng = SmallRng::seed_from_u64(5);
    let names = ["n1", "n2"];
    let targets: Vec<Target<'_>> = names
        .iter()
        .enumerate()
        .map(|(j, name)| Target { name, incarnation: 1, addr: addr(j), live: true })
        .collect();
    let view = |ms: i64| Ring { me: "n0", members: &targets, wall_ms: Some(wall0 + ms) };
    // A first round at the boundary sets the next period's window.
    (p.round_opens, p.next_round) = (t0, t0);
    let mut out = Effects::default();
    p.handle_timeout(t0, view(0), &mut rng, &mut out);
    assert_eq!(pings(&out).len(), 1);
    // Once the ping is answered, the deadlines left are the next window's.
    let (to, token) = pings(&out)[0];
    let j = (0..2).find(|&j| addr(j) == to).unwrap();
    assert!(p.on_ack(t0, names[j], token, &mut Effects::default()));
    let (opens, latest) = (p.poll_early(), p.poll_timeout());
    assert_eq!(opens, t0 + SECOND, "the next period's start");
    assert!(latest >= opens + SECOND / 8 && latest <= opens + SECOND / 4, "{:?}", latest - opens);
    // A turn just before the period starts no round.
    let before = opens - Duration::from_millis(1);
    let mut out = Effects::default();
    p.handle_timeout(before, view(999), &mut rng, &mut out);
    assert!(pings(&out).is_empty(), "no round before its period");
    // The first turn inside the window starts it, well before its latest.
    let turn = opens + Duration::from_millis(40);
    p.handle_timeout(turn, view(1040), &mut rng, &mut out);
    assert_eq!(pings(&out).len(), 1, "the round rides on this turn");
    assert_eq!(p.round_opens, t0 + 2 * SECOND, "the period after opens on its boundary");
}

/// No answer to the round's ping: indirect probes through helpers, then
/// suspect at `suspect_after` and down at `down_after` after the last
/// good period.
#[test]
fn an_unanswered_probe_becomes_a_check_with_deadlines_from_the_config() {
    let names = ["a", "b", "c", "d", "e"];
    let targets: Vec<Target<'_>> = names[1..]
        .iter()
        .enumerate()
        .map(|(k, n)| Target { name: n, incarnation: 9, addr: addr(k + 1), live: true })
        .collect();
    let t0 = Instant::now();
    let mut p = Prober::new(config(), t0);
    let mut rng = SmallRng::seed_from_u64(1);
    let view = |_: Instant| Ring { me: "a", members: &targets, wall_ms: None };
    let mut out = Effects::default();
    let start = t0 + SECOND;
    p.handle_timeout(start, view(start), &mut rng, &mut out);
    let (target_addr, _) = pings(&out)[0];
    let target = targets.iter().find(|t| t.addr == target_addr).unwrap().name.to_owned();
    // Unanswered a quarter period later: a check, with helpers asked.
    let mut now = start + SECOND / 4;
    let mut out = Effects::default();
    p.handle_timeout(now, view(now), &mut rng, &mut out);
    assert!(p.checking(&target));
    assert_eq!(ping_reqs(&out).len(), INDIRECT);
    assert!(ping_reqs(&out).iter().all(|r| r.2 == target && r.0 != target_addr));
    // Helpers answer "no answer" (local health fine) until the deadlines.
    let mut verdicts = Vec::new();
    while now < start + 5 * SECOND {
        for r in ping_reqs(&out) {
            let mut o = Effects::default();
            p.on_indirect_ack(now, r.1, false, &mut o);
        }
        verdicts.extend(self::verdicts(&out).into_iter().map(|v| (now - start, v)));
        now = p.poll_timeout().min(start + 5 * SECOND);
        // Rounds go on to others meanwhile.
        out = Effects::default();
        p.handle_timeout(now, view(now), &mut rng, &mut out);
    }
    verdicts.extend(self::verdicts(&out).into_iter().map(|v| (now - start, v)));
    // (The later rounds' targets do not answer either: checks of their own.)
    let kinds: Vec<(Duration, &str)> = verdicts
        .iter()
        .filter_map(|(at, v)| match v {
            Verdict::Suspect { name, .. } if *name == target => Some((*at, "suspect")),
            Verdict::Down { name, .. } if *name == target => Some((*at, "down")),
            Verdict::Alive { name, .. } if *name == target => Some((*at, "alive")),
            _ => None,
        })
        .collect();
    // Counted from one period before the first ping: 3 s and 5 s.
    assert_eq!(kinds, [(2 * SECOND, "suspect"), (4 * SECOND, "down")], "{verdicts:?}");
}

/// A helper's yes ends a check: alive, announced as such once suspected.
#[test]
fn an_answer_through_a_helper_ends_the_check() {
    let t0 = Instant::now();
    let mut p = Prober::new(config(), t0);
    p.check_suspect(t0, "b", 9, addr(1));
    let targets = [
        Target { name: "b", incarnation: 9, addr: addr(1), live: true },
        Target { name: "c", incarnation: 9, addr: addr(2), live: true },
    ];
    let view = Ring { me: "a", members: &targets, wall_ms: None };
    let mut out = Effects::default();
    p.handle_timeout(t0, view, &mut SmallRng::seed_from_u64(2), &mut out);
    let (helper, token, target, _) = ping_reqs(&out).pop().expect("c is asked");
    assert_eq!((helper, target.as_str()), (addr(2), "b"));
    let mut out = Effects::default();
    p.on_indirect_ack(t0 + SECOND / 10, token, true, &mut out);
    assert!(!p.checking("b"));
    assert_eq!(verdicts(&out), [Verdict::Alive { name: "b".into(), incarnation: 9 }]);
    assert_eq!(news(&out).len(), 1, "a suspect answered: the cluster is told");
    assert_eq!(news(&out)[0].rumor, Rumor::Alive);
}

/// Lifeguard's local health: helpers asked, none heard (not even a
/// nack): this node is probably the one cut off, and waits twice as long.
#[test]
fn a_checker_that_hears_no_helper_waits_twice_as_long() {
    let targets = [
        Target { name: "b", incarnation: 9, addr: addr(1), live: true },
        Target { name: "c", incarnation: 9, addr: addr(2), live: true },
    ];
    let t0 = Instant::now();
    let mut p = Prober::new(config(), t0);
    let mut rng = SmallRng::seed_from_u64(4);
    // A check as the round would start it, `b` last heard a period ago.
    p.check_suspect(t0, "b", 9, addr(1));
    p.checks.get_mut("b").unwrap().last_good = t0 - SECOND;
    p.checks.get_mut("b").unwrap().suspected = false;
    let view = Ring { me: "a", members: &targets, wall_ms: None };
    let mut now = t0;
    let mut suspected_at = None;
    while now < t0 + 8 * SECOND && suspected_at.is_none() {
        let mut out = Effects::default();
        p.handle_timeout(now, view, &mut rng, &mut out);
        if verdicts(&out).iter().any(|v| matches!(v, Verdict::Suspect { name, .. } if name == "b")) {
            suspected_at = Some(now - t0);
        }
        now = p.poll_timeout();
    }
    // suspect_after (3 s) doubled, from a second before.
    assert_eq!(suspected_at, Some(5 * SECOND));
}
