//! codec: the envelope around every message and its seal. [`Codec`] writes
//! and checks the header (magic, version, flags, and when sealed the key id
//! and nonce), the body's envelope fields (cluster, sender, incarnation, seq)
//! and the tag; it derives the keys (HKDF-SHA256 from each secret and the
//! cluster name, with their 4-byte ids), keeps the per-sender subkeys, and
//! makes every nonce unique. The message inside is `messages`' business.

use chacha20::{R20, hchacha};
use hkdf::Hkdf;
use sha2::Sha256;

use super::aead::Aead;
use super::{
    Envelope, KEY_ID_LEN, MAGIC, MAX_ACCEPTED, MIN_VERSION, NONCE_LEN, PLAIN_HEADER, Reader, SEALED_HEADER,
    TAG_LEN, VERSION, WireError, messages, put_str,
};

const FLAG_SEALED: u8 = 0x01;

/// From this version on, a sealed datagram's body leaves out the cluster's
/// name (its key is derived from it: another cluster's datagram fails
/// authentication) and the sequence number (the nonce ends with it, and the
/// header is authenticated).
const SHORT_SEALED: u8 = 4;

/// Most senders' subkeys [`Codec::open`] keeps (about 570 bytes each with
/// `ring`'s prepared key, 56 with RustCrypto's: at most 285 KiB).
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
    own: Aead,
    /// Senders' subkeys by (salt, ring index), oldest first; entered only
    /// once a datagram under them authenticated, so garbage cannot fill it.
    senders: std::collections::VecDeque<([u8; 16], usize, Aead)>,
}

struct RingKey {
    key: [u8; 32],
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
        RingKey { key, id }
    }
}

impl Keys {
    fn subkey(key: &[u8; 32], salt: &[u8; 16]) -> Aead {
        Aead::new(&hchacha::<R20>(key.into(), salt.into()).into())
    }
}

/// The ChaCha20 nonce that goes with a subkey: the last 8 bytes of the
/// 24-byte XChaCha nonce after four zero bytes.
fn inner_nonce(seq: &[u8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(seq);
    n
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
            out.extend_from_slice(&keys.ring[0].id);
            // Nonce = per-process random salt ‖ seq: unique for every datagram
            // any node ever sends under this key (XChaCha's 192-bit nonce
            // leaves room for a 128-bit random part).
            nonce[..16].copy_from_slice(&self.nonce_salt);
            nonce[16..].copy_from_slice(&env.seq.to_be_bytes());
            out.extend_from_slice(&nonce);
        }
        let body_start = out.len();
        let short = sealed.is_some() && version >= SHORT_SEALED;
        if !short {
            put_str(out, &self.cluster);
        }
        put_str(out, env.from);
        out.extend_from_slice(&env.incarnation.to_be_bytes());
        if !short {
            out.extend_from_slice(&env.seq.to_be_bytes());
        }
        messages::encode(&env.msg, version, out);
        if let Some(keys) = sealed {
            let (header, body) = out.split_at_mut(body_start);
            let tag = keys.own.seal(inner_nonce(&nonce[16..]), header, body);
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
        let (body, nonce_seq): (&'a [u8], _) = match (&mut self.keys, sealed) {
            (None, false) => (&buf[PLAIN_HEADER..], None),
            (Some(_), false) => return Err(WireError::Unauthenticated),
            (None, true) => return Err(WireError::UnexpectedSealed),
            (Some(keys), true) => keys.unseal(buf).map(|(body, seq)| (body, Some(seq)))?,
        };
        let short = sealed && version >= SHORT_SEALED;
        let mut r = Reader(body);
        // Sealed datagrams of other clusters already failed authentication
        // (the key binds the cluster name): the name is checked in plain
        // ones, and in sealed ones of the versions that carry it.
        if !short && r.str("cluster")? != self.cluster {
            return Err(WireError::OtherCluster);
        }
        let from = r.str("sender name")?;
        if from.is_empty() {
            return Err(WireError::Malformed("sender name"));
        }
        let incarnation = r.u64("incarnation")?;
        let seq = match nonce_seq.filter(|_| short) {
            Some(seq) => seq,
            None => r.u64("sequence number")?,
        };
        let msg = messages::decode(&mut r, version)?;
        if !r.0.is_empty() {
            return Err(WireError::Malformed("trailing bytes"));
        }
        Ok(Envelope { version, from, incarnation, seq, msg })
    }
}

impl Keys {
    /// Authenticates and decrypts a sealed datagram in place: its body, and
    /// the sequence number its nonce ends with. The datagram names its key.
    fn unseal<'a>(&mut self, buf: &'a mut [u8]) -> Result<(&'a [u8], u64), WireError> {
        if buf.len() < SEALED_HEADER + TAG_LEN {
            return Err(WireError::Truncated);
        }
        let (header, rest) = buf.split_at_mut(SEALED_HEADER);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce_at = SEALED_HEADER - NONCE_LEN;
        let salt: [u8; 16] = header[nonce_at..nonce_at + 16].try_into().expect("16 bytes");
        let seq = u64::from_be_bytes(header[nonce_at + 16..].try_into().expect("8 bytes"));
        let nonce = inner_nonce(&header[nonce_at + 16..]);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| WireError::Truncated)?;
        let id: [u8; KEY_ID_LEN] =
            header[PLAIN_HEADER..PLAIN_HEADER + KEY_ID_LEN].try_into().expect("4 bytes");
        let index =
            self.ring.iter().position(|k| k.id == id).ok_or(WireError::UnknownKey(u32::from_be_bytes(id)))?;
        let known = self.senders.iter().position(|(s, i, _)| *s == salt && *i == index);
        let fresh = known.is_none().then(|| Keys::subkey(&self.ring[index].key, &salt));
        let cipher = known.map(|k| &self.senders[k].2).or(fresh.as_ref()).ok_or(WireError::AuthFailed)?;
        if cipher.open(nonce, header, body, tag).is_err() {
            return Err(WireError::AuthFailed);
        }
        if let Some(fresh) = fresh {
            if self.senders.len() == SUBKEYS {
                self.senders.pop_front();
            }
            self.senders.push_back((salt, index, fresh));
        }
        Ok((body, seq))
    }
}
