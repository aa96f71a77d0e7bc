//! The message decoder behind the MAC: the fuzzer's bytes are the plaintext
//! body (cluster, sender, incarnation, seq, kind, payload), sealed here under
//! herd's key derivation (HKDF-SHA256(salt "herd gossip v1", secret, info
//! cluster) -> XChaCha20-Poly1305, header as associated data) and opened with
//! a sealed `Codec`, so authentication passes and the body decoder sees
//! arbitrary input.
//!
//! Checks: no panic; the sealed datagram and the plain one with the same body
//! decode to the same result (same envelope or same error), so the two paths
//! of `Codec::open` agree; accepted envelopes survive a re-encode.
#![no_main]

use std::sync::{LazyLock, Mutex};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use herd::core::wire::{Codec, Envelope, MAX_ACCEPTED, VERSION, WireError};
use hkdf::Hkdf;
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const CLUSTER: &str = "lab";
const SECRET: &[u8] = b"secret";
const NONCE: [u8; 24] = [9; 24];

// In a Mutex: `Codec::open` takes `&mut` (it remembers senders' subkeys).
static PLAIN: LazyLock<Mutex<Codec>> = LazyLock::new(|| Mutex::new(Codec::new::<&[u8]>(CLUSTER, &[], [7; 16])));
static SEALED: LazyLock<Mutex<Codec>> =
    LazyLock::new(|| Mutex::new(Codec::new(CLUSTER, &[SECRET], [7; 16])));
static CIPHER: LazyLock<XChaCha20Poly1305> = LazyLock::new(|| {
    let hk = Hkdf::<Sha256>::new(Some(b"herd gossip v1"), SECRET);
    let mut key = [0u8; 32];
    hk.expand(CLUSTER.as_bytes(), &mut key).expect("32-byte key");
    XChaCha20Poly1305::new(&key.into())
});

/// `HD | version | flags=sealed | nonce | encrypted body | tag`.
fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = vec![b'H', b'D', VERSION, 0x01];
    out.extend_from_slice(&NONCE);
    let body_start = out.len();
    out.extend_from_slice(body);
    let (header, body) = out.split_at_mut(body_start);
    let tag = CIPHER
        .encrypt_inout_detached(&XNonce::from(NONCE), header, body.into())
        .expect("encrypts any datagram-sized body");
    out.extend_from_slice(&tag);
    out
}

fn round_trip(codec: &mut Codec, env: &Envelope<'_>) {
    let mut again = codec.encode(env);
    let decoded = codec.open(&mut again).expect("a re-encoded accepted datagram decodes");
    assert_eq!(&decoded, env, "re-encoding an accepted datagram changed it");
}

fuzz_target!(|body: &[u8]| {
    let mut plain = vec![b'H', b'D', VERSION, 0x00];
    plain.extend_from_slice(body);
    let mut sealed = seal(body);
    let comparable = sealed.len() <= MAX_ACCEPTED;
    let (mut plain_codec, mut sealed_codec) =
        (PLAIN.lock().expect("not poisoned"), SEALED.lock().expect("not poisoned"));
    let from_plain = plain_codec.open(&mut plain);
    let from_sealed = sealed_codec.open(&mut sealed);
    if let Ok(env) = &from_sealed {
        round_trip(&mut sealed_codec, env);
    }
    if let Ok(env) = &from_plain {
        round_trip(&mut plain_codec, env);
    }
    // The sealed datagram is 40 bytes longer: only one of them may be oversized.
    if comparable {
        assert_ne!(from_sealed, Err(WireError::AuthFailed), "herd's key derivation changed");
        assert_eq!(from_plain, from_sealed, "plain and sealed decoding of one body disagree");
    }
});
