//! gossip: what a node tells the cluster, and when: heartbeats (the
//! schedule of the start, the refreshes, welcomes and answers to a peer, the
//! holder's announcements), the wire version of each datagram, fan-out to the
//! group or every peer, the failure detector's news and what is done with
//! news from others, and the switch between this release's ways and the
//! previous release's (see the module doc of `core::node`).

use super::*;
use crate::core::links::LinkStats;
use crate::core::membership::Timing;
use crate::core::probe::{ProbeConfig, Rumored, Verdict};
use crate::core::wire::{News, Rumor, Sighting};

impl<R: Rng> Node<R> {
    /// Brings the next heartbeat forward to now, but no closer than a quarter
    /// interval after the previous one, so a burst of joins is not a storm.
    pub(super) fn heartbeat_soon(&mut self, now: Instant) {
        let earliest = self.last_heartbeat.map_or(now, |t| t + self.cfg.heartbeat_interval / 4);
        self.next_heartbeat = self.next_heartbeat.min(earliest.max(now));
    }

    /// News of members from a peer's failure detector. News that this node
    /// is suspected or down is refuted at once with a heartbeat (Lifeguard's
    /// buddy system: the refutation is itself the evidence).
    pub(super) fn on_news(&mut self, now: Instant, items: &[News<'_>], changes: &mut Vec<MemberEvent>) {
        for n in items {
            let silent = Duration::from_millis(n.silent_ms.into());
            if n.name == self.cfg.name {
                if n.incarnation == self.cfg.incarnation && n.rumor != Rumor::Alive {
                    self.next_heartbeat = now;
                }
                continue;
            }
            match n.rumor {
                Rumor::Suspect => self.members.suspect(now, n.name, n.incarnation, silent, changes),
                Rumor::Down => self.members.down(now, n.name, n.incarnation, silent, changes),
                Rumor::Alive => self.members.alive(now, n.name, n.incarnation, changes),
            }
        }
    }

    /// This node knows the baton better than `theirs` (a peer asking before
    /// it regenerates): it holds it, knows a greater one or a higher
    /// counter, or saw it alive a quarter interval more recently.
    pub(super) fn has_fresher_view(&self, now: Instant, theirs: Option<wire::BatonView>) -> bool {
        let Some(mine) = self.relay.view(now) else { return false };
        let Some(theirs) = theirs else { return true };
        let slack = self.cfg.heartbeat_interval.as_millis() as u32 / 4;
        mine.holding
            || mine.id > theirs.id
            || mine.counter > theirs.counter
            || (mine.id == theirs.id && mine.age_ms.saturating_add(slack) < theirs.age_ms)
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
        if !out.news.is_empty() && !self.legacy {
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

    /// Whether a live member speaks only the previous version; switches the
    /// member table and the relay to match (module doc).
    pub(super) fn update_mode(&mut self, now: Instant) {
        let legacy = self.members.live().any(|m| m.wire < VERSION);
        if legacy != self.legacy {
            self.legacy = legacy;
            self.members.set_silence(now, legacy);
            self.relay.ask_first = !legacy;
            if legacy {
                self.next_heartbeat = self.next_heartbeat.min(now);
            }
        }
    }

    /// The scheduled heartbeat, to the whole cluster.
    pub(super) fn send_heartbeat(&mut self, now: Instant) {
        self.send_heartbeat_as(now, None, false);
    }

    /// A heartbeat to one peer (a welcome, an answer): it carries the
    /// current heartbeat number, so the cluster sees no gap for it.
    pub(super) fn send_heartbeat_to(&mut self, now: Instant, dest: Dest) {
        self.send_heartbeat_as(now, Some(dest), false);
    }

    pub(super) fn send_heartbeat_as(&mut self, now: Instant, to: Option<Dest>, asks_views: bool) {
        if to.is_none() {
            self.hb_seq = self.hb_seq.wrapping_add(1);
        }
        let version = match to {
            Some(Dest::Data(addr)) => self.version_for(addr),
            _ => self.group_version(),
        };
        let holding = self.relay.holding().is_some();
        // Health and links go in every heartbeat but the urgent ask for
        // views, and only where they are understood (not to the previous
        // release's members, whose heartbeats carry sightings instead).
        // Links (the bulk) go at most once a refresh period to the whole
        // cluster, whatever sends the heartbeat (the holder's announcements
        // push the refresh out), and in every welcome.
        let full = !asks_views && !self.legacy && version >= 3;
        let refresh = self.refresh_every();
        let links_due = to.is_some() || self.last_links.is_none_or(|t| now >= t + refresh.mul_f64(0.8));
        let health = if full { self.health.clone() } else { None };
        let stats = if full && links_due { self.link_stats(now) } else { Vec::new() };
        // Only what goes to the whole cluster moves the rotation on: a
        // welcome's links are the newcomer's alone.
        let mut cursor = self.links_cursor;
        let links = links_to_send(&mut cursor, &stats);
        if to.is_none() {
            self.links_cursor = cursor;
        }
        if to.is_none() && !links.is_empty() {
            self.last_links = Some(now);
        }
        if full {
            let me = &self.cfg.name;
            self.board.retain(|name| name == me || self.members.get(name).is_some());
            let len = wire::health_ext_len(health.as_ref(), &links) as u64;
            let copies = match (to, self.cfg.fanout) {
                (None, Fanout::Unicast) => self.members.live().count().max(1) as u64,
                _ => 1,
            };
            self.health_bytes.0 += len * copies;
        }
        let live: Vec<_> = self.members.live().collect();
        let mut sightings = Vec::new();
        let mut budget = wire::SIGHTINGS_BUDGET;
        if !live.is_empty() && self.legacy {
            let start = self.sighting_cursor % live.len();
            for m in live.iter().cycle().skip(start).take(live.len()) {
                let len = wire::sighting_len(&m.name);
                if len > budget || sightings.len() == u8::MAX as usize {
                    break;
                }
                budget -= len;
                let age = now.saturating_duration_since(m.last_heard).as_millis();
                sightings.push(Sighting {
                    name: &m.name,
                    incarnation: m.incarnation,
                    age_ms: age.min(u32::MAX as u128) as u32,
                });
            }
            self.sighting_cursor = start + sightings.len();
        }
        let hb = Message::Heartbeat(Heartbeat {
            data_port: self.cfg.data_port,
            ip: self.cfg.ip,
            hb_seq: self.hb_seq,
            relays: self.relay.enabled(),
            baton: self.relay.view(now),
            sightings,
            understands: Some(VERSION),
            floor: Some(self.relay.floor()),
            asks_views: asks_views && !self.legacy,
            health,
            links,
        });
        let payload = encode(&self.codec, &self.cfg, &mut self.seq, version, hb);
        if holding {
            self.last_view_heard = Some(now);
        }
        if let Some(dest) = to {
            return self.outbox.push_back(Transmit { dest, payload });
        }
        if self.own_ips.len() == OWN_HEARTBEATS {
            self.own_ips.pop_front();
        }
        self.own_ips.push_back(self.cfg.ip);
        self.fan_out_payload(payload);
        self.probe_versions();
        self.last_heartbeat = Some(now);
        // Up to 10 % early, never late: keeps peers' suspicion deadlines safe
        // while keeping agents started together from heartbeating in lockstep.
        let interval = if self.legacy || self.burst > 0 {
            self.burst = self.burst.saturating_sub(1);
            self.cfg.heartbeat_interval
        } else {
            self.refresh_every()
        };
        let jitter = interval.mul_f64(self.rng.random_range(0.0..0.1));
        self.next_heartbeat = now + interval - jitter;
    }

    /// How often a node heartbeats without silence: every
    /// [`REFRESH_INTERVALS`] intervals, or N / 2 (the cluster receives the
    /// same bytes per node at any size).
    pub(super) fn refresh_every(&self) -> Duration {
        let n = self.cluster_size() as u32;
        self.cfg.heartbeat_interval * REFRESH_INTERVALS.max(n / 2)
    }

    /// The version of what goes to the whole cluster: [`VERSION`] when every
    /// live member understands it (and there is one), else [`MIN_VERSION`].
    pub(super) fn group_version(&self) -> u8 {
        let mut live = self.members.live().peekable();
        let all_new = live.peek().is_some() && live.all(|m| m.wire >= VERSION);
        if all_new { VERSION } else { MIN_VERSION }
    }

    /// The version for unicast to `addr`: what the live member there
    /// understands, at most [`VERSION`]; [`MIN_VERSION`] for anyone else.
    pub(super) fn version_for(&self, addr: SocketAddr) -> u8 {
        self.members.live().find(|m| m.data_addr == addr).map_or(MIN_VERSION, |m| self.wire_for(m))
    }

    /// One probe in [`VERSION`] to each live member heard only in older
    /// versions, once per life: it answers in kind if it understands.
    pub(super) fn probe_versions(&mut self) {
        let due: Vec<(String, SocketAddr)> = self
            .members
            .live()
            .filter(|m| m.wire < VERSION && !m.wire_probed)
            .map(|m| (m.name.clone(), m.data_addr))
            .collect();
        for (name, addr) in due {
            self.members.wire_probed(&name);
            let token = self.rng.next_u64();
            self.send_as(Dest::Data(addr), VERSION, Message::Ping { token });
        }
    }

    /// Sends `msg` in the version `dest` understands.
    pub(super) fn send(&mut self, dest: Dest, msg: Message<'_>) {
        let version = match dest {
            Dest::Data(addr) => self.version_for(addr),
            Dest::Group | Dest::Gossip(_) => self.group_version(),
        };
        self.send_as(dest, version, msg);
    }

    pub(super) fn send_as(&mut self, dest: Dest, version: u8, msg: Message<'_>) {
        let payload = encode(&self.codec, &self.cfg, &mut self.seq, version, msg);
        self.outbox.push_back(Transmit { dest, payload });
    }

    pub(super) fn fan_out(&mut self, msg: Message<'_>) {
        let version = self.group_version();
        let payload = encode(&self.codec, &self.cfg, &mut self.seq, version, msg);
        self.fan_out_payload(payload);
    }

    pub(super) fn fan_out_payload(&mut self, payload: Vec<u8>) {
        match self.cfg.fanout {
            Fanout::Group => self.outbox.push_back(Transmit { dest: Dest::Group, payload }),
            Fanout::Unicast => {
                let mut targets: Vec<SocketAddr> = self.seeds.clone();
                targets.extend(self.members.live().map(|m| m.gossip_addr));
                targets.sort_unstable();
                targets.dedup();
                for addr in targets {
                    self.outbox.push_back(Transmit { dest: Dest::Gossip(addr), payload: payload.clone() });
                }
            }
        }
    }
}

/// The links the next heartbeat carries: up to [`LINKS_PER_HEARTBEAT`]
/// and [`LINKS_BUDGET`] bytes, from where the previous one stopped, so a
/// cluster too big for one heartbeat still hears every link in turn.
pub(super) fn links_to_send<'s>(cursor: &mut usize, stats: &'s [LinkStats]) -> Vec<PeerLink<'s>> {
    let measured: Vec<&LinkStats> = stats.iter().filter(|s| s.loss_pct.is_some()).collect();
    if measured.is_empty() {
        return Vec::new();
    }
    let start = *cursor % measured.len();
    let mut budget = LINKS_BUDGET;
    let mut links = Vec::new();
    for s in measured.iter().cycle().skip(start).take(measured.len().min(LINKS_PER_HEARTBEAT)) {
        let len = wire::link_len(&s.peer);
        if len > budget {
            break;
        }
        budget -= len;
        links.push(PeerLink {
            peer: &s.peer,
            rtt_cms: s.rtt_ms.map(PeerLink::rtt_from_ms),
            loss_pct: s.loss_pct.map_or(0, |l| l.round().clamp(0.0, 100.0) as u8),
        });
    }
    *cursor = start + links.len();
    links
}

/// Most links one heartbeat carries.
pub(super) const LINKS_PER_HEARTBEAT: usize = 32;
/// Bytes of links one heartbeat carries at most: with health (at most
/// [`wire::MAX_HEALTH_EXT`] bytes) and the rest of a sealed heartbeat (at
/// most [`wire::heartbeat_len`] bytes) it stays under 1,000 bytes, far from [`wire::MAX_DATAGRAM`]. 32 links to peers with names of up to 16 bytes fit.
pub(super) const LINKS_BUDGET: usize = 640;

/// Every datagram gets the next `seq`: the replay window and the nonce rely on
/// it never repeating within this life.
pub(super) fn encode(
    codec: &Codec,
    cfg: &NodeConfig,
    seq: &mut u64,
    version: u8,
    msg: Message<'_>,
) -> Vec<u8> {
    *seq += 1;
    let env = Envelope {
        version,
        cluster: &cfg.cluster,
        from: &cfg.name,
        incarnation: cfg.incarnation,
        seq: *seq,
        msg,
    };
    codec.encode(&env)
}

/// The member table's timings, from the node's config.
pub(super) fn member_timing(cfg: &NodeConfig, timings: Timings) -> Timing {
    Timing {
        suspect_after: cfg.suspect_after,
        down_after: cfg.down_after,
        probe_every: timings.probe_every,
        settle: cfg.down_after.saturating_sub(cfg.suspect_after) + cfg.links.probe_interval * 2,
    }
}

pub(super) fn probe_config(cfg: &NodeConfig) -> ProbeConfig {
    ProbeConfig {
        period: cfg.links.probe_interval,
        suspect_after: cfg.suspect_after,
        down_after: cfg.down_after,
        sweep: cfg.links.sweep,
    }
}
