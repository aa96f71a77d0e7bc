//! probe: the failure detector. SWIM (Das, Gupta, Motivala 2002) with two of
//! Lifeguard's refinements (hashicorp/memberlist PRs #82 and #129), so that a
//! node's traffic stays the same whatever the cluster's size.
//!
//! - **A rotating ring.** Every probe period (`[links] probe_interval`) each
//!   node pings one member: the members and itself sorted by name form a
//!   ring, and in period `t` (from the wall clock, so every node agrees) the
//!   node at ring index `i` probes index `i + 1 + t mod (n - 1)`. That is a
//!   bijection: each member is probed by exactly one node per period, by a
//!   different node each period, and each node probes every peer once per
//!   `n - 1` periods (its link-health samples, see `core::links`). Members
//!   down for less than [`RECONNECT_FOR`] stay in the ring, so the two sides
//!   of a healed partition find each other within a period; a failed probe
//!   of one is not news.
//! - **Indirect probes.** No ack within a quarter period starts a *check*:
//!   every quarter period a direct ping again plus a ping request to
//!   [`INDIRECT`] random live members, which ping the target and answer
//!   whether it answered (yes, or a nack).
//! - **Deadlines as the config says.** The previous period's prober heard the
//!   target, so the silence counts from one period before the failed probe:
//!   with no answer for `suspect_after` the checker announces it suspect, for
//!   `down_after` down (news to the whole cluster, repeated once, saying for
//!   how long its own pings went unanswered: a node that heard the member
//!   since knows better and ignores it). Any answer ends the check
//!   (announced alive again if it was announced suspect).
//! - **Local health** (Lifeguard): a checker that hears nothing from any
//!   helper, not even a nack, is probably the one cut off; its deadlines
//!   double, so a deaf node does not declare the cluster down.
//! - **The buddy system** is the node's: a member told it is suspected or
//!   down refutes at once with a heartbeat (see `core::node`).
//!
//! What it decides goes on the node's queue (`core::effects`): pings, ping
//! requests and their answers to send, round probes for link health, news
//! for the cluster and verdicts for the member table.
//!
//! Timers are data: each check carries the incarnation it was started for
//! and its deadlines derive from `last_good`. Must not: do I/O,
//! read a clock; hold more than one check per member (the table is capped)
//! or more than [`MAX_RELAYED`] relayed pings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, RngExt};

use super::effects::{Effect, Effects, Rumored, Unicast, Verdict};
use super::wire::Rumor;

/// Helpers asked per try of a check (SWIM's k; memberlist's IndirectChecks).
pub const INDIRECT: usize = 3;
/// How long a down member stays in the probe ring (a partition that heals
/// within it is found within a period; later, by the periodic heartbeat).
pub const RECONNECT_FOR: Duration = Duration::from_secs(600);
/// Most pings this node sends on others' behalf at once; more requests are
/// answered with a nack (a bound against a flood of ping requests).
pub const MAX_RELAYED: usize = 64;
/// Tokens of one check remembered (its latest tries).
const CHECK_TOKENS: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    pub period: Duration,
    pub suspect_after: Duration,
    pub down_after: Duration,
    /// Every live member each period, no checks (see `LinkConfig::sweep`).
    pub sweep: bool,
}

impl ProbeConfig {
    /// How long a ping may go unanswered before indirect probes start, and
    /// how often a check tries again: a quarter period.
    pub fn retry(&self) -> Duration {
        (self.period / 4).max(Duration::from_millis(5))
    }
}

/// A member as the ring sees it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub name: &'a str,
    pub incarnation: u64,
    pub addr: SocketAddr,
    /// Alive or suspect (a down member is in the ring to be found again).
    pub live: bool,
}

/// What the node knows at a call of [`Prober::handle_timeout`].
#[derive(Debug, Clone, Copy)]
pub struct Ring<'a> {
    /// This node's name.
    pub me: &'a str,
    /// Every member that may be probed (live ones and those down for less
    /// than [`RECONNECT_FOR`]), in name order.
    pub members: &'a [Target<'a>],
    /// The wall clock, ms since the Unix epoch (aligns periods across nodes).
    pub wall_ms: Option<i64>,
}

#[derive(Debug)]
struct Check {
    incarnation: u64,
    addr: SocketAddr,
    /// When the cluster last heard it, as far as this check knows (the
    /// deadlines count from it).
    last_good: Instant,
    /// This node's first unanswered ping: the silence it reports (what it
    /// knows for sure; a peer that heard the member since ignores it).
    first_ping: Instant,
    next_try: Instant,
    /// Direct and indirect tokens of its tries, newest last.
    tokens: Vec<u64>,
    helpers_asked: bool,
    helpers_heard: bool,
    /// Announced suspect (so an answer is announced too).
    suspected: bool,
}

#[derive(Debug)]
struct RoundPing {
    token: u64,
    name: String,
    incarnation: u64,
    addr: SocketAddr,
    sent: Instant,
}

#[derive(Debug)]
struct Relayed {
    token: u64,
    target: String,
    asker: SocketAddr,
    asker_token: u64,
    deadline: Instant,
}

#[derive(Debug)]
pub struct Prober {
    cfg: ProbeConfig,
    /// The next round may start from `round_opens` (its period's start on
    /// the wall clock) and must by `next_round`, a little later: a node
    /// awake anyway in between (a pass, a datagram) starts it then, and
    /// the round costs no wake-up of its own.
    round_opens: Instant,
    next_round: Instant,
    /// Periods started, for nodes without a wall clock.
    rounds: u64,
    round: Option<RoundPing>,
    checks: BTreeMap<String, Check>,
    relayed: Vec<Relayed>,
    /// News to send once more, and when.
    echoes: Vec<(Instant, Rumored)>,
}

impl Prober {
    pub fn new(cfg: ProbeConfig, now: Instant) -> Prober {
        Prober {
            cfg,
            round_opens: now + cfg.period,
            next_round: now + cfg.period,
            rounds: 0,
            round: None,
            checks: BTreeMap::new(),
            relayed: Vec::new(),
            echoes: Vec::new(),
        }
    }

    /// New timings (a reload), from the next round and try on.
    pub fn set_config(&mut self, cfg: ProbeConfig, now: Instant) {
        self.cfg = cfg;
        self.next_round = self.next_round.min(now + cfg.period);
        self.round_opens = self.round_opens.min(self.next_round);
    }

    pub fn config(&self) -> ProbeConfig {
        self.cfg
    }

    /// A check of `name` is under way here.
    pub fn checking(&self, name: &str) -> bool {
        self.checks.contains_key(name)
    }

    /// When `handle_timeout` must next run.
    pub fn poll_timeout(&self) -> Instant {
        self.others().fold(self.next_round, Instant::min)
    }

    /// The earliest `handle_timeout` has anything to do (at most
    /// `poll_timeout`): a round may start before it must.
    pub fn poll_early(&self) -> Instant {
        self.others().fold(self.round_opens, Instant::min)
    }

    /// Every deadline but the next round's.
    fn others(&self) -> impl Iterator<Item = Instant> + '_ {
        let retry = self.cfg.retry();
        let round = self.round.as_ref().map(|r| r.sent + retry);
        let checks = self.checks.values().map(|c| {
            let next = if c.suspected { self.cfg.down_after } else { self.cfg.suspect_after };
            c.next_try.min(self.deadline(c, next))
        });
        let relayed = self.relayed.iter().map(|r| r.deadline);
        let echoes = self.echoes.iter().map(|(at, _)| *at);
        round.into_iter().chain(checks).chain(relayed).chain(echoes)
    }

    /// When a check's silence reaches `after` (doubled while no helper has
    /// answered: local health).
    fn deadline(&self, c: &Check, after: Duration) -> Instant {
        let mult = if c.helpers_asked && !c.helpers_heard { 2 } else { 1 };
        c.last_good + after * mult
    }

    /// Does what is due at `now`.
    pub fn handle_timeout<R: Rng>(&mut self, now: Instant, view: Ring<'_>, rng: &mut R, out: &mut Effects) {
        let Ring { me, members: ring, wall_ms } = view;
        let detect = !self.cfg.sweep;
        let retry = self.cfg.retry();
        if let Some(r) = self.round.take_if(|r| now >= r.sent + retry) {
            let live = ring.iter().any(|t| t.name == r.name && t.incarnation == r.incarnation && t.live);
            if detect && live && !self.checks.contains_key(&r.name) {
                let check = Check {
                    incarnation: r.incarnation,
                    addr: r.addr,
                    last_good: r.sent.checked_sub(self.cfg.period).unwrap_or(r.sent),
                    first_ping: r.sent,
                    next_try: now,
                    tokens: vec![r.token],
                    helpers_asked: false,
                    helpers_heard: false,
                    suspected: false,
                };
                self.checks.insert(r.name, check);
            }
        }
        if now >= self.round_opens {
            self.start_round(now, wall_ms, me, ring, rng, out);
        }
        self.run_checks(now, me, ring, rng, out);
        for r in self.relayed.extract_if(.., |r| now >= r.deadline) {
            out.send(r.asker, Unicast::IndirectAck { token: r.asker_token, answered: false });
        }
        for (_, news) in self.echoes.extract_if(.., |(at, _)| now >= *at) {
            out.push(Effect::News(news));
        }
    }

    fn start_round<R: Rng>(
        &mut self,
        now: Instant,
        wall_ms: Option<i64>,
        me: &str,
        ring: &[Target<'_>],
        rng: &mut R,
        out: &mut Effects,
    ) {
        let period_ms = self.cfg.period.as_millis().max(1) as i64;
        self.rounds += 1;
        let t = wall_ms.map_or(self.rounds, |w| w.div_euclid(period_ms) as u64);
        // The next round opens at the next period's start on the wall clock
        // and must start within the first eighth to quarter of that period
        // (a random point, so that nodes with nothing else to do do not all
        // send at the same instant); until then it waits for a turn the node
        // takes anyway.
        let to_boundary = wall_ms.map_or(period_ms, |w| period_ms - w.rem_euclid(period_ms));
        let eighth = (period_ms / 8).max(1);
        let latest = eighth + rng.random_range(0..=eighth);
        self.round_opens = now + Duration::from_millis(to_boundary as u64);
        self.next_round = now + Duration::from_millis((to_boundary + latest) as u64);
        if self.cfg.sweep {
            for t in ring.iter().filter(|t| t.live) {
                let token = rng.next_u64();
                out.send(t.addr, Unicast::Ping { token });
                out.push(Effect::LinkProbe { name: t.name.to_owned(), incarnation: t.incarnation, token });
            }
            return;
        }
        let n = ring.len() + 1;
        if n < 2 {
            return;
        }
        let mine = ring.partition_point(|m| m.name < me);
        let offset = 1 + (t % (n as u64 - 1)) as usize;
        let at = (mine + offset) % n;
        // Index `mine` is this node itself, between ring[mine - 1] and ring[mine].
        let target = match at.cmp(&mine) {
            std::cmp::Ordering::Less => ring[at],
            std::cmp::Ordering::Greater => ring[at - 1],
            std::cmp::Ordering::Equal => return,
        };
        let token = rng.next_u64();
        out.send(target.addr, Unicast::Ping { token });
        if target.live && !self.checks.contains_key(target.name) {
            out.push(Effect::LinkProbe {
                name: target.name.to_owned(),
                incarnation: target.incarnation,
                token,
            });
            self.round = Some(RoundPing {
                token,
                name: target.name.to_owned(),
                incarnation: target.incarnation,
                addr: target.addr,
                sent: now,
            });
        }
    }

    fn run_checks<R: Rng>(
        &mut self,
        now: Instant,
        me: &str,
        ring: &[Target<'_>],
        rng: &mut R,
        out: &mut Effects,
    ) {
        let names: Vec<String> = self.checks.keys().cloned().collect();
        for name in names {
            let c = &self.checks[&name];
            let live = ring.iter().any(|t| t.name == name && t.incarnation == c.incarnation && t.live);
            if !live {
                // Left, down or restarted meanwhile: the table knows better.
                self.checks.remove(&name);
                continue;
            }
            let (suspect_at, down_at) =
                (self.deadline(c, self.cfg.suspect_after), self.deadline(c, self.cfg.down_after));
            let silent = now.saturating_duration_since(c.first_ping);
            if now >= down_at {
                let c = self.checks.remove(&name).expect("present");
                self.announce(now, &name, c.incarnation, Rumor::Down, silent, out);
                out.push(Effect::Verdict(Verdict::Down { name, incarnation: c.incarnation, silent }));
                continue;
            }
            if now >= suspect_at && !c.suspected {
                let incarnation = c.incarnation;
                self.checks.get_mut(&name).expect("present").suspected = true;
                self.announce(now, &name, incarnation, Rumor::Suspect, silent, out);
                out.push(Effect::Verdict(Verdict::Suspect { name: name.clone(), incarnation, silent }));
            }
            let c = self.checks.get_mut(&name).expect("present");
            if now < c.next_try {
                continue;
            }
            c.next_try = now + self.cfg.retry();
            let token = rng.next_u64();
            out.send(c.addr, Unicast::Ping { token });
            push_token(&mut c.tokens, token);
            let mut helpers: Vec<&Target<'_>> =
                ring.iter().filter(|t| t.live && t.name != name && t.name != me).collect();
            helpers.shuffle(rng);
            for h in helpers.into_iter().take(INDIRECT) {
                let token = rng.next_u64();
                push_token(&mut c.tokens, token);
                c.helpers_asked = true;
                out.send(
                    h.addr,
                    Unicast::PingReq { token, target: name.clone(), incarnation: c.incarnation },
                );
            }
        }
    }

    /// News for the whole cluster now and, as datagrams get lost, once more
    /// a retry later.
    fn announce(
        &mut self,
        now: Instant,
        name: &str,
        incarnation: u64,
        rumor: Rumor,
        silent: Duration,
        out: &mut Effects,
    ) {
        let news = Rumored {
            name: name.to_owned(),
            incarnation,
            rumor,
            silent_ms: silent.as_millis().min(u32::MAX as u128) as u32,
        };
        self.echoes.retain(|(_, e)| e.name != name);
        self.echoes.push((now + self.cfg.retry(), news.clone()));
        out.push(Effect::News(news));
    }

    /// An ack from `from` for `token`: ends its round or check, or answers
    /// the ping request it was relayed for. True if the token was ours.
    pub fn on_ack(&mut self, now: Instant, from: &str, token: u64, out: &mut Effects) -> bool {
        if let Some(i) = self.relayed.iter().position(|r| r.token == token && r.target == from) {
            let r = self.relayed.swap_remove(i);
            out.send(r.asker, Unicast::IndirectAck { token: r.asker_token, answered: true });
            return true;
        }
        if self.round.as_ref().is_some_and(|r| r.token == token && r.name == from) {
            self.round = None;
            return true;
        }
        let ours = self.checks.get(from).is_some_and(|c| c.tokens.contains(&token));
        if ours {
            self.resolve(now, from, out);
        }
        ours
    }

    /// A helper's answer to one of our ping requests.
    pub fn on_indirect_ack(&mut self, now: Instant, token: u64, answered: bool, out: &mut Effects) {
        let Some(name) = self.checks.iter().find(|(_, c)| c.tokens.contains(&token)).map(|(n, _)| n.clone())
        else {
            return;
        };
        let c = self.checks.get_mut(&name).expect("found");
        c.helpers_heard = true;
        if answered {
            self.resolve(now, &name, out);
        }
    }

    /// A ping request from `asker`: ping the target (`None`: not a live
    /// member here, or too many relayed already: a nack at once).
    pub fn on_ping_req<R: Rng>(
        &mut self,
        now: Instant,
        asker: SocketAddr,
        asker_token: u64,
        target: Option<(&str, SocketAddr)>,
        rng: &mut R,
        out: &mut Effects,
    ) {
        match target {
            Some((name, addr)) if self.relayed.len() < MAX_RELAYED => {
                let token = rng.next_u64();
                out.send(addr, Unicast::Ping { token });
                self.relayed.push(Relayed {
                    token,
                    target: name.to_owned(),
                    asker,
                    asker_token,
                    deadline: now + self.cfg.retry(),
                });
            }
            _ => out.send(asker, Unicast::IndirectAck { token: asker_token, answered: false }),
        }
    }

    /// This node was not running for a while (a stall: see `core::node`):
    /// the round's ping, every check and every ping relayed for another
    /// node get `by` more before they conclude (never counting from past
    /// `now`, so back-to-back stalls do not pile up), so answers still
    /// queued unread, and the next tries, count first.
    pub fn credit(&mut self, now: Instant, by: Duration) {
        let credit = |at: &mut Instant| *at = (*at + by).min(now);
        if let Some(r) = self.round.as_mut() {
            credit(&mut r.sent);
        }
        for c in self.checks.values_mut() {
            credit(&mut c.last_good);
            credit(&mut c.first_ping);
        }
        for r in &mut self.relayed {
            r.deadline = (r.deadline + by).min(now + by);
        }
    }

    /// Direct word from `name`'s life `incarnation`: it is alive, whatever a
    /// check of it was finding.
    pub fn heard(&mut self, now: Instant, name: &str, incarnation: u64, out: &mut Effects) {
        if self.checks.get(name).is_some_and(|c| c.incarnation == incarnation) {
            self.resolve(now, name, out);
        }
        if self.round.as_ref().is_some_and(|r| r.name == name && r.incarnation == incarnation) {
            // Its ack may still come; anything from it will do.
            self.round = None;
        }
    }

    /// Starts a check of a member another node suspected and nobody has
    /// settled since: it ends down within two periods unless it answers.
    pub fn check_suspect(&mut self, now: Instant, name: &str, incarnation: u64, addr: SocketAddr) {
        if self.checks.contains_key(name) {
            return;
        }
        let last_good = (now + self.cfg.period * 2).checked_sub(self.cfg.down_after).unwrap_or(now);
        self.checks.insert(
            name.to_owned(),
            Check {
                incarnation,
                addr,
                last_good,
                first_ping: now,
                next_try: now,
                tokens: Vec::new(),
                helpers_asked: false,
                helpers_heard: false,
                suspected: true,
            },
        );
    }

    fn resolve(&mut self, now: Instant, name: &str, out: &mut Effects) {
        if let Some(c) = self.checks.remove(name) {
            if c.suspected {
                self.announce(now, name, c.incarnation, Rumor::Alive, Duration::ZERO, out);
            }
            out.push(Effect::Verdict(Verdict::Alive { name: name.to_owned(), incarnation: c.incarnation }));
        }
    }
}

fn push_token(tokens: &mut Vec<u64>, token: u64) {
    if tokens.len() >= CHECK_TOKENS {
        tokens.remove(0);
    }
    tokens.push(token);
}

#[cfg(test)]
mod tests;
