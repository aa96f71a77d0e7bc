//! `Codec::open` on arbitrary datagrams, with and without a cluster secret.
//!
//! Checks: no input panics (`Codec::open`: "any byte string gives `Ok` or a
//! `WireError`, never a panic"), and whatever is accepted re-encodes to a
//! datagram that decodes to the same envelope. With a secret nearly every
//! input fails authentication; `wire_sealed` covers the decoder behind the MAC.
#![no_main]

use std::sync::{LazyLock, Mutex};

use herd::core::wire::{Codec, Envelope};
use libfuzzer_sys::fuzz_target;

const CLUSTER: &str = "lab";
const SECRET: &[u8] = b"secret";

// In a Mutex: `Codec::open` takes `&mut` (it remembers senders' subkeys).
static PLAIN: LazyLock<Mutex<Codec>> =
    LazyLock::new(|| Mutex::new(Codec::new::<&[u8]>(CLUSTER, &[], [7; 16])));
static SEALED: LazyLock<Mutex<Codec>> = LazyLock::new(|| Mutex::new(Codec::new(CLUSTER, &[SECRET], [7; 16])));

fn round_trip(codec: &mut Codec, env: &Envelope<'_>) {
    let mut again = codec.encode(env);
    let decoded = codec.open(&mut again).expect("a re-encoded accepted datagram decodes");
    assert_eq!(&decoded, env, "re-encoding an accepted datagram changed it");
}

fuzz_target!(|data: &[u8]| {
    for codec in [&PLAIN, &SEALED] {
        let mut codec = codec.lock().expect("not poisoned");
        let mut buf = data.to_vec();
        if let Ok(env) = codec.open(&mut buf) {
            round_trip(&mut codec, &env);
        }
    }
});
