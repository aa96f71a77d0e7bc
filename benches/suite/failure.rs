//! Failure handling: how long the cluster takes to notice what happens to a
//! node, from the agents' own logs and gauges. Four agents, defaults
//! (heartbeat 1 s, down_after 5 s, regenerate_after 3 s), a secret, the baton
//! at `hold = "100ms"`; once on loopback and, when run as root, once in the
//! network lab (each agent its own host). The reference is the bound the
//! product promises, so the ratio is measured / bound.
//!
//! - join: a 4th agent starts → every agent has logged the others up;
//! - SIGTERM → every peer logs `member left`;
//! - kill -9 → every peer logs `member down`;
//! - kill -9 of the baton's holder → another agent logs `baton regenerated`
//!   (and, for the record, when the first gauge of the new baton arrives).

use std::process::Command;
use std::time::{Duration, Instant};

use herd::agent::snapshot::Snapshot;

use crate::common::{Agent, Cluster, Spec, Statsd, free_tcp_port, gauges, member, toml_str};
use crate::harness::Lab;
use crate::{Row, Setup};

const HEARTBEAT: Duration = Duration::from_secs(1);

/// Where the agents run.
struct Place<'a> {
    label: &'static str,
    start: Box<dyn Fn(usize) -> Agent + 'a>,
    name: Box<dyn Fn(usize) -> String + 'a>,
    /// Which agent holds the baton now, and the highest counter it has
    /// seen, by its `/status`.
    holder: Box<dyn Fn() -> Option<(usize, u64)> + 'a>,
    statsd: Statsd,
}

pub fn run(s: &Setup, rows: &mut Vec<Row>) {
    let cluster = Cluster::new("failure");
    let statsd = Statsd::start();
    let address = statsd.address();
    let names = ["psa", "psb", "psc", "psd"];
    let herd = s.herd.clone();
    let ports: Vec<u16> = (0..4).map(|_| free_tcp_port()).collect();
    let status = move |i: usize| format!("127.0.0.1:{}", ports[i]);
    let loopback = Place {
        label: "loopback",
        start: Box::new(|i| {
            let spec = tuned(cluster.node(names[i])).set("statsd", "address", &address).set(
                "status",
                "listen",
                &toml_str(&status(i)),
            );
            Agent::start_with(&spec, Command::new(&herd))
        }),
        name: Box::new(move |i| names[i].to_owned()),
        holder: Box::new(|| {
            (0..4).find_map(|i| {
                herd::agent::status::client(&status(i), herd::agent::status::View::Json)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Snapshot>(&t).ok())
                    .filter(|s| s.baton.holding)
                    .map(|s| (i, s.baton.counter))
            })
        }),
        statsd,
    };
    measure(&loopback, rows);
    // The lab needs root; without it, say so in the table.
    match Lab::new("bench-failure", 4) {
        Some(lab) => {
            let place = Place {
                label: "lab",
                start: Box::new(|i| lab.start(i + 1, &tuned(lab.spec(i + 1)))),
                name: Box::new(|i| format!("n{}", i + 1)),
                holder: Box::new(|| {
                    lab.statuses(&[1, 2, 3, 4])
                        .into_iter()
                        .find(|(_, s)| s.baton.holding)
                        .map(|(i, s)| (i - 1, s.baton.counter))
                }),
                statsd: lab.statsd(4),
            };
            measure(&place, rows);
        }
        None => rows.push(Row {
            section: "failure",
            figure: "failure handling in the network lab".into(),
            value: "not run: needs root".into(),
            target: "-".into(),
            reference: "-".into(),
            ratio: None,
            met: None,
        }),
    }
}

fn tuned(spec: Spec) -> Spec {
    spec.secret("failure secret").set("baton", "hold", &toml_str("100ms"))
}

fn measure(p: &Place<'_>, rows: &mut Vec<Row>) {
    let mut row = |figure: &str, took: Option<Duration>, bound: Duration, why: &str| {
        rows.push(Row {
            section: "failure",
            figure: format!("{figure} ({})", p.label),
            value: took.map_or("did not happen in 3× the bound".into(), |t| format!("{} ms", t.as_millis())),
            target: format!("≤ {} ms ({why})", bound.as_millis()),
            reference: "the bound".into(),
            ratio: took.map(|t| t.as_secs_f64() / bound.as_secs_f64()),
            met: Some(took.is_some_and(|t| t <= bound)),
        });
    };
    let mut agents: Vec<Agent> = (0..3).map(|i| (p.start)(i)).collect();
    for a in &agents {
        for j in 0..3 {
            if (p.name)(j) != a.name {
                a.expect(&member("up", &(p.name)(j)), Duration::from_secs(10));
            }
        }
    }
    // Join: the 4th agent, seen by all and seeing all.
    let fourth = (p.start)(3);
    let joined = all_logged(&agents, &member("up", &fourth.name), fourth.spawned, 3 * HEARTBEAT * 2);
    let saw = (0..3).map(|j| fourth.wait_for(&member("up", &(p.name)(j)), 3 * HEARTBEAT * 2)).collect();
    let took = latest(vec![joined, latest(saw)]).map(|t| t - fourth.spawned);
    row("join: 4th agent started → all 4 see each other", took, 2 * HEARTBEAT, "2 heartbeats");

    // Leave: SIGTERM.
    let mut fourth = fourth;
    let sent = fourth.sigterm();
    let took = all_logged(&agents, &member("left", &fourth.name), sent, 3 * HEARTBEAT).map(|t| t - sent);
    row("SIGTERM → all peers log the leave", took, HEARTBEAT, "1 heartbeat");
    fourth.wait_exit(Duration::from_secs(5));

    // Crash: kill -9 of a member that is not holding (any will do).
    let fourth = (p.start)(3);
    all_logged(&agents, &member("up", &fourth.name), fourth.spawned, Duration::from_secs(5));
    std::thread::sleep(2 * HEARTBEAT);
    let mut fourth = fourth;
    let killed = fourth.sigkill();
    let bound = 5 * HEARTBEAT + HEARTBEAT;
    let took = all_logged(&agents, &member("down", &fourth.name), killed, 3 * bound).map(|t| t - killed);
    row("kill -9 → all peers mark it down", took, bound, "down_after + 1 heartbeat");
    drop(fourth);

    // Holder crash: kill the agent whose /status says it holds the baton
    // (during its 100 ms hold; asking takes about a millisecond), then time
    // the first `baton regenerated` log line among the others (the product's
    // promise), and the first gauge above the holder's counter from another
    // host (what a dashboard shows; gauges are batched for up to
    // `flush_interval`). If the kill came just after the holder passed the
    // baton on, nobody regenerates: then once more with the new holder.
    let bound = 3 * HEARTBEAT + HEARTBEAT;
    let mut outcome = None;
    let mut dead: Vec<String> = Vec::new();
    for _attempt in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (holder, counter) = loop {
            let alive = |i: usize| i < agents.len() && !dead.contains(&agents[i].name);
            if let Some(h) = (p.holder)().filter(|(i, _)| alive(*i)) {
                break h;
            }
            assert!(Instant::now() < deadline, "{}: nobody holds the baton", p.label);
        };
        let name = agents[holder].name.clone();
        let killed = agents[holder].sigkill();
        dead.push(name.clone());
        let live: Vec<&Agent> = agents.iter().filter(|a| !dead.contains(&a.name)).collect();
        let regenerated = live
            .iter()
            .filter_map(|a| a.wait_for_after("baton regenerated", killed, 3 * bound))
            .min()
            .map(|t| t - killed);
        let until = Instant::now() + 2 * bound;
        let gauge = loop {
            let next = gauges(&p.statsd, "")
                .into_iter()
                .find(|(at, c, h)| *at > killed && *c > counter && *h != name);
            if let Some((at, ..)) = next {
                break Some(at - killed);
            }
            if Instant::now() > until {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        outcome = Some((regenerated, gauge));
        if regenerated.is_some() || gauge.is_none() {
            break;
        }
        eprintln!("  {}: the baton left {name} before the kill; again with the new holder", p.label);
    }
    let (regenerated, gauge) = outcome.unwrap_or((None, None));
    rows.push(Row {
        section: "failure",
        figure: format!("kill -9 of the baton's holder → regenerated ({})", p.label),
        value: match (regenerated, gauge) {
            (Some(r), Some(g)) => format!("{} ms (first new gauge at {} ms)", r.as_millis(), g.as_millis()),
            (Some(r), None) => format!("{} ms (no new gauge)", r.as_millis()),
            (None, _) => "not regenerated in 3× the bound".into(),
        },
        target: format!("≤ {} ms (regenerate_after + 1 heartbeat)", bound.as_millis()),
        reference: "the bound".into(),
        ratio: regenerated.map(|t| t.as_secs_f64() / bound.as_secs_f64()),
        met: Some(regenerated.is_some_and(|t| t <= bound)),
    });
    agents.clear();
}

/// When the last of `agents` logged `pattern` after `after`, waiting up to
/// `timeout` for each; `None` if one did not.
fn all_logged(agents: &[Agent], pattern: &str, after: Instant, timeout: Duration) -> Option<Instant> {
    latest(agents.iter().map(|a| a.wait_for_after(pattern, after, timeout)).collect())
}

fn latest(v: Vec<Option<Instant>>) -> Option<Instant> {
    v.into_iter().collect::<Option<Vec<_>>>()?.into_iter().max()
}
