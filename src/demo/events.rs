//! events: the area under the table while the keys are on (see `keys`): one
//! timestamped line for each thing the demo did to its cluster (a kill, a
//! restart, a split, a heal) and for what the agents' metrics then showed
//! (members seen down, a baton regenerated, the cluster whole again), and
//! the counts the summary line ends with.
//!
//! The demo knows what it did; all the rest comes from the metrics the
//! listener received (`listener::Seen`), as a StatsD server gets them.
//! `herd.member.down` says that a node saw members go down, not which (the
//! counter has no peer tag), so each down is put down to the oldest action
//! that explains it: after a kill, each live node on the dead one's side owes
//! one down; after a split, each live node owes one per live node of the
//! other half. A down no action explains is shown as such. Who is live and
//! which half each node is in are the cluster's ([`Layout`], handed in with
//! each action and tick), not kept here.
//!
//! Must not: read a clock (every time is handed in) or do I/O.

use std::time::{Duration, Instant};

use super::cluster::{Held, Layout};
use super::listener::{Reported, Seen};
use super::words::{count, join};

/// With one baton every pass raises the highest counter by one; with two
/// (the halves of a split, each with its own), only the leading baton's
/// passes do, about half. Above this share of the passes: one baton...
const ONE_BATON: f64 = 0.7;
/// ...below this one: two or more.
const TWO_BATONS: f64 = 0.6;
/// After a restart or a heal, the downs still owed for the action before it
/// may yet come (a peer that had not seen the old life down sees it
/// restarted, which counts as a down): they are taken silently for this long.
const ABSORB_FOR: Duration = Duration::from_secs(10);

/// What the demo did and saw, and the lines that tell it.
pub(super) struct Events {
    started: Instant,
    names: Vec<String>,
    lines: Vec<String>,
    /// Lines found since the last [`Events::settle`], put in time order there.
    fresh: Vec<(Instant, String)>,
    owed: Vec<Owed>,
    /// Downs no action explains, per node: the latest's arrival and how many.
    stray: Vec<Option<(Instant, u64)>>,
    /// The latest `herd.members` gauge of each node and its arrival.
    members: Vec<Option<(Instant, u64)>>,
    /// A heal or a restart whose outcome is not shown yet.
    waiting: Option<Waiting>,
    /// The latest kill, until its outcome for the baton is shown: the node,
    /// and the regenerations counted before it.
    kill: Option<(usize, u64)>,
    /// The split, until its outcome for the baton is shown: the
    /// regenerations counted before it.
    cut: Option<u64>,
    /// The highest baton counter at the previous [`Events::tick`].
    previous: Option<(Instant, u64)>,
    pub(super) counts: Counts,
}

/// Downs the nodes owe for one action.
struct Owed {
    /// Who went down, as the line names them ("psb", "psc, psd").
    who: String,
    debts: Vec<Debt>,
    /// Taken without a line (see [`ABSORB_FOR`]) until then.
    silent_until: Option<Instant>,
}

struct Debt {
    node: usize,
    /// Downs still to come from this node.
    left: u64,
    /// When the last one came, once `left` is 0.
    paid: Option<Instant>,
    told: bool,
}

enum Waiting {
    /// After a heal: every live node lists every live node, one baton.
    Merge { since: Instant },
    /// After a restart: the same, naming who came back.
    Rejoin { since: Instant, who: String },
}

/// What the summary line counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) kills: u64,
    pub(super) restarts: u64,
    pub(super) splits: u64,
    pub(super) heals: u64,
    /// `herd.baton.regenerated`, summed over the nodes.
    pub(super) regenerations: u64,
    pub(super) merges: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let each = [
            (self.kills, "kill"),
            (self.restarts, "restart"),
            (self.splits, "split"),
            (self.heals, "heal"),
            (self.regenerations, "regeneration"),
            (self.merges, "merge"),
        ];
        let parts: Vec<String> = each.iter().map(|(n, what)| count(*n, what)).collect();
        f.write_str(&parts.join(", "))
    }
}

impl Events {
    pub(super) fn new(names: &[String], started: Instant) -> Events {
        let n = names.len();
        Events {
            started,
            names: names.to_vec(),
            lines: Vec::new(),
            fresh: Vec::new(),
            owed: Vec::new(),
            stray: vec![None; n],
            members: vec![None; n],
            waiting: None,
            kill: None,
            cut: None,
            previous: None,
            counts: Counts::default(),
        }
    }

    /// The latest `n` lines, oldest first.
    pub(super) fn recent(&self, n: usize) -> &[String] {
        &self.lines[self.lines.len().saturating_sub(n)..]
    }

    /// A key that did nothing, and why.
    pub(super) fn refused(&mut self, at: Instant, text: &str) {
        self.line(at, text.to_owned());
    }

    /// `k`: the demo crashed `node`, which held the baton as `held` says;
    /// `layout` is the cluster's after the kill. Each live node on its side
    /// owes one down.
    pub(super) fn killed(&mut self, at: Instant, node: usize, held: Held, layout: &Layout) {
        self.settle();
        self.counts.kills += 1;
        let why = match held {
            Held::Still => "held the baton",
            Held::Passing => "was passing the baton",
            Held::LastGauge => "passed the baton last",
        };
        self.line(at, format!("k: killed {} ({why})", self.names[node]));
        let side = layout.side(node);
        let observers: Vec<usize> = layout.live().filter(|&i| layout.side(i) == side).collect();
        self.owe(self.names[node].clone(), &observers, 1);
        self.kill = Some((node, self.counts.regenerations));
    }

    /// `r`: the demo started these dead nodes again, each a new life.
    pub(super) fn restarted(&mut self, at: Instant, nodes: &[usize]) {
        self.settle();
        let who = join(&self.names, nodes, ", ");
        for &i in nodes {
            let name = &self.names[i];
            for o in self.owed.iter_mut().filter(|o| &o.who == name) {
                o.silent_until.get_or_insert(at + ABSORB_FOR);
            }
        }
        self.counts.restarts += nodes.len() as u64;
        self.kill = None;
        self.line(at, format!("r: restarted {who} (a new life)"));
        self.waiting = Some(Waiting::Rejoin { since: at, who });
    }

    /// `p`: the demo gave each half of the names a secret of its own;
    /// `layout` is the cluster's after the split. Each live node owes one
    /// down per live node of the other half.
    pub(super) fn split(&mut self, at: Instant, layout: &Layout) {
        self.settle();
        self.counts.splits += 1;
        let (a, b): (Vec<usize>, Vec<usize>) = (0..self.names.len()).partition(|&i| layout.side(i) == 0);
        let (a_names, b_names) = (join(&self.names, &a, ","), join(&self.names, &b, ","));
        self.line(at, format!("p: split A {{{a_names}}} | B {{{b_names}}}"));
        let (a, b): (Vec<usize>, Vec<usize>) = layout.live().partition(|&i| layout.side(i) == 0);
        for (from, to) in [(&a, &b), (&b, &a)] {
            if !to.is_empty() {
                self.owe(join(&self.names, to, ", "), from, to.len() as u64);
            }
        }
        self.waiting = None;
        self.cut = Some(self.counts.regenerations);
    }

    /// `p` again: the demo gave every node the shared secret back.
    pub(super) fn healed(&mut self, at: Instant) {
        self.settle();
        self.cut = None;
        self.counts.heals += 1;
        for o in &mut self.owed {
            o.silent_until.get_or_insert(at + ABSORB_FOR);
        }
        self.line(at, "p: healed: both halves share one secret again".to_owned());
        self.waiting = Some(Waiting::Merge { since: at });
    }

    /// Takes what the listener received (in arrival order).
    pub(super) fn observe(&mut self, seen: Vec<Seen>) {
        for s in seen {
            match s.what {
                Reported::Members(m) => self.members[s.node] = Some((s.at, m)),
                Reported::Regenerated(n) => {
                    self.counts.regenerations += n;
                    let times = if n > 1 { format!(" ({n} times)") } else { String::new() };
                    let text = format!("{} regenerated the baton{times}", self.names[s.node]);
                    self.fresh.push((s.at, text));
                }
                Reported::Down(n) => self.down(s.at, s.node, n),
            }
        }
    }

    /// Once a second, after [`Events::observe`]: the downs seen since the
    /// last call, then whether a heal or restart has come out whole.
    /// `passes_per_s` is every node's passes over the last second and `high`
    /// the highest baton counter received (`listener::Stats::relay`);
    /// `layout` is the cluster's now.
    pub(super) fn tick(&mut self, now: Instant, passes_per_s: f64, high: Option<u64>, layout: &Layout) {
        self.settle();
        // The highest counter's rise per pass over the last tick.
        let share = match (self.previous, high) {
            (Some((t0, h0)), Some(h)) if now > t0 && passes_per_s > 0.0 => {
                let rise = h.saturating_sub(h0) as f64 / now.duration_since(t0).as_secs_f64();
                Some(rise / passes_per_s)
            }
            _ => None,
        };
        let one_baton = share.is_some_and(|s| s >= ONE_BATON);
        self.previous = high.map(|h| (now, h));
        self.owed.retain(|o| o.silent_until.is_none_or(|t| t > now));
        self.kill_outcome(now, one_baton);
        self.cut_outcome(now, share.is_some_and(|s| s < TWO_BATONS));
        let Some(waiting) = &self.waiting else { return };
        let since = match waiting {
            Waiting::Merge { since } | Waiting::Rejoin { since, .. } => *since,
        };
        let live: Vec<usize> = layout.live().collect();
        let n = live.len() as u64;
        let listed = live.iter().all(|&i| self.members[i].is_some_and(|(at, m)| at > since && m == n));
        if layout.is_split() || !listed || !one_baton {
            return;
        }
        let text = match waiting {
            Waiting::Merge { .. } => {
                self.counts.merges += 1;
                format!("merged: every live node lists {}, one baton", count(n, "member"))
            }
            Waiting::Rejoin { who, .. } => {
                format!("rejoined: {who} back, every live node lists {}, one baton", count(n, "member"))
            }
        };
        self.waiting = None;
        self.line(now, text);
    }

    /// Once every peer saw the killed node down: if no regeneration came
    /// and one baton is moving, it was never lost. At full speed it always
    /// is in flight, and a pass stays with its sender until acknowledged, so
    /// a crash of the node that passed it last, or of the one it was passed
    /// to, leaves it with a live node. (A regeneration has its own line.)
    fn kill_outcome(&mut self, now: Instant, one_baton: bool) {
        let Some((node, regenerations)) = self.kill else { return };
        let name = &self.names[node];
        if self.counts.regenerations > regenerations {
            self.kill = None;
        } else if one_baton && !self.owed.iter().any(|o| &o.who == name && o.silent_until.is_none()) {
            let text = format!(
                "the baton lived on without {name}: no regeneration needed (a pass stays with its sender until acknowledged)"
            );
            self.kill = None;
            self.line(now, text);
        }
    }

    /// Once both halves saw the other down and two batons run: if neither
    /// half regenerated one, each kept a copy of the baton that was crossing
    /// the cut (its sender keeps a pass until acknowledged, and the
    /// acknowledgement could not cross any more). Either way the heal
    /// collapses them into one.
    fn cut_outcome(&mut self, now: Instant, two_batons: bool) {
        let Some(regenerations) = self.cut else { return };
        if !two_batons || self.owed.iter().any(|o| o.silent_until.is_none()) {
            return;
        }
        self.cut = None;
        let text = if self.counts.regenerations > regenerations {
            "two batons: one per half".to_owned()
        } else {
            "two batons: each half kept a copy of the one crossing the cut, no regeneration needed".to_owned()
        };
        self.line(now, text);
    }

    /// `n` downs from `node`: paid towards the oldest debts it has, the rest
    /// stray.
    fn down(&mut self, at: Instant, node: usize, mut n: u64) {
        for o in &mut self.owed {
            let Some(d) = o.debts.iter_mut().find(|d| d.node == node && d.left > 0) else { continue };
            let paid = n.min(d.left);
            d.left -= paid;
            n -= paid;
            if d.left == 0 {
                d.paid = Some(at);
            }
            if n == 0 {
                return;
            }
        }
        let stray = self.stray[node].map_or(0, |(_, k)| k);
        self.stray[node] = Some((at, stray + n));
    }

    /// The debts paid since the last call as one line per action ("psa, psc
    /// saw psb down", at the last of them), the stray downs, and every line
    /// found since, in time order.
    fn settle(&mut self) {
        for o in &mut self.owed {
            let paid: Vec<(usize, Instant)> = o
                .debts
                .iter_mut()
                .filter(|d| !d.told)
                .filter_map(|d| d.paid.map(|at| (d.node, at)))
                .collect();
            for d in o.debts.iter_mut().filter(|d| d.paid.is_some()) {
                d.told = true;
            }
            let Some(at) = paid.iter().map(|(_, at)| *at).max() else { continue };
            if o.silent_until.is_none() {
                let nodes: Vec<usize> = paid.iter().map(|(i, _)| *i).collect();
                self.fresh.push((at, format!("{} saw {} down", join(&self.names, &nodes, ", "), o.who)));
            }
        }
        self.owed.retain(|o| o.debts.iter().any(|d| !d.told));
        for (i, stray) in self.stray.iter_mut().enumerate() {
            if let Some((at, n)) = stray.take() {
                self.fresh.push((at, format!("{} saw {} down", self.names[i], count(n, "member"))));
            }
        }
        let mut fresh = std::mem::take(&mut self.fresh);
        fresh.sort_by_key(|(at, _)| *at);
        for (at, text) in fresh {
            self.line(at, text);
        }
    }

    fn owe(&mut self, who: String, observers: &[usize], each: u64) {
        if observers.is_empty() {
            return;
        }
        let debts =
            observers.iter().map(|&node| Debt { node, left: each, paid: None, told: false }).collect();
        self.owed.push(Owed { who, debts, silent_until: None });
    }

    fn line(&mut self, at: Instant, text: String) {
        let t = at.saturating_duration_since(self.started).as_secs_f64();
        self.lines.push(format!("+{t:.1}s {text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::words::node_names;

    /// The events with the cluster's layout beside them, each action changing
    /// the layout as the cluster would before the events are told. Everything
    /// else is the events' own (through `Deref`).
    struct Demo {
        events: Events,
        layout: Layout,
    }

    impl Demo {
        fn new(n: usize, started: Instant) -> Demo {
            Demo {
                events: Events::new(&node_names(n), started),
                layout: Layout { live: vec![true; n], split: None },
            }
        }

        fn killed(&mut self, at: Instant, node: usize, held: Held) {
            self.layout.live[node] = false;
            self.events.killed(at, node, held, &self.layout);
        }

        fn restarted(&mut self, at: Instant, nodes: &[usize]) {
            for &i in nodes {
                self.layout.live[i] = true;
            }
            self.events.restarted(at, nodes);
        }

        fn split(&mut self, at: Instant, boundary: usize) {
            self.layout.split = Some(boundary);
            self.events.split(at, &self.layout);
        }

        fn healed(&mut self, at: Instant) {
            self.layout.split = None;
            self.events.healed(at);
        }

        fn tick(&mut self, now: Instant, passes_per_s: f64, high: Option<u64>) {
            self.events.tick(now, passes_per_s, high, &self.layout);
        }

        fn status(&self, node: usize) -> &'static str {
            self.layout.status(node)
        }
    }

    impl std::ops::Deref for Demo {
        type Target = Events;
        fn deref(&self) -> &Events {
            &self.events
        }
    }

    impl std::ops::DerefMut for Demo {
        fn deref_mut(&mut self) -> &mut Events {
            &mut self.events
        }
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn seen(at: Instant, node: usize, what: Reported) -> Seen {
        Seen { at, node, what }
    }

    /// Every node's latest gauge says `m` members.
    fn members(e: &mut Events, t: Instant, nodes: &[usize], m: u64) {
        e.observe(nodes.iter().map(|&i| seen(t, i, Reported::Members(m))).collect());
    }

    #[test]
    fn a_kill_is_seen_down_by_the_others_then_regenerated() {
        let t0 = Instant::now();
        let mut e = Demo::new(4, t0);
        e.killed(at(t0, 12_300), 1, Held::Still);
        assert_eq!(e.status(1), "dead");
        assert_eq!(e.status(0), "live");
        e.observe(vec![
            seen(at(t0, 14_600), 0, Reported::Down(1)),
            seen(at(t0, 14_700), 2, Reported::Down(1)),
        ]);
        e.tick(at(t0, 15_000), 0.0, None);
        e.observe(vec![
            seen(at(t0, 15_200), 3, Reported::Down(1)),
            seen(at(t0, 15_300), 0, Reported::Regenerated(1)),
        ]);
        e.tick(at(t0, 16_000), 0.0, None);
        assert_eq!(
            e.recent(10),
            [
                "+12.3s k: killed psb (held the baton)",
                "+14.7s psa, psc saw psb down",
                "+15.2s psd saw psb down",
                "+15.3s psa regenerated the baton",
            ]
        );
        assert_eq!(e.counts, Counts { kills: 1, regenerations: 1, ..Counts::default() });
        // A second down from psa is no longer explained by the kill.
        e.observe(vec![seen(at(t0, 16_500), 0, Reported::Down(2))]);
        e.tick(at(t0, 17_000), 0.0, None);
        assert_eq!(e.recent(1), ["+16.5s psa saw 2 members down"]);
    }

    #[test]
    fn a_split_is_seen_per_half_and_a_heal_merges_once_the_relay_is_one_baton() {
        let t0 = Instant::now();
        let mut e = Demo::new(4, t0);
        e.split(at(t0, 30_100), 2);
        assert_eq!([e.status(0), e.status(3)], ["live A", "live B"]);
        e.observe(vec![
            seen(at(t0, 32_000), 0, Reported::Down(1)),
            seen(at(t0, 32_100), 0, Reported::Down(1)),
            seen(at(t0, 32_200), 1, Reported::Down(2)),
            seen(at(t0, 32_300), 2, Reported::Down(2)),
            seen(at(t0, 32_400), 3, Reported::Down(1)),
            seen(at(t0, 32_900), 2, Reported::Regenerated(1)),
        ]);
        // Two batons: the highest counter rises by half the passes.
        e.tick(at(t0, 33_000), 200_000.0, Some(1_000_000));
        e.observe(vec![seen(at(t0, 33_100), 3, Reported::Down(1))]);
        e.tick(at(t0, 34_000), 200_000.0, Some(1_100_000));
        assert_eq!(
            e.recent(10),
            [
                "+30.1s p: split A {psa,psb} | B {psc,psd}",
                "+32.2s psa, psb saw psc, psd down",
                "+32.3s psc saw psa, psb down",
                "+32.9s psc regenerated the baton",
                "+33.1s psd saw psa, psb down",
                "+34.0s two batons: one per half",
            ]
        );
        e.healed(at(t0, 40_000));
        assert_eq!(e.status(0), "live");
        // Members listed before the heal do not count, nor do three of four.
        members(&mut e, at(t0, 40_500), &[0, 1, 2], 4);
        members(&mut e, at(t0, 40_500), &[3], 3);
        e.tick(at(t0, 41_000), 200_000.0, Some(1_300_000));
        assert_eq!(e.recent(1), ["+40.0s p: healed: both halves share one secret again"]);
        members(&mut e, at(t0, 41_200), &[3], 4);
        // Still two batons.
        e.tick(at(t0, 42_000), 200_000.0, Some(1_400_000));
        assert_eq!(e.counts.merges, 0);
        e.tick(at(t0, 43_000), 200_000.0, Some(1_590_000));
        assert_eq!(e.recent(1), ["+43.0s merged: every live node lists 4 members, one baton"]);
        assert_eq!(e.counts.to_string(), "0 kills, 0 restarts, 1 split, 1 heal, 1 regeneration, 1 merge");
        e.tick(at(t0, 44_000), 200_000.0, Some(1_790_000));
        assert_eq!(e.counts.merges, 1, "one merge per heal");
    }

    #[test]
    fn a_restart_rejoins_and_its_late_downs_are_taken_silently() {
        let t0 = Instant::now();
        let mut e = Demo::new(3, t0);
        e.killed(at(t0, 1_000), 2, Held::Still);
        e.observe(vec![seen(at(t0, 2_000), 0, Reported::Down(1))]);
        e.restarted(at(t0, 2_500), &[2]);
        assert_eq!(e.status(2), "live");
        // psb sees psc's old life end (restarted) only now: no line.
        e.observe(vec![seen(at(t0, 2_700), 1, Reported::Down(1))]);
        members(&mut e, at(t0, 3_500), &[0, 1, 2], 3);
        e.tick(at(t0, 3_000), 1000.0, Some(10_000));
        e.tick(at(t0, 4_000), 1000.0, Some(11_000));
        assert_eq!(
            e.recent(10),
            [
                "+1.0s k: killed psc (held the baton)",
                "+2.0s psa saw psc down",
                "+2.5s r: restarted psc (a new life)",
                "+4.0s rejoined: psc back, every live node lists 3 members, one baton",
            ]
        );
        assert_eq!(e.counts, Counts { kills: 1, restarts: 1, ..Counts::default() });
    }

    #[test]
    fn a_kill_while_split_is_owed_by_its_own_half_only() {
        let t0 = Instant::now();
        let mut e = Demo::new(4, t0);
        e.split(at(t0, 0), 2);
        e.observe((0..4).map(|i| seen(at(t0, 2_000), i, Reported::Down(2))).collect());
        e.tick(at(t0, 2_500), 0.0, None);
        e.killed(at(t0, 3_000), 3, Held::Still);
        assert!(!e.layout.is_live(3) && e.layout.is_split());
        e.observe(vec![seen(at(t0, 5_000), 2, Reported::Down(1))]);
        e.tick(at(t0, 5_500), 0.0, None);
        assert_eq!(e.recent(1), ["+5.0s psc saw psd down"]);
    }
}
