//! effects: what the core's machines ask of the node that drives them, in
//! one shape. The member table (`core::membership`), the failure detector
//! (`core::probe`) and the baton relay (`core::baton`) decide; each call
//! into one takes the node's [`Effects`] queue and pushes an [`Effect`] for
//! every datagram to send, every verdict and every event, in the order it
//! decides them. The node carries them out in one place (`node::effects`):
//! it seals and sends the datagrams, reports the events, and applies the
//! verdicts to the member table, whose changes in turn go on the queue.
//!
//! This file is the whole of what the machines can ask for; what each
//! variant means is the machine's contract (see its module doc).
//!
//! Must not: act. An effect is data, carried out by the node only.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use super::wire::{BatonId, Lap, Message, PassAck, Rumor};

/// One thing a machine asks its node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A datagram to a peer's data socket (the failure detector's probes
    /// and answers, the relay's passes and acks).
    Send { to: SocketAddr, msg: Unicast },
    /// The failure detector's round pinged a live member (with the token of
    /// that [`Unicast::Ping`]): link health times the answer
    /// (`core::links`).
    LinkProbe { name: String, incarnation: u64, token: u64 },
    /// News of a member for the whole cluster, from the failure detector.
    News(Rumored),
    /// The failure detector's conclusion on a member, for the member table.
    Verdict(Verdict),
    /// A suspect is due a check of this node's own (the member table):
    /// once, `settle` after the suspicion, as the news that settles it may
    /// have been lost.
    CheckSuspect { name: String, incarnation: u64, addr: SocketAddr },
    /// A member changed state (the member table).
    Member(MemberEvent),
    /// A live member's heartbeat says it now takes part in the baton relay,
    /// or no longer does (its `[baton] enabled`, reloaded): the laps change,
    /// as with a change of state (the member table).
    Relays { name: String, relays: bool },
    /// Something happened to the baton here (the relay).
    Baton(BatonEvent),
    /// The relay asks the cluster for fresher baton views: a heartbeat with
    /// the ask, before it regenerates the baton or gives up on a pass.
    AskViews,
}

/// A datagram a machine asks to send, by message; the node picks its wire
/// version and seals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unicast {
    Ping {
        token: u64,
    },
    /// Ping `target` (life `incarnation`) on our behalf.
    PingReq {
        token: u64,
        target: String,
        incarnation: u64,
    },
    /// The answer to a ping request: whether the target answered.
    IndirectAck {
        token: u64,
        answered: bool,
    },
    Pass {
        id: BatonId,
        counter: u64,
        lap: Lap,
    },
    PassAck(PassAck),
}

impl Unicast {
    /// The wire message that carries it.
    pub fn message(&self) -> Message<'_> {
        match self {
            Unicast::Ping { token } => Message::Ping { token: *token },
            Unicast::PingReq { token, target, incarnation } => {
                Message::PingReq { token: *token, target, incarnation: *incarnation }
            }
            Unicast::IndirectAck { token, answered } => {
                Message::IndirectAck { token: *token, answered: *answered }
            }
            Unicast::Pass { id, counter, lap } => {
                Message::Pass { id: *id, counter: *counter, lap: lap.clone() }
            }
            Unicast::PassAck(ack) => Message::PassAck(*ack),
        }
    }
}

/// A news item for the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rumored {
    pub name: String,
    pub incarnation: u64,
    pub rumor: Rumor,
    pub silent_ms: u32,
}

/// What a check concluded about a member, for the member table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Suspect { name: String, incarnation: u64, silent: Duration },
    Down { name: String, incarnation: u64, silent: Duration },
    Alive { name: String, incarnation: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Up,
    /// A new life of a known node: a restart, not its old self coming back.
    Restarted {
        old_incarnation: u64,
    },
    Suspect {
        silent_for: Duration,
    },
    /// A suspect was heard from again.
    Alive,
    Down {
        silent_for: Duration,
    },
    Left,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEvent {
    pub name: String,
    pub incarnation: u64,
    pub addr: SocketAddr,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatonEvent {
    /// This node took a pass from a peer and now holds the baton.
    Taken {
        id: BatonId,
        counter: u64,
    },
    /// This node incremented the counter to `counter` and passed it on.
    Passed {
        counter: u64,
    },
    /// A pass was acknowledged `hop` after it was first sent.
    Acked {
        hop: Duration,
    },
    Retransmit {
        to: String,
    },
    /// `to` did not acknowledge after all retries (or refused): skipped this lap.
    Skipped {
        to: String,
    },
    /// The first baton of the cluster, started here.
    Started {
        id: BatonId,
        counter: u64,
    },
    Regenerated {
        id: BatonId,
        counter: u64,
    },
    /// A baton held here was dropped: a greater one exists, or a copy ahead.
    Dropped {
        id: BatonId,
        counter: u64,
        why: &'static str,
    },
}

/// The queue the machines push to and the node drains, first in first out.
#[derive(Debug, Default)]
pub struct Effects {
    queue: VecDeque<Effect>,
}

impl Effects {
    pub fn push(&mut self, effect: Effect) {
        self.queue.push_back(effect);
    }

    /// A datagram to `to`'s data socket.
    pub fn send(&mut self, to: SocketAddr, msg: Unicast) {
        self.push(Effect::Send { to, msg });
    }

    /// The oldest effect not yet carried out.
    pub fn pop(&mut self) -> Option<Effect> {
        self.queue.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// What is queued, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Effect> {
        self.queue.iter()
    }
}
