//! Writes the seed corpora the fuzz targets start from, into corpus/<target>/:
//! config/herd.toml (and a few variants) for `config_parse`; one datagram of
//! each message kind, as herd encodes it plain and sealed, for `wire_open`;
//! and the plaintext bodies of those datagrams for `wire_sealed`.
//!
//!   cargo run --manifest-path fuzz/Cargo.toml --example write_seeds

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use herd::core::health::{Health, PeerLink};
use herd::core::wire::{
    BatonId, BatonView, Codec, Envelope, Heartbeat, Lap, Message, PassAck, PassVerdict, Sighting, VERSION,
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
        ("leave", Message::Leave),
        ("ping", Message::Ping { token: 0xfeed }),
        ("ack", Message::Ack { token: 0xfeed, wall_us: Some(1_764_633_600_000_000) }),
        ("pass", Message::Pass { id, counter: 42, lap: Lap::from_names(["psb", "psc", "psd"]) }),
        (
            "pass-ack",
            Message::PassAck(PassAck { id, counter: 42, verdict: PassVerdict::Stale, delay_us: 250 }),
        ),
    ]
}

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = |target: &str| -> PathBuf { fuzz.join("corpus").join(target) };

    let plain = Codec::new::<&[u8]>("lab", &[], [7; 16]);
    let sealed = Codec::new("lab", &[b"secret"], [7; 16]);
    for (i, (name, msg)) in messages().into_iter().enumerate() {
        let env = Envelope { version: VERSION, cluster: "lab", from: "psa", incarnation: 5, seq: 100 + i as u64, msg };
        let p = plain.encode(&env);
        write(&corpus("wire_open"), &format!("plain-{name}"), &p);
        write(&corpus("wire_open"), &format!("sealed-{name}"), &sealed.encode(&env));
        write(&corpus("wire_sealed"), &format!("body-{name}"), &p[4..]);
    }

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
