//! The message decoder behind the MAC. The fuzzer's first byte picks the wire
//! version (every one this release understands), the rest is the plaintext
//! body of a sealed datagram (version 3: cluster, sender, incarnation, seq,
//! kind, payload; version 4 on: sender, incarnation, kind, payload). The
//! harness seals the body itself, by the format's definition rather than
//! herd's code: HKDF-SHA256(salt "herd gossip v1", secret, info cluster) is
//! the key, HKDF-SHA256(same, info "herd key id\0" ‖ cluster) its 4-byte id
//! in the header, XChaCha20-Poly1305 with the header as associated data. A
//! sealed `Codec` opens it, so authentication passes and the body decoder
//! sees arbitrary input.
//!
//! Checks: no panic; herd opens what the definition seals (it would not if
//! its key derivation or header changed); the sealed datagram and the plain
//! one that says the same (from version 4 on: the cluster's name put before
//! the body and the nonce's seq after the incarnation) decode to the same
//! result (same envelope or same error), so the two paths of `Codec::open`
//! agree; an accepted envelope re-encodes to one that decodes to the same
//! envelope.
#![no_main]

use std::sync::{LazyLock, Mutex};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use herd::core::wire::{Codec, Envelope, MAX_ACCEPTED, MIN_VERSION, VERSION, WireError};
use hkdf::Hkdf;
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const CLUSTER: &str = "lab";
const SECRET: &[u8] = b"secret";
const NONCE: [u8; 24] = [9; 24];

// In a Mutex: `Codec::open` takes `&mut` (it remembers senders' subkeys).
static PLAIN: LazyLock<Mutex<Codec>> =
    LazyLock::new(|| Mutex::new(Codec::new::<&[u8]>(CLUSTER, &[], [7; 16])));
static SEALED: LazyLock<Mutex<Codec>> = LazyLock::new(|| Mutex::new(Codec::new(CLUSTER, &[SECRET], [7; 16])));
/// The cluster's cipher and key id.
static KEY: LazyLock<(XChaCha20Poly1305, [u8; 4])> = LazyLock::new(|| {
    let hk = Hkdf::<Sha256>::new(Some(b"herd gossip v1"), SECRET);
    let mut key = [0u8; 32];
    hk.expand(CLUSTER.as_bytes(), &mut key).expect("32-byte key");
    let mut id = [0u8; 4];
    hk.expand_multi_info(&[b"herd key id\0", CLUSTER.as_bytes()], &mut id).expect("4-byte id");
    (XChaCha20Poly1305::new(&key.into()), id)
});

/// `HD | version | flags=sealed | key id | nonce | encrypted body | tag`.
fn seal(version: u8, body: &[u8]) -> Vec<u8> {
    let (cipher, id) = &*KEY;
    let mut out = vec![b'H', b'D', version, 0x01];
    out.extend_from_slice(id);
    out.extend_from_slice(&NONCE);
    let body_start = out.len();
    out.extend_from_slice(body);
    let (header, body) = out.split_at_mut(body_start);
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(NONCE), header, body.into())
        .expect("encrypts any datagram-sized body");
    out.extend_from_slice(&tag);
    out
}

/// The plain body that says what a sealed `body` of `version` says: from
/// version 4 on, the cluster's name first and the nonce's seq (its last 8
/// bytes) after the sender and incarnation, when the body reaches that far
/// (if not, both fail at the same field).
fn plain_body(version: u8, body: &[u8]) -> Vec<u8> {
    if version < 4 {
        return body.to_vec();
    }
    let mut out = vec![CLUSTER.len() as u8];
    out.extend_from_slice(CLUSTER.as_bytes());
    let seq_at = body.first().map(|&len| 1 + usize::from(len) + 8);
    match seq_at {
        Some(at) if body.len() >= at => {
            out.extend_from_slice(&body[..at]);
            out.extend_from_slice(&NONCE[16..]);
            out.extend_from_slice(&body[at..]);
        }
        _ => out.extend_from_slice(body),
    }
    out
}

fn round_trip(codec: &mut Codec, env: &Envelope<'_>) {
    let mut again = codec.encode(env);
    let decoded = codec.open(&mut again).expect("a re-encoded accepted datagram decodes");
    assert_eq!(&decoded, env, "re-encoding an accepted datagram changed it");
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let version = MIN_VERSION + pick % (VERSION - MIN_VERSION + 1);
    let mut plain = vec![b'H', b'D', version, 0x00];
    plain.extend_from_slice(&plain_body(version, body));
    let mut sealed = seal(version, body);
    let comparable = sealed.len() <= MAX_ACCEPTED;
    let (mut plain_codec, mut sealed_codec) =
        (PLAIN.lock().expect("not poisoned"), SEALED.lock().expect("not poisoned"));
    let from_plain = plain_codec.open(&mut plain);
    let from_sealed = sealed_codec.open(&mut sealed);
    if let Ok(env) = &from_sealed {
        assert_eq!(env.version, version);
        round_trip(&mut sealed_codec, env);
    }
    if let Ok(env) = &from_plain {
        round_trip(&mut plain_codec, env);
    }
    // The sealed datagram is longer (nonce, key id, tag): only one of them
    // may be oversized.
    if comparable {
        assert!(
            !matches!(from_sealed, Err(WireError::AuthFailed | WireError::UnknownKey(_))),
            "herd does not open what its format's definition seals (version {version}): {from_sealed:?}"
        );
        assert_eq!(from_plain, from_sealed, "plain and sealed decoding of one body disagree");
    }
});
