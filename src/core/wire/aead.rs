//! aead: ChaCha20-Poly1305 (RFC 8439) under one key, sealing and opening in
//! place with a detached tag: what `codec` does with every sender's subkey.
//!
//! Two implementations of the same function, the faster one measured on each
//! architecture for herd's datagrams (a 32-byte header as associated data
//! and a body of one ChaCha20 block), instructions per seal and open of one
//! baton pass (callgrind on x86_64, qemu's instruction log on ARM):
//!
//! | target | RustCrypto `chacha20poly1305` (portable backends) | `ring` (BoringSSL's assembly) |
//! |---|---|---|
//! | x86_64 | 8,436 | 2,863 |
//! | aarch64 (Pi 3, 4, 5 on 64-bit Pi OS) | 6,852 | 3,224 |
//! | armv6 on the ARM1176 (Pi 1, Zero) | 10,590 | 14,123 |
//!
//! so 64-bit targets use `ring` and 32-bit ARM RustCrypto (the armv6 build,
//! and the armv7 one with it: `target_arch` does not tell them apart). Both
//! compute the same bytes (a unit test below compares them; `tests/wire.rs`
//! opens herd's datagrams with RustCrypto's XChaCha20-Poly1305), so Pis of
//! every build share one cluster.

use super::TAG_LEN as TAG;

/// One ChaCha20-Poly1305 key, ready to seal and open.
pub struct Aead(Inner);

/// The datagram failed authentication (nothing about why: RFC 8439).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forged;

impl Aead {
    pub fn new(key: &[u8; 32]) -> Aead {
        Aead(Inner::new(key))
    }

    /// Encrypts `body` in place under `nonce`, authenticating `ad` with it;
    /// the tag. A nonce must never seal twice under one key.
    pub fn seal(&self, nonce: [u8; 12], ad: &[u8], body: &mut [u8]) -> [u8; TAG] {
        self.0.seal(nonce, ad, body)
    }

    /// Checks `tag` over `ad` and `body`, and decrypts `body` in place when
    /// it holds; `body` is garbage after a [`Forged`].
    pub fn open(&self, nonce: [u8; 12], ad: &[u8], body: &mut [u8], tag: [u8; TAG]) -> Result<(), Forged> {
        self.0.open(nonce, ad, body, tag)
    }
}

#[cfg(not(target_arch = "arm"))]
use with_ring::Inner;
#[cfg(target_arch = "arm")]
use with_rustcrypto::Inner;

#[cfg(not(target_arch = "arm"))]
mod with_ring {
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};

    use super::{Forged, TAG};

    pub struct Inner(LessSafeKey);

    impl Inner {
        pub fn new(key: &[u8; 32]) -> Inner {
            let key =
                UnboundKey::new(&CHACHA20_POLY1305, key).expect("ChaCha20-Poly1305 takes a 32-byte key");
            Inner(LessSafeKey::new(key))
        }

        pub fn seal(&self, nonce: [u8; 12], ad: &[u8], body: &mut [u8]) -> [u8; TAG] {
            let tag = self
                .0
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(ad), body)
                .expect("ChaCha20-Poly1305 seals any datagram-sized body");
            tag.as_ref().try_into().expect("a 16-byte tag")
        }

        pub fn open(
            &self,
            nonce: [u8; 12],
            ad: &[u8],
            body: &mut [u8],
            tag: [u8; TAG],
        ) -> Result<(), Forged> {
            let nonce = Nonce::assume_unique_for_key(nonce);
            self.0
                .open_in_place_separate_tag(nonce, Aad::from(ad), Tag::from(tag), body, 0..)
                .map_err(|_| Forged)?;
            Ok(())
        }
    }
}

#[cfg(any(target_arch = "arm", test))]
mod with_rustcrypto {
    use chacha20poly1305::aead::{AeadInOut, KeyInit};
    use chacha20poly1305::{ChaCha20Poly1305, Tag};

    use super::{Forged, TAG};

    pub struct Inner(ChaCha20Poly1305);

    impl Inner {
        pub fn new(key: &[u8; 32]) -> Inner {
            Inner(ChaCha20Poly1305::new(key.into()))
        }

        pub fn seal(&self, nonce: [u8; 12], ad: &[u8], body: &mut [u8]) -> [u8; TAG] {
            let tag = self
                .0
                .encrypt_inout_detached(&nonce.into(), ad, body.into())
                .expect("ChaCha20-Poly1305 seals any datagram-sized body");
            tag.into()
        }

        pub fn open(
            &self,
            nonce: [u8; 12],
            ad: &[u8],
            body: &mut [u8],
            tag: [u8; TAG],
        ) -> Result<(), Forged> {
            let tag = Tag::from(tag);
            self.0.decrypt_inout_detached(&nonce.into(), ad, body.into(), &tag).map_err(|_| Forged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439 §2.8.2's example.
    #[test]
    fn seals_rfc_8439s_example() {
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47];
        let ad = [0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7];
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let mut body = plain.to_vec();
        let tag = Aead::new(&key).seal(nonce, &ad, &mut body);
        assert_eq!(tag, hex("1ae10b594f09e26a7e902ecbd0600691"));
        assert_eq!(&body[..16], &hex::<16>("d31a8d34648e60db7b86afbc53ef7ec2")[..]);
        Aead::new(&key).open(nonce, &ad, &mut body, tag).expect("its own seal opens");
        assert_eq!(body, plain);
    }

    /// Both implementations give the same bytes and open each other's, for
    /// every body length of a datagram's first blocks, and refuse one bit
    /// changed anywhere.
    #[test]
    fn both_implementations_agree() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let (here, other) = (Aead::new(&key), with_rustcrypto::Inner::new(&key));
        let ad: Vec<u8> = (0..32u8).collect();
        for len in 0..200 {
            let nonce = [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, len as u8];
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 + 5) as u8).collect();
            let (mut a, mut b) = (plain.clone(), plain.clone());
            let (ta, tb) = (here.seal(nonce, &ad, &mut a), other.seal(nonce, &ad, &mut b));
            assert_eq!((&a, ta), (&b, tb), "body of {len} bytes");
            other.open(nonce, &ad, &mut a, ta).expect("RustCrypto opens ours");
            here.open(nonce, &ad, &mut b, tb).expect("ours opens RustCrypto's");
            assert_eq!((&a, &b), (&plain, &plain));
            let mut sealed = plain.clone();
            let tag = here.seal(nonce, &ad, &mut sealed);
            for bit in 0..(sealed.len() + ad.len() + TAG) * 8 {
                let (mut s, mut d, mut t) = (sealed.clone(), ad.clone(), tag);
                let at = bit / 8;
                match at {
                    _ if at < s.len() => s[at] ^= 1 << (bit % 8),
                    _ if at < s.len() + d.len() => d[at - s.len()] ^= 1 << (bit % 8),
                    _ => t[at - s.len() - d.len()] ^= 1 << (bit % 8),
                }
                assert_eq!(here.open(nonce, &d, &mut s, t), Err(Forged), "bit {bit} of a {len}-byte body");
            }
        }
    }

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        std::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
    }
}
