//! The config parser under random input: any text gives a config or a list
//! of problems, never a panic, and every problem names a key path; documents
//! built from the real keys with random values of random types are judged
//! key by key (each bad key reported once, good ones accepted).

use herd::config::{Config, ConfigError, known_keys};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z0-9 .:/_-]{0,20}".prop_map(|s| format!("{s:?}")),
        prop_oneof![Just("\"250ms\""), Just("\"1s\""), Just("\"0\""), Just("\"-1s\""), Just("\"soon\"")]
            .prop_map(str::to_owned),
        proptest::collection::vec("[a-z0-9.:]{0,12}", 0..3).prop_map(|v| format!("{v:?}")),
        Just("1.5".to_owned()),
        Just("{ a = 1 }".to_owned()),
    ]
}

fn document() -> impl Strategy<Value = String> {
    let entry = (0..known_keys().len(), any::<prop::sample::Index>(), value());
    proptest::collection::vec(entry, 0..12).prop_map(|entries| {
        let keys = known_keys();
        let mut doc = String::new();
        for (section, key, value) in entries {
            let (name, names) = &keys[section];
            doc.push_str(&format!("[{name}]\n{} = {value}\n", key.get(names)));
        }
        doc
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_text_gives_a_config_or_problems_never_a_panic(text in "\\PC{0,300}") {
        let _ = Config::from_toml_str(&text, "fuzz.toml");
    }

    #[test]
    fn documents_of_real_keys_are_judged_key_by_key(doc in document()) {
        match Config::from_toml_str(&doc, "fuzz.toml") {
            Ok(config) => {
                // What it accepted prints back to a config it accepts again.
                let again = Config::from_toml_str(&config.to_toml(), "again.toml");
                prop_assert!(again.is_ok() || !config.gossip.keys.is_empty(), "{:?}", again);
            }
            // Repeated tables are a TOML syntax error, reported as one line.
            Err(ConfigError::Syntax { path, .. }) => prop_assert_eq!(path, "fuzz.toml"),
            Err(ConfigError::Invalid(problems)) => {
                prop_assert!(!problems.is_empty());
                for p in problems {
                    let (section, key) = p.path.split_once('.').unwrap_or((p.path.as_str(), ""));
                    let known = known_keys().iter().any(|(s, keys)| *s == section && (key.is_empty() || keys.contains(&key)));
                    prop_assert!(known, "problem names no known key: {}", p);
                    prop_assert!(!p.allowed.is_empty(), "problem says nothing of what is allowed: {}", p);
                }
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}
