//! heartbeat: what a node tells the whole cluster, and when. The schedule
//! (a burst at start, then a refresh every [`REFRESH_INTERVALS`] intervals or
//! N / 2, brought forward for news that cannot wait), a heartbeat's content
//! (addresses, relay flag, baton view, health and a rotating share of the
//! links), and the unicast ones: a welcome to a newcomer, an answer to a
//! peer that asks for views.

use std::time::{Duration, Instant};

use rand::{Rng, RngExt};

use super::outbound::encode;
use super::{Dest, Fanout, Node, Transmit};
use crate::core::health::{Health, PeerLink};
use crate::core::links::LinkStats;
use crate::core::wire::{self, Heartbeat, Message, VERSION};

/// Heartbeats to the cluster remembered to recognise this node's own when
/// they loop back (they do within milliseconds; a heartbeat goes out at most
/// every quarter interval or so).
pub(super) const OWN_HEARTBEATS: usize = 8;
/// Heartbeats a node sends an interval apart when it starts, so that one
/// lost datagram does not hide it for a whole refresh period.
pub(super) const START_BURST: u8 = 3;
/// A heartbeat is sent at least every this many intervals
/// (or N / 2, whichever is more: the cluster receives the same bytes per
/// node at any size).
pub(super) const REFRESH_INTERVALS: u32 = 10;

impl<R: Rng> Node<R> {
    /// Brings the next heartbeat forward to now, but no closer than a quarter
    /// interval after the previous one, so a burst of joins is not a storm.
    pub(super) fn heartbeat_soon(&mut self, now: Instant) {
        let earliest = self.last_heartbeat.map_or(now, |t| t + self.tuning.heartbeat_interval / 4);
        self.next_heartbeat = self.next_heartbeat.min(earliest.max(now));
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

    /// A heartbeat to `to`, or to the whole cluster (`None`: the next in
    /// the schedule); `asks_views`: the urgent ask for the baton's views
    /// before regenerating it.
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
        // views.
        let full = !asks_views;
        let health = if full { self.health.clone() } else { None };
        let stats = if full && self.links_due(now, to) { self.link_stats(now) } else { Vec::new() };
        let links = self.rotate_links(now, to, &stats);
        if full {
            self.count_health_sent(to, health.as_ref(), &links);
        }
        let hb = Message::Heartbeat(Heartbeat {
            data_port: self.identity.data_port,
            ip: self.identity.ip,
            hb_seq: self.hb_seq,
            relays: self.relay.enabled(),
            baton: self.relay.view(now),
            sightings: Vec::new(),
            understands: Some(VERSION),
            floor: Some(self.relay.floor()),
            asks_views,
            health,
            links,
        });
        let payload = encode(&self.codec, &self.identity, &mut self.seq, version, hb, Vec::new());
        if holding {
            self.last_view_heard = Some(now);
        }
        match to {
            Some(dest) => self.outbox.push_back(Transmit { dest, payload }),
            None => self.heartbeat_to_cluster(now, payload),
        }
    }

    /// A heartbeat to the whole cluster, sealed: remembered as this node's
    /// own (it loops back), sent, and the next one scheduled.
    fn heartbeat_to_cluster(&mut self, now: Instant, payload: Vec<u8>) {
        if self.own_ips.len() == OWN_HEARTBEATS {
            self.own_ips.pop_front();
        }
        self.own_ips.push_back(self.identity.ip);
        self.fan_out_payload(payload);
        self.probe_versions();
        self.last_heartbeat = Some(now);
        // Up to 10 % early, never late: keeps peers' suspicion deadlines safe
        // while keeping agents started together from heartbeating in lockstep.
        let interval = if self.burst > 0 {
            self.burst = self.burst.saturating_sub(1);
            self.tuning.heartbeat_interval
        } else {
            self.refresh_every()
        };
        let jitter = interval.mul_f64(self.rng.random_range(0.0..0.1));
        self.next_heartbeat = now + interval - jitter;
    }

    /// Links (the bulk of a heartbeat) go at most once a refresh period to
    /// the whole cluster, whatever sends the heartbeat (the holder's
    /// announcements push the refresh out), and in every welcome.
    fn links_due(&self, now: Instant, to: Option<Dest>) -> bool {
        to.is_some() || self.last_links.is_none_or(|t| now >= t + self.refresh_every().mul_f64(0.8))
    }

    /// The links a heartbeat carries, from where the cluster's last one
    /// stopped. Only what goes to the whole cluster moves the rotation on: a
    /// welcome's links are the newcomer's alone.
    fn rotate_links<'s>(
        &mut self,
        now: Instant,
        to: Option<Dest>,
        stats: &'s [LinkStats],
    ) -> Vec<PeerLink<'s>> {
        let mut cursor = self.links_cursor;
        let links = links_to_send(&mut cursor, stats);
        if to.is_none() {
            self.links_cursor = cursor;
            if !links.is_empty() {
                self.last_links = Some(now);
            }
        }
        links
    }

    /// Counts the bytes of health and links a heartbeat sends (a copy per
    /// live member with unicast fan-out), and forgets what the board holds
    /// of members that are gone.
    fn count_health_sent(&mut self, to: Option<Dest>, health: Option<&Health>, links: &[PeerLink<'_>]) {
        let me = &self.identity.name;
        self.board.retain(|name| name == me || self.members.get(name).is_some());
        let len = wire::health_ext_len(health, links) as u64;
        let copies = match (to, self.identity.fanout) {
            (None, Fanout::Unicast) => self.members.live().count().max(1) as u64,
            _ => 1,
        };
        self.health_bytes.0 += len * copies;
    }

    /// How often a node heartbeats when nothing brings one forward: every
    /// [`REFRESH_INTERVALS`] intervals, or N / 2 (the cluster receives the
    /// same bytes per node at any size).
    pub(super) fn refresh_every(&self) -> Duration {
        let n = self.cluster_size() as u32;
        self.tuning.heartbeat_interval * REFRESH_INTERVALS.max(n / 2)
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
/// most [`wire::heartbeat_len`] bytes) it stays under 1,000 bytes, far from
/// [`wire::MAX_DATAGRAM`]. 32 links to peers with names of up to 16 bytes
/// fit.
pub(super) const LINKS_BUDGET: usize = 640;
