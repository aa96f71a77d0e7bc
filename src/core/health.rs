//! health: the compact summary of a node's health and of its links that
//! rides in its heartbeats, so every node can show the whole cluster
//! (`/status` `health` and `links`, `herd status --cluster`, the page).
//!
//! Everything is in small integer units, as it goes on the wire: tenths of a
//! degree, hundredths of load, hundredths of a millisecond. A field the node has
//! no sensor for is absent (`None`), never a made-up zero, as in the metrics.
//! The shell fills a [`Health`] from its sensors; `wire` encodes and decodes
//! it with the heartbeat (its bytes are drawn there, in `wire::heartbeat`);
//! the core keeps what peers sent (see [`Board`]).
//!
//! Owns: the summary's types, their units and limits, and the board of what
//! members gossiped. Must not: read sensors, do I/O.

use std::time::Instant;

/// Live throttle bits, as the firmware's `get_throttled` numbers them (bits 0-3).
pub const UNDER_VOLTAGE: u8 = 1 << 0;
pub const FREQ_CAPPED: u8 = 1 << 1;
pub const THROTTLED: u8 = 1 << 2;
pub const SOFT_TEMP_LIMIT: u8 = 1 << 3;

/// Longest version string carried; a longer one is cut.
pub const MAX_VERSION: usize = 32;
/// Stands for "no RTT" on the wire; RTTs are capped one below (655.34 ms).
pub const MAX_RTT_CMS: u16 = u16::MAX;

/// One node's health, as its heartbeats carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// The highest temperature of its sensors, in tenths of a °C.
    pub temp_dc: Option<i16>,
    /// Live throttle bits ([`UNDER_VOLTAGE`], ...).
    pub throttle: Option<u8>,
    /// 1-minute load average, in hundredths.
    pub load1_c: Option<u16>,
    pub mem_used_pct: Option<u8>,
    /// The fastest fan, in RPM.
    pub fan_rpm: Option<u16>,
    pub root_readonly: Option<bool>,
    pub clock_synced: Option<bool>,
    pub uptime_s: Option<u32>,
    /// herd's version on that node (at most [`MAX_VERSION`] bytes).
    pub version: String,
}

impl Health {
    pub fn temp_c(&self) -> Option<f64> {
        self.temp_dc.map(|t| f64::from(t) / 10.0)
    }

    pub fn load1(&self) -> Option<f64> {
        self.load1_c.map(|l| f64::from(l) / 100.0)
    }
}

/// What a node measured of its link to one peer (over its probe window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLink<'a> {
    pub peer: &'a str,
    /// Mean RTT in hundredths of a millisecond (at most 655.34 ms: a Pi's
    /// LAN is well under one, loopback a few hundredths); `None` when no
    /// probe of the window was answered.
    pub rtt_cms: Option<u16>,
    pub loss_pct: u8,
}

impl PeerLink<'_> {
    /// Hundredths of a millisecond from milliseconds, saturating.
    pub fn rtt_from_ms(ms: f64) -> u16 {
        (ms * 100.0).round().clamp(0.0, f64::from(MAX_RTT_CMS - 1)) as u16
    }

    pub fn rtt_ms(&self) -> Option<f64> {
        self.rtt_cms.map(|r| f64::from(r) / 100.0)
    }
}

/// A link as a peer reported it, with when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    pub rtt_cms: Option<u16>,
    pub loss_pct: u8,
    pub at: Instant,
}

/// What one member's heartbeats last said of its health and links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gossiped {
    /// The life it was heard from: a new life starts an empty entry.
    pub incarnation: u64,
    /// When its health was last heard (`None`: none heard yet).
    pub at: Option<Instant>,
    pub health: Option<Health>,
    /// Its links, sorted by peer: each heartbeat carries some of them (the
    /// node rotates through its peers), so they are kept one by one.
    pub links: Vec<(String, Reported)>,
}

/// The health and links every member gossiped: the cluster's view of itself,
/// as this node has heard it.
///
/// Sorted vectors rather than maps: at most `max_members` entries, looked up
/// a few times per heartbeat, and a smaller binary than another map type.
#[derive(Debug, Default)]
pub struct Board {
    members: Vec<(String, Gossiped)>,
}

impl Board {
    /// Takes what a heartbeat of `name` (life `incarnation`) carried, of its
    /// links only those to peers `known` says yes to (members and this
    /// node): the board stays as small as the member table, whatever a
    /// peer sends.
    pub fn record(
        &mut self,
        now: Instant,
        name: &str,
        incarnation: u64,
        health: Option<&Health>,
        links: &[PeerLink<'_>],
        known: impl Fn(&str) -> bool,
    ) {
        let empty = || Gossiped { incarnation, at: None, health: None, links: Vec::new() };
        let at = match self.members.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.members.insert(i, (name.to_owned(), empty()));
                i
            }
        };
        let entry = &mut self.members[at].1;
        if entry.incarnation > incarnation {
            return;
        }
        if entry.incarnation < incarnation {
            *entry = empty();
        }
        if let Some(h) = health {
            entry.health = Some(h.clone());
            entry.at = Some(now);
        }
        for l in links.iter().filter(|l| l.peer != name && known(l.peer)) {
            let r = Reported { rtt_cms: l.rtt_cms, loss_pct: l.loss_pct, at: now };
            match entry.links.binary_search_by(|(p, _)| p.as_str().cmp(l.peer)) {
                Ok(i) => entry.links[i].1 = r,
                Err(i) => entry.links.insert(i, (l.peer.to_owned(), r)),
            }
        }
    }

    /// Forgets members `keep` says no to (gone from the member table) and,
    /// in every entry, links to them (`keep` must say yes to this node).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.members.retain(|(name, _)| keep(name));
        for (_, g) in &mut self.members {
            g.links.retain(|(peer, _)| keep(peer));
        }
    }

    pub fn get(&self, name: &str) -> Option<&Gossiped> {
        let i = self.members.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok()?;
        Some(&self.members[i].1)
    }

    /// Every member's entry, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Gossiped)> {
        self.members.iter().map(|(n, g)| (n.as_str(), g))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Pi 4's health, for tests here and of its bytes (`wire`).
    pub(crate) fn pi4() -> Health {
        Health {
            temp_dc: Some(483),
            throttle: Some(UNDER_VOLTAGE | THROTTLED),
            load1_c: Some(47),
            mem_used_pct: Some(27),
            fan_rpm: None,
            root_readonly: Some(false),
            clock_synced: Some(true),
            uptime_s: Some(3600),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn the_board_keeps_links_to_known_nodes_only_and_starts_a_new_life_afresh() {
        let now = Instant::now();
        let mut board = Board::default();
        let links = [
            PeerLink { peer: "psa", rtt_cms: Some(30), loss_pct: 0 },
            PeerLink { peer: "stranger", rtt_cms: Some(30), loss_pct: 0 },
            PeerLink { peer: "psb", rtt_cms: Some(40), loss_pct: 0 },
        ];
        let known = |n: &str| n != "stranger";
        board.record(now, "psb", 2, Some(&pi4()), &links, known);
        let g = board.get("psb").unwrap();
        let peers: Vec<&str> = g.links.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(peers, ["psa"], "not to strangers, not to itself");
        board.record(now, "psb", 1, None, &links, known);
        assert_eq!(board.get("psb").unwrap().incarnation, 2, "an older life is ignored");
        board.record(now, "psb", 3, None, &[], known);
        let g = board.get("psb").unwrap();
        assert_eq!((g.incarnation, g.health.as_ref(), g.links.len()), (3, None, 0));
        board.retain(|n| n != "psb");
        assert!(board.get("psb").is_none());
    }
}
