//! links: link health per peer. Records the failure detector's round probes
//! (`core::probe`: one ping per `probe_interval`, each peer in turn, so a
//! peer is probed by this node once every N - 1 intervals) and keeps the
//! last `window` probes of each peer; watches the sequence numbers of its
//! heartbeats. From these it derives, per peer: mean RTT, jitter (mean
//! absolute difference of consecutive RTTs, as RFC 3550 does), probe loss, and
//! heartbeat loss. The windows are counts, so the time they span grows with
//! the cluster: `window` × (N - 1) × `probe_interval` for probes.
//!
//! With wall clocks on both ends (the shell hands its own to the core; the
//! peer's comes in its ack), each answered probe also gives a clock offset
//! sample, as NTP does with the reply's time taken to be mid-way through the
//! round trip: peer's clock minus (our send + our receive) / 2. On a
//! symmetric link the error is half the difference of the two one-way
//! delays; the median over the window discards the odd delayed packet.
//!
//! A probe counts as lost once unanswered for [`Links::lost_after`]; younger
//! unanswered probes are pending and count neither way. A peer that is no
//! longer live, or comes back as a new life, starts from nothing.
//!
//! Must not: do I/O or read a clock; hold more than `window` probes and
//! `window` heartbeat numbers per member (the member table is capped).

use std::collections::{BTreeMap, VecDeque};

use std::time::{Duration, Instant};

use super::membership::Members;

#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    pub probe_interval: Duration,
    /// Probes (and heartbeat numbers) kept per peer.
    pub window: usize,
    /// Probe every live member each interval instead of one in turn, and
    /// judge nobody (`herd ping`: a brief guest measuring every link).
    pub sweep: bool,
}

/// Health of the link to one peer, over the window. `None` where there is
/// nothing to measure yet (no answered probe, fewer than two heartbeats).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStats {
    pub peer: String,
    pub rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub heartbeat_loss_pct: Option<f64>,
    /// Its clock minus ours, ms: the median of the window's samples. `None`
    /// when it sends no wall clock (it has none set) or we have none.
    pub clock_offset_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    token: u64,
    sent: Instant,
    /// Our wall clock when it was sent (µs since the Unix epoch).
    sent_wall: Option<i64>,
    rtt: Option<Duration>,
    /// Peer's clock minus ours, µs, from this probe's ack.
    offset_us: Option<i64>,
}

#[derive(Debug)]
struct Peer {
    incarnation: u64,
    probes: VecDeque<Probe>,
    /// Heartbeat sequence numbers received, oldest first.
    heartbeats: VecDeque<u32>,
}

#[derive(Debug)]
pub struct Links {
    cfg: LinkConfig,
    peers: BTreeMap<String, Peer>,
}

impl Links {
    pub fn new(cfg: LinkConfig) -> Links {
        Links { cfg, peers: BTreeMap::new() }
    }

    /// A new probe interval and window (a reload): what was measured is
    /// kept (a smaller window drops the oldest at the next probe).
    pub fn set_config(&mut self, cfg: LinkConfig) {
        self.cfg = cfg;
    }

    /// How long a probe may go unanswered before it counts as lost: one probe
    /// interval, but never under a second, so a slow Wi-Fi link is measured
    /// as slow rather than lossy.
    pub fn lost_after(&self) -> Duration {
        self.cfg.probe_interval.max(Duration::from_secs(1))
    }

    /// A probe (token) just sent to `name`'s life `incarnation`; a peer seen
    /// in a new life starts from nothing.
    pub fn probe_sent(
        &mut self,
        now: Instant,
        wall_us: Option<i64>,
        name: &str,
        incarnation: u64,
        token: u64,
    ) {
        let peer = self.peers.entry(name.to_owned()).or_insert_with(|| Peer {
            incarnation,
            probes: VecDeque::new(),
            heartbeats: VecDeque::new(),
        });
        if peer.incarnation != incarnation {
            *peer = Peer { incarnation, probes: VecDeque::new(), heartbeats: VecDeque::new() };
        }
        while peer.probes.len() >= self.cfg.window.max(1) {
            peer.probes.pop_front();
        }
        peer.probes.push_back(Probe { token, sent: now, sent_wall: wall_us, rtt: None, offset_us: None });
    }

    /// Forgets peers that are no longer live, or are a new life.
    pub fn retain_live(&mut self, members: &Members) {
        self.peers.retain(|name, p| {
            members.get(name).is_some_and(|m| m.state.is_live() && m.incarnation == p.incarnation)
        });
    }

    /// An ack from `from`, with (its wall clock in the ack, ours on
    /// receipt) when both are known; true if it answered one of our link
    /// probes.
    pub fn on_ack(&mut self, now: Instant, from: &str, token: u64, clocks: Option<(i64, i64)>) -> bool {
        let Some(peer) = self.peers.get_mut(from) else {
            return false;
        };
        match peer.probes.iter_mut().find(|p| p.token == token && p.rtt.is_none()) {
            Some(p) => {
                p.rtt = Some(now.saturating_duration_since(p.sent));
                p.offset_us = match (clocks, p.sent_wall) {
                    // In i128: a peer's clock is whatever it sends.
                    (Some((theirs, received)), Some(sent)) => {
                        let mid = (i128::from(sent) + i128::from(received)) / 2;
                        i64::try_from(i128::from(theirs) - mid).ok()
                    }
                    _ => None,
                };
                true
            }
            None => false,
        }
    }

    /// A heartbeat from a live member (already admitted).
    pub fn on_heartbeat(&mut self, from: &str, incarnation: u64, hb_seq: u32) {
        let Some(peer) = self.peers.get_mut(from) else {
            return;
        };
        if peer.incarnation != incarnation || peer.heartbeats.back().is_some_and(|&last| hb_seq <= last) {
            // Another life (handled at the next probe round) or a reordered
            // duplicate: not evidence about gaps.
            return;
        }
        while peer.heartbeats.len() >= self.cfg.window {
            peer.heartbeats.pop_front();
        }
        peer.heartbeats.push_back(hb_seq);
    }

    /// The statistics of every peer being probed, in name order.
    pub fn stats(&self, now: Instant) -> Vec<LinkStats> {
        let lost_after = self.lost_after();
        self.peers
            .iter()
            .map(|(name, p)| {
                let rtts: Vec<f64> = p.probes.iter().filter_map(|q| q.rtt).map(ms).collect();
                let settled =
                    p.probes.iter().filter(|q| q.rtt.is_some() || now >= q.sent + lost_after).count();
                let lost = p.probes.iter().filter(|q| q.rtt.is_none() && now >= q.sent + lost_after).count();
                let rtt_ms = (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / rtts.len() as f64);
                let jitter_ms = (rtts.len() >= 2).then(|| {
                    rtts.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (rtts.len() - 1) as f64
                });
                let loss_pct = (settled > 0).then(|| 100.0 * lost as f64 / settled as f64);
                let heartbeat_loss_pct = match (p.heartbeats.front(), p.heartbeats.back()) {
                    (Some(&first), Some(&last)) if last > first => {
                        let expected = f64::from(last - first) + 1.0;
                        Some(100.0 * (expected - p.heartbeats.len() as f64) / expected)
                    }
                    _ => None,
                };
                let mut offsets: Vec<i64> = p.probes.iter().filter_map(|q| q.offset_us).collect();
                offsets.sort_unstable();
                let clock_offset_ms = match offsets.len() {
                    0 => None,
                    n if n % 2 == 1 => Some(offsets[n / 2] as f64 / 1000.0),
                    n => Some((i128::from(offsets[n / 2 - 1]) + i128::from(offsets[n / 2])) as f64 / 2000.0),
                };
                LinkStats {
                    peer: name.clone(),
                    rtt_ms,
                    jitter_ms,
                    loss_pct,
                    heartbeat_loss_pct,
                    clock_offset_ms,
                }
            })
            .collect()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::effects::Effects;
    use crate::core::membership::{Hello, Timing};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::net::SocketAddr;

    const SECOND: Duration = Duration::from_secs(1);

    fn setup(window: usize) -> (Instant, Members, Links, SmallRng) {
        let t0 = Instant::now();
        let timing = Timing { settle: 3 * SECOND };
        let mut members = Members::new(8, timing);
        let addr: SocketAddr = "10.0.0.2:45893".parse().unwrap();
        let hello = Hello { gossip_addr: addr, data_addr: addr, relays: true };
        members.admit(t0, "psb", 7, 1, Some(hello), &mut Effects::default());
        let links = Links::new(LinkConfig { probe_interval: SECOND, window, sweep: false });
        (t0, members, links, SmallRng::seed_from_u64(1))
    }

    /// Probes psb at `at` and answers it after `rtt` (or never), as the
    /// failure detector's round does. (The member table's own timeouts are
    /// never run here, so psb stays alive.)
    fn round(links: &mut Links, members: &Members, rng: &mut SmallRng, at: Instant, rtt: Option<u64>) {
        links.retain_live(members);
        let m = members.get("psb").expect("psb");
        let token = rng.next_u64();
        links.probe_sent(at, None, "psb", m.incarnation, token);
        if let Some(ms) = rtt {
            assert!(links.on_ack(at + Duration::from_millis(ms), "psb", token, None));
        }
    }

    #[test]
    fn known_rtts_and_losses_give_mean_jitter_and_loss() {
        let (t0, members, mut links, mut rng) = setup(60);
        // RTTs 10, 20, lost, 40, 10 ms: mean 20, jitter (10 + 20 + 30) / 3 = 20, loss 1 / 5.
        for (i, rtt) in [Some(10), Some(20), None, Some(40), Some(10)].into_iter().enumerate() {
            round(&mut links, &members, &mut rng, t0 + SECOND * (i as u32 + 1), rtt);
        }
        let at = t0 + 7 * SECOND;
        let s = &links.stats(at)[0];
        assert_eq!(s.peer, "psb");
        assert!((s.rtt_ms.unwrap() - 20.0).abs() < 1e-9, "{s:?}");
        assert!((s.jitter_ms.unwrap() - 20.0).abs() < 1e-9, "{s:?}");
        assert!((s.loss_pct.unwrap() - 20.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn a_pending_probe_is_not_yet_lost_and_the_window_slides() {
        let (t0, members, mut links, mut rng) = setup(3);
        round(&mut links, &members, &mut rng, t0 + SECOND, None);
        // Just sent and unanswered: pending, so no loss figure yet.
        assert_eq!(links.stats(t0 + SECOND).first().unwrap().loss_pct, None);
        assert_eq!(links.stats(t0 + 2 * SECOND).first().unwrap().loss_pct, Some(100.0));
        // Three good probes push the lost one out of a window of 3.
        for i in 2..5 {
            round(&mut links, &members, &mut rng, t0 + SECOND * i, Some(5));
        }
        let s = &links.stats(t0 + 5 * SECOND)[0];
        assert_eq!(s.loss_pct, Some(0.0));
        assert_eq!(s.jitter_ms, Some(0.0));
        assert!((s.rtt_ms.unwrap() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn heartbeat_gaps_give_heartbeat_loss_and_a_new_life_starts_fresh() {
        let (t0, mut members, mut links, mut rng) = setup(60);
        round(&mut links, &members, &mut rng, t0 + SECOND, Some(1));
        // Heartbeats 1..=10 with 3 and 7 missing: 2 of 10 lost.
        for seq in (1..=10).filter(|s| *s != 3 && *s != 7) {
            links.on_heartbeat("psb", 7, seq);
        }
        assert_eq!(links.stats(t0 + SECOND)[0].heartbeat_loss_pct, Some(20.0));
        // Restarted (incarnation 8): the next round forgets the old life.
        let addr: SocketAddr = "10.0.0.2:45893".parse().unwrap();
        let hello = Hello { gossip_addr: addr, data_addr: addr, relays: true };
        members.admit(t0 + 2 * SECOND, "psb", 8, 1, Some(hello), &mut Effects::default());
        links.retain_live(&members);
        links.probe_sent(t0 + 2 * SECOND, None, "psb", 8, rng.next_u64());
        let s = &links.stats(t0 + 2 * SECOND)[0];
        assert_eq!((s.rtt_ms, s.heartbeat_loss_pct), (None, None));
    }

    #[test]
    fn a_peer_that_is_gone_is_forgotten() {
        let (t0, mut members, mut links, mut rng) = setup(60);
        round(&mut links, &members, &mut rng, t0 + SECOND, Some(3));
        members.leave(t0 + SECOND, "psb", &mut Effects::default());
        links.retain_live(&members);
        assert!(links.stats(t0 + 2 * SECOND).is_empty());
    }
}
