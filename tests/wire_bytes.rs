//! The wire format's bytes, pinned: one datagram of every message kind, in
//! every version this release speaks or understands, plain and sealed, must
//! encode to exactly the bytes below, and those bytes must decode to a
//! datagram that encodes to them again. A change to the format shows up here
//! as a byte diff; a reshaping of the code must leave every line unchanged.
//!
//! On a mismatch the test prints every datagram of the table as it is encoded
//! now, in the table's own syntax: a deliberate format change (a new version)
//! is re-pinned from that output.

use std::fmt::Write as _;

use herd::core::health::{Health, PeerLink, UNDER_VOLTAGE};
use herd::core::wire::{
    BatonId, BatonView, Codec, Envelope, Heartbeat, Lap, MIN_VERSION, Message, News, PassAck, PassVerdict,
    Rumor, Sighting, VERSION,
};

/// The nonce salt of both codecs: fixed, so sealed datagrams are reproducible.
const SALT: [u8; 16] = [7; 16];

fn codec(sealed: bool) -> Codec {
    let secrets: &[&[u8]] = if sealed { &[b"secret"] } else { &[] };
    Codec::new("lab", secrets, SALT)
}

fn health() -> Health {
    Health {
        temp_dc: Some(-52),
        throttle: Some(UNDER_VOLTAGE),
        load1_c: Some(147),
        mem_used_pct: Some(27),
        fan_rpm: Some(3120),
        root_readonly: Some(true),
        clock_synced: Some(false),
        uptime_s: Some(86_400),
        version: "0.1.0".into(),
    }
}

/// Peer names long enough that the links fill three extensions.
const PEERS: [&str; 13] = [
    "rack-a-shelf-1-pi4-0001.lab.example.net",
    "rack-a-shelf-1-pi4-0002.lab.example.net",
    "rack-a-shelf-1-pi4-0003.lab.example.net",
    "rack-a-shelf-1-pi4-0004.lab.example.net",
    "rack-a-shelf-1-pi4-0005.lab.example.net",
    "rack-a-shelf-2-pi5-0006.lab.example.net",
    "rack-a-shelf-2-pi5-0007.lab.example.net",
    "rack-a-shelf-2-pi5-0008.lab.example.net",
    "rack-a-shelf-2-pi5-0009.lab.example.net",
    "rack-a-shelf-2-pi5-0010.lab.example.net",
    "rack-b-shelf-1-zero-0011.lab.example.ne",
    "rack-b-shelf-1-zero-0012.lab.example.ne",
    "rack-b-shelf-1-zero-0013.lab.example.ne",
];

fn links() -> Vec<PeerLink<'static>> {
    PEERS
        .iter()
        .enumerate()
        .map(|(i, peer)| PeerLink {
            peer,
            rtt_cms: (i % 4 != 3).then_some(20 + 7 * i as u16),
            loss_pct: [0, 3, 100][i % 3],
        })
        .collect()
}

const ID: BatonId = BatonId { epoch: 0x0102_0304_0506_0708, origin: 0xdead_beef_cafe_f00d };

/// Every message kind, by label, in the versions that have it.
fn messages(version: u8) -> Vec<(&'static str, Message<'static>)> {
    let full = Heartbeat {
        data_port: 45892,
        ip: [192, 168, 1, 20].into(),
        hb_seq: 0x0a0b_0c0d,
        relays: true,
        baton: Some(BatonView {
            id: ID,
            counter: 1_000_001,
            baton_counter: 999_999,
            settled: 999_990,
            age_ms: 250,
            holding: true,
        }),
        sightings: vec![
            Sighting { name: "psb", incarnation: 1_700_000_123, age_ms: 1500 },
            Sighting { name: "pizero-w", incarnation: 7, age_ms: 0 },
        ],
        understands: Some(VERSION),
        floor: Some(123_456_789),
        asks_views: true,
        health: Some(health()),
        links: links(),
    };
    let bare = Heartbeat {
        data_port: 1,
        ip: [0, 0, 0, 0].into(),
        hb_seq: 0,
        relays: false,
        baton: None,
        sightings: Vec::new(),
        understands: None,
        floor: None,
        asks_views: false,
        health: None,
        links: Vec::new(),
    };
    let mut all = vec![
        ("heartbeat", Message::Heartbeat(full)),
        ("bare heartbeat", Message::Heartbeat(bare)),
        ("leave", Message::Leave),
        ("ping", Message::Ping { token: 0x1122_3344_5566_7788 }),
        ("ack", Message::Ack { token: 0x1122_3344_5566_7788, wall_us: Some(1_760_000_000_123_456) }),
        ("ack without wall clock", Message::Ack { token: 9, wall_us: None }),
        (
            "pass",
            Message::Pass { id: ID, counter: 1_000_002, lap: Lap::from_names(["psb", "psc", "pizero-w"]) },
        ),
        (
            "pass-ack",
            // From version 4 the ack names the pass by its counter alone.
            Message::PassAck(PassAck {
                id: (version < 4).then_some(ID),
                counter: 1_000_002,
                verdict: PassVerdict::Refused,
                delay_us: 1234,
            }),
        ),
    ];
    if version >= 3 {
        all.extend([
            ("ping-req", Message::PingReq { token: 77, target: "psc", incarnation: 1_700_000_456 }),
            ("indirect-ack", Message::IndirectAck { token: 77, answered: true }),
            (
                "news",
                Message::News(vec![
                    News { name: "psc", incarnation: 5, rumor: Rumor::Suspect, silent_ms: 1200 },
                    News { name: "psd", incarnation: 6, rumor: Rumor::Down, silent_ms: 9000 },
                    News { name: "pse", incarnation: 8, rumor: Rumor::Alive, silent_ms: 0 },
                ]),
            ),
        ]);
    }
    all
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One datagram as [`PINNED`] writes it.
fn entry(label: &str, version: u8, sealed: bool, hex: &str) -> String {
    let mut s = format!("{label} v{version} {}\n", if sealed { "sealed" } else { "plain" });
    for chunk in hex.as_bytes().chunks(96) {
        writeln!(s, "    {}", std::str::from_utf8(chunk).unwrap()).unwrap();
    }
    s
}

/// [`PINNED`] as (heading, bytes in hex) pairs.
fn pinned() -> Vec<(&'static str, String)> {
    let mut table: Vec<(&str, String)> = Vec::new();
    for line in PINNED.lines().filter(|l| !l.is_empty()) {
        match (line.strip_prefix("    "), table.last_mut()) {
            (Some(hex), Some((_, bytes))) => bytes.push_str(hex),
            _ => table.push((line, String::new())),
        }
    }
    table
}

#[test]
fn every_message_kind_encodes_to_its_pinned_bytes_in_every_version() {
    let table = pinned();
    let mut now = String::new();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for version in MIN_VERSION..=VERSION {
        for sealed in [false, true] {
            let mut codec = codec(sealed);
            for (seq, (label, msg)) in messages(version).into_iter().enumerate() {
                let env =
                    Envelope { version, from: "psa", incarnation: 1_700_000_000, seq: 42 + seq as u64, msg };
                let bytes = codec.encode(&env);
                let got = entry(label, version, sealed, &hex(&bytes));
                let heading = got.lines().next().unwrap();
                match table.iter().find(|(h, _)| *h == heading) {
                    Some((_, want)) if *want == hex(&bytes) => checked += 1,
                    _ => wrong.push(heading.to_owned()),
                }
                now += &got;
                let mut buf = bytes.clone();
                let opened = codec.open(&mut buf).expect("a pinned datagram opens");
                assert_eq!(codec.encode(&opened), bytes, "{heading}: decoded and encoded again");
                if version == VERSION {
                    assert_eq!(opened, env, "{heading}: decodes to what was sent");
                }
            }
        }
    }
    assert!(wrong.is_empty(), "datagrams not as pinned: {wrong:#?}\nevery datagram as encoded now:\n{now}");
    assert_eq!(checked, table.len(), "every pinned datagram is checked");
}

/// Each datagram: `message vN plain|sealed`, then its bytes in hex, indented,
/// over as many lines as it takes.
const PINNED: &str = "
heartbeat v3 plain
    48440300036c616203707361000000006553f100000000000000002a01b344c0a801140a0b0c0d070102030405060708
    deadbeefcafef00d00000000000f424100000000000f423f00000000000f4236000000fa0203707362000000006553f1
    7b000005dc0870697a65726f2d770000000000000007000000000701020304020800000000075bcd1503000414ff01ff
    cc0100931b0c300001518005302e312e3005d7277261636b2d612d7368656c662d312d7069342d303030312e6c61622e
    6578616d706c652e6e6574001400277261636b2d612d7368656c662d312d7069342d303030322e6c61622e6578616d70
    6c652e6e6574001b03277261636b2d612d7368656c662d312d7069342d303030332e6c61622e6578616d706c652e6e65
    74002264277261636b2d612d7368656c662d312d7069342d303030342e6c61622e6578616d706c652e6e6574ffff0027
    7261636b2d612d7368656c662d312d7069342d303030352e6c61622e6578616d706c652e6e657400300305d727726163
    6b2d612d7368656c662d322d7069352d303030362e6c61622e6578616d706c652e6e6574003764277261636b2d612d73
    68656c662d322d7069352d303030372e6c61622e6578616d706c652e6e6574003e00277261636b2d612d7368656c662d
    322d7069352d303030382e6c61622e6578616d706c652e6e6574ffff03277261636b2d612d7368656c662d322d706935
    2d303030392e6c61622e6578616d706c652e6e6574004c64277261636b2d612d7368656c662d322d7069352d30303130
    2e6c61622e6578616d706c652e6e65740053000581277261636b2d622d7368656c662d312d7a65726f2d303031312e6c
    61622e6578616d706c652e6e65005a03277261636b2d622d7368656c662d312d7a65726f2d303031322e6c61622e6578
    616d706c652e6e65ffff64277261636b2d622d7368656c662d312d7a65726f2d303031332e6c61622e6578616d706c65
    2e6e65006800
bare heartbeat v3 plain
    48440300036c616203707361000000006553f100000000000000002b0100010000000000000000000000
leave v3 plain
    48440300036c616203707361000000006553f100000000000000002c02
ping v3 plain
    48440300036c616203707361000000006553f100000000000000002d031122334455667788
ack v3 plain
    48440300036c616203707361000000006553f100000000000000002e041122334455667788000640b5eecfe240
ack without wall clock v3 plain
    48440300036c616203707361000000006553f100000000000000002f0400000000000000098000000000000000
pass v3 plain
    48440300036c616203707361000000006553f1000000000000000030050102030405060708deadbeefcafef00d000000
    00000f42420303707362037073630870697a65726f2d77
pass-ack v3 plain
    48440300036c616203707361000000006553f1000000000000000031060102030405060708deadbeefcafef00d000000
    00000f424202000004d2
ping-req v3 plain
    48440300036c616203707361000000006553f100000000000000003207000000000000004d03707363000000006553f2
    c8
indirect-ack v3 plain
    48440300036c616203707361000000006553f100000000000000003308000000000000004d01
news v3 plain
    48440300036c616203707361000000006553f1000000000000000034090303707363000000000000000501000004b003
    707364000000000000000602000023280370736500000000000000080300000000
heartbeat v3 sealed
    48440301d2ab67cc07070707070707070707070707070707000000000000002af2c622471d6ec3e6488e2b2552168a8c
    ab87c52ef7e3928ed22e4e06480d4c3e4763b9b7023c5d5cbf062ed1927b18dcc219cc6f3e6d6e5619df29be622686bc
    9c8c2792ad465f586afb2c0c16d44a59f61a6e643075e1b2da9c49a6a7db8eb7a1ffd4083e5ce19bf123be87a3566dfe
    70027f26a3fc577fc7822e53b0b5ec52f0ef93bce128c1c92ca66aee6aa0d867bd7c4168c00ec9a88dce7ceadcce7577
    0f968134017b176dc959d347afd5d7a055f49fac82dc1b86a95f6a26841a78a2ef05d493caa6fb2a5b2aa716affe15ef
    5d5d434f56933510d266d773276519e7c99b100c0e6e2c78a074673a7607a97757d8cf5b54913850c0b1128d3629442e
    bf91695396e570d3578c32db7af6b8590a8c116bb9ed17bc899e2ec1fb2af4a7e37737783536f487d035f162ed4f42d1
    31f63e8a286e9c3e69aa67daadef838d8093c0c4e8d2bce8408e0f7db2e726915ad8f5f2ac37ef029e36dcdb02ee09e7
    3376894aba423f0022d06ed257e510207cbb7c058a08573f74fdc9a7964655fe9b63cda023be5fb28b1d316577323332
    f31d56788bd729cd056f2b6d044fbd028db6522047a17f161b5e0e4da961a324a8e9370488a231fe8daf49e006df1a9f
    528b442bad5fb02441220d718d748f07268d4ff410ced00b9bcea483115d98fcbe20842de9b134526bc3da5f07fd4e69
    e42b72aa9ea238a20f0a36eb896c9e067b68299ce5a3c74f518469fb1377e8889f43f3a1d152f3a60ddd9cb6168b254f
    61206dddf8bfbbbdefa1123c5019f2661da510b643273d91507fb1f98876284bfb44b2f8096569bca6ce8cf971a84970
    80eeba8f1e354c3926e166db6dce2ad62e536ec82de7396885876678003d0a3a8b81426098aafd3c6d0594ef53c9d18a
    867b18a1715f003e29421a088180f1bcba12416ddc8a1c1d1b2f57b3ef729bbb281f57015ce1bf4f8d20fe85b0269b46
    72c9edb5847e841d94a377cb0c771f560e9984e46f1e27485955356a53090c39cd91763731bca4a1badc57962d8dbd78
    6443
bare heartbeat v3 sealed
    48440301d2ab67cc07070707070707070707070707070707000000000000002ba3890ebce516a2ce3e418e4fcf4b0bba
    cf72b365c381d996d1a2bf33e61f03ccc93a3f37dc537df9de391ddb55ce8de4598bef5c169b
leave v3 sealed
    48440301d2ab67cc07070707070707070707070707070707000000000000002cae07c404fb6bf631e6a2b55e0c5d92f0
    0f6d84e694557158ee415d162b003e85d7da787c1438c22c1a
ping v3 sealed
    48440301d2ab67cc07070707070707070707070707070707000000000000002df80265434de8d5d33196b61056b39fb1
    98b40d626aca26a5124b1ae897660eb2db8a881728d8ca38c168f5cdea68ef7d70
ack v3 sealed
    48440301d2ab67cc07070707070707070707070707070707000000000000002e558e96461932e9a72d8288c3382f84f0
    0be017172f082eeb3ec65fff3d6a5d41b073e8eb056c040cddbd363a5c70a69e4b77ad33ab58034254
ack without wall clock v3 sealed
    48440301d2ab67cc07070707070707070707070707070707000000000000002ffbd25ee82c5a6ae083a03921b5ce8887
    26bc76d04f83caa7c79145d67fac8d5d25137690f67e4efbed7e35a4cec5e358427664d6ef681ac629
pass v3 sealed
    48440301d2ab67cc0707070707070707070707070707070700000000000000307509b3e52be7551777475c7da87ffcad
    c347701fc2bd5a148702fafbb8e995f66b762370d5fb2164a741141eb8e9282766ae428fa4a951d9312cb20f29c288c1
    24a614775da7aee07f627dd78e163a1564fccc
pass-ack v3 sealed
    48440301d2ab67cc0707070707070707070707070707070700000000000000312d6f087f51ddc9e2f449e35fb26534de
    a11d1f8c3ec9c22f0420ac2ac8a8b80be20b1febe61743b084abf5a53be2bc473f07b720a7c33e4b6977c3d1ba2174f7
    386130338958
ping-req v3 sealed
    48440301d2ab67cc070707070707070707070707070707070000000000000032486a4324e5130255a6772c1e87c24ad3
    164717322bfec92893b94cf6282ee57a9166656c84360640f30b7de2ec5dc415b6b711e84a6c4a2ceba6b41831
indirect-ack v3 sealed
    48440301d2ab67cc0707070707070707070707070707070700000000000000336f4044200d7a145765c1e4b5cb5641e9
    b39f63b5088d66b23889d59e74db360fdd360d9162fd068d07b2a473bbd78f410099
news v3 sealed
    48440301d2ab67cc0707070707070707070707070707070700000000000000346a74aa92587e5e0bbe7a69b8dd4bbfc4
    1a8027d0a3b7f011b63916fd0f7f3a18dbff3b4875d8a21895d3d204809cfc697b4b47b3cad1fe53341ce11b95ca215a
    aaf37ffc9353c86cd8550634fd6cf582936fee42ede90eccd8b95e7e2c
heartbeat v4 plain
    48440400036c616203707361000000006553f100000000000000002a01b344c0a801140a0b0c0d070102030405060708
    deadbeefcafef00d00000000000f424100000000000f423f00000000000f4236000000fa0203707362000000006553f1
    7b000005dc0870697a65726f2d770000000000000007000000000701020304020800000000075bcd1503000414ff01ff
    cc0100931b0c300001518005302e312e3005d7277261636b2d612d7368656c662d312d7069342d303030312e6c61622e
    6578616d706c652e6e6574001400277261636b2d612d7368656c662d312d7069342d303030322e6c61622e6578616d70
    6c652e6e6574001b03277261636b2d612d7368656c662d312d7069342d303030332e6c61622e6578616d706c652e6e65
    74002264277261636b2d612d7368656c662d312d7069342d303030342e6c61622e6578616d706c652e6e6574ffff0027
    7261636b2d612d7368656c662d312d7069342d303030352e6c61622e6578616d706c652e6e657400300305d727726163
    6b2d612d7368656c662d322d7069352d303030362e6c61622e6578616d706c652e6e6574003764277261636b2d612d73
    68656c662d322d7069352d303030372e6c61622e6578616d706c652e6e6574003e00277261636b2d612d7368656c662d
    322d7069352d303030382e6c61622e6578616d706c652e6e6574ffff03277261636b2d612d7368656c662d322d706935
    2d303030392e6c61622e6578616d706c652e6e6574004c64277261636b2d612d7368656c662d322d7069352d30303130
    2e6c61622e6578616d706c652e6e65740053000581277261636b2d622d7368656c662d312d7a65726f2d303031312e6c
    61622e6578616d706c652e6e65005a03277261636b2d622d7368656c662d312d7a65726f2d303031322e6c61622e6578
    616d706c652e6e65ffff64277261636b2d622d7368656c662d312d7a65726f2d303031332e6c61622e6578616d706c65
    2e6e65006800
bare heartbeat v4 plain
    48440400036c616203707361000000006553f100000000000000002b0100010000000000000000000000
leave v4 plain
    48440400036c616203707361000000006553f100000000000000002c02
ping v4 plain
    48440400036c616203707361000000006553f100000000000000002d031122334455667788
ack v4 plain
    48440400036c616203707361000000006553f100000000000000002e041122334455667788000640b5eecfe240
ack without wall clock v4 plain
    48440400036c616203707361000000006553f100000000000000002f0400000000000000098000000000000000
pass v4 plain
    48440400036c616203707361000000006553f1000000000000000030050102030405060708deadbeefcafef00d000000
    00000f42420303707362037073630870697a65726f2d77
pass-ack v4 plain
    48440400036c616203707361000000006553f10000000000000000310600000000000f424202000004d2
ping-req v4 plain
    48440400036c616203707361000000006553f100000000000000003207000000000000004d03707363000000006553f2
    c8
indirect-ack v4 plain
    48440400036c616203707361000000006553f100000000000000003308000000000000004d01
news v4 plain
    48440400036c616203707361000000006553f1000000000000000034090303707363000000000000000501000004b003
    707364000000000000000602000023280370736500000000000000080300000000
heartbeat v4 sealed
    48440401d2ab67cc07070707070707070707070707070707000000000000002af2da30441e1eb0872dddda2536f63f4c
    0386d124fcef9fa3d29f09c2e50a5f3c92c20a5fc9c0ae55ba0029d94cd9e47208e73c623e622c6919d06bff6229c48a
    9c836557af452f2b08f46e3a16b119528f191e128e7d91dba09c6838f1ac8eb27df7a461443e93f4dc54b986a15569fc
    78057f26a3fb0bb3d0822a55ac4aedad3ce9c8e2ef27f1cd3908eb14968fe9da9675a64fb33e2ac6908160b784aece36
    50c6cf2f452e172e910c8e0fee8598fe59b8d3f1c2804f86ab5b7c08f5623ebdfe0ada90c5eefc422a46e649ffb00eab
    085d001703cd7d518229897f6b2944a795cc100e0a780206db32782b7909aa781fdfa7253bd067008eaa56d8366a1c7b
    e0d92803d9bb7c9f1bd172872cf6ba5d1ca25677fff206b3879d2189fc42b3afa22867362e72a187936da43aa50e129e
    6ffa72c6752ec06f69a863cc7c75fbcb9f82cfcaebddf4efd714633cedb7688a1e8df5b1f462b64adf6693850ea245ba
    732ad94ab846292e77ab0a6800fb146d79f36928c963378435a29ae98d0201fed83b98fa6bff0cfdd5117c292a726f61
    f31f526ea585358b1a7e24630740f505e5e45a6118f2310d5f0a0e0ef134f86ce9ba785a84ef7da3cdf31be004db0cb1
    09f30234bc50be274e6a0a19d618ce5875c354b044ce9353ce9aecc24212c6f0f36cd96db5ec34506fd50bc57cbb5178
    eb2571a5d6a5af38604b69b8c777da527b2b71c9b0eb861c1eda65b65f2aa8d4c343f1a5c77cdaba4bc28db918882a07
    664844d5b9e0e8f3f4e5463c1341a63a55e443f91d2b70dd0d3fecac88742c5dd572ca9ce53277b8ebcbc4ef5c882110
    6dafe5df5024042964bf3e8e3099298b624b25df3aab6428d8d3667a045f7e5cd4924e739fe2b17f7b6dab80129681c4
    973308e32f0755637d41474499cbe6abf64f01308b8a1e1986fe56ecfc7e88bc60531417cb7bb70ed270b094f836d918
    2a9cb0e08723c805dfb46087513742000e9b8086297ba495af1bb39062febd53627d0f15989f
bare heartbeat v4 sealed
    48440401d2ab67cc07070707070707070707070707070707000000000000002ba3951cbfe666d1af5b127f4fab18fbba
    cf72b365c381d9bdd0a285accf1ccd2b2681335c863a126dbff8
leave v4 sealed
    48440401d2ab67cc07070707070707070707070707070707000000000000002cae1bd607f81b855083f1445e6bdd8478
    0c69cacbc03dbba4b7fe89d0e1
ping v4 sealed
    48440401d2ab67cc07070707070707070707070707070707000000000000002df81e77404e98a6b254c5471030f14c82
    dce16b15e2211f90efdabb186c82ea7a9240ed3a24
ack v4 sealed
    48440401d2ab67cc07070707070707070707070707070707000000000000002e559284451a429ac648d179c3596d57c3
    4fb57160a70828858f39b22e39cd5674e09a45921b8cf34afc7eaa9a1a
ack without wall clock v4 sealed
    48440401d2ab67cc07070707070707070707070707070707000000000000002ffbce4ceb2f2a1981e6f3c821d49d7987
    26bc76d04603ca88c39145d67fcd68eb92ea67ddb41e7420fb5a50d6c0
pass v4 sealed
    48440401d2ab67cc0707070707070707070707070707070700000000000000307515a1e6289726761214ad7dc82d0fae
    c7427618ca63f79a6dc90608b1ec93f163a8818c7832dce4d923176ecb8a2f154dd7248db8e625e426094e1b9c7fb7d3
    0b230ed065f31a
pass-ack v4 sealed
    48440401d2ab67cc0707070707070707070707070707070700000000000000312d731a7c52adba83911a125fd136c5de
    a11d10ce7ccbc21e06f3925f27244918ceca281b72683fa092da
ping-req v4 sealed
    48440401d2ab67cc07070707070707070707070707070707000000000000003248765127e6637134c324dd1ee591bbd3
    1647173266fdb969f7b94cf6284bb68814760c0ca7177f7b722c2c56f2110bf097
indirect-ack v4 sealed
    48440401d2ab67cc0707070707070707070707070707070700000000000000336f5c56230e0a6736009215b5a605b0e9
    b39f63b5458c4b18f35bcd67b55457e6490f70859223
news v4 sealed
    48440401d2ab67cc0707070707070707070707070707070700000000000000346a68b8915b0e2d6adb2998b8b11b4db4
    69e327d0a3b7f025bf3f148d7c188a1bab8c5f4875dda31895d76405f0efbb41783b34d6cad1f851341cc23b95ba523f
    aa2a12f266a0be0fb23a8016a0e1dfc82b
";
