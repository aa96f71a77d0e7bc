//! inbound: one datagram's path through a node: opened by the codec, its
//! sender admitted by the member table (or refused), then acted on by
//! message: heartbeats, leaves, probes and their answers, news, passes.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;

use super::outbound::reply_dest;
use super::rejections::Reason;
use super::{Dest, Node, Via};
use crate::core::membership::{Admit, Hello, MemberState};
use crate::core::wire::{self, Envelope, Heartbeat, Message, News, Rumor};

impl<R: Rng> Node<R> {
    /// One datagram received on `via` from `src`. Decrypts in place.
    pub fn handle(&mut self, now: Instant, via: Via, src: SocketAddr, datagram: &mut [u8]) {
        if self.left {
            return;
        }
        self.notice_stall(now);
        let env = match self.codec.open(datagram) {
            Ok(env) => env,
            Err(e) => return self.reject(now, src.ip(), Reason::Wire(e)),
        };
        if env.from == self.identity.name {
            if env.incarnation != self.identity.incarnation || !self.is_own(&env) {
                self.name_conflict(now, src.ip(), &env);
            }
            // Otherwise our own multicast, looped back for agents on this host.
            return;
        }
        let was_down = self
            .members
            .get(env.from)
            .is_some_and(|m| m.incarnation == env.incarnation && m.state == MemberState::Down);
        let hello = self.hello(via, src, &env);
        match self.members.admit(now, env.from, env.incarnation, env.seq, hello, &mut self.effects) {
            Admit::Accepted => self.accepted(now, via, src, &env, was_down),
            // Authenticated, but from no live member we know (a node that has
            // just left, or restarted and not yet heartbeated).
            Admit::Ignored => {
                self.handle_direct(now, via, src, &env);
            }
            Admit::Replay => self.reject(now, src.ip(), Reason::Replay),
            Admit::Stale => self.reject(now, src.ip(), Reason::Stale),
            Admit::Full => self.reject(now, src.ip(), Reason::TableFull),
        }
        self.drain(now);
    }

    /// The addresses a heartbeat gives its sender (what lets the member
    /// table create a member); `None` for other messages. The advertised IP
    /// is authenticated, the source is not. A heartbeat to the data port (a
    /// welcome, an answer) comes from the sender's data socket: its gossip
    /// address is the cluster's port at its IP, unless already known.
    fn hello(&self, via: Via, src: SocketAddr, env: &Envelope<'_>) -> Option<Hello> {
        let Message::Heartbeat(hb) = &env.msg else { return None };
        let ip = match hb.ip {
            ip if ip.is_unspecified() => src.ip(),
            ip => IpAddr::V4(ip),
        };
        let gossip_addr = match (via, hb.ip.is_unspecified()) {
            (Via::Gossip, true) => src,
            (Via::Gossip, false) => SocketAddr::new(ip, self.identity.gossip_port),
            (Via::Data, _) => self
                .members
                .get(env.from)
                .filter(|m| m.incarnation == env.incarnation)
                .map_or(SocketAddr::new(ip, self.identity.gossip_port), |m| m.gossip_addr),
        };
        Some(Hello { gossip_addr, data_addr: SocketAddr::new(ip, hb.data_port), relays: hb.relays })
    }

    /// A datagram from the current life of a live member: the versions it
    /// understands, a heal, its liveness for the failure detector; then its
    /// message.
    fn accepted(&mut self, now: Instant, via: Via, src: SocketAddr, env: &Envelope<'_>, was_down: bool) {
        self.members.understands(env.from, env.version);
        if let Message::Heartbeat(Heartbeat { understands: Some(v), .. }) = env.msg {
            self.members.understands(env.from, v);
        }
        if was_down {
            // Heard again after a partition: the whole other side
            // learns of this side from one heartbeat each.
            self.heartbeat_soon(now);
        }
        self.prober.heard(now, env.from, env.incarnation, &mut self.effects);
        if !self.handle_direct(now, via, src, env) {
            self.act(now, src, env);
        }
    }

    /// What is done for any authenticated, fresh datagram, member or not:
    /// probes are answered (a restarted node learns its RTT at once), passes
    /// taken (a node that just left hands its baton off), acks heard (they may
    /// come after the sender's leave). False for the other messages.
    fn handle_direct(&mut self, now: Instant, via: Via, src: SocketAddr, env: &Envelope<'_>) -> bool {
        match &env.msg {
            Message::Ping { .. } if self.settling_answered(now, src) => {}
            Message::Ping { token } => {
                let ack = Message::Ack { token: *token, wall_us: self.wall_us(now) };
                self.send_as(reply_dest(via, src), env.version, ack)
            }
            Message::Pass { id, counter, lap } => {
                let (relay, mut ctx) = self.relay_ctx(now);
                relay.on_pass(&mut ctx, src, *id, *counter, lap);
            }
            Message::PassAck(ack) => {
                let (relay, mut ctx) = self.relay_ctx(now);
                relay.on_ack(&mut ctx, env.from, *ack);
            }
            _ => return false,
        }
        true
    }

    /// What a member's message means beyond `handle_direct`'s.
    fn act(&mut self, now: Instant, src: SocketAddr, env: &Envelope<'_>) {
        match &env.msg {
            Message::Heartbeat(hb) => self.on_heartbeat(now, env, hb),
            Message::Leave => self.members.leave(now, env.from, &mut self.effects),
            // Liveness was recorded by `admit`; a link probe's ack also gives an RTT.
            Message::Ack { token, wall_us } => {
                let clocks = wall_us.zip(self.wall_us(now));
                self.links.on_ack(now, env.from, *token, clocks);
                self.prober.on_ack(now, env.from, *token, &mut self.effects);
            }
            Message::PingReq { token, target, incarnation } => {
                let target = self
                    .members
                    .get(target)
                    .filter(|m| m.incarnation == *incarnation && m.state.is_live())
                    .map(|m| (m.name.as_str(), m.data_addr));
                self.prober.on_ping_req(now, src, *token, target, &mut self.rng, &mut self.effects);
            }
            Message::IndirectAck { token, answered } => {
                self.prober.on_indirect_ack(now, *token, *answered, &mut self.effects);
            }
            Message::News(items) => self.on_news(now, items),
            // Handled by `handle_direct`.
            Message::Ping { .. } | Message::Pass { .. } | Message::PassAck(_) => {}
        }
    }

    /// A member's heartbeat: an answer if it asks for views this node knows
    /// better, the baton's floor and view, its heartbeat
    /// number (heartbeat loss), its health and links.
    fn on_heartbeat(&mut self, now: Instant, env: &Envelope<'_>, hb: &Heartbeat<'_>) {
        if hb.baton.is_some_and(|v| v.holding) {
            self.last_view_heard = Some(now);
        }
        if hb.asks_views
            && self.has_fresher_view(now, hb.baton)
            && let Some(addr) = self.members.get(env.from).map(|m| m.data_addr)
        {
            self.send_heartbeat_to(now, Dest::Data(addr));
        }
        if let Some(floor) = hb.floor {
            self.relay.raise_floor(floor);
        }
        if let Some(view) = hb.baton {
            self.relay.on_view(now, view, &mut self.effects);
            if view.holding && self.relay.best() == Some(view.id) {
                self.holder_hint = Some((env.from.to_owned(), now));
            }
        }
        self.links.on_heartbeat(env.from, env.incarnation, hb.hb_seq);
        if hb.health.is_some() || !hb.links.is_empty() {
            self.health_bytes.1 += wire::health_ext_len(hb.health.as_ref(), &hb.links) as u64;
            let (me, members) = (&self.identity.name, &self.members);
            let known = |n: &str| n == me || members.get(n).is_some();
            self.board.record(now, env.from, env.incarnation, hb.health.as_ref(), &hb.links, known);
        }
    }

    /// News of members from a peer's failure detector. News that this node
    /// is suspected or down is refuted at once with a heartbeat (Lifeguard's
    /// buddy system: the refutation is itself the evidence).
    fn on_news(&mut self, now: Instant, items: &[News<'_>]) {
        for n in items {
            let silent = Duration::from_millis(n.silent_ms.into());
            if n.name == self.identity.name {
                if n.incarnation == self.identity.incarnation && n.rumor != Rumor::Alive {
                    self.next_heartbeat = now;
                }
                continue;
            }
            match n.rumor {
                Rumor::Suspect => self.members.suspect(now, n.name, n.incarnation, silent, &mut self.effects),
                Rumor::Down => self.members.down(now, n.name, n.incarnation, silent, &mut self.effects),
                Rumor::Alive => self.members.alive(now, n.name, n.incarnation, &mut self.effects),
            }
        }
    }
}
