use std::net::Ipv4Addr;

use super::*;

fn problems(text: &str) -> Vec<Problem> {
    match Config::from_toml_str(text, "test.toml") {
        Err(ConfigError::Invalid(p)) => p,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn empty_file_gives_documented_defaults() {
    let c = Config::from_toml_str("[node]\nname = \"psa\"\n", "t").unwrap();
    assert_eq!(c.gossip.port, 45892);
    assert_eq!(c.gossip.multicast_addr, Ipv4Addr::new(230, 1, 1, 251));
    assert_eq!(c.gossip.multicast_ttl, 1);
    assert_eq!(c.gossip.heartbeat_interval, Duration::from_secs(1));
    assert_eq!(c.gossip.suspect_after, Duration::from_secs(3));
    assert_eq!(c.gossip.down_after, Duration::from_secs(5));
    assert_eq!(c.gossip.data_port, 45893);
    assert_eq!(c.gossip.max_members, 256);
    assert_eq!(c.baton.pass_timeout, Duration::from_millis(250));
    // An always-on pace: the shipped default, not the benchmark's "0ms".
    assert_eq!(c.baton.hold, Duration::from_millis(100));
    assert_eq!(c.statsd.address, StatsdAddress::Udp("127.0.0.1:8125".into()));
    assert_eq!(c.status.listen, Some("127.0.0.1:45894".parse().unwrap()));
    assert_eq!(c.node.cluster, "herd");
    assert!(c.gossip.keys.is_empty());
}

#[test]
fn effective_config_round_trips() {
    let c = Config::from_toml_str("[node]\nname = \"psa\"\n[gossip]\nhosts = [\"10.0.0.1:45892\"]\n", "t")
        .unwrap();
    let again = Config::from_toml_str(&c.to_toml(), "t").unwrap();
    assert_eq!(c, again);
}

#[test]
fn every_problem_is_reported_at_once_with_path_value_and_allowed() {
    let p = problems(
        "[gossip]\nport = 70000\nstrategy = \"carrier-pigeon\"\nheartbeat_interval = \"soon\"\nbogus = 1\n[baton]\nmax_retries = -1\n",
    );
    let lines: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert!(
        lines.contains(&"gossip.port = 70000: must be an integer from 1 to 65535".to_owned()),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with(
        "gossip.strategy = \"carrier-pigeon\": must be one of \"multicast\", \"static\", \"dns\""
    )));
    assert!(lines.iter().any(|l| l.starts_with("gossip.heartbeat_interval = \"soon\": must be a duration")));
    assert!(lines.iter().any(|l| l.starts_with("gossip.bogus = 1: unknown key")));
    assert!(lines.iter().any(|l| l.starts_with("baton.max_retries = -1: must be an integer from 0 to 100")));
    assert_eq!(p.len(), 5, "{lines:?}");
}

#[test]
fn cross_key_rules() {
    let p = problems("[gossip]\nheartbeat_interval = \"2s\"\nsuspect_after = \"1s\"\ndown_after = \"1s\"\n");
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["gossip.suspect_after", "gossip.down_after", "links.probe_interval"]);
    let p = problems("[links]\nprobe_interval = \"2s\"\n");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "links.probe_interval");
    assert_eq!(p[0].value, "\"2s\"");
    assert!(p[0].allowed.contains("at most half of gossip.suspect_after (3s)"), "{}", p[0].allowed);
    assert!(Config::from_toml_str("[links]\nprobe_interval = \"1500ms\"\n", "t").is_ok());
    assert_eq!(problems("[gossip]\nstrategy = \"static\"\n")[0].path, "gossip.hosts");
    assert_eq!(problems("[gossip]\nstrategy = \"dns\"\n")[0].path, "gossip.dns_name");
    assert_eq!(problems("[gossip]\ndata_port = 45892\n")[0].path, "gossip.data_port");
    assert_eq!(problems("[gossip]\nsecret = \"a\"\nsecret_file = \"/x\"\n")[0].path, "gossip.secret_file");
}

#[test]
fn addresses_names_and_lists_are_checked() {
    assert_eq!(problems("[gossip]\nmulticast_addr = \"10.0.0.1\"\n")[0].path, "gossip.multicast_addr");
    assert!(
        Config::from_toml_str("[gossip]\nbroadcast_only = true\nmulticast_addr = \"10.0.0.255\"\n", "t")
            .is_ok()
    );
    assert_eq!(problems("[gossip]\nif_addr = \"eth0\"\n")[0].path, "gossip.if_addr");
    assert_eq!(problems("[gossip]\nhosts = [\"nope\"]\n")[0].path, "gossip.hosts");
    assert_eq!(problems("[node]\nname = \"bad name!\"\n")[0].path, "node.name");
    assert_eq!(problems("[node]\ncluster = \"\"\n")[0].path, "node.cluster");
    assert_eq!(problems("[statsd]\naddress = \"unix://relative\"\n")[0].path, "statsd.address");
    assert_eq!(problems("[statsd]\ntags = [\"a|b\"]\n")[0].path, "statsd.tags");
    assert_eq!(problems("[status]\nlisten = \"localhost\"\n")[0].path, "status.listen");
    assert_eq!(problems("[log]\nlevel = \"loud\"\n")[0].path, "log.level");
    assert_eq!(problems("[wat]\nx = 1\n")[0].path, "wat");
    assert_eq!(problems("gossip = 3\n")[0].path, "gossip");
    let c = Config::from_toml_str(
        "[statsd]\naddress = \"unix:///var/run/datadog/dsd.socket\"\n[status]\nlisten = \"\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.statsd.address, StatsdAddress::Unix("/var/run/datadog/dsd.socket".into()));
    assert_eq!(c.status.listen, None);
}

#[test]
fn secret_file_is_read_and_trailing_newline_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("secret");
    std::fs::write(&f, "hunter2\n").unwrap();
    let c = Config::from_toml_str(&format!("[gossip]\nsecret_file = {:?}\n", f.display().to_string()), "t")
        .unwrap();
    assert_eq!(c.gossip.keys, vec![Secret(b"hunter2".to_vec())]);
    assert!(!c.to_toml().contains("hunter2"));
    let missing = problems("[gossip]\nsecret_file = \"/nonexistent/herd-secret\"\n");
    assert_eq!(missing[0].path, "gossip.secret_file");
}

#[test]
fn secret_file_is_a_keyring_of_one_key_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("secret");
    let config = format!("[gossip]\nsecret_file = {:?}\n", f.display().to_string());
    std::fs::write(&f, "new key\r\n\n  \nold key\n").unwrap();
    let c = Config::from_toml_str(&config, "t").unwrap();
    assert_eq!(c.gossip.keys, vec![Secret(b"new key".to_vec()), Secret(b"old key".to_vec())]);
    std::fs::write(&f, "\n\n").unwrap();
    let p = problems(&config);
    assert_eq!(p[0].path, "gossip.secret_file");
    assert!(p[0].allowed.contains("no key"), "{:?}", p[0]);
    std::fs::write(&f, (0..9).map(|i| format!("key {i}\n")).collect::<String>()).unwrap();
    let p = problems(&config);
    assert!(p[0].allowed.contains("holds 9 keys; at most 8"), "{:?}", p[0]);
}

#[test]
fn syntax_errors_name_the_file() {
    match Config::from_toml_str("[gossip\n", "herd.toml") {
        Err(ConfigError::Syntax { path, .. }) => assert_eq!(path, "herd.toml"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn durations_accept_zero_and_units() {
    let c = Config::from_toml_str("[baton]\nhold = \"0\"\npass_timeout = \"100ms\"\n", "t").unwrap();
    assert_eq!(c.baton.hold, Duration::ZERO);
    assert_eq!(c.baton.pass_timeout, Duration::from_millis(100));
    assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    assert_eq!(format_duration(Duration::ZERO), "0ms");
}

#[test]
fn shipped_config_documents_every_key_with_its_default() {
    let shipped = include_str!("../../config/herd.toml");
    let parsed = Config::from_toml_str(shipped, "config/herd.toml").unwrap();
    assert_eq!(parsed, Config::defaults().unwrap(), "config/herd.toml must hold the defaults");
    let table: Table = shipped.parse().unwrap();
    let effective: Table = parsed.to_toml().parse().unwrap();
    for (section, keys) in &effective {
        let keys = keys.as_table().unwrap();
        let doc = table[section].as_table().unwrap_or_else(|| panic!("[{section}] missing"));
        for key in keys.keys() {
            assert!(doc.contains_key(key), "{section}.{key} is not in config/herd.toml");
        }
        assert_eq!(doc.len(), keys.len(), "[{section}] has keys the effective config does not print");
    }
}

#[test]
fn the_redacted_placeholder_is_not_accepted_as_a_secret() {
    let c = Config::from_toml_str("[gossip]\nsecret = \"hunter2\"\n", "t").unwrap();
    let printed = c.to_toml();
    assert!(printed.contains("secret = \"<redacted>\""), "{printed}");
    let again = problems(&printed);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].path, "gossip.secret");
}

#[test]
fn a_reload_keeps_restart_keys_and_applies_the_rest() {
    let running = Config::from_toml_str("[node]\nname = \"psa\"\n", "t").unwrap();
    let wanted = Config::from_toml_str(
        "[node]\nname = \"psb\"\n[gossip]\nport = 46000\nbroadcast_only = true\nmulticast_addr = \"10.0.0.255\"\n\
         heartbeat_interval = \"2s\"\nsuspect_after = \"6s\"\ndown_after = \"10s\"\n\
         [statsd]\ntags = [\"env:lab\"]\n[baton]\nhold = \"1s\"\n",
        "t",
    )
    .unwrap();
    let (config, held) = super::reload::plan(&running, wanted);
    let paths: Vec<&str> = held.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(
        paths,
        ["node.name", "gossip.port", "gossip.multicast_addr", "gossip.broadcast_only"],
        "{held:?}"
    );
    assert_eq!(held[1].to_string(), "gossip.port = 45892 (file: 46000)");
    assert_eq!((config.node.name.as_str(), config.gossip.port), ("psa", 45892));
    assert!(!config.gossip.broadcast_only);
    assert_eq!(config.gossip.multicast_addr, Ipv4Addr::new(230, 1, 1, 251));
    assert_eq!(config.gossip.heartbeat_interval, Duration::from_secs(2));
    assert_eq!(config.statsd.tags, vec!["env:lab".to_owned()]);
    assert_eq!(config.baton.hold, Duration::from_secs(1));
    let changed = super::reload::changed(&running, &config);
    assert_eq!(
        changed,
        [
            "gossip.heartbeat_interval",
            "gossip.suspect_after",
            "gossip.down_after",
            "baton.hold",
            "statsd.tags"
        ]
    );
}

#[test]
fn the_raspberry_pi_os_default_name_is_valid_but_warned_about() {
    let named = |name: &str| Config::from_toml_str(&format!("[node]\nname = {name:?}\n"), "t").unwrap();
    let warning = named("raspberrypi").node.name_warning().expect("a warning for the Pi OS default");
    assert!(warning.contains("\"raspberrypi\", from [node] name"), "{warning}");
    assert!(warning.contains("hostnamectl set-hostname") && warning.contains("[node] name"), "{warning}");
    assert!(named("RaspberryPi").node.name_warning().is_some(), "hostnames are case-insensitive");
    assert_eq!(named("psa").node.name_warning(), None);
    assert_eq!(named("raspberrypi2").node.name_warning(), None);
    // The hostname's path (the test cannot rename this host): decided by
    // the same function, saying where the name came from.
    let from_host = name_warning("raspberrypi", true).expect("a warning for the hostname");
    assert!(from_host.contains("from the hostname (no [node] name is set)"), "{from_host}");
    assert_eq!(name_warning("pi-rack1-a", true), None);
    let defaults = Config::defaults().unwrap();
    assert!(defaults.node.name_from_hostname, "an empty [node] name is the hostname");
    assert_eq!(
        defaults.node.name_warning().is_some(),
        defaults.node.name.eq_ignore_ascii_case("raspberrypi")
    );
}
