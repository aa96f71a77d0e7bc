//! heartbeat: the heartbeat's bytes and its byte budget.
//!
//! ```text
//! heartbeat  data_port u16 | ip u32 | hb_seq u32 | flags u8 | [baton view] |
//!            sightings: count u8, each name str8 | incarnation u64 | age_ms u32 |
//!            (version 3 on) extensions: count u8, each type u8 | length u8 | bytes
//! view       epoch u64 | origin u64 | counter u64 | baton_counter u64 | settled u64 | age_ms u32
//! health     present u8 | bits u8 | temp_dc i16 | throttle u8 | load1_c u16 |
//!            mem_used_pct u8 | fan_rpm u16 | uptime_s u32 | version str8
//! link       peer str8 | rtt_cms u16 | loss_pct u8
//! ```
//! The extensions are: the versions the sender understands, its counter
//! floor, its ask for fresher baton views, its health, and its links (as
//! many extensions as they take, each at most [`MAX_EXTENSION`] bytes). A
//! receiver skips a type it does not know, and leaves out a health or links
//! extension it cannot read: they are extras, the heartbeat still counts.
//!
//! Health's `present` says which of the fields are set (bit per field, in
//! order: temperature, throttle, load, memory, fan, root read-only, clock
//! synced, uptime); `bits` holds the two booleans (bit 0 root read-only, bit
//! 1 clock synced). A link's `rtt_cms` [`MAX_RTT_CMS`] stands for "none".
//! What the fields mean, and the board that keeps what peers sent, are
//! `core::health`'s; their bytes are this file's.
//!
//! Sightings (other members heard, with how long ago) were how the releases
//! of wire version 2 failed members by silence; the format keeps them, read
//! and ignored, and this release sends none.
//!
//! The budget: what a heartbeat takes at most without its health and links
//! ([`heartbeat_len`]), and the sizes of the variable parts, for the node
//! that fills a heartbeat.

use crate::core::health::{Health, MAX_RTT_CMS, MAX_VERSION, PeerLink};

use super::{
    BatonView, Heartbeat, MAX_NAME, MIN_VERSION, Reader, Sighting, WireError, envelope_len, put_id, put_str,
};

const HB_RELAYS: u8 = 0x01;
const HB_VIEW: u8 = 0x02;
const HB_HOLDING: u8 = 0x04;

/// The heartbeat extension saying which versions the sender understands:
/// `min u8 | max u8`.
const EXT_VERSIONS: u8 = 1;
/// The heartbeat extension with the sender's counter floor: `floor u64`.
const EXT_FLOOR: u8 = 2;
/// The heartbeat extension asking every receiver whose baton view is fresher
/// than the sender's to answer with its own heartbeat (no bytes).
const EXT_ASK_VIEWS: u8 = 3;
/// The heartbeat extension with the sender's health (`core::health`).
const EXT_HEALTH: u8 = 4;
/// A heartbeat extension with some of the sender's links (`core::health`):
/// as many as a heartbeat carries are split over several of these, each at
/// most [`MAX_EXTENSION`] bytes.
const EXT_LINKS: u8 = 5;
/// An extension's bytes: its length is one byte.
pub const MAX_EXTENSION: usize = u8::MAX as usize;

/// Writes a heartbeat's payload as wire `version` has it: no extensions
/// before version 3.
pub(super) fn encode(hb: &Heartbeat<'_>, version: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&hb.data_port.to_be_bytes());
    out.extend_from_slice(&hb.ip.octets());
    out.extend_from_slice(&hb.hb_seq.to_be_bytes());
    let mut flags = if hb.relays { HB_RELAYS } else { 0 };
    if let Some(v) = &hb.baton {
        flags |= HB_VIEW | if v.holding { HB_HOLDING } else { 0 };
    }
    out.push(flags);
    if let Some(v) = &hb.baton {
        encode_view(v, out);
    }
    encode_sightings(&hb.sightings, out);
    if version >= 3 {
        encode_extensions(hb, out);
    }
}

pub(super) fn decode<'a>(r: &mut Reader<'a>, version: u8) -> Result<Heartbeat<'a>, WireError> {
    let data_port = r.u16("data port")?;
    if data_port == 0 {
        return Err(WireError::Malformed("data port"));
    }
    let ip = r.u32("sender address")?.into();
    let hb_seq = r.u32("heartbeat sequence")?;
    let flags = r.u8("heartbeat flags")?;
    if flags & !(HB_RELAYS | HB_VIEW | HB_HOLDING) != 0 {
        return Err(WireError::Malformed("heartbeat flags"));
    }
    let baton = if flags & HB_VIEW != 0 { Some(decode_view(r, flags & HB_HOLDING != 0)?) } else { None };
    let mut hb = Heartbeat {
        data_port,
        ip,
        hb_seq,
        relays: flags & HB_RELAYS != 0,
        baton,
        sightings: decode_sightings(r)?,
        understands: None,
        floor: None,
        asks_views: false,
        health: None,
        links: Vec::new(),
    };
    if version >= 3 {
        decode_extensions(r, &mut hb)?;
    }
    Ok(hb)
}

/// A baton view's bytes (its `holding` is a heartbeat flag).
const VIEW_LEN: usize = 16 + 8 + 8 + 8 + 4;

fn encode_view(v: &BatonView, out: &mut Vec<u8>) {
    put_id(out, v.id);
    out.extend_from_slice(&v.counter.to_be_bytes());
    out.extend_from_slice(&v.baton_counter.to_be_bytes());
    out.extend_from_slice(&v.settled.to_be_bytes());
    out.extend_from_slice(&v.age_ms.to_be_bytes());
}

fn decode_view(r: &mut Reader<'_>, holding: bool) -> Result<BatonView, WireError> {
    let id = r.id()?;
    let counter = r.u64("baton counter")?;
    let baton_counter = r.u64("baton counter")?;
    let settled = r.u64("settled counter")?;
    let age_ms = r.u32("baton age")?;
    Ok(BatonView { id, counter, baton_counter, settled, age_ms, holding })
}

/// At most 255 sightings: more are cut.
fn encode_sightings(sightings: &[Sighting<'_>], out: &mut Vec<u8>) {
    let n = sightings.len().min(u8::MAX as usize);
    out.push(n as u8);
    for s in &sightings[..n] {
        put_str(out, s.name);
        out.extend_from_slice(&s.incarnation.to_be_bytes());
        out.extend_from_slice(&s.age_ms.to_be_bytes());
    }
}

fn decode_sightings<'a>(r: &mut Reader<'a>) -> Result<Vec<Sighting<'a>>, WireError> {
    let n = r.u8("sighting count")? as usize;
    // Each sighting is at least 13 bytes: refuse counts the body cannot hold
    // before allocating for them.
    if n * 13 > r.0.len() {
        return Err(WireError::Malformed("sighting count"));
    }
    let mut sightings = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str("sighting name")?;
        let incarnation = r.u64("sighting incarnation")?;
        let age_ms = r.u32("sighting age")?;
        sightings.push(Sighting { name, incarnation, age_ms });
    }
    Ok(sightings)
}

/// Extensions: their count, then each as type | length | bytes. A zero
/// floor is not sent; links that do not fit in the 255 extensions are cut.
fn encode_extensions(hb: &Heartbeat<'_>, out: &mut Vec<u8>) {
    let floor = hb.floor.filter(|f| *f > 0);
    let fixed = usize::from(hb.understands.is_some())
        + usize::from(floor.is_some())
        + usize::from(hb.asks_views)
        + usize::from(hb.health.is_some());
    let mut groups = link_groups(&hb.links);
    groups.truncate(u8::MAX as usize - fixed);
    out.push((fixed + groups.len()) as u8);
    if let Some(max) = hb.understands {
        out.extend_from_slice(&[EXT_VERSIONS, 2, MIN_VERSION.min(max), max]);
    }
    if let Some(f) = floor {
        out.extend_from_slice(&[EXT_FLOOR, 8]);
        out.extend_from_slice(&f.to_be_bytes());
    }
    if hb.asks_views {
        out.extend_from_slice(&[EXT_ASK_VIEWS, 0]);
    }
    if let Some(h) = &hb.health {
        put_ext(out, EXT_HEALTH, |o| encode_health(h, o));
    }
    for g in &groups {
        put_ext(out, EXT_LINKS, |o| encode_links(g, o));
    }
}

/// Reads the extensions into `hb`; a later one of a type overrides an
/// earlier one, but links add up.
fn decode_extensions<'a>(r: &mut Reader<'a>, hb: &mut Heartbeat<'a>) -> Result<(), WireError> {
    for _ in 0..r.u8("extension count")? {
        let kind = r.u8("extension type")?;
        let len = r.u8("extension length")? as usize;
        let bytes = r.take(len, "extension")?;
        match kind {
            EXT_VERSIONS => {
                let &[_, max] = bytes else {
                    return Err(WireError::Malformed("versions extension"));
                };
                hb.understands = Some(max);
            }
            EXT_FLOOR => {
                let f: [u8; 8] = bytes.try_into().map_err(|_| WireError::Malformed("floor extension"))?;
                hb.floor = Some(u64::from_be_bytes(f)).filter(|f| *f > 0);
            }
            EXT_ASK_VIEWS => hb.asks_views = true,
            // Health and links are extras: a sender's bad one (a bug, a
            // later release's change) is left out, and the heartbeat still
            // counts.
            EXT_HEALTH => hb.health = decode_health(bytes),
            EXT_LINKS => {
                let at = hb.links.len();
                if decode_links(bytes, &mut hb.links).is_none() {
                    hb.links.truncate(at);
                }
            }
            // A later release's: skipped.
            _ => {}
        }
    }
    Ok(())
}

/// One extension: type, length, then what `body` writes (at most
/// [`MAX_EXTENSION`] bytes, which the callers ensure).
fn put_ext(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(&[kind, 0]);
    let at = out.len();
    body(out);
    let len = out.len() - at;
    debug_assert!(len <= MAX_EXTENSION);
    out[at - 1] = len.min(MAX_EXTENSION) as u8;
}

/// The fixed part of an encoded [`Health`]: everything but the version's bytes.
const HEALTH_LEN: usize = 14;

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

/// Bytes `h` takes on the wire.
pub fn health_len(h: &Health) -> usize {
    HEALTH_LEN + 1 + sent_version(&h.version).len()
}

/// Appends `h`; a field with no value goes as zero, its `present` bit clear.
pub fn encode_health(h: &Health, out: &mut Vec<u8>) {
    let mut present = 0;
    let mut set = |bit: u8, on: bool| {
        if on {
            present |= bit;
        }
    };
    set(P_TEMP, h.temp_dc.is_some());
    set(P_THROTTLE, h.throttle.is_some());
    set(P_LOAD, h.load1_c.is_some());
    set(P_MEM, h.mem_used_pct.is_some());
    set(P_FAN, h.fan_rpm.is_some());
    set(P_ROOT_RO, h.root_readonly.is_some());
    set(P_CLOCK, h.clock_synced.is_some());
    set(P_UPTIME, h.uptime_s.is_some());
    let bits = if h.root_readonly == Some(true) { B_ROOT_RO } else { 0 }
        | if h.clock_synced == Some(true) { B_CLOCK } else { 0 };
    out.extend_from_slice(&[present, bits]);
    out.extend_from_slice(&h.temp_dc.unwrap_or(0).to_be_bytes());
    out.push(h.throttle.unwrap_or(0));
    out.extend_from_slice(&h.load1_c.unwrap_or(0).to_be_bytes());
    out.push(h.mem_used_pct.unwrap_or(0));
    out.extend_from_slice(&h.fan_rpm.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&h.uptime_s.unwrap_or(0).to_be_bytes());
    let v = sent_version(&h.version);
    out.push(v.len() as u8);
    out.extend_from_slice(v.as_bytes());
}

/// The health in `b` (all of it: trailing bytes are an error), or `None`.
pub fn decode_health(b: &[u8]) -> Option<Health> {
    let (fixed, rest) = b.split_at_checked(HEALTH_LEN)?;
    let (&len, version) = rest.split_first()?;
    let printable = version.iter().all(|b| (b' '..=b'~').contains(b));
    if version.len() != usize::from(len) || version.len() > MAX_VERSION || !printable {
        return None;
    }
    let version = std::str::from_utf8(version).ok()?.to_owned();
    let [present, bits, t0, t1, throttle, l0, l1, mem, f0, f1, u0, u1, u2, u3] = fixed.try_into().ok()?;
    let has = |bit: u8| present & bit != 0;
    Some(Health {
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

/// The version as sent: printable ASCII only (anything else becomes `?`: it
/// is shown on terminals and pages), at most [`MAX_VERSION`] bytes.
fn sent_version(v: &str) -> String {
    v.chars().map(|c| if (' '..='~').contains(&c) { c } else { '?' }).take(MAX_VERSION).collect()
}

/// Bytes one link to `peer` takes on the wire (0: it is left out).
pub fn link_len(peer: &str) -> usize {
    if peer.is_empty() || peer.len() > MAX_NAME { 0 } else { 1 + peer.len() + 3 }
}

/// Appends each link (`rtt_cms` [`MAX_RTT_CMS`] stands for "none").
/// Names longer than [`MAX_NAME`] (no member has one) are left out, as the
/// decoder would refuse them.
pub fn encode_links(links: &[PeerLink<'_>], out: &mut Vec<u8>) {
    for l in links.iter().filter(|l| !l.peer.is_empty() && l.peer.len() <= MAX_NAME) {
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
        if len == 0 || len > MAX_NAME || rest.len() < len + 3 {
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

/// The links as consecutive groups of at most [`MAX_EXTENSION`] bytes each
/// (a link longer than that cannot be: names are at most [`MAX_NAME`]).
fn link_groups<'a, 'b>(links: &'b [PeerLink<'a>]) -> Vec<&'b [PeerLink<'a>]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, l) in links.iter().enumerate() {
        let len = link_len(l.peer);
        if bytes + len > MAX_EXTENSION {
            groups.push(&links[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < links.len() {
        groups.push(&links[start..]);
    }
    groups
}

/// The bytes health and links add to a heartbeat: their extensions, as
/// [`super::Codec::encode`] writes them.
pub fn health_ext_len(health: Option<&Health>, links: &[PeerLink<'_>]) -> usize {
    let groups = link_groups(links);
    let links_len: usize = links.iter().map(|l| link_len(l.peer)).sum();
    health.map_or(0, |h| 2 + health_len(h)) + links_len + 2 * groups.len()
}

/// The most bytes the health extension takes: type, length, and a health
/// with the longest version.
pub const MAX_HEALTH_EXT: usize = 2 + HEALTH_LEN + 1 + MAX_VERSION;

/// The most bytes a heartbeat of `version` takes without its health and
/// links: sealed, from a sender and in a cluster whose names have
/// [`MAX_NAME`] bytes, with a baton view, no sightings (this release sends
/// none) and the versions, floor and ask-views extensions.
pub const fn heartbeat_len(version: u8) -> usize {
    // Kind, data port, IP, heartbeat seq, flags, baton view, sighting count.
    let fixed = 1 + 2 + 4 + 4 + 1 + VIEW_LEN + 1;
    // Extension count, versions, floor, ask views.
    let extensions = 1 + 4 + 10 + 2;
    envelope_len(version) + fixed + extensions
}

/// The UDP payload a 1500-byte Ethernet frame carries (IPv4, no options).
const ETHERNET_UDP_PAYLOAD: usize = 1500 - 20 - 8;
const _: () = assert!(heartbeat_len(super::VERSION) + MAX_HEALTH_EXT + 640 <= ETHERNET_UDP_PAYLOAD);
const _: () = assert!(heartbeat_len(super::MIN_VERSION) + MAX_HEALTH_EXT + 640 <= ETHERNET_UDP_PAYLOAD);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::health::tests::pi4;

    #[test]
    fn health_round_trips_and_absent_fields_stay_absent() {
        for h in [pi4(), Health::default(), Health { temp_dc: Some(-52), fan_rpm: Some(3120), ..pi4() }] {
            let mut b = Vec::new();
            encode_health(&h, &mut b);
            assert_eq!(b.len(), health_len(&h));
            assert_eq!(decode_health(&b), Some(h));
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
            encode_health(&h, &mut b);
            assert_eq!(b.len(), health_len(&h));
            assert_eq!(decode_health(&b).unwrap().version, sent);
        }
        let mut b = Vec::new();
        encode_health(&Health { version: "ab".into(), ..Health::default() }, &mut b);
        *b.last_mut().unwrap() = 0x1b;
        assert_eq!(decode_health(&b), None, "an escape character is refused");
    }

    #[test]
    fn malformed_health_and_links_are_refused() {
        let mut b = Vec::new();
        encode_health(&pi4(), &mut b);
        assert_eq!(decode_health(&b[..b.len() - 1]), None);
        b.push(0);
        assert_eq!(decode_health(&b), None);
        let mut out = Vec::new();
        assert_eq!(decode_links(&[3, b'p', b's', b'a', 0, 4, 101], &mut out), None);
        assert_eq!(decode_links(&[0, 0, 4, 1], &mut out), None);
        assert_eq!(decode_links(&[3, b'p', b's'], &mut out), None);
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
