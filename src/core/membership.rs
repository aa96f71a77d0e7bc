//! membership: the member table. Who is in the cluster, which life
//! (incarnation) of each node we know, and whether it is alive, suspect, down
//! or has left, with the deadlines that move it between those states.
//!
//! Rules:
//! - A member is created only from a heartbeat (which names its addresses).
//! - Any authenticated, fresh datagram from a member's current life is
//!   liveness evidence (`last_heard = now`). A suspect is alive again on
//!   evidence; a down member is up again only on a direct datagram.
//! - Members are heard only when probed, and the failure detector
//!   (`core::probe`) decides who fails: its verdicts and other nodes' news
//!   come in through [`Members::suspect`], [`Members::down`] and
//!   [`Members::alive`]; a suspect nobody settles within `settle` is handed
//!   back to it ([`Effect::CheckSuspect`], from [`Members::handle_timeout`]).
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
    /// Latest liveness evidence.
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
    /// How long a suspect may stay one before this node checks it itself
    /// (the news that settles it may have been lost).
    pub settle: Duration,
}

#[derive(Debug)]
pub struct Members {
    map: BTreeMap<String, Member>,
    cap: usize,
    timing: Timing,
}

impl Members {
    pub fn new(cap: usize, timing: Timing) -> Members {
        Members { map: BTreeMap::new(), cap, timing }
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
    /// (it sent or announced it), if that is newer than what was known.
    pub fn understands(&mut self, name: &str, version: u8) {
        if let Some(m) = self.map.get_mut(name) {
            m.wire = m.wire.max(version);
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

    /// Does what is due at `now`: a check of each suspect due one.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Effects) {
        for m in self.map.values_mut() {
            if m.state == MemberState::Suspect && m.next_probe.is_some_and(|t| t <= now) {
                let (name, incarnation, addr) = (m.name.clone(), m.incarnation, m.data_addr);
                out.push(Effect::CheckSuspect { name, incarnation, addr });
                m.next_probe = None;
            }
        }
    }

    /// The earliest instant at which `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.map.values().filter(|m| m.state == MemberState::Suspect).filter_map(|m| m.next_probe).min()
    }

    /// This node was not running for a while (a stall: see `core::node`):
    /// a suspect's check comes `by` later (never more than `by` from now:
    /// stalls that come one after another do not pile up), so nothing is
    /// concluded from datagrams this node has not read yet.
    pub fn credit(&mut self, now: Instant, by: Duration) {
        for m in self.map.values_mut().filter(|m| m.state.is_live()) {
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
        }
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
