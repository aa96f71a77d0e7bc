//! wire: herd's datagram format: a versioned envelope, optionally sealed with
//! XChaCha20-Poly1305, around one message.
//!
//! ```text
//! header   "HD" | version u8 | flags u8 | [key id 4 bytes | nonce 24 bytes, when sealed]
//! body     [cluster str8] | from str8 | incarnation u64 | [seq u64] | kind u8 | payload
//! trailer  [tag 16 bytes, when sealed]
//! ```
//! The cluster's name and the seq are in the body of a plain datagram, and
//! of a sealed one before version 4. From version 4 on a sealed datagram
//! leaves both out: its key is derived from the cluster's name (another
//! cluster's datagram fails authentication), and its nonce ends with the
//! seq (the header, nonce included, is authenticated).
//! Integers are big-endian; `str8` is a length byte and UTF-8 bytes. When the
//! cluster has a secret, the body is encrypted and authenticated with a key
//! derived from (secret, cluster name) by HKDF-SHA256, and the header is the
//! associated data, so a datagram made with another secret, for another
//! cluster, or altered in any bit fails [`Codec::open`]. Freshness (replays)
//! is judged by the receiver from `(from, incarnation, seq)`, which are inside
//! the authenticated body: see `membership::ReplayWindow`.
//!
//! ## Versions
//! - 1: the first release.
//! - 2: heartbeats carry the sender's IP (version 1 took it from the source).
//! - 3: a sealed datagram names its key (a 4-byte id derived from it, so a
//!   node with several keys opens it with the right one, and tells "a key I
//!   do not have" from "altered"); a heartbeat ends with extensions (type,
//!   length, bytes; a receiver skips types it does not know, so additions
//!   need no new version), the first of which says which versions the sender
//!   understands; an ack carries the responder's wall clock (8 bytes, for
//!   the clock offset per peer). Acks have no extensions: the next change to
//!   them needs a new version. Version 3 also has the failure detector's
//!   messages (SWIM: see `core::probe`): an indirect probe request, its
//!   answer, and news of members suspected, down or alive again; and
//!   heartbeat extensions asking peers for their baton view, and carrying
//!   the sender's health and links (`core::health`).
//! - 4: a sealed datagram's body leaves out the cluster's name and the seq
//!   (see above): 9 bytes and the name's length smaller; a pass's ack
//!   leaves out the baton's id (16 bytes: see [`PassAck`]). The other
//!   messages are version 3's.
//!
//! A release speaks [`VERSION`] and understands [`MIN_VERSION`] (the previous
//! release's) too, so a cluster upgraded one node at a time stays one
//! cluster. Which version goes to whom is the node's choice (see
//! `node::Node`): the codec encodes and decodes either.
//!
//! ## Files
//! - this one: the format's limits, the message types every other part of
//!   herd speaks in, and the byte reader and writers the others share;
//! - `codec`: the envelope and its seal ([`Codec`]: keys, HKDF, key ids,
//!   nonces);
//! - `messages`: each message kind's payload, its encoding beside its
//!   decoding (and a pass's [`Lap`], kept in its wire form);
//! - `heartbeat`: the heartbeat, its extensions (versions, floor, ask views,
//!   health, links) with the bytes of health and links, and the byte budget
//!   the node fills a heartbeat to.
//!
//! Owns: encoding, decoding, sealing. Must not: do I/O, read clocks, panic on
//! any input (property-tested in `tests/wire.rs`, fuzzed in `fuzz/`; the bytes
//! are pinned in `tests/wire_bytes.rs`).

use std::net::Ipv4Addr;

use super::health::{Health, PeerLink};

mod aead;
mod codec;
mod heartbeat;
mod messages;

pub use codec::Codec;
pub use heartbeat::{
    MAX_EXTENSION, MAX_HEALTH_EXT, decode_health, decode_links, encode_health, encode_links, health_ext_len,
    health_len, heartbeat_len, link_len,
};
pub use messages::{Lap, LapName, MAX_LAP, news_len};

pub const MAGIC: [u8; 2] = *b"HD";
/// The version this release speaks (see "Versions" above).
pub const VERSION: u8 = wire_version!(speaks);
/// The oldest version this release understands, and speaks to a peer that
/// knows no newer: the previous release's.
pub const MIN_VERSION: u8 = wire_version!(understands);
/// Longest node or cluster name, in bytes.
pub const MAX_NAME: usize = 63;
/// Largest datagram herd sends: fits a 1500-byte Ethernet MTU with IP/UDP headers.
pub const MAX_DATAGRAM: usize = 1400;
/// Largest datagram herd accepts; anything bigger is rejected unread.
pub const MAX_ACCEPTED: usize = 4096;

// The envelope's layout (see the diagram above): what the codec writes and
// the heartbeat's byte budget counts.
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const PLAIN_HEADER: usize = 4;

/// Header length of a sealed datagram.
const SEALED_HEADER: usize = PLAIN_HEADER + KEY_ID_LEN + NONCE_LEN;

/// The most bytes a datagram of `version` takes besides its message (kind
/// and payload), plain or sealed, with cluster and sender names of
/// [`MAX_NAME`] bytes: header, names, incarnation, seq and tag (a sealed
/// one of version 4 on carries neither the cluster nor the seq in its body).
const fn envelope_len(version: u8) -> usize {
    let plain = PLAIN_HEADER + 2 * (1 + MAX_NAME) + 8 + 8;
    let body_extra = if version >= 4 { 0 } else { 1 + MAX_NAME + 8 };
    let sealed = SEALED_HEADER + (1 + MAX_NAME) + 8 + body_extra + TAG_LEN;
    if plain > sealed { plain } else { sealed }
}

/// Why a datagram was refused. Every variant is a normal outcome for hostile or
/// foreign input; none of them is a bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated datagram")]
    Truncated,
    #[error("not a herd datagram")]
    BadMagic,
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    #[error("oversized datagram ({0} bytes)")]
    Oversized(usize),
    #[error("unauthenticated datagram, but this cluster has a secret")]
    Unauthenticated,
    #[error("sealed datagram, but this node has no secret")]
    UnexpectedSealed,
    #[error("authentication failed (wrong secret, other cluster, or altered)")]
    AuthFailed,
    #[error("sealed with a key this node does not have (key id {0:08x}): is its secret_file rotated?")]
    UnknownKey(u32),
    #[error("datagram for another cluster")]
    OtherCluster,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
}

/// What a peer said about a third member in its heartbeat: "I heard `name`
/// (life `incarnation`) `age_ms` ago". Receivers use it as indirect liveness
/// evidence, which is what keeps loss from looking like death.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting<'a> {
    pub name: &'a str,
    pub incarnation: u64,
    pub age_ms: u32,
}

/// Identifies one baton. Batons are ordered by `(epoch, origin)`: a node that
/// learns of a greater one drops any lesser one it holds. `origin` (a hash of
/// the regenerating node's name) breaks ties between batons regenerated
/// concurrently on both sides of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatonId {
    pub epoch: u64,
    pub origin: u64,
}

/// A node's knowledge of the baton, carried in every heartbeat so the cluster
/// agrees on the newest baton and the highest counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatonView {
    /// The greatest baton the sender knows of.
    pub id: BatonId,
    /// The highest counter the sender has seen, of any baton (new counters
    /// start above it).
    pub counter: u64,
    /// Of baton `id` only: the highest counter seen (some perhaps in flight)...
    pub baton_counter: u64,
    /// ...and the highest known to have arrived (taken, or acknowledged).
    pub settled: u64,
    /// How long ago the sender last knew baton `id` alive (0 when holding it).
    pub age_ms: u32,
    /// The sender holds that baton now (or is passing it).
    pub holding: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    /// The sender's unicast port (baton, probes).
    pub data_port: u16,
    /// The sender's own IP, as it knows it; `0.0.0.0` = unknown, use the
    /// datagram's source. Inside the seal, unlike the source address: a
    /// captured heartbeat replayed from elsewhere (one its target never got,
    /// so the replay window takes it) still points at its real sender.
    pub ip: Ipv4Addr,
    /// Counts heartbeats only, so receivers can see gaps (heartbeat loss).
    pub hb_seq: u32,
    /// The sender takes part in the baton relay (`[baton] enabled`).
    pub relays: bool,
    pub baton: Option<BatonView>,
    /// Members the sender heard (releases of wire version 2 failed members
    /// by them); read and ignored, this release sends none.
    pub sightings: Vec<Sighting<'a>>,
    /// The newest wire version the sender understands: the heartbeat's
    /// versions extension (version 3 on), which a node always sends with its
    /// own [`VERSION`]; `None` in a version 2 heartbeat, or a version 3 one
    /// without it. Encoded as it is, with [`MIN_VERSION`] (or `max`, if
    /// lower) as the oldest understood.
    pub understands: Option<u8>,
    /// Counters at or below this may have been sent before a restart of
    /// some node (restored from state files after a power cut, see
    /// `core::reserve`): a new baton starts above it. Version 3 on, when
    /// not zero.
    pub floor: Option<u64>,
    /// The sender is about to regenerate the baton and asks for fresher
    /// views (version 3 on; dropped from a version 2 heartbeat).
    pub asks_views: bool,
    /// The sender's health (version 3 on; a version 2 peer shows none).
    pub health: Option<Health>,
    /// The sender's links to some or all of its peers (version 3 on): the
    /// node rotates through them when they do not all fit.
    pub links: Vec<PeerLink<'a>>,
}

/// What a [`Message::News`] says of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rumor {
    /// The sender's probes (direct and through others) got no answer.
    Suspect,
    /// ...for `down_after`: the member is down.
    Down,
    /// A suspect answered the sender after all.
    Alive,
}

/// One item of news about a member's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct News<'a> {
    pub name: &'a str,
    pub incarnation: u64,
    pub rumor: Rumor,
    /// How long the member has not answered the sender's probes.
    pub silent_ms: u32,
}

/// Most items one [`Message::News`] carries.
pub const MAX_NEWS: usize = 16;

/// The receiver's answer to a [`Message::Pass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassVerdict {
    /// The receiver holds the baton now.
    Taken,
    /// The pass carried an older baton or a lagging duplicate: drop it.
    Stale,
    /// The receiver does not relay (baton disabled, leaving): pass to another.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Heartbeat(Heartbeat<'a>),
    /// The sender is shutting down: drop it now, not after `down_after`.
    Leave,
    /// Asks for an [`Message::Ack`] with the same token (suspicion probes).
    Ping {
        token: u64,
    },
    /// Answers a ping. From version 3 on it carries the responder's wall
    /// clock when it answered (microseconds since the Unix epoch), from which
    /// the pinger estimates the clock offset between the two (NTP-style);
    /// `None` in version 2, or from a node that knows no wall time.
    Ack {
        token: u64,
        wall_us: Option<i64>,
    },
    /// The baton: the counter as the sender set it, and the names left in the
    /// current lap (the receiver passes to the first live one).
    Pass {
        id: BatonId,
        counter: u64,
        lap: Lap,
    },
    /// Answers a pass.
    PassAck(PassAck),
    /// Asks the receiver to ping member `target` (life `incarnation`) and
    /// say whether it answered: the indirect probe of SWIM (version 3).
    PingReq {
        token: u64,
        target: &'a str,
        incarnation: u64,
    },
    /// Answers a [`Message::PingReq`]: the target answered, or did not
    /// within the receiver's wait (a nack, Lifeguard's sign that the asker's
    /// own network works). Version 3.
    IndirectAck {
        token: u64,
        answered: bool,
    },
    /// Members suspected, down or alive again, as the sender's probes found
    /// (at most [`MAX_NEWS`]). Version 3.
    News(Vec<News<'a>>),
}

/// The answer to a [`Message::Pass`], echoing its counter (and, before
/// version 4, its baton).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassAck {
    /// The pass's baton: sent in version 3, `None` when read in version 4,
    /// which names the pass by its counter alone. That is enough: a node's
    /// counters only rise (each pass is above every counter it has seen, and
    /// a restart starts above its reserved ceiling), so it never sends two
    /// passes with one counter, whatever their batons.
    pub id: Option<BatonId>,
    pub counter: u64,
    pub verdict: PassVerdict,
    /// How long the receiver held this ack back (acks are delayed when the
    /// relay runs unpaced); the sender subtracts it from the hop time, as QUIC
    /// does with its ACK delay.
    pub delay_us: u32,
}

/// A decoded datagram. Borrowed from the receive buffer: no allocation per
/// datagram beyond the sightings list or a pass's lap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The wire version: what [`Codec::encode`] writes, what [`Codec::open`]
    /// read (from [`MIN_VERSION`] to [`VERSION`]).
    pub version: u8,
    pub from: &'a str,
    pub incarnation: u64,
    /// Per-sender datagram counter; never reused within one incarnation.
    pub seq: u64,
    pub msg: Message<'a>,
}

/// Reads a datagram's body front to back; every read names what it reads,
/// for the error when the bytes run out or are not what they must be.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn id(&mut self) -> Result<BatonId, WireError> {
        Ok(BatonId { epoch: self.u64("baton epoch")?, origin: self.u64("baton origin")? })
    }
    fn str(&mut self, what: &'static str) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.str_bytes(what)?).map_err(|_| WireError::Malformed(what))
    }
    /// A `str8`'s bytes, its UTF-8 left to the caller to check.
    fn str_bytes(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.u8(what)? as usize;
        if len > MAX_NAME {
            return Err(WireError::Malformed(what));
        }
        self.take(len, what)
    }
}

/// Writes `s` as a `str8`: a length byte, then (at most 255 of) its bytes.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len().min(u8::MAX as usize);
    out.push(len as u8);
    out.extend_from_slice(&s.as_bytes()[..len]);
}

/// Writes a baton id: `epoch u64 | origin u64`.
fn put_id(out: &mut Vec<u8>, id: BatonId) {
    out.extend_from_slice(&id.epoch.to_be_bytes());
    out.extend_from_slice(&id.origin.to_be_bytes());
}
