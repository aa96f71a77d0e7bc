//! The command line as users meet it: `herd --version`, and `herd check` /
//! `herd run` on valid and invalid configs. Every class of bad value must give
//! exit code 78 (EX_CONFIG) and exactly one stderr line per problem, naming
//! the key path, the bad value and what is allowed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::herd;

/// sysexits.h EX_CONFIG.
const EX_CONFIG: i32 = 78;
const PREFIX: &str = "herd: config error: ";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// `herd <command> -c <path>`.
fn herd_with(command: &str, path: &Path) -> Run {
    herd().arg(command).arg("-c").arg(path).output().expect("run herd").into()
}

/// A temporary directory holding `herd.toml` with `text`.
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("herd.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

fn check(text: &str) -> Run {
    let (_dir, path) = config_file(text);
    herd_with("check", &path)
}

/// Asserts `herd check` refuses `text` with exit 78, nothing on stdout, and
/// exactly the `problems` on stderr (one line each, in any order).
fn assert_rejected(text: &str, problems: &[&str]) {
    let run = check(text);
    assert_eq!(run.code, Some(EX_CONFIG), "config:\n{text}\nstderr:\n{}", run.stderr);
    assert_eq!(run.stdout, "", "no effective config for an invalid one");
    let mut got = run.stderr_lines();
    let mut want: Vec<String> = problems.iter().map(|p| format!("{PREFIX}{p}")).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "config:\n{text}");
}

#[test]
fn version_names_version_target_git_revision_and_wire_versions() {
    let run: Run = herd().arg("--version").output().expect("run herd").into();
    assert_eq!(run.code, Some(0));
    assert_eq!(run.stdout, format!("herd {}\n", herd::VERSION));
    // `herd 0.1.0 (x86_64-unknown-linux-gnu, git 0123456789ab, wire 4, understands 3-4)`
    use herd::core::wire::{MIN_VERSION, VERSION};
    let wire = format!(", wire {VERSION}, understands {MIN_VERSION}-{VERSION})");
    let stdout = run.stdout.trim_end().strip_suffix(&wire).map(|s| format!("{s})"));
    let stdout = stdout.unwrap_or_else(|| panic!("no `{wire}` in {:?}", run.stdout));
    let rest = stdout
        .strip_prefix(&format!("herd {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected shape: {:?}", run.stdout));
    let (target, rev) =
        rest.split_once(", git ").unwrap_or_else(|| panic!("no git revision: {:?}", run.stdout));
    assert!(target.split('-').count() >= 3, "{target:?} is not a target triple");
    assert!(!rev.is_empty() && !rev.contains(' '), "bad revision {rev:?}");
}

#[test]
fn shipped_config_is_valid_and_holds_the_defaults() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/herd.toml");
    if !shipped.exists() {
        println!("skipped: {} does not exist yet", shipped.display());
        return;
    }
    let run = herd_with("check", &shipped);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    // The shipped file documents every key with its default, so its
    // effective config is the built-in one (after the `# herd` comment line,
    // which names the file).
    let defaults = check("");
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&run.stdout), body(&defaults.stdout));
}

#[test]
fn empty_config_is_valid_and_prints_the_defaults() {
    let run = check("");
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert!(run.stdout.starts_with("# herd "), "first line is a comment: {}", run.stdout);
    assert!(run.stdout.lines().any(|l| l == "port = 45892"), "{}", run.stdout);
    assert!(run.stdout.lines().any(|l| l == "hold = \"100ms\""), "the always-on pace: {}", run.stdout);
    assert!(run.stdout.lines().any(|l| l == "multicast_addr = \"230.1.1.251\""));
    // The effective config is itself a valid config.
    let again = check(&run.stdout);
    assert_eq!(again.code, Some(0), "stderr:\n{}", again.stderr);
}

#[test]
fn the_raspberry_pi_os_default_name_is_valid_with_a_warning_saying_how_to_rename() {
    let run = check("[node]\nname = \"raspberrypi\"\n");
    assert_eq!(run.code, Some(0), "valid, only risky: stderr:\n{}", run.stderr);
    assert!(run.stdout.lines().any(|l| l == "name = \"raspberrypi\""), "{}", run.stdout);
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "one warning line: {lines:?}");
    let warning = lines[0];
    assert!(warning.starts_with("herd: warning: the node name \"raspberrypi\""), "{warning}");
    for fix in ["[node] name in /etc/herd/herd.toml", "hostnamectl set-hostname", "restart herd"] {
        assert!(warning.contains(fix), "the warning says how to fix it ({fix}): {warning}");
    }
    // A name of its own: nothing on stderr.
    let named = check("[node]\nname = \"pi-rack1-a\"\n");
    assert_eq!((named.code, named.stderr.as_str()), (Some(0), ""));
}

#[test]
fn out_of_range_integer() {
    assert_rejected("[gossip]\nport = 70000\n", &["gossip.port = 70000: must be an integer from 1 to 65535"]);
}

#[test]
fn wrong_type() {
    assert_rejected(
        "[gossip]\nport = \"45892\"\n",
        &["gossip.port = \"45892\": must be an integer from 1 to 65535"],
    );
}

#[test]
fn bad_enum() {
    assert_rejected(
        "[gossip]\nstrategy = \"gossip\"\n",
        &["gossip.strategy = \"gossip\": must be one of \"multicast\", \"static\", \"dns\""],
    );
}

#[test]
fn bad_duration() {
    assert_rejected(
        "[gossip]\nheartbeat_interval = \"fast\"\n",
        &["gossip.heartbeat_interval = \"fast\": must be a duration string of at least 10ms \
           such as \"250ms\", \"1s\" or \"2m\""],
    );
}

#[test]
fn bad_ip() {
    assert_rejected(
        "[gossip]\nif_addr = \"10.0.0.256\"\n",
        &["gossip.if_addr = \"10.0.0.256\": must be an IPv4 address such as \"192.168.1.10\" or \"0.0.0.0\""],
    );
}

#[test]
fn unknown_key() {
    assert_rejected(
        "[gossip]\nbogus = 1\n",
        &["gossip.bogus = 1: unknown key; [gossip] has strategy, port, if_addr, multicast_if, \
           multicast_addr, multicast_ttl, broadcast_only, secret, secret_file, heartbeat_interval, \
           suspect_after, down_after, hosts, dns_name, data_port, max_members"],
    );
}

#[test]
fn unknown_section() {
    assert_rejected(
        "[bogus]\nx = 1\n",
        &["bogus = { x = 1 }: unknown section; sections are node, gossip, baton, statsd, telemetry, \
           links, status, log"],
    );
}

#[test]
fn cross_key_down_after_must_follow_suspect_after() {
    assert_rejected(
        "[gossip]\ndown_after = \"2s\"\n",
        &["gossip.down_after = \"2s\": must be longer than suspect_after (3s)"],
    );
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("nowhere.toml");
    let run = herd_with("check", &path);
    assert_eq!(run.code, Some(EX_CONFIG));
    assert_eq!(
        run.stderr_lines(),
        [format!("{PREFIX}cannot read config {}: No such file or directory (os error 2)", path.display())]
    );
}

#[test]
fn toml_syntax_error_is_one_line_naming_the_file() {
    let (_dir, path) = config_file("[gossip\nport = 1\n");
    let run = herd_with("check", &path);
    assert_eq!(run.code, Some(EX_CONFIG));
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "one line: {:?}", run.stderr);
    // The parser's own wording after the position is its business; the
    // file, the position and the gist are ours.
    let want = format!("{PREFIX}{}: TOML syntax error at line 1, column 8: unclosed table", path.display());
    assert!(lines[0].starts_with(&want), "{:?} should start with {want:?}", lines[0]);
    assert!(lines[0].contains("unclosed table"), "{:?}", lines[0]);
}

#[test]
fn several_problems_give_one_line_each() {
    assert_rejected(
        "[node]\nname = \"a b\"\n\n[gossip]\nport = 0\nstrategy = \"x\"\nif_addr = \"nope\"\n",
        &[
            "node.name = \"a b\": must be 1 to 63 characters of letters, digits, '-', '_' or '.'",
            "gossip.strategy = \"x\": must be one of \"multicast\", \"static\", \"dns\"",
            "gossip.port = 0: must be an integer from 1 to 65535",
            "gossip.if_addr = \"nope\": must be an IPv4 address such as \"192.168.1.10\" or \"0.0.0.0\"",
        ],
    );
}

#[test]
fn run_with_a_bad_config_exits_78_before_starting() {
    let (_dir, path) = config_file("[gossip]\nport = 70000\n");
    let run = herd_with("run", &path);
    assert_eq!(run.code, Some(EX_CONFIG), "stderr:\n{}", run.stderr);
    assert_eq!(
        run.stderr_lines(),
        [format!("{PREFIX}gossip.port = 70000: must be an integer from 1 to 65535")]
    );
}

/// `herd check`'s effective config, byte for byte (after its first line,
/// which names the build): what operators read and scripts diff.
#[test]
fn herd_check_prints_the_effective_config_byte_for_byte() {
    let run = check("[node]\nname = \"psa\"\ncluster = \"lab\"\n[gossip]\nsecret = \"x\"\n");
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    let body: String = run.stdout.lines().skip(1).map(|l| format!("{l}\n")).collect();
    assert_eq!(body, PINNED_CHECK);
}

const PINNED_CHECK: &str = r#"[node]
name = "psa"
cluster = "lab"
state_dir = ""

[gossip]
strategy = "multicast"
port = 45892
if_addr = "0.0.0.0"
multicast_if = "0.0.0.0"
multicast_addr = "230.1.1.251"
multicast_ttl = 1
broadcast_only = false
secret = "<redacted>"
secret_file = ""
heartbeat_interval = "1s"
suspect_after = "3s"
down_after = "5s"
hosts = []
dns_name = ""
data_port = 45893
max_members = 256

[baton]
enabled = true
main_node = ""
metric = "baton"
hold = "100ms"
pass_timeout = "250ms"
max_retries = 3
regenerate_after = "3s"

[statsd]
address = "127.0.0.1:8125"
prefix = "herd"
tags = []
flavor = "dogstatsd"
max_packet_size = 1432
flush_interval = "1s"
host_tag = true

[telemetry]
interval = "10s"
sysfs_root = "/sys"
interface = ""

[links]
probe_interval = "1s"
window = 60
peer_metrics = "all"

[status]
listen = "127.0.0.1:45894"

[log]
level = "info"
"#;
