//! effects: the one place where a node carries out what its machines asked
//! for (`core::effects`). Every call into the member table, the failure
//! detector or the relay pushes onto the node's queue; [`Node::drain`] then
//! takes it in order until it is empty (a verdict's member changes, and the
//! relay's answer to them, join the queue as they come). What is worth one
//! datagram for many goes out once, at the end: the news, the welcomes to
//! newcomers, the heartbeat that asks for views or announces the baton.
//!
//! Every entry point of the node drains before it returns: the queue is
//! empty between turns.

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;

use super::{Dest, Event, Node};
use crate::core::effects::{BatonEvent, Change, Effect, Rumored};

/// What a drain gathers to do once, at its end.
#[derive(Default)]
struct Gathered {
    news: Vec<Rumored>,
    /// Newcomers to greet with a unicast heartbeat.
    welcome: Vec<SocketAddr>,
    /// Membership (or who relays) changed since the relay last heard of it.
    members_changed: bool,
    /// The relay asked the cluster for fresher views.
    ask_views: bool,
    /// The baton was taken, started or regenerated here.
    took: bool,
}

impl<R: Rng> Node<R> {
    /// Carries out every effect queued, then what was gathered.
    pub(super) fn drain(&mut self, now: Instant) {
        let mut end = Gathered::default();
        loop {
            while let Some(effect) = self.effects.pop() {
                self.carry_out(now, effect, &mut end);
            }
            if !std::mem::take(&mut end.members_changed) {
                break;
            }
            // The relay resumes a baton held alone (a peer came, or took
            // part in the relay again), or skips a target that went down;
            // what it asks for goes round once more.
            let (relay, mut ctx) = self.relay_ctx(now);
            relay.on_members_changed(&mut ctx);
        }
        self.send_news(&end.news);
        for addr in end.welcome {
            self.send_heartbeat_to(now, Dest::Data(addr));
        }
        self.after_relay(now, end.ask_views, end.took);
    }

    fn carry_out(&mut self, now: Instant, effect: Effect, end: &mut Gathered) {
        match effect {
            Effect::Send { to, msg } => self.send(Dest::Data(to), msg.message()),
            Effect::LinkProbe { name, incarnation, token } => {
                let wall = self.wall_us(now);
                self.links.probe_sent(now, wall, &name, incarnation, token);
            }
            Effect::News(news) => end.news.push(news),
            Effect::Verdict(verdict) => self.apply_verdict(now, verdict),
            Effect::CheckSuspect { name, incarnation, addr } => {
                self.check_suspect(now, &name, incarnation, addr)
            }
            Effect::Member(ev) => {
                end.members_changed = true;
                if matches!(ev.change, Change::Up | Change::Restarted { .. }) {
                    // A newcomer learns this node without waiting a whole
                    // interval.
                    end.welcome.push(ev.addr);
                }
                self.events.push_back(Event::Member(ev));
            }
            Effect::Relays { .. } => end.members_changed = true,
            Effect::Baton(ev) => {
                end.took |= matches!(
                    ev,
                    BatonEvent::Taken { .. } | BatonEvent::Started { .. } | BatonEvent::Regenerated { .. }
                );
                self.events.push_back(Event::Baton(ev));
            }
            Effect::AskViews => end.ask_views = true,
        }
    }
}
