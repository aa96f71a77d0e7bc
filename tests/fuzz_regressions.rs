//! Inputs the cargo-fuzz targets in `fuzz/` flagged, kept as ordinary tests
//! (the crashing bytes inline) so they run with `cargo test`.

use herd::config::{Config, ConfigError};
use herd::core::wire::{Codec, MIN_VERSION, Message, VERSION, WireError};

/// `config_parse`, artifact `crash-0f5be16b5095e10dbadf5fef17919408c94325ff`:
/// a top-level empty key, `"" = 6`, which is legal TOML. herd reports it as an
/// unknown key under its own (empty) name and does not panic; the fuzz
/// harness's first oracle had wanted every problem's path to be non-empty.
#[test]
fn config_empty_top_level_key_is_reported_as_unknown() {
    let input: &[u8] = b" \"\"= 6";
    let text = std::str::from_utf8(input).expect("the input is UTF-8");
    match Config::from_toml_str(text, "fuzz.toml") {
        Err(ConfigError::Invalid(problems)) => {
            assert_eq!(problems.len(), 1, "{problems:?}");
            let p = &problems[0];
            assert!(p.path.is_empty() || p.path == "\"\"", "{p}");
            assert_eq!(p.value, "6");
            assert!(p.allowed.starts_with("unknown key"), "{p}");
        }
        other => panic!("expected one problem (unknown key), got {other:?}"),
    }
}

/// `config_parse`, its first seed (config/herd.toml, whose `[node] name` is
/// empty; the empty config shows it as well): an empty name is the
/// hostname, and `to_toml` (what `herd check` prints) shows the name in
/// use, so the printed config parses back to the same values but no longer
/// says the name came from the hostname. That flag is where a value came
/// from, not a value: the harness compares it apart, as it does the keys.
#[test]
fn config_printed_with_the_hostname_as_name_parses_back_to_the_same_values() {
    let config = Config::from_toml_str("", "fuzz.toml").expect("the empty config is valid");
    assert!(config.node.name_from_hostname);
    assert!(!config.node.name.is_empty(), "the hostname stands in for an empty name");
    let printed = config.to_toml();
    assert!(printed.contains(&format!("name = \"{}\"", config.node.name)), "{printed}");
    let mut again = Config::from_toml_str(&printed, "again.toml").expect("the printed config parses");
    assert!(!again.node.name_from_hostname, "a printed name is a name given");
    again.node.name_from_hostname = true;
    assert_eq!(again, config);
}

/// `wire_open`, after 6,492 executions: a plain version 3 heartbeat whose
/// versions extension says the sender understands up to version 7 (a later
/// release's claim). It decoded as `understands: Some(7)` and re-encoded as
/// `Some(3)`, because the encoder wrote this release's versions whatever the
/// field held. The codec was wrong (a field the encoder ignores means two
/// things): it now encodes `understands` as it is, and a node sets its own.
#[test]
fn wire_heartbeat_understanding_a_later_version_round_trips() {
    #[rustfmt::skip]
    let datagram: &[u8] = &[
        b'H', b'D', 3, 0,                            // magic, version 3, plain
        3, b'l', b'a', b'b',                         // cluster "lab"
        3, b'p', b's', b'a',                         // from "psa"
        0, 0, 0, 0, 0, 0, 0, 5,                      // incarnation
        0, 0, 0, 0, 0, 0, 0, 101,                    // seq
        1,                                           // heartbeat
        0xb3, 0x45,                                  // data port 45893
        0, 0, 0, 0,                                  // ip: the source's
        0, 0, 0, 0,                                  // heartbeat seq
        0,                                           // flags: no view, not relaying
        0,                                           // no sightings
        1,                                           // one extension:
        1, 2, 3, 7,                                  // versions 3 to 7
    ];
    let mut codec = Codec::new::<&[u8]>("lab", &[], [7; 16]);
    let mut buf = datagram.to_vec();
    let env = codec.open(&mut buf).expect("a valid heartbeat");
    let Message::Heartbeat(hb) = &env.msg else { panic!("a heartbeat: {env:?}") };
    assert_eq!(hb.understands, Some(7));
    let mut again = codec.encode(&env);
    assert_eq!(codec.open(&mut again).expect("the re-encoded heartbeat decodes"), env);
    assert_eq!(again, datagram, "re-encoded to the same bytes");
    // Without the extension, a version 3 heartbeat says nothing of newer
    // versions; re-encoded, it still does not.
    let mut bare = datagram[..datagram.len() - 5].to_vec();
    bare.push(0);
    let mut buf = bare.clone();
    let env = codec.open(&mut buf).expect("a heartbeat without extensions");
    let Message::Heartbeat(hb) = &env.msg else { panic!("a heartbeat: {env:?}") };
    assert_eq!(hb.understands, None);
    assert_eq!(codec.encode(&env), bare);
}

/// `wire_sealed`, on its first input: `plain and sealed decoding of one body
/// disagree` (`Malformed("cluster")` against `Truncated`). The harness
/// sealed a version 3 datagram with version 2's header (no key id), so herd
/// took 4 of the nonce's bytes for a key id and the datagram came out 4
/// bytes short. The oracle was wrong: it now builds each version's header
/// by the format's definition. Here, a one-byte body sealed that way gives
/// the same error as the plain datagram that says the same, in both
/// versions: in version 3 the byte is a cluster name's length and no name;
/// from version 4 on a sealed body starts at the sender (the key binds the
/// cluster), so it is a sender name's length and no name, as in the plain
/// datagram with the cluster's name before it.
#[test]
fn wire_sealed_by_the_definition_decodes_as_the_plain_body() {
    use chacha20poly1305::aead::{AeadInOut, KeyInit};
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"herd gossip v1"), b"secret");
    let mut key = [0u8; 32];
    hk.expand(b"lab", &mut key).unwrap();
    let mut id = [0u8; 4];
    hk.expand_multi_info(&[b"herd key id\0", b"lab"], &mut id).unwrap();
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(&key.into());
    let body: &[u8] = &[5];
    let mut plain_codec = Codec::new::<&[u8]>("lab", &[], [7; 16]);
    let mut sealed_codec = Codec::new("lab", &[b"secret"], [7; 16]);
    for version in [MIN_VERSION, VERSION] {
        let mut plain = vec![b'H', b'D', version, 0];
        if version >= 4 {
            plain.extend_from_slice(&[3, b'l', b'a', b'b']);
        }
        plain.extend_from_slice(body);
        let mut sealed = vec![b'H', b'D', version, 1];
        sealed.extend_from_slice(&id);
        sealed.extend_from_slice(&[9; 24]);
        let mut encrypted = body.to_vec();
        let tag =
            cipher.encrypt_inout_detached(&[9; 24].into(), &sealed, encrypted.as_mut_slice().into()).unwrap();
        sealed.extend_from_slice(&encrypted);
        sealed.extend_from_slice(&tag);
        let from_plain = plain_codec.open(&mut plain);
        let field = if version >= 4 { "sender name" } else { "cluster" };
        assert_eq!(from_plain, Err(WireError::Malformed(field)), "version {version}");
        assert_eq!(sealed_codec.open(&mut sealed), from_plain, "version {version}");
    }
}
