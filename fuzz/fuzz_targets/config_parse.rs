//! `Config::from_toml_str` on arbitrary UTF-8 text (other input is skipped).
//!
//! Checks: no panic; a syntax error names the file, an invalid config lists at
//! least one problem, every problem says what is allowed and names a key path
//! (or is an unknown key, which may be TOML's empty key `""`); and
//! an accepted config printed with `to_toml` (what `herd check` shows) parses
//! back to the same config (a secret is printed redacted, so it is compared
//! apart, and whether the name came from the hostname is not printed).
#![no_main]

use herd::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

/// herd reads `gossip.secret_file` from disk. A path to a device, FIFO or
/// /proc file (e.g. "/dev/zero", "/dev/stdin") would hang or exhaust memory:
/// that is I/O as designed, not a parser bug, so such inputs are skipped.
/// Missing paths, directories and small regular files still go through.
fn reads_a_risky_file(text: &str) -> bool {
    // The key can only be spelled without "secret_file" through a \u escape.
    if !(text.contains("secret_file") || text.contains("\\u") || text.contains("\\U")) {
        return false;
    }
    let Ok(table) = text.parse::<toml::Table>() else { return false };
    let path = table.get("gossip").and_then(|g| g.get("secret_file")).and_then(|v| v.as_str());
    match path {
        None | Some("") => false,
        Some(path) => match std::fs::metadata(path) {
            Err(_) => false,
            Ok(m) => !(m.is_dir() || (m.is_file() && (1..=1 << 20).contains(&m.len()))),
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if reads_a_risky_file(text) {
        return;
    }
    match Config::from_toml_str(text, "fuzz.toml") {
        Ok(config) => {
            let printed = config.to_toml();
            match Config::from_toml_str(&printed, "again.toml") {
                Ok(mut again) => {
                    again.gossip.keys.clone_from(&config.gossip.keys);
                    // An empty name is the hostname, printed as what it is:
                    // the printed name no longer says where it came from.
                    again.node.name_from_hostname = config.node.name_from_hostname;
                    assert_eq!(again, config, "to_toml printed a different config:\n{printed}");
                }
                Err(e) => assert!(
                    !config.gossip.keys.is_empty(),
                    "to_toml printed a config that does not parse: {e}\n{printed}"
                ),
            }
        }
        Err(ConfigError::Syntax { path, message }) => {
            assert_eq!(path, "fuzz.toml");
            assert!(!message.is_empty());
        }
        Err(e @ ConfigError::Invalid(_)) => {
            let shown = e.to_string();
            let ConfigError::Invalid(problems) = e else { unreachable!() };
            assert!(!problems.is_empty(), "invalid config with no problem listed");
            for p in &problems {
                assert!(!p.allowed.is_empty(), "problem says nothing of what is allowed: {p:?}");
                // TOML allows the empty key `"" = 1`: herd reports it, under its own
                // (empty) name, as an unknown key. Any other problem names a key path.
                let unknown = p.allowed.starts_with("unknown");
                assert!(!p.path.is_empty() || unknown, "problem names no key: {p:?}");
            }
            assert!(!shown.is_empty());
        }
        Err(e @ ConfigError::Read { .. }) => panic!("from_toml_str reads no config file, yet: {e}"),
    }
});
