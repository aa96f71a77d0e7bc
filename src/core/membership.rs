//! membership: the member table. Who is in the cluster, which life
//! (incarnation) of each node we know, and whether it is alive, suspect, down
//! or has left, with the deadlines that move it between those states.
//!
//! Rules:
//! - A member is created only from a heartbeat (which names its addresses).
//! - Any authenticated, fresh datagram from a member's current life is
//!   liveness evidence (`last_heard = now`); so are other peers' sightings of
//!   it. A suspect is alive again on evidence; a down member is up again only
//!   on a direct datagram.
//! - Two ways to fail a member. While the cluster has members of the previous
//!   release (`silence` on, switched by the node: see `node::compat`), it is
//!   silence: `suspect_after` and `down_after` count from `last_heard` (every
//!   member heartbeats each interval, with sightings of the others), so the
//!   deadlines are derived from state and a stale timer cannot exist.
//!   Otherwise members are heard only
//!   when probed, and the failure detector (`core::probe`) decides: its
//!   verdicts and other nodes' news come in through [`Members::suspect`],
//!   [`Members::down`] and [`Members::alive`]; a suspect nobody settles
//!   within `settle` is handed back to it ([`Effect::CheckSuspect`], from
//!   [`Members::handle_timeout`]).
//! - A higher incarnation is a restarted node: a new life with a fresh replay
//!   window. A lower one is a stale datagram of an old life, unless the member
//!   is down or gone and that incarnation was never seen (a node whose clock
//!   went backwards across a reboot must still be able to rejoin).
//! - The table holds at most `cap` members; when full, the longest-gone down
//!   or left member makes room, and if none is gone the newcomer is refused.
//!
//! Must not: do I/O, read clocks, allocate per datagram for known members.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::effects::{Effect, Effects};

/// What the table reports (defined with every machine's outputs in
/// `core::effects`).
pub use super::effects::{Change, MemberEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
    Left,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
            MemberState::Left => "left",
        }
    }

    /// Alive or suspect: still counted in the cluster.
    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

/// How many earlier lives of a member are remembered, so their replayed
/// datagrams are recognised as stale.
const RETIRED_LIVES: usize = 4;

#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub incarnation: u64,
    pub state: MemberState,
    /// Where its heartbeats come from (its gossip socket).
    pub gossip_addr: SocketAddr,
    /// Where to send it unicast traffic (its data socket).
    pub data_addr: SocketAddr,
    /// It takes part in the baton relay.
    pub relays: bool,
    /// Latest liveness evidence, direct or from a sighting.
    pub last_heard: Instant,
    /// When `state` last changed.
    pub since: Instant,
    /// The newest wire version this life of the member is known to
    /// understand: the highest it sent, or announced (see `node::Node`).
    pub wire: u8,
    /// This life was sent a probe in this release's wire version, to learn
    /// whether it understands it (see `node::Node`).
    pub wire_probed: bool,
    window: ReplayWindow,
    retired: [u64; RETIRED_LIVES],
    next_probe: Option<Instant>,
    /// Silence deadlines count from the later of this and `last_heard`:
    /// moved on by [`Members::credit`] when this node was not running, so
    /// the time it could not listen is not held against the member.
    counted_from: Instant,
}

/// Addresses learned from a heartbeat: what allows creating a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub gossip_addr: SocketAddr,
    pub data_addr: SocketAddr,
    pub relays: bool,
}

/// What the table made of a datagram's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// From the current life of a live member: act on it.
    Accepted,
    /// Legitimate but not actionable (a left node's late datagram, or an
    /// unknown node's datagram that is not a heartbeat): ignore quietly.
    Ignored,
    /// Seen before: a replay (or a duplicate from the network).
    Replay,
    /// From an older life of the member.
    Stale,
    /// A newcomer while the table is full of live members.
    Full,
}

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub suspect_after: Duration,
    pub down_after: Duration,
    /// How often a suspect is pinged directly while suspicion lasts (silence).
    pub probe_every: Duration,
    /// Without silence: how long a suspect may stay one before this node
    /// checks it itself (the news that settles it may have been lost).
    pub settle: Duration,
}

#[derive(Debug)]
pub struct Members {
    map: BTreeMap<String, Member>,
    cap: usize,
    timing: Timing,
    silence: bool,
}

impl Members {
    pub fn new(cap: usize, timing: Timing) -> Members {
        Members { map: BTreeMap::new(), cap, timing, silence: false }
    }

    /// Whether silence fails members (see the module doc; off unless the
    /// node turns it on for the previous release's members). Turning it on
    /// counts every live member's silence from `now`: until then they were
    /// heard only when probed.
    pub fn set_silence(&mut self, now: Instant, on: bool) {
        if on && !self.silence {
            for m in self.map.values_mut().filter(|m| m.state.is_live()) {
                m.last_heard = m.last_heard.max(now);
                if m.state == MemberState::Suspect {
                    m.next_probe = Some(now);
                }
            }
        }
        if !on && self.silence {
            for m in self.map.values_mut().filter(|m| m.state == MemberState::Suspect) {
                m.next_probe = Some(now + self.timing.settle);
            }
        }
        self.silence = on;
    }

    pub fn silence(&self) -> bool {
        self.silence
    }

    /// The failure detector or a peer's news: `name`'s life `incarnation`
    /// has not answered for `silent`. Ignored when this node heard it since.
    pub fn suspect(
        &mut self,
        now: Instant,
        name: &str,
        incarnation: u64,
        silent: Duration,
        out: &mut Effects,
    ) {
        let settle = self.timing.settle;
        let Some(m) = self.current(now, name, incarnation, silent) else { return };
        if m.state == MemberState::Alive {
            m.set_state(now, MemberState::Suspect);
            m.next_probe = Some(now + settle);
            out.push(Effect::Member(event(m, Change::Suspect { silent_for: silent })));
        }
    }

    /// As [`Members::suspect`], for `down_after`: down.
    pub fn down(&mut self, now: Instant, name: &str, incarnation: u64, silent: Duration, out: &mut Effects) {
        let Some(m) = self.current(now, name, incarnation, silent) else { return };
        m.set_state(now, MemberState::Down);
        out.push(Effect::Member(event(m, Change::Down { silent_for: silent })));
    }

    /// A suspect answered (this node's check, or a peer's news).
    pub fn alive(&mut self, now: Instant, name: &str, incarnation: u64, out: &mut Effects) {
        if let Some(m) = self.map.get_mut(name)
            && m.incarnation == incarnation
            && m.state == MemberState::Suspect
        {
            m.last_heard = m.last_heard.max(now);
            m.set_state(now, MemberState::Alive);
            out.push(Effect::Member(event(m, Change::Alive)));
        }
    }

    /// The live member `name` of that life, unless this node heard it
    /// directly within `silent` (it knows better than the news).
    fn current(
        &mut self,
        now: Instant,
        name: &str,
        incarnation: u64,
        silent: Duration,
    ) -> Option<&mut Member> {
        let m = self.map.get_mut(name)?;
        let heard_since = now.saturating_duration_since(m.last_heard) < silent;
        (m.incarnation == incarnation && m.state.is_live() && !heard_since).then_some(m)
    }

    /// New suspicion and down deadlines (a reload), for every member from
    /// its next check on.
    pub fn set_timing(&mut self, timing: Timing) {
        self.timing = timing;
    }

    pub fn get(&self, name: &str) -> Option<&Member> {
        self.map.get(name)
    }

    /// Records that the current life of `name` understands wire `version`
    /// (it sent or announced it).
    /// True if that is newer than what was known.
    pub fn understands(&mut self, name: &str, version: u8) -> bool {
        match self.map.get_mut(name) {
            Some(m) if version > m.wire => {
                m.wire = version;
                true
            }
            _ => false,
        }
    }

    /// Marks the current life of `name` as sent its wire version probe.
    pub fn wire_probed(&mut self, name: &str) {
        if let Some(m) = self.map.get_mut(name) {
            m.wire_probed = true;
        }
    }

    /// All members, in name order (deterministic for simulation).
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.map.values()
    }

    pub fn live(&self) -> impl Iterator<Item = &Member> {
        self.map.values().filter(|m| m.state.is_live())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Judges a datagram's identity `(name, incarnation, seq)` and records it
    /// as liveness evidence. `hello` is present for heartbeats only.
    pub fn admit(
        &mut self,
        now: Instant,
        name: &str,
        incarnation: u64,
        seq: u64,
        hello: Option<Hello>,
        out: &mut Effects,
    ) -> Admit {
        let Some(m) = self.map.get_mut(name) else {
            let Some(hello) = hello else {
                return Admit::Ignored;
            };
            if self.map.len() >= self.cap && !self.evict_one() {
                return Admit::Full;
            }
            self.map.insert(name.to_owned(), Member::new(now, name, incarnation, seq, hello));
            out.push(Effect::Member(event(&self.map[name], Change::Up)));
            return Admit::Accepted;
        };
        if incarnation == m.incarnation {
            return m.heard(now, seq, hello, out);
        }
        let older = incarnation < m.incarnation;
        if older && (m.state.is_live() || m.retired.contains(&incarnation)) {
            return Admit::Stale;
        }
        // A new life (restart). Without a heartbeat we do not know its
        // addresses yet; its first heartbeat will follow within an interval.
        let Some(hello) = hello else {
            return Admit::Ignored;
        };
        let old = m.incarnation;
        let was_live = m.state.is_live();
        m.retired.rotate_right(1);
        m.retired[0] = old;
        let retired = m.retired;
        *m = Member::new(now, name, incarnation, seq, hello);
        m.retired = retired;
        let change = if was_live { Change::Restarted { old_incarnation: old } } else { Change::Up };
        out.push(Effect::Member(event(m, change)));
        Admit::Accepted
    }

    /// A peer's sighting: `name`'s life `incarnation` was heard `age` ago.
    /// Refreshes live members only; it never creates or resurrects one.
    pub fn sighted(&mut self, now: Instant, name: &str, incarnation: u64, age: Duration, out: &mut Effects) {
        let Some(m) = self.map.get_mut(name) else {
            return;
        };
        if m.incarnation != incarnation || !m.state.is_live() {
            return;
        }
        let heard = now.checked_sub(age).unwrap_or(m.last_heard);
        if heard > m.last_heard {
            m.last_heard = heard;
            if m.state == MemberState::Suspect && now < heard + self.timing.suspect_after {
                m.set_state(now, MemberState::Alive);
                out.push(Effect::Member(event(m, Change::Alive)));
            }
        }
    }

    /// The member announced its leave (already admitted, so authenticated and
    /// of its current life).
    pub fn leave(&mut self, now: Instant, name: &str, out: &mut Effects) {
        if let Some(m) = self.map.get_mut(name)
            && m.state != MemberState::Left
        {
            m.set_state(now, MemberState::Left);
            out.push(Effect::Member(event(m, Change::Left)));
        }
    }

    /// Does what is due at `now`: the silence deadlines' transitions (when
    /// silence fails members), then a check of each suspect due one.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Effects) {
        if self.silence {
            self.fail_silent(now, out);
        }
        self.suspects_due(now, out);
    }

    /// Suspects members silent for `suspect_after`, downs those silent for
    /// `down_after`.
    fn fail_silent(&mut self, now: Instant, out: &mut Effects) {
        let t = self.timing;
        for m in self.map.values_mut() {
            let silent = now.saturating_duration_since(m.silent_since());
            if m.state == MemberState::Alive && silent >= t.suspect_after {
                m.set_state(now, MemberState::Suspect);
                m.next_probe = Some(now);
                out.push(Effect::Member(event(m, Change::Suspect { silent_for: silent })));
            }
            if m.state == MemberState::Suspect && silent >= t.down_after {
                m.set_state(now, MemberState::Down);
                out.push(Effect::Member(event(m, Change::Down { silent_for: silent })));
            }
        }
    }

    /// Suspects whose check of this node's own is due (silence: every
    /// `probe_every`; otherwise once, `settle` after the suspicion, for the
    /// failure detector to check).
    fn suspects_due(&mut self, now: Instant, out: &mut Effects) {
        for m in self.map.values_mut() {
            if m.state == MemberState::Suspect && m.next_probe.is_some_and(|t| t <= now) {
                let (name, incarnation, addr) = (m.name.clone(), m.incarnation, m.data_addr);
                out.push(Effect::CheckSuspect { name, incarnation, addr });
                m.next_probe = self.silence.then_some(now + self.timing.probe_every);
            }
        }
    }

    /// The earliest instant at which `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timing;
        if !self.silence {
            return self
                .map
                .values()
                .filter(|m| m.state == MemberState::Suspect)
                .filter_map(|m| m.next_probe)
                .min();
        }
        self.map
            .values()
            .filter_map(|m| match m.state {
                MemberState::Alive => Some(m.silent_since() + t.suspect_after),
                MemberState::Suspect => {
                    let down = m.silent_since() + t.down_after;
                    Some(m.next_probe.map_or(down, |p| p.min(down)))
                }
                MemberState::Down | MemberState::Left => None,
            })
            .min()
    }

    /// This node was not running for a while (a stall: see `core::node`):
    /// every live member gets `by` more before its silence counts against
    /// it, and a suspect's direct probe comes `by` later, so nothing is
    /// concluded from datagrams this node has not read yet. Never past
    /// `now`: stalls that come one after another do not pile credits up
    /// into a member that is never suspected. `last_heard` keeps the truth
    /// (sightings and the status page report it).
    pub fn credit(&mut self, now: Instant, by: Duration) {
        for m in self.map.values_mut().filter(|m| m.state.is_live()) {
            m.counted_from = (m.silent_since() + by).min(now);
            if let Some(p) = m.next_probe.as_mut() {
                *p = (*p + by).min(now + by);
            }
        }
    }

    /// Frees one slot by dropping the longest-gone down or left member.
    fn evict_one(&mut self) -> bool {
        let victim =
            self.map.values().filter(|m| !m.state.is_live()).min_by_key(|m| m.since).map(|m| m.name.clone());
        match victim {
            Some(name) => self.map.remove(&name).is_some(),
            None => false,
        }
    }
}

impl Member {
    /// A datagram `seq` from this life: liveness evidence (a suspect or down
    /// member is alive again), unless a replay or from a member that left;
    /// a heartbeat's `hello` brings its addresses and relay flag up to date
    /// (a new flag is reported: nothing else tells the relay).
    fn heard(&mut self, now: Instant, seq: u64, hello: Option<Hello>, out: &mut Effects) -> Admit {
        if !self.window.accept(seq) {
            return Admit::Replay;
        }
        match self.state {
            MemberState::Left => return Admit::Ignored,
            MemberState::Alive => {}
            MemberState::Suspect => {
                self.set_state(now, MemberState::Alive);
                out.push(Effect::Member(event(self, Change::Alive)));
            }
            MemberState::Down => {
                self.set_state(now, MemberState::Alive);
                out.push(Effect::Member(event(self, Change::Up)));
            }
        }
        self.last_heard = now;
        if let Some(h) = hello {
            self.gossip_addr = h.gossip_addr;
            self.data_addr = h.data_addr;
            if h.relays != self.relays {
                self.relays = h.relays;
                out.push(Effect::Relays { name: self.name.clone(), relays: h.relays });
            }
        }
        Admit::Accepted
    }

    fn new(now: Instant, name: &str, incarnation: u64, seq: u64, hello: Hello) -> Member {
        Member {
            name: name.to_owned(),
            incarnation,
            state: MemberState::Alive,
            gossip_addr: hello.gossip_addr,
            data_addr: hello.data_addr,
            relays: hello.relays,
            last_heard: now,
            since: now,
            wire: 0,
            wire_probed: false,
            window: ReplayWindow::starting_at(seq),
            retired: [incarnation; RETIRED_LIVES],
            next_probe: None,
            counted_from: now,
        }
    }

    /// Where its silence deadlines count from (see `counted_from`).
    fn silent_since(&self) -> Instant {
        self.last_heard.max(self.counted_from)
    }

    fn set_state(&mut self, now: Instant, state: MemberState) {
        self.state = state;
        self.since = now;
        if state != MemberState::Suspect {
            self.next_probe = None;
        }
    }
}

fn event(m: &Member, change: Change) -> MemberEvent {
    MemberEvent { name: m.name.clone(), incarnation: m.incarnation, addr: m.data_addr, change }
}

/// Sliding-window replay filter over one sender's `seq` (the IPsec/WireGuard
/// scheme): accepts each sequence number once, and anything up to 63 behind the
/// highest seen, so reordering on the LAN is tolerated but a replay is not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    /// Bit i set = `top - i` was seen.
    seen: u64,
}

impl ReplayWindow {
    /// A window that has seen exactly `seq`.
    pub fn starting_at(seq: u64) -> ReplayWindow {
        ReplayWindow { top: seq, seen: 1 }
    }

    /// Records `seq`; false if it was seen before or is too old to judge.
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = seq;
            true
        } else {
            let back = self.top - seq;
            if back >= 64 || self.seen & (1 << back) != 0 {
                return false;
            }
            self.seen |= 1 << back;
            true
        }
    }
}
