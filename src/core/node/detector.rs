//! detector: the node's side of failure detection: what the failure
//! detector (`core::probe`) asked for, carried out, and member changes
//! turned into events.

use std::time::Instant;

use rand::Rng;

use super::{Dest, Event, Node};
use crate::core::membership::{Change, MemberEvent, MemberState};
use crate::core::probe::{self, Ring, Rumored, Target, Verdict};
use crate::core::wire::{self, Message, News};

impl<R: Rng> Node<R> {
    /// The failure detector's turn: its ring is every live member and every
    /// member down for less than [`probe::RECONNECT_FOR`], in name order.
    pub(super) fn run_prober(&mut self, now: Instant, changes: &mut Vec<MemberEvent>) {
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
        let view = Ring {
            me: &self.identity.name,
            members: &ring,
            wall_ms,
            detect: !self.compat.fails_by_silence(),
        };
        self.prober.handle_timeout(now, view, &mut self.rng, &mut self.probe_out);
        self.drain_probe(now, changes);
    }

    /// Carries out what the failure detector asked for.
    pub(super) fn drain_probe(&mut self, now: Instant, changes: &mut Vec<MemberEvent>) {
        let mut out = std::mem::take(&mut self.probe_out);
        let wall = self.wall_us(now);
        for (name, incarnation, token) in out.link_probes.drain(..) {
            self.links.probe_sent(now, wall, &name, incarnation, token);
        }
        for (addr, token) in out.pings.drain(..) {
            self.send(Dest::Data(addr), Message::Ping { token });
        }
        for (addr, token, target, incarnation) in out.ping_reqs.drain(..) {
            self.send(Dest::Data(addr), Message::PingReq { token, target: &target, incarnation });
        }
        for (addr, token, answered) in out.indirect_acks.drain(..) {
            self.send(Dest::Data(addr), Message::IndirectAck { token, answered });
        }
        for v in out.verdicts.drain(..) {
            match v {
                Verdict::Suspect { name, incarnation, silent } => {
                    self.members.suspect(now, &name, incarnation, silent, changes)
                }
                Verdict::Down { name, incarnation, silent } => {
                    self.members.down(now, &name, incarnation, silent, changes)
                }
                Verdict::Alive { name, incarnation } => self.members.alive(now, &name, incarnation, changes),
            }
        }
        if !out.news.is_empty() && !self.compat.fails_by_silence() {
            let news: Vec<Rumored> = out.news.drain(..).collect();
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
        out.news.clear();
        self.probe_out = out;
    }

    /// Turns member changes into events; a newcomer gets an early heartbeat so
    /// it learns this node without waiting a whole interval.
    pub(super) fn absorb(&mut self, now: Instant, changes: &mut Vec<MemberEvent>) {
        if !changes.is_empty() {
            let (relay, mut ctx) = self.relay_ctx(now);
            relay.on_members_changed(&mut ctx);
        }
        let mut welcome = Vec::new();
        for ev in changes.drain(..) {
            if matches!(ev.change, Change::Up | Change::Restarted { .. }) {
                if self.compat.heartbeats_each_interval() {
                    self.heartbeat_soon(now);
                } else {
                    welcome.push(ev.addr);
                }
            }
            self.events.push_back(Event::Member(ev));
        }
        for addr in welcome {
            self.send_heartbeat_to(now, Dest::Data(addr));
        }
    }
}
