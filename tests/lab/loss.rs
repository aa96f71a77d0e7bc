//! Scenario 3: loss. Five hosts with a secret relay the baton (hold 100 ms);
//! once it moves, every host drops 20 % of its incoming packets (nftables)
//! for `HERD_LAB_SECONDS` (default 240: each agent probes each of its 4 peers
//! every 4 s, so its 60-probe windows then hold lossy probes only). Indirect
//! probes and refutations must keep loss from looking like death: no
//! `member down` at all;
//! the baton keeps moving (gauges in every 10-second window and from every
//! host), its counters stay monotonic, and two batons never outlive a
//! heartbeat. The agents' own link figures must see the injected loss.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::{Agent, gauges};
use crate::harness::{Lab, assert_monotonic, report};

const HOSTS: usize = 5;
const LOSS_PCT: u32 = 20;
/// Status samples (batons held) are taken this often during the loss.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// A second baton must be gone within this (a heartbeat carries the greater
/// id; 2 s leaves a lost heartbeat and the sampling period as margin).
const COLLAPSE_WITHIN: Duration = Duration::from_secs(2);
/// The baton's floor under loss: 100 ms holds give ~9 passes/s without loss,
/// a lost pass or ack costs a 250 ms retransmit, so 20 % loss leaves several
/// passes a second; fewer than this in a 10-second window means it stalled.
const MIN_PER_WINDOW: usize = 10;

fn seconds() -> u64 {
    std::env::var("HERD_LAB_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(240)
}

/// One look at the cluster: when, the distinct baton ids held, how many hosts
/// held one.
struct Sample {
    at: Instant,
    ids: BTreeSet<String>,
    holders: usize,
}

fn sample(lab: &Lab, hosts: &[usize]) -> Sample {
    let s = lab.statuses(hosts);
    let at = Instant::now();
    let held: Vec<String> = s.into_values().filter_map(|s| s.baton.held_id).collect();
    Sample { at, holders: held.len(), ids: held.into_iter().collect() }
}

/// min / mean / max of `v`, as text.
fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.0}/{:.1}/{max:.0}", mean(v))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[test]
fn twenty_percent_loss_is_not_death() {
    let Some(lab) = Lab::new("loss", HOSTS) else { return };
    let all: Vec<usize> = (1..=HOSTS).collect();
    let statsd = lab.statsd(HOSTS);
    let agents: Vec<Agent> = lab.start_relay(HOSTS, "lossy links", &statsd, "the loss starts");

    let secs = seconds();
    lab.loss(LOSS_PCT, &all);
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(secs);
    let mut samples = Vec::new();
    // Link figures are read in the last seconds of the loss, when each
    // agent's window (60 probes of each peer, one every 4 s; 60 heartbeats)
    // holds lossy traffic only.
    let mut links: Option<(Vec<f64>, Vec<f64>)> = None;
    while Instant::now() < t1 {
        samples.push(sample(&lab, &all));
        if links.is_none() && Instant::now() + Duration::from_secs(3) >= t1 {
            links = Some(link_loss(&lab, &all));
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let (hb_loss, probe_loss) = links.unwrap_or_else(|| link_loss(&lab, &all));
    let t1 = Instant::now();
    lab.loss(0, &all);

    // No false down, anywhere, at any time (nobody died).
    for a in &agents {
        let downs: Vec<String> = a.lines().into_iter().filter(|l| l.contains("member down")).collect();
        assert!(downs.is_empty(), "{}: member down under {LOSS_PCT} % loss: {downs:#?}", a.name);
    }
    let suspect_lines: Vec<(String, String)> = agents
        .iter()
        .flat_map(|a| {
            a.log_lines().into_iter().filter(|l| l.at >= t0 && l.at <= t1).map(|l| (a.name.clone(), l.text))
        })
        .filter(|(_, l)| l.contains("member suspect"))
        .collect();
    let alive_again = agents
        .iter()
        .flat_map(Agent::log_lines)
        .filter(|l| l.at >= t0 && l.at <= t1 && l.text.contains("member alive again"))
        .count();
    let skipped = agents
        .iter()
        .flat_map(Agent::log_lines)
        .filter(|l| l.at >= t0 && l.at <= t1 && l.text.contains("peer skipped"))
        .count();

    // The baton kept moving: every 10-second window, every host, in order.
    let all_gauges = gauges(&statsd, "");
    assert_monotonic(&all_gauges);
    let during: Vec<_> = all_gauges.iter().filter(|(at, _, _)| *at >= t0 && *at <= t1).collect();
    let windows: Vec<usize> = (0..secs / 10)
        .map(|k| {
            let from = t0 + Duration::from_secs(10 * k);
            let to = from + Duration::from_secs(10);
            during.iter().filter(|(at, _, _)| *at >= from && *at < to).count()
        })
        .collect();
    for (k, n) in windows.iter().enumerate() {
        assert!(
            *n >= MIN_PER_WINDOW,
            "only {n} baton gauges in seconds {}-{} of the loss (windows: {windows:?})",
            10 * k,
            10 * k + 10
        );
    }
    let hosts_seen: BTreeSet<&str> = during.iter().map(|(_, _, h)| h.as_str()).collect();
    for a in &agents {
        assert!(hosts_seen.contains(a.name.as_str()), "{} never passed the baton under loss", a.name);
    }
    let elapsed = t1.duration_since(t0).as_secs_f64();
    let rate = during.len() as f64 / elapsed;

    // At most one baton; a second one (a regeneration racing a slow pass)
    // must collapse within COLLAPSE_WITHIN.
    let most = samples.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    assert!(most <= 2, "{most} batons at once under loss");
    let doubles: Vec<&Sample> = samples.iter().filter(|s| s.ids.len() >= 2).collect();
    for d in &doubles {
        let later: Vec<&Sample> = samples.iter().filter(|s| s.at > d.at).collect();
        if later.first().is_none_or(|s| s.at > d.at + COLLAPSE_WITHIN) {
            continue; // the loss period ended before another sample
        }
        assert!(
            later.iter().any(|s| s.at <= d.at + COLLAPSE_WITHIN && s.ids.len() <= 1),
            "two batons {:?} still two {COLLAPSE_WITHIN:?} later",
            d.ids
        );
    }
    let shared = samples.iter().filter(|s| s.ids.len() == 1 && s.holders >= 2).count();

    // The agents' own link figures see the loss: heartbeats cross one lossy
    // input (20 %), a probe and its ack two (1 - 0.8² = 36 %). Means over 20
    // peer pairs with 60-sample windows are within a few points of those.
    // (Shorter runs leave pre-loss samples in the windows: figures only.)
    assert!(!hb_loss.is_empty() && !probe_loss.is_empty(), "no link figures in /status");
    let (hb, probe) = (mean(&hb_loss), mean(&probe_loss));
    if secs >= 240 {
        assert!((10.0..=30.0).contains(&hb), "mean heartbeat loss {hb:.1} % under {LOSS_PCT} %: {hb_loss:?}");
        assert!(
            (24.0..=48.0).contains(&probe),
            "mean probe loss {probe:.1} % (expect ~36 %): {probe_loss:?}"
        );
    }

    report(
        "3. loss",
        &format!(
            "{HOSTS} hosts, {LOSS_PCT} % incoming loss on all for {secs} s: no member down, gauges in every \
             10 s window (>= {MIN_PER_WINDOW}) and from all {HOSTS} hosts, monotonic, a 2nd baton gone \
             within {}s",
            COLLAPSE_WITHIN.as_secs()
        ),
        &format!(
            "{elapsed:.0} s, {} passes ({rate:.1}/s, min {} per 10 s); false downs 0; suspect events {} \
             (alive again {alive_again}); {skipped} lap skips (pass unacknowledged after retries); {} status samples: {} with 2 batons, {} with one baton at 2 \
             hosts (pass in flight or duplicate copy); measured loss min/mean/max: heartbeats {} %, \
             probes {} %",
            during.len(),
            windows.iter().min().unwrap_or(&0),
            suspect_lines.len(),
            samples.len(),
            doubles.len(),
            shared,
            spread(&hb_loss),
            spread(&probe_loss),
        ),
    );
}

/// Every agent's view of every peer: (heartbeat loss %, probe loss %).
fn link_loss(lab: &Lab, hosts: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let statuses = lab.statuses(hosts);
    let members = statuses.values().flat_map(|s| s.members.iter());
    let (hb, probe): (Vec<_>, Vec<_>) = members.map(|m| (m.heartbeat_loss_pct, m.loss_pct)).unzip();
    (hb.into_iter().flatten().collect(), probe.into_iter().flatten().collect())
}
