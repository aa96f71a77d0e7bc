//! What `deploy/install.sh` prints and refuses before it touches a host:
//! `--dry-run` prints the exact scp and ssh commands, host after host, and
//! runs none of them (stand-ins for ssh and scp record any call); hosts come
//! from the command line or a file; its usage errors exit 2 with a clear
//! message; the commands it runs remotely are POSIX sh. And every shell
//! script of the repository is shellcheck-clean (skipped without
//! `shellcheck`, except under CI).

use std::process::Command;

use crate::common::may_run;
use crate::harness::{
    BINARY, DEFAULT_CONFIG, Plan, R_BINARY, R_CHECK, R_CONFIG_FORCE, R_CONFIG_KEEP, R_MEMBERS, R_SECRET,
    R_START, R_UNIT, R_VERIFY, UNIT, assert_ok, fake, install_sh, machine_ssh, rejoin, root, run,
    stdout_lines, text,
};

#[test]
fn dry_run_prints_the_exact_scp_and_ssh_commands_for_each_host_in_order() {
    // The real ssh and scp are shadowed by recorders: a dry run with
    // --binary must call neither.
    let fakes = tempfile::tempdir().expect("temporary directory");
    for name in ["ssh", "scp"] {
        fake(fakes.path(), name, "");
    }
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
            "scripts/dist.sh aarch64-unknown-linux-musl",
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
