//! Writes the seed corpora the fuzz targets start from, into corpus/<target>/:
//! config/herd.toml (and a few variants) for `config_parse`; one datagram of
//! each message kind (heartbeats with every extension), in every wire
//! version this release understands, as herd encodes it plain and sealed,
//! for `wire_open`; and for `wire_sealed` the plaintext bodies of those
//! datagrams, each after the byte that picks its version.
//!
//!   cargo run --manifest-path fuzz/Cargo.toml --example write_seeds

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use herd::core::health::{Health, PeerLink};
use herd::core::wire::{
    BatonId, BatonView, Codec, Envelope, Heartbeat, Lap, MIN_VERSION, Message, News, PassAck, PassVerdict,
    Rumor, Sighting, VERSION,
};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create corpus dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn messages() -> Vec<(&'static str, Message<'static>)> {
    let id = BatonId { epoch: 3, origin: 0x1234_5678_9abc_def0 };
    let view = BatonView { id, counter: 41, baton_counter: 40, settled: 39, age_ms: 120, holding: true };
    vec![
        (
            "heartbeat",
            Message::Heartbeat(Heartbeat {
                data_port: 45893,
                ip: Ipv4Addr::new(10, 0, 0, 11),
                hb_seq: 17,
                relays: true,
                baton: Some(view),
                sightings: vec![
                    Sighting { name: "psb", incarnation: 2, age_ms: 300 },
                    Sighting { name: "psc.local", incarnation: 9, age_ms: 1500 },
                ],
                understands: Some(VERSION),
                floor: Some(60_001),
                asks_views: false,
                health: Some(Health {
                    temp_dc: Some(483),
                    throttle: Some(5),
                    load1_c: Some(47),
                    mem_used_pct: Some(27),
                    fan_rpm: Some(3120),
                    root_readonly: Some(false),
                    clock_synced: Some(true),
                    uptime_s: Some(86_523),
                    version: "0.1.0+491bb2a0f1ca".into(),
                }),
                links: vec![
                    PeerLink { peer: "psb", rtt_cms: Some(37), loss_pct: 0 },
                    PeerLink { peer: "psc.local", rtt_cms: None, loss_pct: 100 },
                ],
            }),
        ),
        (
            "heartbeat-bare",
            Message::Heartbeat(Heartbeat {
                data_port: 1,
                ip: Ipv4Addr::UNSPECIFIED,
                hb_seq: 0,
                relays: false,
                baton: None,
                sightings: vec![],
                understands: Some(VERSION),
                floor: None,
                asks_views: false,
                health: None,
                links: vec![],
            }),
        ),
        (
            "heartbeat-asks",
            Message::Heartbeat(Heartbeat {
                data_port: 45893,
                ip: Ipv4Addr::new(192, 168, 1, 20),
                hb_seq: 3,
                relays: true,
                baton: None,
                sightings: vec![Sighting { name: "psb", incarnation: 2, age_ms: 0 }],
                understands: Some(VERSION),
                floor: None,
                asks_views: true,
                health: Some(Health { temp_dc: Some(-52), version: String::new(), ..Health::default() }),
                links: vec![],
            }),
        ),
        (
            // More links than one extension holds: several links extensions.
            "heartbeat-links",
            Message::Heartbeat(Heartbeat {
                data_port: 45893,
                ip: Ipv4Addr::new(10, 0, 0, 12),
                hb_seq: 99,
                relays: true,
                baton: None,
                sightings: vec![],
                understands: Some(VERSION),
                floor: Some(1),
                asks_views: false,
                health: None,
                links: LINK_PEERS
                    .iter()
                    .enumerate()
                    .map(|(i, peer)| PeerLink {
                        peer,
                        rtt_cms: (i % 3 != 0).then_some(i as u16 * 7),
                        loss_pct: i as u8,
                    })
                    .collect(),
            }),
        ),
        ("leave", Message::Leave),
        ("ping", Message::Ping { token: 0xfeed }),
        ("ack", Message::Ack { token: 0xfeed, wall_us: Some(1_764_633_600_000_000) }),
        ("pass", Message::Pass { id, counter: 42, lap: Lap::from_names(["psb", "psc", "psd"]) }),
        (
            "pass-ack",
            Message::PassAck(PassAck { id: Some(id), counter: 42, verdict: PassVerdict::Stale, delay_us: 250 }),
        ),
        ("ping-req", Message::PingReq { token: 0xbeef, target: "psc.local", incarnation: 9 }),
        ("indirect-ack", Message::IndirectAck { token: 0xbeef, answered: true }),
        (
            "news",
            Message::News(vec![
                News { name: "psb", incarnation: 2, rumor: Rumor::Suspect, silent_ms: 3000 },
                News { name: "psc.local", incarnation: 9, rumor: Rumor::Down, silent_ms: 5200 },
                News { name: "psd", incarnation: 1, rumor: Rumor::Alive, silent_ms: 0 },
            ]),
        ),
    ]
}

/// Forty peers' names: their links fill more than one extension.
const LINK_PEERS: [&str; 40] = [
    "pi-node-00",
    "pi-node-01",
    "pi-node-02",
    "pi-node-03",
    "pi-node-04",
    "pi-node-05",
    "pi-node-06",
    "pi-node-07",
    "pi-node-08",
    "pi-node-09",
    "pi-node-10",
    "pi-node-11",
    "pi-node-12",
    "pi-node-13",
    "pi-node-14",
    "pi-node-15",
    "pi-node-16",
    "pi-node-17",
    "pi-node-18",
    "pi-node-19",
    "pi-node-20",
    "pi-node-21",
    "pi-node-22",
    "pi-node-23",
    "pi-node-24",
    "pi-node-25",
    "pi-node-26",
    "pi-node-27",
    "pi-node-28",
    "pi-node-29",
    "pi-node-30",
    "pi-node-31",
    "pi-node-32",
    "pi-node-33",
    "pi-node-34",
    "pi-node-35",
    "pi-node-36",
    "pi-node-37",
    "pi-node-38",
    "pi-node-39",
];

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = |target: &str| -> PathBuf { fuzz.join("corpus").join(target) };

    let mut plain = Codec::new::<&[u8]>("lab", &[], [7; 16]);
    let sealed = Codec::new("lab", &[b"secret"], [7; 16]);
    for version in MIN_VERSION..=VERSION {
        for (i, (name, msg)) in messages().into_iter().enumerate() {
            let env =
                Envelope { version, from: "psa", incarnation: 5, seq: 100 + i as u64, msg };
            let p = plain.encode(&env);
            if plain.open(&mut p.clone()).is_err() {
                // A message version 2 does not have.
                continue;
            }
            write(&corpus("wire_open"), &format!("v{version}-plain-{name}"), &p);
            write(&corpus("wire_open"), &format!("v{version}-sealed-{name}"), &sealed.encode(&env));
            let mut body = vec![version - MIN_VERSION];
            body.extend_from_slice(&sealed_body(version, &p[4..]));
            write(&corpus("wire_sealed"), &format!("v{version}-body-{name}"), &body);
        }
    }
    // A heartbeat with an extension this release does not know, between two it does.
    let mut unknown = plain.encode(&Envelope {
        version: VERSION,
        from: "psa",
        incarnation: 5,
        seq: 1,
        msg: messages().swap_remove(1).1,
    });
    // heartbeat-bare ends with its extension count (1) and the versions extension.
    let at = unknown.len() - 5;
    unknown[at] = 3;
    unknown.extend_from_slice(&[0xee, 3, 1, 2, 3, 3, 0]);
    write(&corpus("wire_open"), &format!("v{VERSION}-plain-heartbeat-unknown-ext"), &unknown);
    let mut body = vec![VERSION - MIN_VERSION];
    body.extend_from_slice(&sealed_body(VERSION, &unknown[4..]));
    write(&corpus("wire_sealed"), &format!("v{VERSION}-body-heartbeat-unknown-ext"), &body);

    let herd_toml = fs::read_to_string(fuzz.join("../config/herd.toml")).expect("read config/herd.toml");
    let dir = corpus("config_parse");
    write(&dir, "herd.toml", herd_toml.as_bytes());
    // Without comments: shorter, so mutations hit keys and values more often.
    let bare: String = herd_toml.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    write(&dir, "herd-bare.toml", bare.as_bytes());
    let variants = [
        ("static", "[gossip]\nstrategy = \"static\"\nhosts = [\"10.0.0.11:45892\", \"psb.local:45892\"]\n"),
        ("dns", "[gossip]\nstrategy = \"dns\"\ndns_name = \"herd.default.svc.cluster.local\"\n"),
        ("secret", "[node]\nname = \"psa\"\ncluster = \"lab\"\n[gossip]\nsecret = \"s3cret\"\n"),
        (
            "statsd",
            "[statsd]\naddress = \"unix:///var/run/datadog/dsd.socket\"\ntags = [\"env:lab\"]\nflavor = \"statsd\"\n",
        ),
        ("bad", "[gossip]\nport = 0\nsuspect_after = \"soon\"\n[nope]\nx = 1\n"),
    ];
    for (name, text) in variants {
        write(&dir, &format!("{name}.toml"), text.as_bytes());
    }
    for target in ["wire_open", "wire_sealed", "config_parse"] {
        let n = fs::read_dir(corpus(target)).map(|d| d.count()).unwrap_or(0);
        println!("{target}: {n} seeds in {}", corpus(target).display());
    }
}

/// A sealed datagram's body from the plain one's of `version`: from version
/// 4 on, without the cluster's name and the seq (the key binds the one, the
/// nonce carries the other).
fn sealed_body(version: u8, plain: &[u8]) -> Vec<u8> {
    if version < 4 {
        return plain.to_vec();
    }
    let rest = &plain[1 + usize::from(plain[0])..];
    let seq_at = 1 + usize::from(rest[0]) + 8;
    [&rest[..seq_at], &rest[seq_at + 8..]].concat()
}
