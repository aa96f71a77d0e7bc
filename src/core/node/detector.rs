//! detector: the node's side of failure detection (`core::probe`): the
//! failure detector's turn, its verdicts applied to the member table, its
//! news sent, the member table's suspects checked.

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;

use super::Node;
use crate::core::effects::{Rumored, Verdict};
use crate::core::membership::MemberState;
use crate::core::probe::{self, Ring, Target};
use crate::core::wire::{self, Message, News};

impl<R: Rng> Node<R> {
    /// The failure detector's turn: its ring is every live member and every
    /// member down for less than [`probe::RECONNECT_FOR`], in name order.
    pub(super) fn run_prober(&mut self, now: Instant) {
        self.links.retain_live(&self.members);
        let reconnect = now.checked_sub(probe::RECONNECT_FOR);
        let ring: Vec<Target<'_>> = self
            .members
            .iter()
            .filter(|m| {
                m.state.is_live() || (m.state == MemberState::Down && reconnect.is_none_or(|r| m.since >= r))
            })
            .map(|m| Target {
                name: &m.name,
                incarnation: m.incarnation,
                addr: m.data_addr,
                live: m.state.is_live(),
            })
            .collect();
        let wall_ms = self.wall_us(now).map(|us| us.div_euclid(1000));
        let view = Ring { me: &self.identity.name, members: &ring, wall_ms };
        self.prober.handle_timeout(now, view, &mut self.rng, &mut self.effects);
    }

    /// A verdict of the failure detector, applied to the member table.
    pub(super) fn apply_verdict(&mut self, now: Instant, verdict: Verdict) {
        let out = &mut self.effects;
        match verdict {
            Verdict::Suspect { name, incarnation, silent } => {
                self.members.suspect(now, &name, incarnation, silent, out)
            }
            Verdict::Down { name, incarnation, silent } => {
                self.members.down(now, &name, incarnation, silent, out)
            }
            Verdict::Alive { name, incarnation } => self.members.alive(now, &name, incarnation, out),
        }
    }

    /// A suspect the member table hands back for a check of this node's
    /// own: the failure detector checks it.
    pub(super) fn check_suspect(&mut self, now: Instant, name: &str, incarnation: u64, addr: SocketAddr) {
        self.prober.check_suspect(now, name, incarnation, addr);
    }

    /// The failure detector's news, to the whole cluster in as few datagrams
    /// as hold it.
    pub(super) fn send_news(&mut self, news: &[Rumored]) {
        if news.is_empty() {
            return;
        }
        for chunk in news.chunks(wire::MAX_NEWS) {
            let items = chunk
                .iter()
                .map(|r| News {
                    name: &r.name,
                    incarnation: r.incarnation,
                    rumor: r.rumor,
                    silent_ms: r.silent_ms,
                })
                .collect();
            self.fan_out(Message::News(items));
        }
    }
}
