//! The deploy kit in `deploy/`, held to what an operator relies on:
//!
//! - `install.sh --dry-run` prints the exact scp and ssh commands, host after
//!   host, and runs none of them; its usage errors exit 2; a host that fails
//!   stops the run, is named, and the hosts after it are never touched (fake
//!   `SSH`/`SCP` commands record every call).
//! - `herd.service` passes `systemd-analyze verify` and carries the hardening
//!   of issue 6; `install.sh` is shellcheck-clean. Without `systemd-analyze`
//!   or `shellcheck` those tests are skipped with a message, except under CI
//!   (`CI=true`), where they fail: CI installs the `systemd` and `shellcheck`
//!   packages.
//! - `datadog-dashboard.json` is dashboard JSON whose every query uses only
//!   metrics herd emits: the names in docs/metrics.md's StatsD table (with its
//!   `.freq_capped` / `*_occurred` shorthands expanded, and DogStatsD's
//!   aggregates of each histogram).
//! - The Kubernetes manifests (hostNetwork and the `dns` alternative) and the
//!   Dockerfile say what they must; the herd.toml each manifest embeds passes
//!   `herd check`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::may_run;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- install.sh

/// The `--binary` of the tests that are about something else: one binary for
/// every host, so install.sh asks no host its machine.
const BINARY: &str = "/srv/build/herd";
const DEFAULT_CONFIG: &str = "config/herd.toml";
const UNIT: &str = "deploy/herd.service";

/// What install.sh runs on every host, in order: the contract of its output.
const R_BINARY: &str = "sudo install -m 0755 /tmp/herd /usr/local/bin/herd";
const R_CONFIG_KEEP: &str = r#"if test -e /etc/herd/herd.toml; then echo "kept the existing /etc/herd/herd.toml (--force-config replaces it)"; else sudo install -D -m 0644 /tmp/herd.toml /etc/herd/herd.toml; fi"#;
const R_CONFIG_FORCE: &str = "sudo install -D -m 0644 /tmp/herd.toml /etc/herd/herd.toml";
const R_SECRET: &str = "sudo groupadd -f --system herd-secret && sudo install -D -m 0640 -g herd-secret /dev/stdin /etc/herd/secret";
const R_CHECK: &str = "sudo /usr/local/bin/herd check -c /etc/herd/herd.toml >/dev/null";
const R_UNIT: &str = "sudo groupadd -f --system herd-secret && sudo install -m 0644 /tmp/herd.service /etc/systemd/system/herd.service && rm -f /tmp/herd /tmp/herd.toml /tmp/herd.service";
const R_START: &str =
    "sudo systemctl daemon-reload && sudo systemctl enable herd && sync && sudo systemctl restart herd";
/// Before the restart: the live members the running agent lists (0 when none runs).
const R_MEMBERS: &str = r#"n=$(sudo /usr/local/bin/herd status --json 2>/dev/null | grep -o "live_members.: *[0-9]*" | tr -cd 0-9; true); echo "${n:-0}""#;
const R_VERIFY: &str = "for i in 1 2 3 4 5 6 7 8 9 10; do systemctl is-active --quiet herd && sudo /usr/local/bin/herd status && exit 0; sleep 1; done; systemctl status --no-pager herd; exit 1";

/// The inputs of one install, as install.sh prints them.
struct Plan<'a> {
    ssh: &'a str,
    scp: &'a str,
    binary: &'a str,
    config: &'a str,
    unit: &'a str,
    force_config: bool,
}

impl Default for Plan<'_> {
    fn default() -> Self {
        Plan {
            ssh: "ssh",
            scp: "scp",
            binary: BINARY,
            config: DEFAULT_CONFIG,
            unit: UNIT,
            force_config: false,
        }
    }
}

impl Plan<'_> {
    /// The exact `+ ` lines for `hosts`, in order.
    fn lines(&self, hosts: &[&str]) -> Vec<String> {
        let config = if self.force_config { R_CONFIG_FORCE } else { R_CONFIG_KEEP };
        let mut out = Vec::new();
        for host in hosts {
            let Plan { ssh, scp, binary, config: cfg, unit, .. } = self;
            out.push(format!("+ {scp} {binary} {host}:/tmp/herd"));
            out.push(format!("+ {scp} {cfg} {host}:/tmp/herd.toml"));
            out.push(format!("+ {scp} {unit} {host}:/tmp/herd.service"));
            for remote in [R_BINARY, config, R_CHECK, R_UNIT, R_MEMBERS, R_START, R_VERIFY] {
                out.push(format!("+ {ssh} {host} '{remote}'"));
            }
        }
        out
    }
}

/// `deploy/install.sh`, run from the top of the repository (as the README
/// says), with none of its environment variables inherited.
fn install_sh() -> Command {
    let mut cmd = Command::new(root().join("deploy/install.sh"));
    cmd.current_dir(root())
        .env_remove("SSH")
        .env_remove("SCP")
        .env_remove("HERD_HOSTS_FILE")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run deploy/install.sh")
}

fn stdout_lines(out: &Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_owned).collect()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "install.sh failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A directory holding `ssh` and `scp` stand-ins that append each call to
/// `calls.log` there: any call at all shows up in the log.
fn recording_path_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    for name in ["ssh", "scp"] {
        let path = dir.path().join(name);
        let log = dir.path().join("calls.log");
        std::fs::write(&path, format!("#!/bin/sh\necho \"{name} $*\" >> '{}'\n", log.display()))
            .expect("write fake");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod fake");
    }
    dir
}

#[test]
fn dry_run_prints_the_exact_scp_and_ssh_commands_for_each_host_in_order() {
    // The real ssh and scp are shadowed by recorders: a dry run with
    // --binary must call neither.
    let fakes = recording_path_dir();
    let path = format!("{}:{}", fakes.path().display(), std::env::var("PATH").unwrap_or_default());
    let out =
        run(install_sh().env("PATH", &path).args(["--dry-run", "--binary", BINARY, "psa", "pi@psb.local"]));
    assert_ok(&out);
    assert_eq!(stdout_lines(&out), Plan::default().lines(&["psa", "pi@psb.local"]));
    assert!(!fakes.path().join("calls.log").exists(), "a dry run called ssh or scp");
    let err = text(&out.stderr);
    assert!(err.contains("dry run: nothing was done on psa pi@psb.local"), "stderr: {err}");
}

#[test]
fn dry_run_uses_the_ssh_and_scp_commands_from_the_environment_and_never_runs_them() {
    // /bin/false fails whenever it runs: success proves nothing ran.
    let out = run(install_sh()
        .env("SSH", "/bin/false")
        .env("SCP", "/bin/false")
        .args(["-n", "-b", BINARY, "psa", "psb", "psc"]));
    assert_ok(&out);
    let plan = Plan { ssh: "/bin/false", scp: "/bin/false", ..Plan::default() };
    assert_eq!(stdout_lines(&out), plan.lines(&["psa", "psb", "psc"]));

    // Options in SSH/SCP are kept, word by word.
    let out = run(install_sh()
        .env("SSH", "ssh -o BatchMode=yes -p 2222")
        .env("SCP", "scp -o BatchMode=yes -P 2222")
        .args(["--dry-run", "--binary", BINARY, "psa"]));
    assert_ok(&out);
    let plan =
        Plan { ssh: "ssh -o BatchMode=yes -p 2222", scp: "scp -o BatchMode=yes -P 2222", ..Plan::default() };
    assert_eq!(stdout_lines(&out), plan.lines(&["psa"]));
}

#[test]
fn dry_run_reads_hosts_from_a_file_skipping_comments_and_blank_lines() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "# the rack\npsa\n\n   psb.local   # top shelf\npi@psc\n#psd\n")
        .expect("write hosts");
    let expected = Plan { ssh: "/bin/false", scp: "/bin/false", ..Plan::default() }.lines(&[
        "psa",
        "psb.local",
        "pi@psc",
    ]);

    let by_option = run(install_sh()
        .env("SSH", "/bin/false")
        .env("SCP", "/bin/false")
        .args(["--dry-run", "--binary", BINARY])
        .arg("--hosts")
        .arg(&hosts));
    assert_ok(&by_option);
    assert_eq!(stdout_lines(&by_option), expected);

    let by_env = run(install_sh()
        .env("SSH", "/bin/false")
        .env("SCP", "/bin/false")
        .env("HERD_HOSTS_FILE", &hosts)
        .args(["--dry-run", "--binary", BINARY]));
    assert_ok(&by_env);
    assert_eq!(stdout_lines(&by_env), expected);

    // Hosts on the command line win over the file.
    let args_win =
        run(install_sh().env("HERD_HOSTS_FILE", &hosts).args(["--dry-run", "--binary", BINARY, "psz"]));
    assert_ok(&args_win);
    assert_eq!(stdout_lines(&args_win), Plan::default().lines(&["psz"]));

    // The shipped example is a valid hosts file: psa.local ... psd.local.
    let example =
        run(install_sh().args(["--dry-run", "--binary", BINARY, "--hosts", "deploy/hosts.example"]));
    assert_ok(&example);
    assert_eq!(
        stdout_lines(&example),
        Plan::default().lines(&["psa.local", "psb.local", "psc.local", "psd.local"])
    );
}

#[test]
fn a_secret_goes_over_ssh_stdin_into_the_herd_secret_group_before_the_check() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let secret = dir.path().join("herd.secret");
    std::fs::write(&secret, "hunter2\n").expect("write secret");
    let secret = secret.display().to_string();
    let out = run(install_sh().args(["--dry-run", "--binary", BINARY, "--secret", &secret, "psa"]));
    assert_ok(&out);
    let mut want = Plan::default().lines(&["psa"]);
    // After the config, before `herd check` (which reads secret_file).
    let check = want.iter().position(|l| l.contains(R_CHECK)).expect("the check step");
    want.insert(check, format!("+ ssh psa '{R_SECRET}' < {secret}"));
    assert_eq!(stdout_lines(&out), want);
    assert!(!text(&out.stdout).contains("hunter2"), "the secret itself is never printed");

    // A real run stops before any ssh (the binary is there, the secret not).
    let binary = dir.path().join("herd");
    std::fs::write(&binary, "").expect("write binary");
    let binary = binary.display().to_string();
    let missing =
        run(install_sh().args(["--binary", &binary, "--secret", "/nonexistent/herd.secret", "psa"]));
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("no secret file at /nonexistent/herd.secret"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn dry_run_shows_the_chosen_binary_and_config_and_force_config() {
    let out = run(install_sh().args([
        "--dry-run",
        "--binary",
        "/srv/lab/herd",
        "--config=/srv/lab.toml",
        "--force-config",
        "psa",
    ]));
    assert_ok(&out);
    let plan =
        Plan { binary: "/srv/lab/herd", config: "/srv/lab.toml", force_config: true, ..Plan::default() };
    assert_eq!(stdout_lines(&out), plan.lines(&["psa"]));
    // A dry run only warns about a binary that is not built yet.
    assert!(
        text(&out.stderr).contains("warning: no binary at /srv/lab/herd"),
        "stderr: {}",
        text(&out.stderr)
    );

    // Run from elsewhere, the default paths are the repository's, absolute:
    // the build psa's machine gets is looked for in its dist/, then target/.
    let elsewhere = tempfile::tempdir().expect("temporary directory");
    let ssh = machine_ssh(elsewhere.path());
    let out = run(install_sh().current_dir(elsewhere.path()).env("SSH", &ssh).args(["--dry-run", "psa"]));
    assert_ok(&out);
    let repo = std::fs::canonicalize(root()).expect("canonical repository path");
    let triple = "aarch64-unknown-linux-musl";
    let in_dist = std::fs::read_dir(repo.join("dist")).into_iter().flatten().flatten().find(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with("herd-") && name.ends_with(&format!("-{triple}"))
    });
    let binary = match in_dist {
        Some(e) => e.path().display().to_string(),
        None => format!("{}/target/{triple}/release/herd", repo.display()),
    };
    let (config, unit) =
        (format!("{}/{DEFAULT_CONFIG}", repo.display()), format!("{}/{UNIT}", repo.display()));
    let plan = Plan { ssh: &ssh, binary: &binary, config: &config, unit: &unit, ..Plan::default() };
    assert_eq!(stdout_lines(&out), plan.lines(&["psa"]));
}

/// After the restart, when `before` members were listed: the wait until the
/// new agent lists as many.
fn rejoin(before: usize) -> String {
    format!(
        r#"i=0; while [ $i -lt 150 ]; do n=$(sudo /usr/local/bin/herd status --json 2>/dev/null | grep -o "live_members.: *[0-9]*" | tr -cd 0-9; true); [ "${{n:-0}}" -ge {before} ] && exit 0; i=$((i + 1)); sleep 0.2; done; echo "it lists ${{n:-no}} live members after 30 s, {before} before the restart" >&2; exit 1"#
    )
}

/// `sh FILE`: a fake ssh on hosts whose running agent lists 3 live members
/// before the restart; after it, psb's new agent lists 3 again and psc's
/// lists only itself. Logs every call to `calls.log`.
fn cluster_ssh(dir: &Path) -> String {
    let log = dir.join("calls.log");
    let script = dir.join("fake-cluster-ssh");
    std::fs::write(
        &script,
        format!(
            r#"echo "ssh $*" >> '{log}'
case "$2" in
  n=*) echo 3 ;;
  i=0*) case $1 in psc) sh -c "$(echo "$2" | sed 's/sleep 0.2/true/; s/n=\$(sudo[^)]*)/n=1/')"; exit $? ;; esac ;;
esac
exit 0
"#,
            log = log.display()
        ),
    )
    .expect("write fake ssh");
    format!("sh {}", script.display())
}

#[test]
fn each_host_must_rejoin_the_cluster_before_the_next_is_touched() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ssh = cluster_ssh(dir.path());
    let scp = fake(dir.path(), "scp", "__never__");
    let binary = env!("CARGO_BIN_EXE_herd");
    let out =
        run(install_sh().env("SSH", &ssh).env("SCP", &scp).args(["--binary", binary, "psb", "psc", "psd"]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("it lists 1 live members after 30 s, 3 before the restart"),
        "the remote's own words: {err}"
    );
    assert!(
        err.contains("install.sh: failed on psc: herd did not rejoin the cluster (a changed [gossip] cluster, port or secret? journalctl -u herd)"),
        "stderr: {err}"
    );
    assert!(err.contains("done before it: psb; not attempted: psd"), "stderr: {err}");
    let printed = stdout_lines(&out);
    let plan = Plan { ssh: &ssh, scp: &scp, binary, ..Plan::default() };
    let mut expected = plan.lines(&["psb"]);
    expected.push(format!("+ {ssh} psb '{}'", rejoin(3)));
    expected.extend(plan.lines(&["psc"]));
    expected.push(format!("+ {ssh} psc '{}'", rejoin(3)));
    assert_eq!(printed, expected);
    let log = std::fs::read_to_string(dir.path().join("calls.log")).expect("calls were logged");
    assert!(!log.contains("psd"), "psd was touched:\n{log}");
}

#[test]
fn the_remote_commands_are_valid_sh() {
    // Each runs in the host's login shell: POSIX sh syntax, nothing bash-only.
    for remote in
        [R_BINARY, R_CONFIG_KEEP, R_CONFIG_FORCE, R_CHECK, R_UNIT, R_MEMBERS, R_START, R_VERIFY, &rejoin(3)]
    {
        let out = Command::new("sh").args(["-n", "-c", remote]).output().expect("run sh -n");
        assert!(out.status.success(), "sh -n refuses {remote:?}: {}", text(&out.stderr));
        assert!(!remote.contains('\''), "{remote:?} would need quoting inside the printed '...'");
    }
}

#[test]
fn help_prints_the_usage() {
    for flag in ["-h", "--help"] {
        let out = run(install_sh().arg(flag));
        assert_ok(&out);
        let usage = text(&out.stdout);
        for needle in [
            "Usage: deploy/install.sh [options] [host ...]",
            "--dry-run",
            "--binary PATH",
            "--config PATH",
            "--force-config",
            "--hosts FILE",
            "deploy/hosts",
            "SSH, SCP",
            "HERD_HOSTS_FILE",
            "--dist DIR",
            "HERD_DIST",
            "uname -m",
            "armv6l           arm-unknown-linux-musleabihf",
            "scripts/dist.sh",
            "cargo build --release --target aarch64-unknown-linux-musl",
        ] {
            assert!(usage.contains(needle), "usage lacks {needle:?}:\n{usage}");
        }
    }
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let empty = dir.path().join("hosts");
    std::fs::write(&empty, "# nobody yet\n\n").expect("write hosts");
    let two_per_line = dir.path().join("two");
    std::fs::write(&two_per_line, "psa psb\n").expect("write hosts");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--bogus".into(), "psa".into()], "install.sh: unknown option: --bogus"),
        (vec!["--dry-run".into(), "--hosts".into(), empty.display().to_string()], "install.sh: no hosts:"),
        (
            vec!["--dry-run".into(), "--hosts".into(), dir.path().join("absent").display().to_string()],
            "no hosts file",
        ),
        (
            vec!["--dry-run".into(), "--hosts".into(), two_per_line.display().to_string()],
            "two:1: one host per line",
        ),
        (vec!["--dry-run".into(), "--".into(), "-oProxyCommand=sh".into()], "not a host: -oProxyCommand=sh"),
        (vec!["--dry-run".into(), "psa;reboot".into()], "not a host: psa;reboot"),
        (vec!["--binary".into()], "option --binary needs a value"),
    ];
    for (args, message) in cases {
        let out = run(install_sh().env("SSH", "/bin/false").env("SCP", "/bin/false").args(&args));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: stderr: {err}");
        assert!(err.contains(message), "{args:?}: expected {message:?} in stderr: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: printed commands before refusing: {}", text(&out.stdout));
    }
}

#[test]
fn a_missing_binary_is_an_error_that_says_how_to_build_it() {
    let out = run(install_sh().env("SSH", "/bin/false").env("SCP", "/bin/false").args([
        "--binary",
        "/nonexistent/herd",
        "psa",
    ]));
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("no binary at /nonexistent/herd"), "stderr: {err}");
    assert!(err.contains("scripts/dist.sh"), "stderr: {err}");
    assert!(out.stdout.is_empty(), "ran something: {}", text(&out.stdout));
}

/// `sh FILE`: a fake ssh or scp that logs its arguments and fails like
/// `fail_when` says (a shell `case` pattern over all its arguments).
fn fake(dir: &Path, name: &str, fail_when: &str) -> String {
    let log = dir.join("calls.log");
    let script = dir.join(format!("fake-{name}"));
    std::fs::write(
        &script,
        format!(
            "echo \"{name} $*\" >> '{log}'\ncase \"$*\" in\n  {fail_when}) echo 'fake {name}: refused' >&2; exit 3 ;;\nesac\nexit 0\n",
            log = log.display()
        ),
    )
    .expect("write fake");
    // Run through sh: nothing needs the executable bit.
    format!("sh {}", script.display())
}

/// `sh FILE`: a fake ssh that logs its arguments to `calls.log` and answers
/// `uname -m` by host, as these Pis would: psa a 64-bit Pi OS, psb a 32-bit
/// one on a Pi 3, psc a Pi Zero, psd a PC, pse a BSD-style arm64, psf a
/// 32-bit personality on a 64-bit kernel; psx a MIPS router, and psq is
/// unreachable. Every other command succeeds silently.
fn machine_ssh(dir: &Path) -> String {
    let log = dir.join("calls.log");
    let script = dir.join("fake-machine-ssh");
    std::fs::write(
        &script,
        format!(
            r#"echo "ssh $*" >> '{log}'
case "$1" in *@*) h=${{1#*@}} ;; *) h=$1 ;; esac
if [ "$2" = "uname -m" ]; then
  case $h in
    psa*) echo aarch64 ;; psb*) echo armv7l ;; psc*) echo armv6l ;; psd*) echo x86_64 ;;
    pse*) echo arm64 ;; psf*) echo armv8l ;; psx*) echo mips ;;
    psq*) echo "ssh: connect to host $h port 22: Connection refused" >&2; exit 255 ;;
  esac
fi
exit 0
"#,
            log = log.display()
        ),
    )
    .expect("write fake ssh");
    format!("sh {}", script.display())
}

const TRIPLES: [&str; 4] = [
    "aarch64-unknown-linux-musl",
    "armv7-unknown-linux-musleabihf",
    "arm-unknown-linux-musleabihf",
    "x86_64-unknown-linux-musl",
];

/// A dist/ as scripts/dist.sh leaves it, with stand-in binaries.
fn fake_dist(dir: &Path, version: &str) -> PathBuf {
    let dist = dir.join("dist");
    std::fs::create_dir_all(&dist).expect("mkdir dist");
    for t in TRIPLES {
        std::fs::write(dist.join(format!("herd-{version}-{t}")), t).expect("write build");
    }
    std::fs::write(dist.join("SHA256SUMS"), "").expect("write sums");
    dist
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[test]
fn each_host_gets_the_build_for_what_its_uname_m_says() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ssh = machine_ssh(dir.path());
    let dist = fake_dist(dir.path(), "0.9.0");
    let build = |t: &str| format!("{}/herd-0.9.0-{t}", dist.display());
    let hosts = ["psa", "pi@psb.local", "psc", "psd", "pse", "psf"];
    let triple_of = ["aarch64", "armv7", "arm-", "x86_64", "aarch64", "armv7"]
        .map(|prefix| *TRIPLES.iter().find(|t| t.starts_with(prefix)).expect("a triple"));
    let want = |ssh: &str, scp: &str| -> Vec<String> {
        hosts
            .iter()
            .zip(triple_of)
            .flat_map(|(h, t)| Plan { ssh, scp, binary: &build(t), ..Plan::default() }.lines(&[h]))
            .collect()
    };

    // The dry run asks each host its machine (the only command it runs),
    // every host before any is installed, and shows the build for each.
    let out = run(install_sh().env("SSH", &ssh).arg("--dry-run").arg("--dist").arg(&dist).args(hosts));
    assert_ok(&out);
    assert_eq!(stdout_lines(&out), want(&ssh, "scp"));
    let asked: Vec<String> = hosts.iter().map(|h| format!("ssh {h} uname -m")).collect();
    assert_eq!(calls(dir.path()), asked, "a dry run runs only uname -m");
    let err = text(&out.stderr);
    for (line, (h, t)) in [
        ("psa is aarch64", ("psa", TRIPLES[0])),
        ("pi@psb.local is armv7l", ("psb", TRIPLES[1])),
        ("psc is armv6l", ("psc", TRIPLES[2])),
        ("psd is x86_64", ("psd", TRIPLES[3])),
        ("pse is arm64", ("pse", TRIPLES[0])),
        ("psf is armv8l", ("psf", TRIPLES[1])),
    ] {
        assert!(err.contains(&format!("install.sh: {line}: {}\n", build(t))), "{h}: stderr: {err}");
    }

    // A real run copies each host its own build; HERD_DIST is like --dist.
    std::fs::remove_file(dir.path().join("calls.log")).expect("reset the log");
    let scp = fake(dir.path(), "scp", "__never__");
    let out = run(install_sh().env("SSH", &ssh).env("SCP", &scp).env("HERD_DIST", &dist).args(hosts));
    assert_ok(&out);
    assert_eq!(stdout_lines(&out), want(&ssh, &scp));
    let copies: Vec<String> = calls(dir.path()).into_iter().filter(|c| c.ends_with(":/tmp/herd")).collect();
    let expected: Vec<String> =
        hosts.iter().zip(triple_of).map(|(h, t)| format!("scp {} {h}:/tmp/herd", build(t))).collect();
    assert_eq!(copies, expected);
}

#[test]
fn an_unknown_or_unreachable_machine_stops_the_run_before_any_host_is_touched() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ssh = machine_ssh(dir.path());
    let scp = fake(dir.path(), "scp", "__never__");
    let dist = fake_dist(dir.path(), "0.9.0");
    for (bad, message) in [
        (
            "psx",
            "install.sh: psx: uname -m says 'mips', a machine herd has no build for (herd runs on aarch64, armv7l, armv8l, armv6l and x86_64)",
        ),
        ("psq", "install.sh: psq: asking its machine with uname -m failed (sh exited with status 255)"),
    ] {
        let _ = std::fs::remove_file(dir.path().join("calls.log"));
        let out = run(install_sh()
            .env("SSH", &ssh)
            .env("SCP", &scp)
            .arg("--dist")
            .arg(&dist)
            .args(["psa", bad, "psb"]));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "stderr: {err}");
        assert!(err.contains(message), "stderr: {err}");
        assert!(err.contains("install.sh: nothing was installed on any host"), "stderr: {err}");
        assert_eq!(calls(dir.path()), ["ssh psa uname -m".to_owned(), format!("ssh {bad} uname -m")]);
        assert!(out.stdout.is_empty(), "printed commands: {}", text(&out.stdout));
    }
    assert!(
        text(&run(install_sh().env("SSH", &ssh).arg("--dist").arg(&dist).arg("psq")).stderr)
            .contains("ssh: connect to host psq port 22: Connection refused"),
        "ssh's own message is shown"
    );
}

#[test]
fn a_machine_without_a_build_and_two_versions_of_one_build_are_errors() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ssh = machine_ssh(dir.path());
    let scp = fake(dir.path(), "scp", "__never__");
    // A cargo target directory serves as well: only the aarch64 build is there.
    let target = dir.path().join("target");
    let aarch64 = target.join("aarch64-unknown-linux-musl/release/herd");
    std::fs::create_dir_all(aarch64.parent().unwrap()).expect("mkdir");
    std::fs::write(&aarch64, "").expect("write build");
    let out = run(install_sh().env("SSH", &ssh).arg("-n").arg("--dist").arg(&target).args(["psa", "psc"]));
    assert_ok(&out);
    let err = text(&out.stderr);
    assert!(err.contains(&format!("install.sh: psa is aarch64: {}\n", aarch64.display())), "{err}");
    let no_build = format!(
        "no build for psc (armv6l: arm-unknown-linux-musleabihf) in {}: build it with\n  scripts/dist.sh",
        target.display()
    );
    assert!(err.contains(&format!("warning: {no_build}")), "a dry run warns: {err}");
    let out =
        run(install_sh().env("SSH", &ssh).env("SCP", &scp).arg("--dist").arg(&target).args(["psa", "psc"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("install.sh: {no_build}")), "{}", text(&out.stderr));
    assert!(!calls(dir.path()).iter().any(|c| c.starts_with("scp")), "copied before failing");

    let dist = fake_dist(dir.path(), "0.9.0");
    fake_dist(dir.path(), "0.8.0");
    let out = run(install_sh().env("SSH", &ssh).arg("-n").arg("--dist").arg(&dist).arg("psb"));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("install.sh: psb: several builds for armv7-unknown-linux-musleabihf in"), "{err}");
    assert!(err.contains("keep one, or name it with --binary PATH"), "{err}");
}

#[test]
fn a_failing_host_stops_the_run_naming_it_and_later_hosts_are_never_touched() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ssh = fake(dir.path(), "ssh", "psb*herd\\ check*");
    let scp = fake(dir.path(), "scp", "__never__");
    let binary = env!("CARGO_BIN_EXE_herd");
    let out =
        run(install_sh().env("SSH", &ssh).env("SCP", &scp).args(["--binary", binary, "psa", "psb", "psc"]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("install.sh: failed on psb: herd check rejected /etc/herd/herd.toml"),
        "stderr: {err}"
    );
    assert!(err.contains("done before it: psa; not attempted: psc"), "stderr: {err}");
    assert!(err.contains("fake ssh: refused"), "the failing command's own message is shown: {err}");

    // Every command it printed was run, in order, and nothing after the failure.
    let log = std::fs::read_to_string(dir.path().join("calls.log")).expect("calls were logged");
    let calls: Vec<&str> = log.lines().collect();
    let plan = Plan { ssh: "ssh", scp: "scp", binary, ..Plan::default() };
    let mut expected: Vec<String> = plan.lines(&["psa"]);
    expected.extend(plan.lines(&["psb"]).into_iter().take(6)); // 3 copies, binary, config, check
    // The log has the arguments unquoted; the printed lines quote the remote command.
    let expected: Vec<String> =
        expected.iter().map(|l| l.trim_start_matches("+ ").replace('\'', "")).collect();
    assert_eq!(calls, expected);
    assert!(!log.contains("psc"), "psc was touched:\n{log}");

    let printed = stdout_lines(&out);
    assert_eq!(printed.len(), 10 + 6, "printed: {printed:#?}");
    assert_eq!(printed[..10], Plan { ssh: &ssh, scp: &scp, binary, ..Plan::default() }.lines(&["psa"])[..]);
}

#[test]
fn the_shell_scripts_are_shellcheck_clean() {
    let out = Command::new("shellcheck").arg("--version").output();
    let missing = out.is_err().then(|| "shellcheck is not installed (apt-get install shellcheck)".to_owned());
    if !may_run("the_shell_scripts_are_shellcheck_clean", missing) {
        return;
    }
    assert!(out.expect("checked").status.success());
    for script in [
        "deploy/install.sh",
        "scripts/dist.sh",
        "scripts/cluster.sh",
        "tests/lab/lab.sh",
        "tests/fleet/fleet.sh",
        ".ci/run",
    ] {
        let out = Command::new("shellcheck").arg(root().join(script)).output().expect("run shellcheck");
        assert!(out.status.success(), "shellcheck {script}:\n{}", text(&out.stdout));
    }
}

#[test]
fn dist_sh_refuses_what_would_build_the_wrong_binaries() {
    let dist = || {
        let mut c = Command::new("bash");
        c.arg(root().join("scripts/dist.sh")).env_remove("RUSTFLAGS").env_remove("CARGO_ENCODED_RUSTFLAGS");
        c
    };
    let out = dist().arg("mips-unknown-linux-musl").output().expect("run dist.sh");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("dist.sh: no such target: mips-unknown-linux-musl (one of: aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf arm-unknown-linux-musleabihf x86_64-unknown-linux-musl)"), "{}", text(&out.stderr));
    // RUSTFLAGS would silently drop .cargo/config.toml's flags.
    let out = dist().env("RUSTFLAGS", "-C opt-level=1").output().expect("run dist.sh");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("dist.sh: RUSTFLAGS is set: it would replace .cargo/config.toml's rustflags"),
        "{}",
        text(&out.stderr)
    );
    let help = dist().arg("--help").output().expect("run dist.sh");
    assert!(help.status.success());
    for needle in
        ["herd-<version>-<target triple>", "armv6l", "Pi 1, Zero, Zero W", "RUSTC_BOOTSTRAP=1", "SHA256SUMS"]
    {
        assert!(text(&help.stdout).contains(needle), "--help lacks {needle:?}:\n{}", text(&help.stdout));
    }
}

// -------------------------------------------------------------- herd.service

/// The unit's directives (`Key=value`, comments and sections left out).
fn unit_directives() -> Vec<String> {
    read(UNIT)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_unit_is_hardened_as_issue_6_asks() {
    let directives = unit_directives();
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/herd run -c /etc/herd/herd.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        "RestartSec=2",
        "Wants=network-online.target",
        "After=network-online.target",
        "DynamicUser=yes",
        "StateDirectory=herd",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "ProtectHostname=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        // Reading the clock's NTP state; no ProtectClock= (it blocks that).
        "SystemCallFilter=adjtimex clock_adjtime",
        "UMask=0077",
        "MemoryMax=32M",
        "WantedBy=multi-user.target",
    ] {
        assert!(directives.iter().any(|d| d == line), "{UNIT} lacks {line:?}");
    }
    // ProtectClock= would make adjtimex fail (EPERM) even to read.
    assert!(
        !directives.iter().any(|d| d.starts_with("ProtectClock=")),
        "{UNIT}: ProtectClock= blocks herd.clock.*"
    );
    // Exactly the socket families herd uses.
    let families: BTreeSet<&str> = directives
        .iter()
        .find_map(|d| d.strip_prefix("RestrictAddressFamilies="))
        .expect("RestrictAddressFamilies=")
        .split_whitespace()
        .collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"]));
    // Nothing that would break herd: it reads /sys and /proc/net, has no
    // watchdog ping, needs the host's network and no root.
    for key in [
        "WatchdogSec=",
        "ProcSubset=",
        "PrivateNetwork=",
        "User=root",
        "TemporaryFileSystem=",
        "InaccessiblePaths=",
    ] {
        assert!(!directives.iter().any(|d| d.starts_with(key)), "{UNIT} must not set {key}");
    }
    // The secret's group, which install.sh creates, is the unit's.
    assert!(directives.iter().any(|d| d == "SupplementaryGroups=herd-secret"));
    assert!(read("deploy/install.sh").contains("groupadd -f --system herd-secret"));
}

/// `systemd-analyze`, or `None` with a message (a failure under CI).
fn systemd_analyze() -> Option<Command> {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    let missing = (!found).then(|| "systemd-analyze is not installed (apt-get install systemd)".to_owned());
    may_run("the unit's checks", missing).then(|| Command::new("systemd-analyze"))
}

/// A copy of the unit in a temporary directory, its ExecStart pointing at the
/// herd Cargo built (verify checks that the binary exists).
fn unit_copy() -> (tempfile::TempDir, PathBuf) {
    let original = read(UNIT);
    let exec = "ExecStart=/usr/local/bin/herd run";
    assert_eq!(original.matches(exec).count(), 1, "{UNIT} has one ExecStart");
    let unit = original.replace(exec, &format!("ExecStart={} run", env!("CARGO_BIN_EXE_herd")));
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("herd.service");
    std::fs::write(&path, unit).expect("write unit copy");
    (dir, path)
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Some(mut analyze) = systemd_analyze() else { return };
    let (_dir, path) = unit_copy();
    let out = analyze.arg("verify").arg(&path).output().expect("run systemd-analyze verify");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify {UNIT}:\n{all}");
    // Unknown keys and bad values are only warnings: none may concern the unit.
    let about_unit: Vec<&str> =
        all.lines().filter(|l| l.contains("herd.service") || l.contains("herd")).collect();
    assert!(about_unit.is_empty(), "systemd-analyze verify {UNIT} warns:\n{}", about_unit.join("\n"));

    // systemd's own hardening score (systemd >= 252); 1.5 when written.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let report = text(&out.stdout);
    match report.lines().find_map(|l| l.split("Overall exposure level for herd.service: ").nth(1)) {
        Some(level) => {
            let score: f64 =
                level.split_whitespace().next().and_then(|s| s.parse().ok()).expect("exposure score");
            assert!(score <= 2.5, "exposure {score} of {UNIT} (systemd-analyze security):\n{report}");
        }
        None => eprintln!("no offline security report from this systemd-analyze: {}", text(&out.stderr)),
    }
}

// --------------------------------------------------------- the dashboard

/// Every metric herd emits, from docs/metrics.md's StatsD table: the backticked
/// names of the first column (`.freq_capped` continues the name before it),
/// `<name>_occurred` where the row mentions `*_occurred`, and DogStatsD's
/// aggregates of each histogram (`h`).
fn emitted_metrics() -> BTreeSet<String> {
    let doc = read("docs/metrics.md");
    let section = doc.split("\n## StatsD").nth(1).expect("docs/metrics.md has a \"## StatsD\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (first, kind, rest) = (cells[1], cells[2], cells[3..].join("|"));
        let mut parent = String::new();
        let mut row_names = Vec::new();
        for (i, piece) in first.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let name = match piece.strip_prefix('.') {
                Some(leaf) => format!("{parent}.{leaf}"),
                None => {
                    parent = piece.rsplit_once('.').map(|(p, _)| p.to_owned()).unwrap_or_default();
                    piece.to_owned()
                }
            };
            row_names.push(name);
        }
        if rest.contains("`*_occurred`") {
            let sticky: Vec<String> = row_names.iter().map(|n| format!("{n}_occurred")).collect();
            row_names.extend(sticky);
        }
        if kind == "h" {
            let aggregates: Vec<String> = row_names
                .iter()
                .flat_map(|n| ["avg", "max", "median", "95percentile", "count"].map(|s| format!("{n}.{s}")))
                .collect();
            row_names.extend(aggregates);
        }
        names.extend(row_names);
    }
    // Guard the parser against a change of the table's format.
    for known in [
        "baton",
        "herd.baton.passes",
        "herd.baton.hop_ms.95percentile",
        "herd.throttle.soft_temp_limit",
        "herd.throttle.freq_capped_occurred",
        "herd.member.down",
        "herd.link.heartbeat_loss_pct",
        "herd.net.wifi_signal_dbm",
    ] {
        assert!(names.contains(known), "docs/metrics.md's StatsD table no longer yields {known}: {names:?}");
    }
    names
}

/// The metric names in a Datadog query: what follows each `avg:`/`sum:`/
/// `min:`/`max:` up to the scope's `{`.
fn metrics_in_query(q: &str) -> Vec<String> {
    let mut found = Vec::new();
    for agg in ["avg:", "sum:", "min:", "max:"] {
        for (at, _) in q.match_indices(agg) {
            let after = &q[at + agg.len()..];
            let end = after.find('{').unwrap_or_else(|| panic!("query {q:?}: no scope after {agg}"));
            found.push(after[..end].to_owned());
        }
    }
    found
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("deploy/datadog-dashboard.json"))
        .expect("deploy/datadog-dashboard.json is JSON")
}

/// Every widget definition, groups included, depth first.
fn definitions(widgets: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    for w in widgets.as_array().expect("widgets is an array") {
        let d = &w["definition"];
        assert!(d.is_object(), "widget without a definition: {w}");
        out.push(d.clone());
        if d["type"] == "group" {
            definitions(&d["widgets"], out);
        }
    }
}

#[test]
fn dashboard_queries_use_only_metrics_herd_emits() {
    let emitted = emitted_metrics();
    let dash = dashboard();
    let mut defs = Vec::new();
    definitions(&dash["widgets"], &mut defs);
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for d in &defs {
        for r in d["requests"].as_array().into_iter().flatten() {
            let q = r["q"]
                .as_str()
                .unwrap_or_else(|| panic!("request without a \"q\" query in {:?}", d["title"]));
            assert!(q.contains("{$host}"), "query {q:?} ignores the $host template variable");
            let names = metrics_in_query(q);
            assert!(!names.is_empty(), "query {q:?} names no metric");
            for name in names {
                if !emitted.contains(&name) {
                    unknown.push(format!("{name} (in {q:?})"));
                }
                used.insert(name);
            }
        }
    }
    assert!(unknown.is_empty(), "the dashboard queries metrics herd does not emit:\n{}", unknown.join("\n"));
    assert!(used.len() >= 20, "only {} metrics used: {used:?}", used.len());
}

#[test]
fn dashboard_is_importable_and_has_every_panel() {
    let dash = dashboard();
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()), "title");
    assert_eq!(dash["layout_type"], "ordered");
    let vars = dash["template_variables"].as_array().expect("template_variables");
    assert!(
        vars.iter().any(|v| v["name"] == "host" && v["prefix"] == "host"),
        "no $host template variable: {vars:?}"
    );

    let mut defs = Vec::new();
    definitions(&dash["widgets"], &mut defs);
    for d in &defs {
        let kind = d["type"].as_str().expect("widget type");
        assert!(
            ["group", "timeseries", "query_value", "note"].contains(&kind),
            "unexpected widget type {kind}"
        );
        if kind == "timeseries" {
            for r in d["requests"].as_array().expect("timeseries requests") {
                assert!(
                    ["line", "bars", "area"].contains(&r["display_type"].as_str().unwrap_or("")),
                    "display_type: {r}"
                );
            }
        }
    }
    let titles: Vec<String> =
        defs.iter().filter_map(|d| d["title"].as_str()).map(str::to_lowercase).collect();
    for topic in [
        "baton counter",
        "passes/s",
        "hop",
        "regenerated",
        "members",
        "temperature",
        "throttle",
        "link rtt",
        "link loss",
        "heartbeat loss",
        "wi-fi",
        "net up",
        "suspect",
        "rejected",
        "fan",
        "read-only",
        "clock synchronised",
        "clock offset",
        "link speed",
        "carrier changes",
    ] {
        assert!(titles.iter().any(|t| t.contains(topic)), "no panel about {topic:?} among {titles:#?}");
    }
    // Per host, and per host and peer where herd tags a peer.
    let queries: Vec<&str> = defs
        .iter()
        .flat_map(|d| d["requests"].as_array().into_iter().flatten())
        .filter_map(|r| r["q"].as_str())
        .collect();
    let query = |metric: &str| queries.iter().find(|q| q.contains(&format!(":{metric}{{"))).copied();
    assert!(query("baton").is_some_and(|q| q.ends_with("by {host}")));
    assert!(query("herd.baton.passes").is_some_and(|q| q.contains(".as_rate()")));
    assert!(query("herd.cpu.temperature").is_some_and(|q| q.contains("by {host,sensor}")));
    for metric in ["herd.link.rtt_ms", "herd.link.loss_pct", "herd.link.heartbeat_loss_pct"] {
        assert!(query(metric).is_some_and(|q| q.contains("by {host,peer}")), "{metric} per host and peer");
    }
    assert!(query("herd.baton.hop_ms.avg").is_some() && query("herd.baton.hop_ms.95percentile").is_some());
}

fn monitors() -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&read("deploy/datadog-monitors.json"))
        .expect("deploy/datadog-monitors.json is JSON");
    v.as_array().expect("a JSON array of monitors").clone()
}

#[test]
fn monitors_alert_per_host_on_what_takes_pis_down_using_only_metrics_herd_emits() {
    let emitted = emitted_metrics();
    let monitors = monitors();
    let mut queries = Vec::new();
    for m in &monitors {
        let name = m["name"].as_str().expect("a name");
        assert_eq!(m["type"], "query alert", "{name}: type");
        assert!(m["message"].as_str().is_some_and(|t| t.len() > 40), "{name}: a message saying what to do");
        let q = m["query"].as_str().unwrap_or_else(|| panic!("{name}: no query"));
        for metric in metrics_in_query(q) {
            assert!(emitted.contains(&metric), "{name}: {metric} is not a metric herd emits (query {q:?})");
        }
        // Datadog refuses a monitor whose critical threshold differs from
        // the query's.
        let (_, threshold) = q.rsplit_once(' ').expect("query ends with its threshold");
        let threshold: f64 = threshold.parse().unwrap_or_else(|_| panic!("{name}: threshold of {q:?}"));
        assert_eq!(m["options"]["thresholds"]["critical"].as_f64(), Some(threshold), "{name}: critical");
        // Multi-alert: one alert per Pi (and per peer where the metric has
        // one), except the baton, which is the cluster's.
        if !q.contains(":baton{") {
            assert!(q.contains(" by {host"), "{name}: not per host: {q:?}");
        }
        queries.push(q.to_owned());
    }
    let has = |needle: &str| queries.iter().any(|q| q.contains(needle));
    for (what, needle) in [
        ("under-voltage", "herd.throttle.under_voltage{*} by {host} >= 1"),
        ("throttled", "herd.throttle.throttled{*} by {host} >= 1"),
        ("temperature above 80 °C", "herd.cpu.temperature{*} by {host} > 80"),
        ("the cluster smaller than expected", "herd.members{*} by {host} <"),
        ("two nodes sharing a name", "herd.gossip.rejected{reason:name_conflict} by {host}.as_count() > 0"),
        ("the baton stalled for 2 minutes", "change(max(last_2m),last_2m):max:baton{*} <= 0"),
        ("link loss above 5 %", "herd.link.loss_pct{*} by {host,peer} > 5"),
        ("root read-only", "herd.fs.root_readonly{*} by {host} >= 1"),
        ("clock unsynced", "herd.clock.synced{*} by {host} < 1"),
    ] {
        assert!(has(needle), "no monitor for {what} ({needle:?}) among {queries:#?}");
    }
    // A Pi that stops reporting is a member down too: the members monitor
    // alerts on no data.
    let members =
        monitors.iter().find(|m| m["query"].as_str().unwrap_or("").contains("herd.members")).unwrap();
    assert_eq!(members["options"]["notify_no_data"], true);
}

/// A Python with PyPI's datadog-api-client: `$HERD_PYTHON`, else the
/// virtualenv `.ci/run` makes (target/py-tools).
fn datadog_python() -> Option<PathBuf> {
    let python = std::env::var_os("HERD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/py-tools/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import datadog_api_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = (!ok).then(|| {
        format!(
            "no Python with datadog-api-client at {} (python3 -m venv target/py-tools && \
             target/py-tools/bin/pip install datadog-api-client)",
            python.display()
        )
    });
    may_run("the Datadog model test", missing).then_some(python)
}

#[test]
fn dashboard_and_monitors_load_into_datadogs_own_api_models() {
    let Some(python) = datadog_python() else { return };
    let out = Command::new(&python)
        .arg(root().join("tests/datadog_models.py"))
        .arg(root().join("deploy/datadog-dashboard.json"))
        .arg(root().join("deploy/datadog-monitors.json"))
        .output()
        .expect("run tests/datadog_models.py");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "the Datadog client refused them:\n{}{stdout}", text(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("Monitor ")).count(), monitors().len(), "{stdout}");
    assert!(stdout.starts_with("Dashboard 'herd: Raspberry Pi cluster'"), "{stdout}");

    // The check can fail: a monitor type the client does not know, and a
    // threshold of the wrong type, are both refused.
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut bad = monitors();
    bad[0]["type"] = "metric allert".into();
    bad[1]["options"]["thresholds"]["critical"] = "hot".into();
    let file = dir.path().join("bad.json");
    std::fs::write(&file, serde_json::to_string(&bad).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg(root().join("tests/datadog_models.py"))
        .arg(root().join("deploy/datadog-dashboard.json"))
        .arg(&file)
        .output()
        .expect("run tests/datadog_models.py");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("monitor[0].type: not a value the Monitor model knows"), "{err}");
    assert!(err.contains("monitor[1]: ApiTypeError"), "{err}");
}

// ---------------------------------------------------- Kubernetes and Docker

/// The block scalar under `herd.toml: |` in a manifest, dedented.
fn embedded_config(manifest: &str) -> String {
    let mut lines = manifest.lines().skip_while(|l| l.trim() != "herd.toml: |");
    let key = lines.next().expect("a `herd.toml: |` key");
    let key_indent = key.len() - key.trim_start().len();
    let mut block = Vec::new();
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && indent <= key_indent {
            break;
        }
        block.push(line);
    }
    let indent = block
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    block.iter().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n") + "\n"
}

/// `herd check` on a manifest's config, its secret_file pointed at a real file.
fn check_embedded(manifest_name: &str, manifest: &str) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "k8s-test-secret\n").expect("write secret");
    let config = embedded_config(manifest);
    let mounted = r#"secret_file = "/run/secrets/herd/secret""#;
    assert!(config.contains(mounted), "{manifest_name}: the config reads the mounted Secret");
    let config = config.replace(mounted, &format!("secret_file = {:?}", secret.display().to_string()));
    let path = dir.path().join("herd.toml");
    std::fs::write(&path, &config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .arg("check")
        .arg("-c")
        .arg(&path)
        .env_remove("HERD_CONFIG")
        .output()
        .expect("run herd check");
    assert!(
        out.status.success(),
        "{manifest_name}: herd check refuses its config:\n{}\n{config}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Every YAML document has an apiVersion and a kind; no tab indents.
fn documents(name: &str, manifest: &str) -> Vec<String> {
    assert!(!manifest.contains('\t'), "{name}: tabs in YAML");
    let docs: Vec<String> = manifest.split("\n---\n").map(str::to_owned).collect();
    for doc in &docs {
        assert!(
            doc.lines().any(|l| l.starts_with("apiVersion: ")),
            "{name}: a document without apiVersion:\n{doc}"
        );
        assert!(doc.lines().any(|l| l.starts_with("kind: ")), "{name}: a document without kind:\n{doc}");
    }
    docs
}

fn assert_pod_hardened(name: &str, manifest: &str) {
    for needle in [
        "kind: DaemonSet",
        "kind: ConfigMap",
        "kind: Secret",
        "secretName: herd-secret",
        "name: herd-secret",
        r#"command: ["/herd"]"#,
        r#"args: ["run", "-c", "/etc/herd/herd.toml"]"#,
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        r#"drop: ["ALL"]"#,
        "cpu: 10m",
        "memory: 16Mi",
        "mountPath: /host/sys",
        "path: /sys",
    ] {
        assert!(manifest.contains(needle), "{name} lacks {needle:?}");
    }
    let config = embedded_config(manifest);
    assert!(config.contains(r#"sysfs_root = "/host/sys""#), "{name}: sysfs_root");
    assert!(config.contains(r#"listen = "127.0.0.1:45894""#), "{name}: status on loopback");
}

#[test]
fn k8s_daemonset_uses_the_host_network_and_points_to_the_dns_alternative() {
    let name = "deploy/k8s/daemonset.yaml";
    let manifest = read(name);
    let docs = documents(name, &manifest);
    assert!(
        docs.iter().any(|d| d.contains("kind: DaemonSet") && d.contains("hostNetwork: true")),
        "{name}: hostNetwork"
    );
    assert!(manifest.contains("dnsPolicy: ClusterFirstWithHostNet"));
    assert!(
        manifest.contains("deploy/k8s/dns.yaml") && manifest.contains("headless Service"),
        "{name}: the dns alternative"
    );
    assert_pod_hardened(name, &manifest);
    // herd reads /proc files from sysfs_root's sibling: /host/proc.
    assert!(manifest.contains("mountPath: /host/proc") && manifest.contains("path: /proc"));
    let effective = check_embedded(name, &manifest);
    assert!(effective.contains(r#"strategy = "multicast""#), "{effective}");
}

#[test]
fn k8s_dns_alternative_has_a_headless_service_matching_dns_name() {
    let name = "deploy/k8s/dns.yaml";
    let manifest = read(name);
    let docs = documents(name, &manifest);
    let service = docs.iter().find(|d| d.contains("kind: Service\n")).expect("a Service");
    assert!(service.contains("clusterIP: None"), "{name}: the Service is headless");
    assert!(service.contains("name: herd-dns\n") && service.contains("namespace: herd\n"));
    assert!(
        !manifest.lines().any(|l| l.trim().starts_with("hostNetwork:")),
        "{name}: runs in the pod network"
    );
    assert_pod_hardened(name, &manifest);
    let effective = check_embedded(name, &manifest);
    assert!(effective.contains(r#"strategy = "dns""#), "{effective}");
    assert!(effective.contains(r#"dns_name = "herd-dns.herd.svc.cluster.local""#), "{effective}");
}

#[test]
fn dockerfile_packs_only_the_static_binary() {
    let dockerfile = read("deploy/Dockerfile");
    let instructions: Vec<&str> =
        dockerfile.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for line in [
        "FROM scratch",
        "ARG TARGET=aarch64-unknown-linux-musl",
        "COPY target/${TARGET}/release/herd /herd",
        "USER 65534:65534",
        r#"ENTRYPOINT ["/herd"]"#,
        r#"CMD ["run", "-c", "/etc/herd/herd.toml"]"#,
    ] {
        assert!(instructions.contains(&line), "deploy/Dockerfile lacks {line:?}");
    }
    assert_eq!(instructions.iter().filter(|l| l.starts_with("FROM ")).count(), 1, "one stage, from scratch");
    assert!(dockerfile.contains("docker buildx build --platform linux/arm64 -f deploy/Dockerfile"));
    // The build context is cut to what the COPY lines need.
    let ignore = read("deploy/Dockerfile.dockerignore");
    for pattern in ["*", "!target/*/release/herd", "!config/herd.toml"] {
        assert!(ignore.lines().any(|l| l == pattern), "deploy/Dockerfile.dockerignore lacks {pattern}");
    }
    assert!(root().join("config/herd.toml").is_file());
}
