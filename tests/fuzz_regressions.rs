//! Inputs the cargo-fuzz targets in `fuzz/` flagged, kept as ordinary tests
//! (the crashing bytes inline) so they run with `cargo test`.

use herd::config::{Config, ConfigError};

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
