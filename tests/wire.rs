//! The wire format: round trips, tamper detection, and "any byte string gives
//! an error value, never a panic", property-tested.

use herd::core::health::{self, Health, PeerLink};
use herd::core::membership::ReplayWindow;
use herd::core::wire::{
    self, BatonId, BatonView, Codec, Envelope, Heartbeat, Lap, MAX_LAP, MAX_NAME, MAX_NEWS, MIN_VERSION,
    Message, News, PassAck, PassVerdict, Rumor, Sighting, VERSION, WireError,
};
use proptest::prelude::*;

fn codec(secret: Option<&[u8]>) -> Codec {
    Codec::new("lab", &Vec::from_iter(secret), [7; 16])
}

/// A codec whose keyring is `keys`, the first sealing.
fn keyring(keys: &[&str]) -> Codec {
    Codec::new("lab", &keys.iter().map(|k| k.as_bytes()).collect::<Vec<_>>(), [7; 16])
}

fn name() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-z0-9._-]{{1,{MAX_NAME}}}")).unwrap()
}

fn baton_id() -> impl Strategy<Value = BatonId> {
    (any::<u64>(), any::<u64>()).prop_map(|(epoch, origin)| BatonId { epoch, origin })
}

fn view() -> impl Strategy<Value = Option<BatonView>> {
    let fields = (baton_id(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u32>(), any::<bool>());
    proptest::option::of(fields.prop_map(|(id, counter, baton_counter, settled, age_ms, holding)| {
        BatonView { id, counter, baton_counter, settled, age_ms, holding }
    }))
}

/// An owned message, so the strategies can generate borrowed ones from it.
#[derive(Debug, Clone)]
enum Kind {
    Heartbeat(
        u16,
        u32,
        u32,
        bool,
        Option<BatonView>,
        Vec<(String, u64, u32)>,
        Option<Health>,
        Vec<(String, Option<u16>, u8)>,
    ),
    Leave,
    Ping(u64),
    Ack(u64, Option<i64>),
    Pass(BatonId, u64, Vec<String>),
    PassAck(BatonId, u64, PassVerdict, u32),
    PingReq(u64, String, u64),
    IndirectAck(u64, bool),
    News(Vec<(String, u64, u8, u32)>),
}

impl Kind {
    /// Messages that exist from version 3 on only.
    fn version(&self, version: u8) -> u8 {
        match self {
            Kind::PingReq(..) | Kind::IndirectAck(..) | Kind::News(_) => VERSION,
            _ => version,
        }
    }
}

fn health() -> impl Strategy<Value = Health> {
    use proptest::option::of;
    let sensors = (of(any::<i16>()), of(0u8..16), of(any::<u16>()), of(0u8..=100), of(any::<u16>()));
    let state = (of(any::<bool>()), of(any::<bool>()), of(any::<u32>()), "[ -~]{0,32}");
    (sensors, state).prop_map(
        |(
            (temp_dc, throttle, load1_c, mem_used_pct, fan_rpm),
            (root_readonly, clock_synced, uptime_s, version),
        )| Health {
            temp_dc,
            throttle,
            load1_c,
            mem_used_pct,
            fan_rpm,
            root_readonly,
            clock_synced,
            uptime_s,
            version,
        },
    )
}

fn kind() -> impl Strategy<Value = Kind> {
    let sightings = proptest::collection::vec((name(), any::<u64>(), any::<u32>()), 0..20);
    // Up to 24 links of names up to 63 bytes: several extensions' worth.
    let rtt = proptest::option::of(0..health::MAX_RTT_CMS);
    let links = proptest::collection::vec((name(), rtt, 0u8..=100), 0..24);
    let verdict = prop_oneof![Just(PassVerdict::Taken), Just(PassVerdict::Stale), Just(PassVerdict::Refused)];
    prop_oneof![
        (
            1u16..,
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            view(),
            sightings,
            proptest::option::of(health()),
            links
        )
            .prop_map(|(p, ip, s, r, v, l, h, k)| Kind::Heartbeat(p, ip, s, r, v, l, h, k)),
        Just(Kind::Leave),
        any::<u64>().prop_map(Kind::Ping),
        (
            any::<u64>(),
            proptest::option::of(any::<i64>().prop_filter("not the none marker", |w| *w != i64::MIN))
        )
            .prop_map(|(t, w)| Kind::Ack(t, w)),
        (baton_id(), any::<u64>(), proptest::collection::vec(name(), 0..=MAX_LAP.min(16)))
            .prop_map(|(id, c, lap)| Kind::Pass(id, c, lap)),
        (baton_id(), any::<u64>(), verdict, any::<u32>())
            .prop_map(|(id, c, v, d)| Kind::PassAck(id, c, v, d)),
        (any::<u64>(), name(), any::<u64>()).prop_map(|(t, n, i)| Kind::PingReq(t, n, i)),
        (any::<u64>(), any::<bool>()).prop_map(|(t, a)| Kind::IndirectAck(t, a)),
        proptest::collection::vec((name(), any::<u64>(), 0u8..3, any::<u32>()), 0..=MAX_NEWS)
            .prop_map(Kind::News),
    ]
}

/// `k` as sent in wire `version` (a heartbeat announces what it understands
/// from version 3 on).
fn message(k: &Kind, version: u8) -> Message<'_> {
    match k {
        Kind::Heartbeat(data_port, ip, hb_seq, relays, baton, s, health, links) => {
            Message::Heartbeat(Heartbeat {
                data_port: *data_port,
                ip: (*ip).into(),
                hb_seq: *hb_seq,
                relays: *relays,
                baton: *baton,
                sightings: s
                    .iter()
                    .map(|(n, i, a)| Sighting { name: n, incarnation: *i, age_ms: *a })
                    .collect(),
                // What a node sends (its own VERSION), or any other claim
                // (a later release's, a bug's), or none: each as it is.
                understands: (version >= 3 && *hb_seq % 7 != 0).then_some(if *hb_seq % 2 == 0 {
                    VERSION
                } else {
                    (*hb_seq >> 8) as u8
                }),
                floor: (version >= 3 && *hb_seq % 3 == 0).then_some(u64::from(*hb_seq) + 1),
                asks_views: version >= 3 && *hb_seq % 5 == 0,
                // Extensions: version 3 on.
                health: health.clone().filter(|_| version >= 3),
                links: links
                    .iter()
                    .filter(|_| version >= 3)
                    .map(|(peer, rtt_cms, loss_pct)| PeerLink {
                        peer,
                        rtt_cms: *rtt_cms,
                        loss_pct: *loss_pct,
                    })
                    .collect(),
            })
        }
        Kind::Leave => Message::Leave,
        Kind::Ping(t) => Message::Ping { token: *t },
        Kind::Ack(t, w) => Message::Ack { token: *t, wall_us: *w },
        Kind::Pass(id, counter, lap) => {
            Message::Pass { id: *id, counter: *counter, lap: Lap::from_names(lap.iter().map(String::as_str)) }
        }
        // From version 4 the ack names the pass by its counter alone.
        Kind::PassAck(id, counter, verdict, delay_us) => Message::PassAck(PassAck {
            id: (version < 4).then_some(*id),
            counter: *counter,
            verdict: *verdict,
            delay_us: *delay_us,
        }),
        Kind::PingReq(token, target, incarnation) => {
            Message::PingReq { token: *token, target, incarnation: *incarnation }
        }
        Kind::IndirectAck(token, answered) => Message::IndirectAck { token: *token, answered: *answered },
        Kind::News(items) => Message::News(
            items
                .iter()
                .map(|(name, incarnation, rumor, silent_ms)| News {
                    name,
                    incarnation: *incarnation,
                    rumor: [Rumor::Suspect, Rumor::Down, Rumor::Alive][*rumor as usize],
                    silent_ms: *silent_ms,
                })
                .collect(),
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip(from in name(), incarnation in any::<u64>(), seq in any::<u64>(), k in kind(), sealed in any::<bool>(), version in MIN_VERSION..=VERSION) {
        let mut c = codec(sealed.then_some(b"secret".as_slice()));
        let version = k.version(version);
        let env = Envelope { version, from: &from, incarnation, seq, msg: message(&k, version) };
        let mut bytes = c.encode(&env);
        let got = c.open(&mut bytes).expect("own datagram decodes");
        prop_assert_eq!(got, env);
    }

    #[test]
    fn any_bytes_give_a_value_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        for mut c in [codec(None), codec(Some(b"secret"))] {
            let _ = c.open(&mut bytes.clone());
            // Also with a valid header, so the body decoder sees random input.
            for version in MIN_VERSION..=VERSION {
                let mut framed = vec![b'H', b'D', version, 0];
                framed.extend_from_slice(&bytes);
                let _ = c.open(&mut framed);
            }
        }
    }

    #[test]
    fn any_single_bit_flip_of_a_sealed_datagram_is_refused(k in kind(), bit in any::<prop::sample::Index>()) {
        let mut c = codec(Some(b"secret"));
        let env = Envelope { version: VERSION, from: "psa", incarnation: 1, seq: 9, msg: message(&k, VERSION) };
        let mut bytes = c.encode(&env);
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(c.open(&mut bytes).is_err());
    }

    #[test]
    fn truncations_of_a_valid_datagram_are_refused(k in kind(), sealed in any::<bool>(), cut in any::<prop::sample::Index>()) {
        let mut c = codec(sealed.then_some(b"secret".as_slice()));
        let env = Envelope { version: VERSION, from: "psa", incarnation: 1, seq: 9, msg: message(&k, VERSION) };
        let bytes = c.encode(&env);
        let cut = cut.index(bytes.len());
        prop_assert!(c.open(&mut bytes[..cut].to_vec()).is_err());
    }

    #[test]
    fn replay_window_accepts_each_seq_once(seqs in proptest::collection::vec(1u64..200, 1..300)) {
        let mut w = ReplayWindow::starting_at(0);
        let mut seen = std::collections::HashSet::new();
        let mut top = 0;
        for s in seqs {
            let accepted = w.accept(s);
            if accepted {
                prop_assert!(seen.insert(s), "seq {} accepted twice", s);
            } else {
                prop_assert!(seen.contains(&s) || top >= s + 64);
            }
            top = top.max(s);
        }
    }
}

/// A lap is taken off the wire, popped and sent on in its wire form: what
/// goes out is exactly the names not yet popped.
#[test]
fn a_popped_lap_is_forwarded_as_the_remaining_names() {
    let pass = |lap| Envelope {
        version: VERSION,
        from: "psa",
        incarnation: 1,
        seq: 1,
        msg: Message::Pass { id: BatonId { epoch: 1, origin: 2 }, counter: 7, lap },
    };
    let mut c = codec(Some(b"secret"));
    let mut bytes = c.encode(&pass(Lap::from_names(["psb", "psc", "psd"])));
    let Message::Pass { mut lap, .. } = c.open(&mut bytes).expect("decodes").msg else {
        panic!("not a pass")
    };
    assert_eq!(lap.len(), 3);
    assert_eq!(lap.pop_front().expect("a name").as_str(), "psb");
    assert_eq!(lap.iter().collect::<Vec<_>>(), ["psc", "psd"]);
    let mut bytes = c.encode(&pass(lap.clone()));
    let got = c.open(&mut bytes).expect("decodes");
    assert_eq!(got.msg, Message::Pass { id: BatonId { epoch: 1, origin: 2 }, counter: 7, lap });
    let Message::Pass { mut lap, .. } = got.msg else { panic!("not a pass") };
    assert_eq!(lap.pop_front().expect("a name").as_str(), "psc");
    assert_eq!(lap.pop_front().expect("a name").as_str(), "psd");
    assert!(lap.pop_front().is_none() && lap.is_empty());
}

/// A lap holds at most MAX_LAP names, each one a name config would accept;
/// on the wire, more names or a longer one make the pass malformed.
#[test]
fn laps_are_bounded_when_built_and_when_decoded() {
    let names: Vec<String> = (0..MAX_LAP + 5).map(|i| format!("n{i}")).collect();
    let long = "x".repeat(MAX_NAME + 1);
    let lap = Lap::from_names(std::iter::once(long.as_str()).chain(names.iter().map(String::as_str)));
    assert_eq!(lap.len(), MAX_LAP);
    assert_eq!(lap.iter().next(), Some("n0"));
    let plain = |lap_bytes: &[u8]| {
        let mut d = vec![b'H', b'D', VERSION, 0];
        d.extend_from_slice(b"\x03lab\x03psa");
        d.extend_from_slice(&[0; 16]); // incarnation, seq
        d.push(5); // pass
        d.extend_from_slice(&[0; 16]); // baton id
        d.extend_from_slice(&[0; 8]); // counter
        d.extend_from_slice(lap_bytes);
        d
    };
    assert!(codec(None).open(&mut plain(b"\x01\x03psb")).is_ok());
    let mut too_long = vec![1, (MAX_NAME + 1) as u8];
    too_long.extend_from_slice(long.as_bytes());
    assert_eq!(codec(None).open(&mut plain(&too_long)), Err(WireError::Malformed("lap name")));
    let mut too_many = vec![(MAX_LAP + 1) as u8];
    for _ in 0..=MAX_LAP {
        too_many.extend_from_slice(b"\x01a");
    }
    assert_eq!(codec(None).open(&mut plain(&too_many)), Err(WireError::Malformed("lap length")));
    assert_eq!(codec(None).open(&mut plain(b"\x02\x01\xff\x01a")), Err(WireError::Malformed("lap name")));
}

#[test]
fn secrets_clusters_and_modes_must_match() {
    let env = Envelope { version: VERSION, from: "psa", incarnation: 1, seq: 1, msg: Message::Leave };
    let sealed = codec(Some(b"secret")).encode(&env);
    let plain = codec(None).encode(&env);
    // Another secret or cluster: the key id already differs (it is derived
    // from both), in every version.
    let old = Envelope { version: MIN_VERSION, ..env.clone() };
    let sealed_old = codec(Some(b"secret")).encode(&old);
    for other in [codec(Some(b"other")), Codec::new("lab2", &[b"secret"], [0; 16])] {
        let mut other = other;
        assert!(matches!(other.open(&mut sealed.clone()), Err(WireError::UnknownKey(_))));
        assert!(matches!(other.open(&mut sealed_old.clone()), Err(WireError::UnknownKey(_))));
    }
    assert_eq!(codec(None).open(&mut sealed.clone()), Err(WireError::UnexpectedSealed));
    assert_eq!(codec(Some(b"secret")).open(&mut plain.clone()), Err(WireError::Unauthenticated));
    assert_eq!(
        Codec::new::<&[u8]>("lab2", &[], [0; 16]).open(&mut plain.clone()),
        Err(WireError::OtherCluster)
    );
    // Version 1 (before heartbeats carried the sender's IP) and a future one.
    for version in [1, VERSION + 1] {
        let mut other = plain.clone();
        other[2] = version;
        assert_eq!(codec(None).open(&mut other), Err(WireError::UnsupportedVersion(version)));
    }
    assert_eq!(codec(None).open(&mut vec![0; 5000]), Err(WireError::Oversized(5000)));
    assert_eq!(codec(None).open(&mut b"XX\x01\x00".to_vec()), Err(WireError::BadMagic));
}

#[test]
fn sealed_datagrams_do_not_show_names_and_nonces_differ() {
    let c = codec(Some(b"secret"));
    let env =
        |seq| Envelope { version: VERSION, from: "raspberry-psa", incarnation: 1, seq, msg: Message::Leave };
    let a = c.encode(&env(1));
    let b = c.encode(&env(2));
    assert!(!a.windows(13).any(|w| w == b"raspberry-psa"));
    assert_ne!(a[8..32], b[8..32], "nonce must change with seq");
    assert_eq!(a[4..8], b[4..8], "the key id is the key's");
}

#[test]
fn replay_window_tolerates_reordering_but_not_old_or_repeated() {
    let mut w = ReplayWindow::starting_at(10);
    assert!(!w.accept(10));
    assert!(w.accept(12));
    assert!(w.accept(11));
    assert!(!w.accept(11));
    assert!(w.accept(100));
    assert!(!w.accept(36), "more than 63 behind the top is refused");
    assert!(w.accept(37));
}

/// The key both tests below derive independently of `Codec`: HKDF-SHA256 of
/// the secret, salt "herd gossip v1", info the cluster name.
fn xchacha(secret: &[u8], cluster: &str) -> chacha20poly1305::XChaCha20Poly1305 {
    use chacha20poly1305::KeyInit;
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"herd gossip v1"), secret);
    let mut key = [0u8; 32];
    hk.expand(cluster.as_bytes(), &mut key).unwrap();
    chacha20poly1305::XChaCha20Poly1305::new(&key.into())
}

/// The codec computes each sender's XChaCha subkey once; what it sends and
/// accepts must still be plain XChaCha20-Poly1305 (the wire format of every
/// herd since version 2), in both directions and in both versions, with the
/// key id between the 4-byte header and the nonce. The body sealed is the
/// plain datagram's; from version 4 on, without the cluster's name and the
/// seq (the key binds the one, the nonce ends with the other).
#[test]
fn sealing_is_xchacha20_poly1305_with_the_derived_key() {
    use chacha20poly1305::aead::AeadInOut;
    let x = xchacha(b"secret", "lab");
    let env = |version, seq| Envelope {
        version,
        from: "psa",
        incarnation: 9,
        seq,
        msg: Message::Pass {
            id: BatonId { epoch: 3, origin: 4 },
            counter: seq,
            lap: Lap::from_names(["psb", "psc"]),
        },
    };
    let mut c = codec(Some(b"secret"));
    for version in [MIN_VERSION, VERSION] {
        let header_len = 32;
        for seq in [1, 2, u64::MAX] {
            // Codec → XChaCha: decrypt what the codec sealed, compare with the plain encoding.
            let sealed = c.encode(&env(version, seq));
            let plain = codec(None).encode(&env(version, seq));
            let (header, rest) = sealed.split_at(header_len);
            let (body, tag) = rest.split_at(rest.len() - 16);
            let mut body = body.to_vec();
            x.decrypt_inout_detached(
                header[header_len - 24..].try_into().unwrap(),
                header,
                body.as_mut_slice().into(),
                tag.try_into().unwrap(),
            )
            .expect("XChaCha20-Poly1305 opens the codec's datagram");
            assert_eq!(body, sealed_body(version, &plain[4..]));
            // XChaCha → codec: seal with another salt (a fresh subkey for the
            // codec), then again with the same salt (its remembered subkey).
            for _ in 0..2 {
                let mut nonce = [5u8; 24];
                nonce[16..].copy_from_slice(&seq.to_be_bytes());
                let mut dgram = vec![b'H', b'D', version, 1];
                dgram.extend_from_slice(&header[4..header_len - 24]);
                dgram.extend_from_slice(&nonce);
                let mut body = sealed_body(version, &plain[4..]);
                let tag =
                    x.encrypt_inout_detached(&nonce.into(), &dgram, body.as_mut_slice().into()).unwrap();
                dgram.extend_from_slice(&body);
                dgram.extend_from_slice(&tag);
                assert_eq!(c.open(&mut dgram.clone()).unwrap(), env(version, seq));
                // One flipped bit anywhere still fails with the remembered subkey
                // (in a version 3 key id: as a key this codec does not have).
                for i in [4, 30, dgram.len() - 1] {
                    let mut bad = dgram.clone();
                    bad[i] ^= 1;
                    let got = c.open(&mut bad);
                    if i == 4 {
                        assert!(matches!(got, Err(WireError::UnknownKey(_))), "key id flipped: {got:?}");
                    } else {
                        assert_eq!(got, Err(WireError::AuthFailed), "bit flipped in byte {i}");
                    }
                }
            }
        }
    }
}

/// A keyring: the first key seals, every key opens, in both versions (a
/// version 3 datagram names its key; a version 2 one is tried with each); a
/// key not in the ring is refused, in version 3 as a key this node lacks.
#[test]
fn a_keyring_opens_with_any_of_its_keys() {
    let leave = |version| Envelope { version, from: "psa", incarnation: 1, seq: 1, msg: Message::Leave };
    let old = keyring(&["old"]);
    let new = keyring(&["new"]);
    let rotating = keyring(&["new", "old"]);
    assert_eq!(rotating.key_ids().len(), 2);
    assert_eq!(rotating.key_ids()[0], new.key_ids()[0], "the first key seals and is listed first");
    assert_eq!(rotating.key_ids()[1], old.key_ids()[0]);
    assert_ne!(old.key_ids(), new.key_ids());
    assert_ne!(
        Codec::new("lab2", &[b"old"], [7; 16]).key_ids(),
        old.key_ids(),
        "a key's id depends on the cluster, as the key does"
    );
    for version in [MIN_VERSION, VERSION] {
        for (sender, receiver) in
            [(&old, "new,old"), (&new, "new,old"), (&rotating, "old,new"), (&rotating, "new")]
        {
            let mut rx = keyring(&receiver.split(',').collect::<Vec<_>>());
            let mut bytes = sender.encode(&leave(version));
            let got = rx.open(&mut bytes);
            assert_eq!(
                got,
                Ok(leave(version)),
                "v{version}: sealed by {:?}, keyring {receiver}",
                sender.key_ids()
            );
        }
        let mut bytes = old.encode(&leave(version));
        let got = keyring(&["other"]).open(&mut bytes);
        if version >= 3 {
            let id = u32::from_str_radix(&old.key_ids()[0], 16).unwrap();
            assert_eq!(got, Err(WireError::UnknownKey(id)));
        } else {
            assert_eq!(got, Err(WireError::AuthFailed));
        }
    }
    // A sender that changes its sealing key (a reload) under the same salt
    // still opens: the remembered subkey is not the only one tried.
    let mut rx = keyring(&["new", "old"]);
    assert!(rx.open(&mut old.encode(&leave(MIN_VERSION))).is_ok());
    let mut second = leave(MIN_VERSION);
    second.seq = 2;
    assert_eq!(rx.open(&mut new.encode(&second)), Ok(second));
}

/// More senders than the codec remembers: every one of them still opens
/// (the oldest subkeys are recomputed), and none is confused with another.
#[test]
fn many_senders_all_open() {
    let mut rx = codec(Some(b"secret"));
    let senders: Vec<Codec> = (0..700u16)
        .map(|i| {
            let mut salt = [0u8; 16];
            salt[..2].copy_from_slice(&i.to_be_bytes());
            Codec::new("lab", &[b"secret"], salt)
        })
        .collect();
    for round in 0..2 {
        for (i, s) in senders.iter().enumerate() {
            let env = Envelope {
                version: VERSION,
                from: "psa",
                incarnation: i as u64,
                seq: round,
                msg: Message::Leave,
            };
            assert_eq!(rx.open(&mut s.encode(&env)).unwrap(), env, "sender {i}, round {round}");
        }
    }
}

/// A version 3 heartbeat of psa's with no baton view and no sightings.
fn heartbeat(floor: Option<u64>, health: Option<Health>, links: Vec<PeerLink<'static>>) -> Message<'static> {
    Message::Heartbeat(Heartbeat {
        data_port: 45893,
        ip: [10, 0, 0, 1].into(),
        hb_seq: 7,
        relays: true,
        baton: None,
        sightings: vec![],
        understands: Some(VERSION),
        floor,
        asks_views: false,
        health,
        links,
    })
}

/// Version 3 heartbeats end with extensions: one of a type this release does
/// not know (a later release's) is skipped, so additions need no new version.
#[test]
fn unknown_heartbeat_extensions_are_skipped() {
    let hb = |floor| heartbeat(floor, None, vec![]);
    let env = Envelope { version: VERSION, from: "psa", incarnation: 1, seq: 1, msg: hb(None) };
    let mut bytes = codec(None).encode(&env);
    // The last extension is the versions one: count, then type 1, length 2, min, max.
    let count_at = bytes.len() - 5;
    assert_eq!(bytes[count_at..], [1, 1, 2, MIN_VERSION, VERSION]);
    bytes[count_at] = 2;
    bytes.extend_from_slice(&[0xee, 3, 1, 2, 3]);
    assert_eq!(codec(None).open(&mut bytes.clone()), Ok(env.clone()));
    // Cut inside the unknown one: malformed, not a panic.
    assert!(codec(None).open(&mut bytes[..bytes.len() - 1].to_vec()).is_err());
    // A floor travels; a zero floor is not sent.
    let with_floor = Envelope { msg: hb(Some(120_004)), ..env.clone() };
    assert_eq!(codec(None).open(&mut codec(None).encode(&with_floor)), Ok(with_floor));
    let zero = Envelope { msg: hb(Some(0)), ..env.clone() };
    assert_eq!(codec(None).open(&mut codec(None).encode(&zero)), Ok(env));
}

/// Health and links are extras: a bad extension of either (a sender's bug)
/// is left out and the heartbeat still opens, so the member stays alive.
#[test]
fn a_bad_health_or_links_extension_is_left_out_not_the_heartbeat() {
    let health = Health { temp_dc: Some(483), version: "0.1.0".into(), ..Health::default() };
    let hb = |health, links| heartbeat(None, health, links);
    let link = PeerLink { peer: "psb", rtt_cms: Some(37), loss_pct: 0 };
    let env = |msg| Envelope { version: VERSION, from: "psa", incarnation: 1, seq: 1, msg };
    let good = env(hb(Some(health.clone()), vec![link]));
    let bytes = codec(None).encode(&good);
    assert_eq!(codec(None).open(&mut bytes.clone()), Ok(good));
    // Unsealed, the last byte is the link's loss.
    let mut lossy = bytes.clone();
    *lossy.last_mut().unwrap() = 101;
    assert_eq!(codec(None).open(&mut lossy), Ok(env(hb(Some(health.clone()), vec![]))), "a loss above 100 %");
    let mut escaped = bytes.clone();
    let at = escaped.windows(5).position(|w| w == b"0.1.0").expect("the version's bytes");
    escaped[at] = 0x1b;
    assert_eq!(
        codec(None).open(&mut escaped),
        Ok(env(hb(None, vec![link]))),
        "a control character in the version"
    );
}

#[test]
fn links_to_names_no_member_can_have_are_not_sent() {
    let long = "x".repeat(64);
    let links = [
        PeerLink { peer: &long, rtt_cms: None, loss_pct: 0 },
        PeerLink { peer: "psb", rtt_cms: None, loss_pct: 0 },
    ];
    let mut b = Vec::new();
    wire::encode_links(&links, &mut b);
    let mut back = Vec::new();
    wire::decode_links(&b, &mut back).unwrap();
    assert_eq!(back, links[1..]);
}

/// A sealed datagram's body, from the plain one's of `version`: from version
/// 4 on, the cluster's name (first) and the seq (after the sender and the
/// incarnation) left out.
fn sealed_body(version: u8, plain: &[u8]) -> Vec<u8> {
    if version < 4 {
        return plain.to_vec();
    }
    let rest = &plain[1 + usize::from(plain[0])..];
    let seq_at = 1 + usize::from(rest[0]) + 8;
    [&rest[..seq_at], &rest[seq_at + 8..]].concat()
}
