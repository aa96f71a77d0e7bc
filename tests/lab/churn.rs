//! Scenario 4: churn. Five hosts relay one baton while, for
//! `HERD_LAB_SECONDS` (default 180), a random host is stopped every 2-6 s
//! (SIGKILL, or SIGTERM one time in four) and started again 1-8 s later with
//! the same config; at least three keep running.
//!
//! - Calm: every running agent has run for `down_after + regenerate_after`
//!   and sees every other running agent alive (its /status members). In calm
//!   at most one baton is held at any time, and none only for a while (a
//!   killed holder's baton is regenerated after `regenerate_after`; when the
//!   agent that would regenerate it is killed meanwhile, the next one does
//!   once it suspects it, so the while starts again at that kill).
//! - One baton, eventually: if no calm sample has shown exactly one baton for
//!   30 s, the churn pauses (restarts still happen) until one does; and at the
//!   end, with everyone restarted, one must.
//! - Every restart re-joins: each other running agent logs the new life up
//!   (or restarted), and the new life logs each of them up, within 3 s.
//! - Every host's gauge increases over the whole run, across its restarts
//!   (counters are global, not per life).
//!
//! The schedule is drawn from a printed seed; `HERD_LAB_SEED=<seed>` replays
//! the same choices (the timing of the agents themselves still varies).
//! Every life runs a copy of the herd binary taken at the start: a rebuild
//! during the run (another `cargo test` in this tree) must not give restarted
//! agents another wire format than the ones still running.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Agent, Spec, gauges, herd_bin, toml_str};
use crate::harness::{Lab, assert_monotonic, rejoined, report};

const HOSTS: usize = 5;
const MIN_RUNNING: usize = 3;
/// herd's defaults (config/herd.toml), which these agents run with.
const DOWN_AFTER: Duration = Duration::from_secs(5);
const REGENERATE_AFTER: Duration = Duration::from_secs(3);
/// How long an agent must have run before it counts towards calm.
const SETTLE: Duration = Duration::from_secs(DOWN_AFTER.as_secs() + REGENERATE_AFTER.as_secs());
/// In calm, no baton for longer than this is a lost baton: a dead holder's is
/// regenerated `regenerate_after` after it was last seen, plus a margin.
const NONE_AT_MOST: Duration = Duration::from_secs(5);
/// A restarted agent and every running peer log each other up within this.
const REJOIN_WITHIN: Duration = Duration::from_secs(3);
/// The churn pauses when no calm sample showed exactly one baton for this long...
const ONE_AT_LEAST_EVERY: Duration = Duration::from_secs(30);
/// ...and fails if the pause (or the end) does not bring one within this:
/// the last restarts (≤ 8 s), SETTLE, and a margin.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
const SIGTERM_EXIT_WITHIN: Duration = Duration::from_secs(5);

/// xorshift64*: the schedule's randomness, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A duration in `lo..=hi`, to the millisecond.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + Duration::from_millis(self.next() % ((hi - lo).as_millis() as u64 + 1))
    }
}

/// A copy of the herd binary in `dir`, for the whole run.
fn pinned_herd(dir: &Path) -> PathBuf {
    let to = dir.join("herd");
    std::fs::copy(herd_bin(), &to).expect("copy the herd binary");
    to
}

/// [`Lab::start`], with the pinned binary.
fn start(lab: &Lab, herd: &Path, i: usize, spec: &Spec) -> Agent {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.ns(i)]).arg(herd);
    Agent::start_with(spec, cmd)
}

struct Host {
    spec: Spec,
    /// The running life, if any.
    agent: Option<Agent>,
    /// Counts lives, so a check knows whether it still watches the same one.
    life: u32,
    restart_at: Option<Instant>,
    /// Earlier lives (their logs still count).
    past: Vec<Agent>,
}

/// `watcher` (in its life `watcher_life`) must log `subject` (in its life
/// `subject_life`, started `since`) up or restarted within REJOIN_WITHIN.
struct Rejoin {
    watcher: usize,
    watcher_life: u32,
    subject: usize,
    subject_life: u32,
    since: Instant,
}

struct Churn<'a> {
    lab: &'a Lab,
    herd: &'a Path,
    rng: Rng,
    seed: u64,
    began: Instant,
    hosts: Vec<Host>,
    rejoins: Vec<Rejoin>,
    next_stop: Instant,
    /// What happened, for failure messages.
    events: Vec<String>,
    kills: usize,
    terms: usize,
    restarts: usize,
    rejoined: usize,
    rejoin_worst: Duration,
    samples: usize,
    calm_samples: usize,
    calm_max: usize,
    max_any: usize,
    /// Outside calm, two batons or more held since (a run of such samples),
    /// how many such samples, and the longest run.
    multi_since: Option<Instant>,
    multi_samples: usize,
    multi_worst: Duration,
    /// Each such run: when it began, what was held, how long it lasted.
    multi_runs: Vec<String>,
    /// Calm with no baton held since (reset by a baton, or by calm ending).
    none_since: Option<Instant>,
    none_worst: Duration,
    last_one: Instant,
    /// The last sample was calm with exactly one baton.
    one_now: bool,
    paused_since: Option<Instant>,
    pauses: usize,
}

fn name(i: usize) -> String {
    format!("n{i}")
}

impl Churn<'_> {
    fn host(&self, i: usize) -> &Host {
        &self.hosts[i - 1]
    }

    fn running(&self) -> Vec<usize> {
        (1..=HOSTS).filter(|&i| self.host(i).agent.is_some()).collect()
    }

    fn note(&mut self, what: String) {
        let t = self.began.elapsed().as_secs_f64();
        self.events.push(format!("+{t:.3}s {what}"));
    }

    fn fail(&self, what: String) -> ! {
        let mut recent = String::new();
        for e in self.events.iter().rev().take(25).rev() {
            writeln!(recent, "  {e}").unwrap();
        }
        panic!(
            "{what}\n(seed {}; replay with HERD_LAB_SEED={}) last events:\n{recent}",
            self.seed, self.seed
        );
    }

    /// One turn: stop a host if due (and `churn`), restart those due, check
    /// re-joins, sample the batons.
    fn tick(&mut self, churn: bool) {
        let now = Instant::now();
        if churn && self.paused_since.is_none() && now >= self.next_stop {
            self.stop_one();
        }
        self.restart_due();
        self.check_rejoins();
        self.sample();
        if let Some(p) = self.paused_since
            && p.elapsed() > SETTLE_LIMIT
        {
            self.fail(format!("no calm with exactly one baton within {SETTLE_LIMIT:?} of pausing the churn"));
        }
        thread::sleep(Duration::from_millis(40));
    }

    fn stop_one(&mut self) {
        let now = Instant::now();
        self.next_stop = now + self.rng.between(Duration::from_secs(2), Duration::from_secs(6));
        let running = self.running();
        if running.len() <= MIN_RUNNING {
            return;
        }
        let i = running[self.rng.below(running.len())];
        let term = self.rng.below(4) == 0;
        let restart_in = self.rng.between(Duration::from_secs(1), Duration::from_secs(8));
        let mut agent = self.hosts[i - 1].agent.take().unwrap();
        if term {
            agent.sigterm();
            if agent.wait_exit(SIGTERM_EXIT_WITHIN).is_none() {
                self.hosts[i - 1].past.push(agent);
                self.fail(format!("n{i} did not exit within {SIGTERM_EXIT_WITHIN:?} of SIGTERM"));
            }
            self.terms += 1;
        } else {
            agent.sigkill();
            self.kills += 1;
            // The lowest-named running agent is the one that regenerates a
            // lost baton. Killed while none is held, the next one takes over
            // only once it suspects it (its probes): the wait starts again.
            if self.none_since.is_some() && running.iter().all(|&j| j >= i) {
                self.none_since = Some(now);
                self.note(format!("n{i}, the next to regenerate, killed while no baton is held"));
            }
        }
        let host = &mut self.hosts[i - 1];
        host.past.push(agent);
        host.restart_at = Some(now + restart_in);
        let how = if term { "SIGTERM" } else { "SIGKILL" };
        self.note(format!("{how} n{i}, restart in {} ms", restart_in.as_millis()));
    }

    fn restart_due(&mut self) {
        for i in 1..=HOSTS {
            if self.host(i).restart_at.is_none_or(|t| Instant::now() < t) {
                continue;
            }
            let agent = start(self.lab, self.herd, i, &self.host(i).spec);
            let since = agent.spawned;
            let host = &mut self.hosts[i - 1];
            host.agent = Some(agent);
            host.restart_at = None;
            host.life += 1;
            self.restarts += 1;
            let life = host.life;
            for p in self.running().into_iter().filter(|&p| p != i) {
                let p_life = self.host(p).life;
                self.rejoins.push(Rejoin {
                    watcher: p,
                    watcher_life: p_life,
                    subject: i,
                    subject_life: life,
                    since,
                });
                self.rejoins.push(Rejoin {
                    watcher: i,
                    watcher_life: life,
                    subject: p,
                    subject_life: p_life,
                    since,
                });
            }
            self.note(format!("restarted n{i}"));
        }
    }

    /// Resolves the re-join checks whose line has come, drops those one of
    /// whose agents has stopped since, fails those overdue.
    fn check_rejoins(&mut self) {
        let mut open = Vec::new();
        for r in std::mem::take(&mut self.rejoins) {
            let (w, s) = (self.host(r.watcher), self.host(r.subject));
            let (Some(agent), true) = (&w.agent, s.agent.is_some()) else { continue };
            if w.life != r.watcher_life || s.life != r.subject_life {
                continue;
            }
            match rejoined(agent, &name(r.subject), r.since, Duration::ZERO) {
                Some(at) => {
                    let took = at.saturating_duration_since(r.since);
                    if took > REJOIN_WITHIN {
                        self.fail(format!(
                            "n{} logged n{} up {} ms after its restart (bound {} ms)",
                            r.watcher,
                            r.subject,
                            took.as_millis(),
                            REJOIN_WITHIN.as_millis()
                        ));
                    }
                    self.rejoined += 1;
                    self.rejoin_worst = self.rejoin_worst.max(took);
                }
                None if r.since.elapsed() > REJOIN_WITHIN => self.fail(format!(
                    "n{} did not log n{} up (or restarted) within {} ms of the restart",
                    r.watcher,
                    r.subject,
                    REJOIN_WITHIN.as_millis()
                )),
                None => open.push(r),
            }
        }
        self.rejoins = open;
    }

    fn sample(&mut self) {
        let running = self.running();
        for &i in &running {
            if !self.hosts[i - 1].agent.as_mut().unwrap().is_running() {
                self.fail(format!("n{i} exited on its own"));
            }
        }
        let statuses = self.lab.statuses(&running);
        let now = Instant::now();
        let ids: BTreeSet<String> = statuses.values().filter_map(|s| s.baton.held_id.clone()).collect();
        self.samples += 1;
        self.max_any = self.max_any.max(ids.len());
        if ids.len() > 1 {
            self.multi_samples += 1;
            let since = *self.multi_since.get_or_insert(now);
            self.multi_worst = self.multi_worst.max(now - since);
            if since == now {
                let held: BTreeMap<usize, Option<String>> =
                    statuses.iter().map(|(i, s)| (*i, s.baton.held_id.clone())).collect();
                let up: Vec<String> = running
                    .iter()
                    .map(|&i| {
                        format!(
                            "n{i} {:.1}s",
                            (now - self.host(i).agent.as_ref().unwrap().spawned).as_secs_f64()
                        )
                    })
                    .collect();
                self.note(format!("{} batons held: {held:?} (up: {})", ids.len(), up.join(", ")));
                self.multi_runs.push(self.events.last().unwrap().clone());
            }
        } else if let Some(since) = self.multi_since.take() {
            let run = self.multi_runs.last_mut().unwrap();
            write!(run, ", for {} ms", (now - since).as_millis()).unwrap();
        }
        let settled = running.iter().all(|&i| now - self.host(i).agent.as_ref().unwrap().spawned >= SETTLE);
        let all_alive = statuses.len() == running.len()
            && statuses.iter().all(|(i, s)| {
                running
                    .iter()
                    .filter(|&j| j != i)
                    .all(|&j| s.members.iter().any(|m| m.name == name(j) && m.state == "alive"))
            });
        self.one_now = false;
        if !(settled && all_alive) {
            self.none_since = None;
            return;
        }
        self.calm_samples += 1;
        self.calm_max = self.calm_max.max(ids.len());
        if ids.len() > 1 {
            let held: BTreeMap<usize, Option<String>> =
                statuses.iter().map(|(i, s)| (*i, s.baton.held_id.clone())).collect();
            self.fail(format!("{} batons held in calm: {held:?}", ids.len()));
        }
        if ids.is_empty() {
            let since = *self.none_since.get_or_insert(now);
            self.none_worst = self.none_worst.max(now - since);
            if now - since > NONE_AT_MOST {
                self.fail(format!("no baton held for {} ms in calm", (now - since).as_millis()));
            }
            return;
        }
        self.none_since = None;
        self.one_now = true;
        self.last_one = now;
        if self.paused_since.take().is_some() {
            self.note("one baton in calm: churn resumes".into());
        }
    }

    /// Pauses the churn when calm with one baton has not been seen for a while.
    fn maybe_pause(&mut self) {
        if self.paused_since.is_none() && self.last_one.elapsed() > ONE_AT_LEAST_EVERY {
            self.paused_since = Some(Instant::now());
            self.pauses += 1;
            self.note(format!("no calm with one baton for {ONE_AT_LEAST_EVERY:?}: churn paused"));
        }
    }
}

#[test]
fn churn_keeps_one_baton_and_every_restart_rejoins() {
    let secs: u64 = std::env::var("HERD_LAB_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(180);
    let seed: u64 = std::env::var("HERD_LAB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| RandomState::new().hash_one("churn"));
    println!("churn: seed {seed} (HERD_LAB_SEED={seed} replays the schedule), {secs} s");
    let Some(lab) = Lab::new("churn", HOSTS) else { return };
    let bin_dir = tempfile::tempdir().expect("temporary directory");
    let herd = pinned_herd(bin_dir.path());
    let statsd = lab.statsd(HOSTS);
    let began = Instant::now();
    let hosts = (1..=HOSTS)
        .map(|i| {
            let spec = lab.spec(i).set("baton", "hold", &toml_str("100ms"));
            let agent = start(&lab, &herd, i, &spec);
            Host { spec, agent: Some(agent), life: 1, restart_at: None, past: Vec::new() }
        })
        .collect();
    let mut c = Churn {
        lab: &lab,
        herd: &herd,
        rng: Rng(seed | 1),
        seed,
        began,
        hosts,
        rejoins: Vec::new(),
        next_stop: began,
        events: Vec::new(),
        kills: 0,
        terms: 0,
        restarts: 0,
        rejoined: 0,
        rejoin_worst: Duration::ZERO,
        samples: 0,
        calm_samples: 0,
        calm_max: 0,
        max_any: 0,
        multi_since: None,
        multi_samples: 0,
        multi_worst: Duration::ZERO,
        multi_runs: Vec::new(),
        none_since: None,
        none_worst: Duration::ZERO,
        last_one: began,
        one_now: false,
        paused_since: None,
        pauses: 0,
    };

    // Start: all five settle into calm with one baton before the churn.
    while !c.one_now {
        if began.elapsed() > SETTLE_LIMIT {
            c.fail("five fresh agents did not reach calm with one baton".into());
        }
        c.tick(false);
    }
    let churn_from = Instant::now();
    c.note("calm with one baton: churn starts".into());
    c.next_stop = churn_from;
    while churn_from.elapsed() < Duration::from_secs(secs) {
        c.maybe_pause();
        c.tick(true);
    }

    // The end: no more stops; everyone back, calm with one baton, every
    // re-join checked.
    let end = Instant::now();
    c.note("churn ends".into());
    while !(c.one_now && c.running().len() == HOSTS && c.rejoins.is_empty()) {
        if end.elapsed() > SETTLE_LIMIT {
            c.fail(format!(
                "no calm with one baton and all {HOSTS} running within {SETTLE_LIMIT:?} of the end"
            ));
        }
        c.tick(false);
    }
    let calm = Instant::now();
    // ...and the baton goes round all five again.
    let since_calm = || gauges(&statsd, "").into_iter().filter(|(at, ..)| *at >= calm).map(|(_, _, h)| h);
    while since_calm().collect::<BTreeSet<_>>().len() < HOSTS {
        if calm.elapsed() > Duration::from_secs(10) {
            let seen: BTreeSet<String> = since_calm().collect();
            c.fail(format!("after the churn not every host relays: gauges only from {seen:?}"));
        }
        c.tick(false);
    }

    let all = gauges(&statsd, "");
    assert_monotonic(&all);
    let lives = || c.hosts.iter().flat_map(|h| h.past.iter().chain(&h.agent));
    let count = |pattern: &str| -> usize {
        lives().map(|a| a.lines().iter().filter(|l| l.contains(pattern)).count()).sum()
    };
    let (regenerated, started) = (count("baton regenerated"), count("baton started"));
    let per_host: BTreeMap<&str, usize> = all.iter().fold(BTreeMap::new(), |mut n, (_, _, h)| {
        *n.entry(h.as_str()).or_insert(0) += 1;
        n
    });
    for run in &c.multi_runs {
        println!("churn: outside calm at {run}");
    }
    report(
        "4. churn",
        &format!(
            "{HOSTS} hosts for {secs} s, a random one SIGKILLed (or SIGTERMed, 1 in 4) every 2-6 s and \
             restarted 1-8 s later, >= {MIN_RUNNING} running: in calm (all up >= down_after + \
             regenerate_after, all alive to each other) never two batons and none for <= {} s, one at \
             least every {} s and at the end; every restart re-joined both ways within {} s; every \
             host's gauge increases across restarts",
            NONE_AT_MOST.as_secs(),
            ONE_AT_LEAST_EVERY.as_secs(),
            REJOIN_WITHIN.as_secs()
        ),
        &format!(
            "seed {seed}; {} SIGKILL, {} SIGTERM, {} restarts; {} re-joins logged, worst {} ms; \
             {} calm samples of {} (max batons in calm {}; longest calm without one {} ms); outside calm \
             {} samples with two or more (most at once {}, longest run {} ms); \
             churn paused {} times; {regenerated} regenerations, {started} starts; {} gauges monotonic \
             ({per_host:?}), last counter {}",
            c.kills,
            c.terms,
            c.restarts,
            c.rejoined,
            c.rejoin_worst.as_millis(),
            c.calm_samples,
            c.samples,
            c.calm_max,
            c.none_worst.as_millis(),
            c.multi_samples,
            c.max_any,
            c.multi_worst.as_millis(),
            c.pauses,
            all.len(),
            all.iter().map(|(_, v, _)| *v).max().unwrap_or(0)
        ),
    );
}
