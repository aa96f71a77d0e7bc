//! rejections: what a refused datagram is counted as, which refusals are
//! logged (at most one line per source per [`REJECT_LOG_EVERY`]), and the
//! datagrams that carry this node's name from another node (recorded in
//! `core::conflict`, reported as [`Event::NameConflict`]).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::{Event, Node};
use crate::core::conflict::{self, Conflict};
use crate::core::limit::LogLimiter;
use crate::core::wire::{Envelope, Message, WireError};

/// Why a datagram changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Wire(WireError),
    /// Same sender, same life, a sequence number already seen.
    Replay,
    /// From an earlier life of a member.
    Stale,
    /// A newcomer while the member table is full.
    TableFull,
    /// Another node uses this node's name: counted here, recorded in
    /// `core::conflict` and reported as [`Event::NameConflict`].
    NameConflict {
        incarnation: u64,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Wire(e) => e.fmt(f),
            Reason::Replay => f.write_str("replayed datagram"),
            Reason::Stale => f.write_str("datagram from an earlier life of the sender"),
            Reason::TableFull => f.write_str("member table full"),
            Reason::NameConflict { incarnation } => {
                write!(f, "another node (incarnation {incarnation}) uses this node's name")
            }
        }
    }
}

/// Counts of refused datagrams, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    /// Wrong or missing secret, a key not in the keyring, altered, or sealed
    /// for another cluster.
    pub auth: u64,
    /// A sequence number already seen from that life.
    pub replay: u64,
    /// From an earlier life of the sender.
    pub stale: u64,
    /// Plain datagrams of another cluster.
    pub other_cluster: u64,
    /// Garbage, truncated, oversized, unknown version or kind.
    pub malformed: u64,
    pub table_full: u64,
    pub name_conflict: u64,
}

impl Rejections {
    /// Every class with its count, in a fixed order: the one list of classes
    /// that the status endpoint, `/metrics` and the shutdown log print.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("auth", self.auth),
            ("replay", self.replay),
            ("stale", self.stale),
            ("other_cluster", self.other_cluster),
            ("malformed", self.malformed),
            ("table_full", self.table_full),
            ("name_conflict", self.name_conflict),
        ]
        .into_iter()
    }

    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }

    fn count(&mut self, reason: &Reason) {
        let slot = match reason {
            Reason::Wire(
                WireError::AuthFailed
                | WireError::UnknownKey(_)
                | WireError::Unauthenticated
                | WireError::UnexpectedSealed,
            ) => &mut self.auth,
            Reason::Wire(WireError::OtherCluster) => &mut self.other_cluster,
            Reason::Wire(_) => &mut self.malformed,
            Reason::Replay => &mut self.replay,
            Reason::Stale => &mut self.stale,
            Reason::TableFull => &mut self.table_full,
            Reason::NameConflict { .. } => &mut self.name_conflict,
        };
        *slot += 1;
    }
}

pub const REJECT_LOG_EVERY: Duration = Duration::from_secs(10);
/// Sources remembered for rate limiting; bounded so a spoofing flood cannot
/// grow memory (beyond it, rejections are counted but not logged).
pub(super) const REJECT_SOURCES: usize = 256;

impl<R: Rng> Node<R> {
    /// How long a name conflict lasts after the other node was last heard:
    /// three of this node's heartbeat refresh periods (two nodes with one
    /// name hear each other only through their heartbeats, at least one per
    /// refresh period: two lost ones do not end the conflict), and at least
    /// [`conflict::LOG_EVERY`], so a conflict that goes on is logged again.
    /// 60 s with the default 1 s heartbeat interval.
    pub fn conflict_window(&self) -> Duration {
        (self.refresh_every() * 3).max(conflict::LOG_EVERY)
    }

    /// The other nodes heard using this node's name within
    /// [`Node::conflict_window`] of `now`, first heard first; empty when
    /// the name is this node's alone.
    pub fn name_conflicts(&self, now: Instant) -> Vec<&Conflict> {
        self.conflicts.current(now, self.conflict_window())
    }

    /// Whether a datagram with this node's name and incarnation is its own,
    /// looped back. Another node of that name started in the same
    /// millisecond shows in its heartbeats: they advertise an IP this node
    /// has not advertised lately. Other messages, and heartbeats when either
    /// side does not know its IP, are taken as its own (a false conflict on
    /// a healthy node would be worse than a missed one this unlikely).
    pub(super) fn is_own(&self, env: &Envelope<'_>) -> bool {
        match &env.msg {
            Message::Heartbeat(hb) if !hb.ip.is_unspecified() && !self.identity.ip.is_unspecified() => {
                hb.ip == self.identity.ip || self.own_ips.contains(&hb.ip)
            }
            _ => true,
        }
    }

    /// A datagram of another life that carries this node's name: refused
    /// (counted as a `name_conflict` rejection) and recorded; its leave ends
    /// the conflict with it.
    pub(super) fn name_conflict(&mut self, now: Instant, source: IpAddr, env: &Envelope<'_>) {
        self.rejections.count(&Reason::NameConflict { incarnation: env.incarnation });
        let advertised = match &env.msg {
            Message::Heartbeat(hb) if !hb.ip.is_unspecified() => Some(hb.ip),
            Message::Leave => {
                if let Some(gone) = self.conflicts.left(env.incarnation, source) {
                    let (incarnation, addr) = (gone.incarnation, gone.addr());
                    self.events.push_back(Event::NameConflictOver { incarnation, addr });
                }
                return;
            }
            _ => None,
        };
        let window = self.conflict_window();
        if let Some(heard) = self.conflicts.heard(now, window, env.incarnation, source, advertised) {
            self.events.push_back(Event::NameConflict(heard));
        }
    }

    pub(super) fn reject(&mut self, now: Instant, source: IpAddr, reason: Reason) {
        self.rejections.count(&reason);
        if self.reject_logs.len() >= REJECT_SOURCES && !self.reject_logs.contains_key(&source) {
            self.reject_logs.retain(|_, l| !l.is_idle(now));
            if self.reject_logs.len() >= REJECT_SOURCES {
                return;
            }
        }
        let limiter = self.reject_logs.entry(source).or_insert(LogLimiter::new(REJECT_LOG_EVERY));
        if let Some(suppressed) = limiter.allow(now) {
            let total = self.rejections.total();
            self.events.push_back(Event::Rejected { source, reason, suppressed, total });
        }
    }
}
