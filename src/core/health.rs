//! health: the compact summary of a node's health and of its links that
//! rides in its heartbeats, so every node can show the whole cluster
//! (`/status` `health` and `links`, `herd status --cluster`, the page).
//!
//! Everything is in small integer units, as it goes on the wire: tenths of a
//! degree, hundredths of load, hundredths of a millisecond. A field the node has
//! no sensor for is absent (`None`), never a made-up zero, as in the metrics.
//!
//! ```text
//! health   present u8 | bits u8 | temp_dc i16 | throttle u8 | load1_c u16 |
//!          mem_used_pct u8 | fan_rpm u16 | uptime_s u32 | version str8
//! link     peer str8 | rtt_cms u16 | loss_pct u8
//! ```
//! `present` says which of the fields are set (bit per field, in order:
//! temperature, throttle, load, memory, fan, root read-only, clock synced,
//! uptime); `bits` holds the two booleans (bit 0 root read-only, bit 1 clock
//! synced). The shell fills a [`Health`] from its sensors; the core encodes,
//! decodes and keeps what peers sent (see `node::Gossiped`).
//!
//! Owns: the summary's types and their bytes. Must not: read sensors, do
//! I/O, panic on any input (property-tested with the wire in `tests/wire.rs`).

use std::time::Instant;

use super::wire;

/// Live throttle bits, as the firmware's `get_throttled` numbers them (bits 0-3).
pub const UNDER_VOLTAGE: u8 = 1 << 0;
pub const FREQ_CAPPED: u8 = 1 << 1;
pub const THROTTLED: u8 = 1 << 2;
pub const SOFT_TEMP_LIMIT: u8 = 1 << 3;

/// The fixed part of an encoded [`Health`]: everything but the version's bytes.
pub const HEALTH_LEN: usize = 14;
/// Longest version string carried; a longer one is cut.
pub const MAX_VERSION: usize = 32;
/// Stands for "no RTT" on the wire; RTTs are capped one below (655.34 ms).
pub const MAX_RTT_CMS: u16 = u16::MAX;

const P_TEMP: u8 = 1 << 0;
const P_THROTTLE: u8 = 1 << 1;
const P_LOAD: u8 = 1 << 2;
const P_MEM: u8 = 1 << 3;
const P_FAN: u8 = 1 << 4;
const P_ROOT_RO: u8 = 1 << 5;
const P_CLOCK: u8 = 1 << 6;
const P_UPTIME: u8 = 1 << 7;
const B_ROOT_RO: u8 = 1 << 0;
const B_CLOCK: u8 = 1 << 1;

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

    /// Bytes this takes on the wire.
    pub fn encoded_len(&self) -> usize {
        HEALTH_LEN + 1 + wire_version(&self.version).len()
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut present = 0;
        let mut set = |bit: u8, on: bool| {
            if on {
                present |= bit;
            }
        };
        set(P_TEMP, self.temp_dc.is_some());
        set(P_THROTTLE, self.throttle.is_some());
        set(P_LOAD, self.load1_c.is_some());
        set(P_MEM, self.mem_used_pct.is_some());
        set(P_FAN, self.fan_rpm.is_some());
        set(P_ROOT_RO, self.root_readonly.is_some());
        set(P_CLOCK, self.clock_synced.is_some());
        set(P_UPTIME, self.uptime_s.is_some());
        let bits = if self.root_readonly == Some(true) { B_ROOT_RO } else { 0 }
            | if self.clock_synced == Some(true) { B_CLOCK } else { 0 };
        out.extend_from_slice(&[present, bits]);
        out.extend_from_slice(&self.temp_dc.unwrap_or(0).to_be_bytes());
        out.push(self.throttle.unwrap_or(0));
        out.extend_from_slice(&self.load1_c.unwrap_or(0).to_be_bytes());
        out.push(self.mem_used_pct.unwrap_or(0));
        out.extend_from_slice(&self.fan_rpm.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.uptime_s.unwrap_or(0).to_be_bytes());
        let v = wire_version(&self.version);
        out.push(v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }

    /// The health in `b` (all of it: trailing bytes are an error), or `None`.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let (fixed, rest) = b.split_at_checked(HEALTH_LEN)?;
        let (&len, version) = rest.split_first()?;
        let printable = version.iter().all(|b| (b' '..=b'~').contains(b));
        if version.len() != usize::from(len) || version.len() > MAX_VERSION || !printable {
            return None;
        }
        let version = std::str::from_utf8(version).ok()?.to_owned();
        let [present, bits, t0, t1, throttle, l0, l1, mem, f0, f1, u0, u1, u2, u3] = fixed.try_into().ok()?;
        let has = |bit: u8| present & bit != 0;
        Some(Self {
            temp_dc: has(P_TEMP).then(|| i16::from_be_bytes([t0, t1])),
            throttle: has(P_THROTTLE).then_some(throttle),
            load1_c: has(P_LOAD).then(|| u16::from_be_bytes([l0, l1])),
            mem_used_pct: has(P_MEM).then_some(mem),
            fan_rpm: has(P_FAN).then(|| u16::from_be_bytes([f0, f1])),
            root_readonly: has(P_ROOT_RO).then_some(bits & B_ROOT_RO != 0),
            clock_synced: has(P_CLOCK).then_some(bits & B_CLOCK != 0),
            uptime_s: has(P_UPTIME).then(|| u32::from_be_bytes([u0, u1, u2, u3])),
            version,
        })
    }
}

/// The version as sent: printable ASCII only (anything else becomes `?`: it
/// is shown on terminals and pages), at most [`MAX_VERSION`] bytes.
fn wire_version(v: &str) -> String {
    v.chars().map(|c| if (' '..='~').contains(&c) { c } else { '?' }).take(MAX_VERSION).collect()
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

/// Bytes one link to `peer` takes on the wire (0: it is left out).
pub fn link_len(peer: &str) -> usize {
    if peer.is_empty() || peer.len() > wire::MAX_NAME { 0 } else { 1 + peer.len() + 3 }
}

/// Appends each link (`rtt_cms` [`MAX_RTT_CMS`] stands for "none").
/// Names longer than [`wire::MAX_NAME`] (no member has one) are left out,
/// as the decoder would refuse them.
pub fn encode_links(links: &[PeerLink<'_>], out: &mut Vec<u8>) {
    for l in links.iter().filter(|l| !l.peer.is_empty() && l.peer.len() <= wire::MAX_NAME) {
        out.push(l.peer.len() as u8);
        out.extend_from_slice(l.peer.as_bytes());
        out.extend_from_slice(&l.rtt_cms.map_or(MAX_RTT_CMS, |r| r.min(MAX_RTT_CMS - 1)).to_be_bytes());
        out.push(l.loss_pct.min(100));
    }
}

/// The links in `b` (all of it), appended to `into`; `None` if malformed
/// (a name that is empty, too long or not UTF-8, a loss above 100 %).
pub fn decode_links<'a>(mut b: &'a [u8], into: &mut Vec<PeerLink<'a>>) -> Option<()> {
    while let Some((&len, rest)) = b.split_first() {
        let len = usize::from(len);
        if len == 0 || len > wire::MAX_NAME || rest.len() < len + 3 {
            return None;
        }
        let peer = std::str::from_utf8(&rest[..len]).ok()?;
        let rtt = u16::from_be_bytes([rest[len], rest[len + 1]]);
        let loss_pct = rest[len + 2];
        if loss_pct > 100 {
            return None;
        }
        into.push(PeerLink { peer, rtt_cms: (rtt != MAX_RTT_CMS).then_some(rtt), loss_pct });
        b = &rest[len + 3..];
    }
    Some(())
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
    /// When its health was last heard (`None`: it sends none, e.g. the
    /// previous release).
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
mod tests {
    use super::*;

    fn pi4() -> Health {
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
    fn health_round_trips_and_absent_fields_stay_absent() {
        for h in [pi4(), Health::default(), Health { temp_dc: Some(-52), fan_rpm: Some(3120), ..pi4() }] {
            let mut b = Vec::new();
            h.encode(&mut b);
            assert_eq!(b.len(), h.encoded_len());
            assert_eq!(Health::decode(&b), Some(h));
        }
        assert_eq!(pi4().temp_c(), Some(48.3));
        assert_eq!(pi4().load1(), Some(0.47));
    }

    #[test]
    fn the_version_goes_as_printable_ascii_and_nothing_else_is_taken() {
        for (given, sent) in [
            ("é".repeat(20), "?".repeat(20)),
            ("x".repeat(40), "x".repeat(32)),
            ("a\x1b]0;b".into(), "a?]0;b".into()),
        ] {
            let h = Health { version: given, ..Health::default() };
            let mut b = Vec::new();
            h.encode(&mut b);
            assert_eq!(b.len(), h.encoded_len());
            assert_eq!(Health::decode(&b).unwrap().version, sent);
        }
        let mut b = Vec::new();
        Health { version: "ab".into(), ..Health::default() }.encode(&mut b);
        *b.last_mut().unwrap() = 0x1b;
        assert_eq!(Health::decode(&b), None, "an escape character is refused");
    }

    #[test]
    fn malformed_health_and_links_are_refused() {
        let mut b = Vec::new();
        pi4().encode(&mut b);
        assert_eq!(Health::decode(&b[..b.len() - 1]), None);
        b.push(0);
        assert_eq!(Health::decode(&b), None);
        let mut out = Vec::new();
        assert_eq!(decode_links(&[3, b'p', b's', b'a', 0, 4, 101], &mut out), None);
        assert_eq!(decode_links(&[0, 0, 4, 1], &mut out), None);
        assert_eq!(decode_links(&[3, b'p', b's'], &mut out), None);
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

    #[test]
    fn links_round_trip() {
        let links = [
            PeerLink { peer: "psb", rtt_cms: Some(PeerLink::rtt_from_ms(0.34)), loss_pct: 0 },
            PeerLink { peer: "pizero-w", rtt_cms: None, loss_pct: 100 },
            PeerLink { peer: "far", rtt_cms: Some(PeerLink::rtt_from_ms(1e9)), loss_pct: 7 },
        ];
        let mut b = Vec::new();
        encode_links(&links, &mut b);
        assert_eq!(b.len(), links.iter().map(|l| link_len(l.peer)).sum::<usize>());
        let mut back = Vec::new();
        decode_links(&b, &mut back).unwrap();
        assert_eq!(back, links);
        assert_eq!(back[0].rtt_ms(), Some(0.34));
        assert_eq!(back[2].rtt_ms(), Some(655.34));
    }
}
