//! wire: herd's datagram format: a versioned envelope, optionally sealed with
//! XChaCha20-Poly1305, around one message.
//!
//! ```text
//! header   "HD" | version u8 | flags u8 | [key id 4 bytes (v3) | nonce 24 bytes, when sealed]
//! body     cluster str8 | from str8 | incarnation u64 | seq u64 | kind u8 | payload
//! trailer  [tag 16 bytes, when sealed]
//! ```
//! Integers are big-endian; `str8` is a length byte and UTF-8 bytes. When the
//! cluster has a secret, the body is encrypted and authenticated with a key
//! derived from (secret, cluster name) by HKDF-SHA256, and the header is the
//! associated data, so a datagram made with another secret, for another
//! cluster, or altered in any bit fails [`Codec::open`]. Freshness (replays)
//! is judged by the receiver from `(from, incarnation, seq)`, which are inside
//! the authenticated body: see [`ReplayWindow`].
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
//!
//! A release speaks [`VERSION`] and understands [`MIN_VERSION`] (the previous
//! release's) too, so a cluster upgraded one node at a time stays one
//! cluster. Which version goes to whom is the node's choice (see
//! `node::Node`): the codec encodes and decodes either.
//!
//! Owns: encoding, decoding, sealing. Must not: do I/O, read clocks, panic on
//! any input (property-tested in `tests/wire.rs`).

use std::net::Ipv4Addr;
use std::sync::Arc;

use chacha20::{R20, hchacha};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

use super::health::{self, Health, PeerLink};

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

const FLAG_SEALED: u8 = 0x01;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const PLAIN_HEADER: usize = 4;

/// Header length of a sealed datagram of `version`.
fn sealed_header(version: u8) -> usize {
    PLAIN_HEADER + if version >= 3 { KEY_ID_LEN } else { 0 } + NONCE_LEN
}

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

/// The answer to a [`Message::Pass`], echoing its baton and counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassAck {
    pub id: BatonId,
    pub counter: u64,
    pub verdict: PassVerdict,
    /// How long the receiver held this ack back (acks are delayed when the
    /// relay runs unpaced); the sender subtracts it from the hop time, as QUIC
    /// does with its ACK delay.
    pub delay_us: u32,
}

/// An ack's wall clock when the responder has none.
const NO_WALL: i64 = i64::MIN;

const KIND_HEARTBEAT: u8 = 1;
const KIND_LEAVE: u8 = 2;
const KIND_PING: u8 = 3;
const KIND_ACK: u8 = 4;
const KIND_PASS: u8 = 5;
const KIND_PASS_ACK: u8 = 6;
const KIND_PING_REQ: u8 = 7;
const KIND_INDIRECT_ACK: u8 = 8;
const KIND_NEWS: u8 = 9;

const HB_RELAYS: u8 = 0x01;
const HB_VIEW: u8 = 0x02;
const HB_HOLDING: u8 = 0x04;

/// Most names a pass carries; a bigger cluster's lap is cut to this (the rest
/// of its members are met in later laps).
pub const MAX_LAP: usize = 64;

/// The names left in a baton's lap, kept in their wire form (each a `str8`)
/// in a shared buffer: a pass is decoded with one allocation, and taking,
/// popping and forwarding it copies no name (copies that were 7 % of an
/// agent's instructions per pass at full speed). Every name is valid UTF-8
/// of at most [`MAX_NAME`] bytes, and there are at most [`MAX_LAP`]: checked
/// when decoded, enforced when built.
#[derive(Clone)]
pub struct Lap {
    buf: Arc<[u8]>,
    /// The remaining names are `buf[at..end]`.
    at: usize,
    end: usize,
}

impl Lap {
    /// A lap of the first [`MAX_LAP`] of `names`; a name too long to send is
    /// left out (config refuses such names, so none is expected).
    pub fn from_names<'n>(names: impl IntoIterator<Item = &'n str>) -> Lap {
        let mut buf = Vec::new();
        for name in names.into_iter().filter(|n| n.len() <= MAX_NAME).take(MAX_LAP) {
            put_str(&mut buf, name);
        }
        let end = buf.len();
        Lap { buf: buf.into(), at: 0, end }
    }

    pub fn is_empty(&self) -> bool {
        self.at >= self.end
    }

    pub fn len(&self) -> usize {
        self.entries().count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        // Checked on the way in; an empty name is never a member.
        self.entries().map(|name| std::str::from_utf8(name).unwrap_or_default())
    }

    /// The remaining names' bytes, split by their length bytes.
    fn entries(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = self.encoded();
        std::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let (name, tail) = tail.split_at_checked(len as usize)?;
            rest = tail;
            Some(name)
        })
    }

    /// Takes the first name off the lap.
    pub fn pop_front(&mut self) -> Option<LapName> {
        let len = *self.buf[self.at..self.end].first()? as usize;
        let start = self.at + 1;
        self.at = (start + len).min(self.end);
        Some(LapName { buf: Arc::clone(&self.buf), start, end: self.at })
    }

    /// The remaining names as they are encoded, after the count byte.
    fn encoded(&self) -> &[u8] {
        &self.buf[self.at..self.end]
    }
}

impl Default for Lap {
    fn default() -> Lap {
        Lap::from_names(std::iter::empty())
    }
}

impl PartialEq for Lap {
    fn eq(&self, other: &Lap) -> bool {
        self.encoded() == other.encoded()
    }
}

impl Eq for Lap {}

impl std::fmt::Debug for Lap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One name taken off a [`Lap`], sharing its buffer.
#[derive(Clone)]
pub struct LapName {
    buf: Arc<[u8]>,
    start: usize,
    end: usize,
}

impl LapName {
    pub fn as_str(&self) -> &str {
        // Checked when the lap was decoded or built.
        std::str::from_utf8(&self.buf[self.start..self.end]).unwrap_or_default()
    }
}

impl std::fmt::Debug for LapName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// A decoded datagram. Borrowed from the receive buffer: no allocation per
/// datagram beyond the sightings list or a pass's lap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The wire version: what [`Codec::encode`] writes, what [`Codec::open`]
    /// read (from [`MIN_VERSION`] to [`VERSION`]).
    pub version: u8,
    pub cluster: &'a str,
    pub from: &'a str,
    pub incarnation: u64,
    /// Per-sender datagram counter; never reused within one incarnation.
    pub seq: u64,
    pub msg: Message<'a>,
}

/// Most senders' subkeys [`Codec::open`] keeps (48 bytes each).
const SUBKEYS: usize = 512;

/// Encodes and decodes one cluster's datagrams; holds the derived keys.
pub struct Codec {
    cluster: String,
    keys: Option<Keys>,
    /// Random per process: with `seq`, makes every nonce unique (see `seal`).
    nonce_salt: [u8; 16],
}

/// XChaCha20-Poly1305 with nonce `salt ‖ seq` is ChaCha20-Poly1305 under the
/// subkey `HChaCha20(key, salt)` with nonce `0⁴ ‖ seq` (that is how XChaCha
/// is defined). A sender's salt is fixed for its life, so its subkey is
/// computed once, not per datagram: the wire format is unchanged, and a
/// baton pass costs two ChaCha20 blocks per side instead of three.
struct Keys {
    /// The keyring; the first key seals.
    ring: Vec<RingKey>,
    /// Ours, for sealing: the first key's subkey under our salt.
    own: ChaCha20Poly1305,
    /// Senders' subkeys by (salt, ring index), oldest first; entered only
    /// once a datagram under them authenticated, so garbage cannot fill it.
    senders: std::collections::VecDeque<([u8; 16], usize, ChaCha20Poly1305)>,
}

struct RingKey {
    key: Key,
    id: [u8; KEY_ID_LEN],
}

impl RingKey {
    /// The cluster's key for `secret`, and its id: both from HKDF-SHA256, so
    /// the id (sent in the clear) tells nothing about the key.
    fn derive(cluster: &str, secret: &[u8]) -> RingKey {
        let hk = Hkdf::<Sha256>::new(Some(b"herd gossip v1"), secret);
        let mut key = [0u8; 32];
        hk.expand(cluster.as_bytes(), &mut key).expect("32 bytes is a valid HKDF-SHA256 length");
        let mut id = [0u8; KEY_ID_LEN];
        hk.expand_multi_info(&[b"herd key id\0", cluster.as_bytes()], &mut id)
            .expect("4 bytes is a valid HKDF-SHA256 length");
        RingKey { key: Key::from(key), id }
    }
}

impl Keys {
    fn subkey(key: &Key, salt: &[u8; 16]) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&hchacha::<R20>(key, &(*salt).into()))
    }
}

/// The ChaCha20 nonce that goes with a subkey: the last 8 bytes of the
/// 24-byte XChaCha nonce after four zero bytes.
fn inner_nonce(seq: &[u8]) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(seq);
    n.into()
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").field("cluster", &self.cluster).field("keys", &self.key_ids()).finish()
    }
}

impl Codec {
    /// `nonce_salt` must be random per process (the core draws it from its
    /// injected RNG); `secrets` is the keyring (the first seals, every one
    /// opens); none sends and accepts only plain datagrams.
    pub fn new<S: AsRef<[u8]>>(cluster: &str, secrets: &[S], nonce_salt: [u8; 16]) -> Codec {
        let keys = (!secrets.is_empty()).then(|| {
            let ring: Vec<RingKey> = secrets.iter().map(|s| RingKey::derive(cluster, s.as_ref())).collect();
            let own = Keys::subkey(&ring[0].key, &nonce_salt);
            Keys { ring, own, senders: std::collections::VecDeque::new() }
        });
        Codec { cluster: cluster.to_owned(), keys, nonce_salt }
    }

    pub fn is_sealed(&self) -> bool {
        self.keys.is_some()
    }

    /// This codec with another keyring (a reload): the same cluster and
    /// nonce salt, so the sequence numbers this node goes on with keep every
    /// nonce unique.
    pub fn rekeyed<S: AsRef<[u8]>>(&self, secrets: &[S]) -> Codec {
        Codec::new(&self.cluster, secrets, self.nonce_salt)
    }

    /// The keyring's key ids as 8 hex digits, sealing key first: what logs
    /// and the status endpoint show of the keys (never the keys).
    pub fn key_ids(&self) -> Vec<String> {
        let ring = self.keys.as_ref().map_or(&[][..], |k| &k.ring[..]);
        ring.iter().map(|k| format!("{:08x}", u32::from_be_bytes(k.id))).collect()
    }

    /// Encodes `env` as wire version `env.version` ([`MIN_VERSION`] to
    /// [`VERSION`]; its `cluster` field is ignored: this codec's cluster is
    /// written) into `out`, replacing its contents.
    pub fn encode_into(&self, env: &Envelope<'_>, out: &mut Vec<u8>) {
        let version = env.version.clamp(MIN_VERSION, VERSION);
        out.clear();
        out.extend_from_slice(&MAGIC);
        out.push(version);
        let sealed = self.keys.as_ref();
        out.push(if sealed.is_some() { FLAG_SEALED } else { 0 });
        let mut nonce = [0u8; NONCE_LEN];
        if let Some(keys) = sealed {
            if version >= 3 {
                out.extend_from_slice(&keys.ring[0].id);
            }
            // Nonce = per-process random salt ‖ seq: unique for every datagram
            // any node ever sends under this key (XChaCha's 192-bit nonce
            // leaves room for a 128-bit random part).
            nonce[..16].copy_from_slice(&self.nonce_salt);
            nonce[16..].copy_from_slice(&env.seq.to_be_bytes());
            out.extend_from_slice(&nonce);
        }
        let body_start = out.len();
        put_str(out, &self.cluster);
        put_str(out, env.from);
        out.extend_from_slice(&env.incarnation.to_be_bytes());
        out.extend_from_slice(&env.seq.to_be_bytes());
        encode_message(&env.msg, version, out);
        if let Some(keys) = sealed {
            let (header, body) = out.split_at_mut(body_start);
            let tag = keys
                .own
                .encrypt_inout_detached(&inner_nonce(&nonce[16..]), header, body.into())
                .expect("XChaCha20-Poly1305 encrypts any datagram-sized buffer");
            out.extend_from_slice(&tag);
        }
    }

    pub fn encode(&self, env: &Envelope<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(env, &mut out);
        out
    }

    /// Checks, decrypts (in place) and decodes one datagram of any version
    /// this release understands. Any byte string gives `Ok` or a
    /// [`WireError`], never a panic. `&mut`: it remembers the subkeys of
    /// senders it authenticated.
    pub fn open<'a>(&mut self, buf: &'a mut [u8]) -> Result<Envelope<'a>, WireError> {
        if buf.len() > MAX_ACCEPTED {
            return Err(WireError::Oversized(buf.len()));
        }
        if buf.len() < PLAIN_HEADER {
            return Err(WireError::Truncated);
        }
        if buf[..2] != MAGIC {
            return Err(WireError::BadMagic);
        }
        let version = buf[2];
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(WireError::UnsupportedVersion(version));
        }
        let sealed = buf[3] & FLAG_SEALED != 0;
        if buf[3] & !FLAG_SEALED != 0 {
            return Err(WireError::Malformed("flags"));
        }
        let body: &'a [u8] = match (&mut self.keys, sealed) {
            (None, false) => &buf[PLAIN_HEADER..],
            (Some(_), false) => return Err(WireError::Unauthenticated),
            (None, true) => return Err(WireError::UnexpectedSealed),
            (Some(keys), true) => keys.unseal(version, buf)?,
        };
        let mut r = Reader(body);
        let cluster = r.str("cluster")?;
        if cluster != self.cluster {
            // Sealed datagrams of other clusters already failed authentication
            // (the key binds the cluster name); this catches plain ones.
            return Err(WireError::OtherCluster);
        }
        let from = r.str("sender name")?;
        if from.is_empty() {
            return Err(WireError::Malformed("sender name"));
        }
        let incarnation = r.u64("incarnation")?;
        let seq = r.u64("sequence number")?;
        let msg = decode_message(&mut r, version)?;
        if !r.0.is_empty() {
            return Err(WireError::Malformed("trailing bytes"));
        }
        Ok(Envelope { version, cluster, from, incarnation, seq, msg })
    }
}

impl Keys {
    /// Authenticates and decrypts a sealed datagram in place; its body. A
    /// version 3 datagram names its key; a version 2 one is tried with the
    /// key that opened its sender's last one, then with every key (a failed
    /// try leaves the buffer as it was: the tag is checked before decrypting).
    fn unseal<'a>(&mut self, version: u8, buf: &'a mut [u8]) -> Result<&'a [u8], WireError> {
        let header_len = sealed_header(version);
        if buf.len() < header_len + TAG_LEN {
            return Err(WireError::Truncated);
        }
        let (header, rest) = buf.split_at_mut(header_len);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce_at = header_len - NONCE_LEN;
        let salt: [u8; 16] = header[nonce_at..nonce_at + 16].try_into().expect("16 bytes");
        let nonce = inner_nonce(&header[nonce_at + 16..]);
        let tag = Tag::try_from(&*tag).map_err(|_| WireError::Truncated)?;
        let candidates: Vec<usize> = if version >= 3 {
            let id: [u8; KEY_ID_LEN] =
                header[PLAIN_HEADER..PLAIN_HEADER + KEY_ID_LEN].try_into().expect("4 bytes");
            let index = self
                .ring
                .iter()
                .position(|k| k.id == id)
                .ok_or(WireError::UnknownKey(u32::from_be_bytes(id)))?;
            vec![index]
        } else {
            let last = self.senders.iter().rev().find(|(s, ..)| *s == salt).map(|(_, i, _)| *i);
            last.into_iter().chain((0..self.ring.len()).filter(|i| Some(*i) != last)).collect()
        };
        for index in candidates {
            let known = self.senders.iter().position(|(s, i, _)| *s == salt && *i == index);
            let fresh = known.is_none().then(|| Keys::subkey(&self.ring[index].key, &salt));
            let Some(cipher) = known.map(|k| &self.senders[k].2).or(fresh.as_ref()) else { continue };
            if cipher.decrypt_inout_detached(&nonce, header, (&mut *body).into(), &tag).is_err() {
                continue;
            }
            if let Some(fresh) = fresh {
                if self.senders.len() == SUBKEYS {
                    self.senders.pop_front();
                }
                self.senders.push_back((salt, index, fresh));
            }
            return Ok(body);
        }
        Err(WireError::AuthFailed)
    }
}

/// The bytes health and links add to a heartbeat: their extensions, as
/// [`Codec::encode`] writes them.
pub fn health_ext_len(health: Option<&Health>, links: &[PeerLink<'_>]) -> usize {
    let groups = link_groups(links);
    let links_len: usize = links.iter().map(|l| health::link_len(l.peer)).sum();
    health.map_or(0, |h| 2 + h.encoded_len()) + links_len + 2 * groups.len()
}

/// The links as consecutive groups of at most [`MAX_EXTENSION`] bytes each
/// (a link longer than that cannot be: names are at most [`MAX_NAME`]).
fn link_groups<'a, 'b>(links: &'b [PeerLink<'a>]) -> Vec<&'b [PeerLink<'a>]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, l) in links.iter().enumerate() {
        let len = health::link_len(l.peer);
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

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len().min(u8::MAX as usize);
    out.push(len as u8);
    out.extend_from_slice(&s.as_bytes()[..len]);
}

fn encode_message(msg: &Message<'_>, version: u8, out: &mut Vec<u8>) {
    match msg {
        Message::Heartbeat(hb) => {
            out.push(KIND_HEARTBEAT);
            out.extend_from_slice(&hb.data_port.to_be_bytes());
            out.extend_from_slice(&hb.ip.octets());
            out.extend_from_slice(&hb.hb_seq.to_be_bytes());
            let mut flags = if hb.relays { HB_RELAYS } else { 0 };
            if let Some(v) = &hb.baton {
                flags |= HB_VIEW | if v.holding { HB_HOLDING } else { 0 };
            }
            out.push(flags);
            if let Some(v) = &hb.baton {
                put_id(out, v.id);
                out.extend_from_slice(&v.counter.to_be_bytes());
                out.extend_from_slice(&v.baton_counter.to_be_bytes());
                out.extend_from_slice(&v.settled.to_be_bytes());
                out.extend_from_slice(&v.age_ms.to_be_bytes());
            }
            let n = hb.sightings.len().min(u8::MAX as usize);
            out.push(n as u8);
            for s in &hb.sightings[..n] {
                put_str(out, s.name);
                out.extend_from_slice(&s.incarnation.to_be_bytes());
                out.extend_from_slice(&s.age_ms.to_be_bytes());
            }
            if version >= 3 {
                // Extensions: their count, then each as type | length | bytes.
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
                    put_ext(out, EXT_HEALTH, |o| h.encode(o));
                }
                for g in &groups {
                    put_ext(out, EXT_LINKS, |o| health::encode_links(g, o));
                }
            }
        }
        Message::Leave => out.push(KIND_LEAVE),
        Message::Ping { token } => {
            out.push(KIND_PING);
            out.extend_from_slice(&token.to_be_bytes());
        }
        Message::Ack { token, wall_us } => {
            out.push(KIND_ACK);
            out.extend_from_slice(&token.to_be_bytes());
            if version >= 3 {
                out.extend_from_slice(&wall_us.unwrap_or(NO_WALL).to_be_bytes());
            }
        }
        Message::Pass { id, counter, lap } => {
            out.push(KIND_PASS);
            put_id(out, *id);
            out.extend_from_slice(&counter.to_be_bytes());
            // At most MAX_LAP names: a Lap holds no more.
            out.push(lap.len() as u8);
            out.extend_from_slice(lap.encoded());
        }
        Message::PassAck(ack) => {
            out.push(KIND_PASS_ACK);
            put_id(out, ack.id);
            out.extend_from_slice(&ack.counter.to_be_bytes());
            out.push(match ack.verdict {
                PassVerdict::Taken => 0,
                PassVerdict::Stale => 1,
                PassVerdict::Refused => 2,
            });
            out.extend_from_slice(&ack.delay_us.to_be_bytes());
        }
        Message::PingReq { token, target, incarnation } => {
            out.push(KIND_PING_REQ);
            out.extend_from_slice(&token.to_be_bytes());
            put_str(out, target);
            out.extend_from_slice(&incarnation.to_be_bytes());
        }
        Message::IndirectAck { token, answered } => {
            out.push(KIND_INDIRECT_ACK);
            out.extend_from_slice(&token.to_be_bytes());
            out.push(u8::from(*answered));
        }
        Message::News(items) => {
            out.push(KIND_NEWS);
            let n = items.len().min(MAX_NEWS);
            out.push(n as u8);
            for item in &items[..n] {
                put_str(out, item.name);
                out.extend_from_slice(&item.incarnation.to_be_bytes());
                out.push(match item.rumor {
                    Rumor::Suspect => 1,
                    Rumor::Down => 2,
                    Rumor::Alive => 3,
                });
                out.extend_from_slice(&item.silent_ms.to_be_bytes());
            }
        }
    }
}

/// Encoded size of one news item, for callers that fill a datagram.
pub fn news_len(name: &str) -> usize {
    1 + name.len().min(u8::MAX as usize) + 8 + 1 + 4
}

fn put_id(out: &mut Vec<u8>, id: BatonId) {
    out.extend_from_slice(&id.epoch.to_be_bytes());
    out.extend_from_slice(&id.origin.to_be_bytes());
}

/// Encoded size of one sighting, for callers that fill a heartbeat to a budget.
pub fn sighting_len(name: &str) -> usize {
    1 + name.len().min(u8::MAX as usize) + 8 + 4
}

fn decode_message<'a>(r: &mut Reader<'a>, version: u8) -> Result<Message<'a>, WireError> {
    let kind = r.u8("message kind")?;
    Ok(match kind {
        KIND_HEARTBEAT => {
            let data_port = r.u16("data port")?;
            if data_port == 0 {
                return Err(WireError::Malformed("data port"));
            }
            let ip = Ipv4Addr::from(r.u32("sender address")?);
            let hb_seq = r.u32("heartbeat sequence")?;
            let flags = r.u8("heartbeat flags")?;
            if flags & !(HB_RELAYS | HB_VIEW | HB_HOLDING) != 0 {
                return Err(WireError::Malformed("heartbeat flags"));
            }
            let baton = if flags & HB_VIEW != 0 {
                let id = r.id()?;
                let counter = r.u64("baton counter")?;
                let baton_counter = r.u64("baton counter")?;
                let settled = r.u64("settled counter")?;
                let age_ms = r.u32("baton age")?;
                Some(BatonView {
                    id,
                    counter,
                    baton_counter,
                    settled,
                    age_ms,
                    holding: flags & HB_HOLDING != 0,
                })
            } else {
                None
            };
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
            let (mut understands, mut floor, mut asks_views) = (None, None, false);
            let (mut health, mut links) = (None, Vec::new());
            if version >= 3 {
                for _ in 0..r.u8("extension count")? {
                    let kind = r.u8("extension type")?;
                    let len = r.u8("extension length")? as usize;
                    let bytes = r.take(len, "extension")?;
                    match kind {
                        EXT_VERSIONS => {
                            let &[_, max] = bytes else {
                                return Err(WireError::Malformed("versions extension"));
                            };
                            understands = Some(max);
                        }
                        EXT_FLOOR => {
                            let f: [u8; 8] =
                                bytes.try_into().map_err(|_| WireError::Malformed("floor extension"))?;
                            floor = Some(u64::from_be_bytes(f)).filter(|f| *f > 0);
                        }
                        EXT_ASK_VIEWS => asks_views = true,
                        // Health and links are extras: a sender's bad one
                        // (a bug, a later release's change) is left out,
                        // and the heartbeat still counts.
                        EXT_HEALTH => health = Health::decode(bytes),
                        EXT_LINKS => {
                            let at = links.len();
                            if health::decode_links(bytes, &mut links).is_none() {
                                links.truncate(at);
                            }
                        }
                        // A later release's: skipped.
                        _ => {}
                    }
                }
            }
            Message::Heartbeat(Heartbeat {
                data_port,
                ip,
                hb_seq,
                relays: flags & HB_RELAYS != 0,
                baton,
                sightings,
                understands,
                floor,
                asks_views,
                health,
                links,
            })
        }
        KIND_LEAVE => Message::Leave,
        KIND_PING => Message::Ping { token: r.u64("ping token")? },
        KIND_ACK => {
            let token = r.u64("ack token")?;
            let wall_us = if version >= 3 {
                Some(r.u64("ack wall clock")? as i64).filter(|w| *w != NO_WALL)
            } else {
                None
            };
            Message::Ack { token, wall_us }
        }
        KIND_PASS => {
            let id = r.id()?;
            let counter = r.u64("baton counter")?;
            let n = r.u8("lap length")? as usize;
            if n > MAX_LAP || n > r.0.len() {
                return Err(WireError::Malformed("lap length"));
            }
            let names = r.0;
            for _ in 0..n {
                r.str("lap name")?;
            }
            let names = &names[..names.len() - r.0.len()];
            Message::Pass { id, counter, lap: Lap { buf: names.into(), at: 0, end: names.len() } }
        }
        KIND_PASS_ACK => {
            let id = r.id()?;
            let counter = r.u64("baton counter")?;
            let verdict = match r.u8("pass verdict")? {
                0 => PassVerdict::Taken,
                1 => PassVerdict::Stale,
                2 => PassVerdict::Refused,
                _ => return Err(WireError::Malformed("pass verdict")),
            };
            let delay_us = r.u32("ack delay")?;
            Message::PassAck(PassAck { id, counter, verdict, delay_us })
        }
        KIND_PING_REQ if version >= 3 => Message::PingReq {
            token: r.u64("ping request token")?,
            target: r.str("ping request target")?,
            incarnation: r.u64("ping request incarnation")?,
        },
        KIND_INDIRECT_ACK if version >= 3 => {
            let token = r.u64("indirect ack token")?;
            let answered = match r.u8("indirect ack verdict")? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Malformed("indirect ack verdict")),
            };
            Message::IndirectAck { token, answered }
        }
        KIND_NEWS if version >= 3 => {
            let n = r.u8("news count")? as usize;
            // Each item is at least 14 bytes.
            if n > MAX_NEWS || n * 14 > r.0.len() {
                return Err(WireError::Malformed("news count"));
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                let name = r.str("news name")?;
                if name.is_empty() {
                    return Err(WireError::Malformed("news name"));
                }
                let incarnation = r.u64("news incarnation")?;
                let rumor = match r.u8("news kind")? {
                    1 => Rumor::Suspect,
                    2 => Rumor::Down,
                    3 => Rumor::Alive,
                    _ => return Err(WireError::Malformed("news kind")),
                };
                let silent_ms = r.u32("news silence")?;
                items.push(News { name, incarnation, rumor, silent_ms });
            }
            Message::News(items)
        }
        other => return Err(WireError::UnknownKind(other)),
    })
}

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
        let len = self.u8(what)? as usize;
        if len > MAX_NAME {
            return Err(WireError::Malformed(what));
        }
        std::str::from_utf8(self.take(len, what)?).map_err(|_| WireError::Malformed(what))
    }
}

/// Sliding-window replay filter over one sender's `seq` (the IPsec/WireGuard
/// scheme): accepts each sequence number once, and anything up to 63 behind the
/// highest seen, so reordering on the LAN is tolerated but a replay is not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    /// Bit i set = `top - i` was seen.
    seen: u64,
}

impl ReplayWindow {
    /// A window that has seen exactly `seq`.
    pub fn starting_at(seq: u64) -> ReplayWindow {
        ReplayWindow { top: seq, seen: 1 }
    }

    /// Records `seq`; false if it was seen before or is too old to judge.
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = seq;
            true
        } else {
            let back = self.top - seq;
            if back >= 64 || self.seen & (1 << back) != 0 {
                return false;
            }
            self.seen |= 1 << back;
            true
        }
    }
}
