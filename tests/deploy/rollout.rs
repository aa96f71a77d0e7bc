//! `deploy/install.sh` host after host, against stand-ins for ssh and scp
//! that log every call and answer as a fleet of Pis would: each host gets the
//! build for what its `uname -m` says; an unknown or unreachable machine, or
//! one without a build, stops the run before any host is touched; a host
//! that fails, or whose new agent does not rejoin the cluster, stops the run,
//! is named, and the hosts after it are never touched. With `--deb`, each
//! host gets the package for what `dpkg --print-architecture` says, by the
//! same rules.

use crate::harness::{
    Plan, R_SECRET, TRIPLES, arch_ssh, assert_ok, calls, cluster_ssh, deb_lines, failing, fake, fake_debs,
    fake_dist, install_sh, machine_ssh, rejoin, run, stdout_lines, text,
};

#[test]
fn each_host_must_rejoin_the_cluster_before_the_next_is_touched() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ssh = cluster_ssh(dir.path());
    let scp = fake(dir.path(), "scp", "");
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
    let scp = fake(dir.path(), "scp", "");
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
    let scp = fake(dir.path(), "scp", "");
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
    let scp = fake(dir.path(), "scp", "");
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
    let ssh = failing(dir.path(), "ssh", "psb*herd\\ check*");
    let scp = fake(dir.path(), "scp", "");
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
fn with_deb_each_host_gets_the_package_for_its_dpkg_architecture() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ssh = arch_ssh(dir.path());
    let dist = fake_debs(dir.path(), "0.9.0-1", &["arm64", "armhf", "amd64"]);
    let package = |a: &str| dist.join(format!("herd_0.9.0-1_{a}.deb"));
    let hosts = [("psa", "arm64"), ("pi@psb.local", "armhf"), ("psd", "amd64")];

    // The dry run asks every host its architecture, and only that.
    let out = run(install_sh()
        .env("SSH", &ssh)
        .args(["--deb", "--dry-run", "--dist"])
        .arg(&dist)
        .args(hosts.map(|h| h.0)));
    assert_ok(&out);
    let want: Vec<String> = hosts.iter().flat_map(|(h, a)| deb_lines(&ssh, "scp", h, &package(a))).collect();
    assert_eq!(stdout_lines(&out), want);
    let asked: Vec<String> =
        hosts.iter().map(|(h, _)| format!("ssh {h} dpkg --print-architecture")).collect();
    assert_eq!(calls(dir.path()), asked, "a dry run runs only dpkg --print-architecture");
    let err = text(&out.stderr);
    for (h, a) in hosts {
        let line = format!("install.sh: {h} is {a}: {}\n", package(a).display());
        assert!(err.contains(&line), "{line:?} in stderr: {err}");
    }

    // A real run copies each its package; the secret goes over stdin.
    std::fs::remove_file(dir.path().join("calls.log")).expect("reset the log");
    let scp = fake(dir.path(), "scp", "");
    let secret = dir.path().join("herd.secret");
    std::fs::write(&secret, "k").expect("write secret");
    let out = run(install_sh()
        .env("SSH", &ssh)
        .env("SCP", &scp)
        .args(["--deb", "--dist"])
        .arg(&dist)
        .arg("--secret")
        .arg(&secret)
        .args(hosts.map(|h| h.0)));
    assert_ok(&out);
    let copies: Vec<String> =
        calls(dir.path()).into_iter().filter(|c| c.starts_with("scp") && c.contains(".deb")).collect();
    let expected: Vec<String> = hosts
        .iter()
        .map(|(h, a)| format!("scp {} {h}:/tmp/herd_0.9.0-1_{a}.deb", package(a).display()))
        .collect();
    assert_eq!(copies, expected);
    let printed = stdout_lines(&out);
    let secrets =
        printed.iter().filter(|l| l.ends_with(&format!("'{R_SECRET}' < {}", secret.display()))).count();
    assert_eq!(secrets, hosts.len(), "the secret over ssh's stdin on every host:\n{}", printed.join("\n"));
}

#[test]
fn with_deb_an_unknown_architecture_or_a_missing_package_stops_before_any_host_is_touched() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ssh = arch_ssh(dir.path());
    let scp = fake(dir.path(), "scp", "");
    let dist = fake_debs(dir.path(), "0.9.0-1", &["arm64", "amd64"]);
    // install.sh --deb on `hosts`, the call log emptied first.
    let deb_run = |hosts: &[&str]| {
        let _ = std::fs::remove_file(dir.path().join("calls.log"));
        run(install_sh().env("SSH", &ssh).env("SCP", &scp).args(["--deb", "--dist"]).arg(&dist).args(hosts))
    };
    for (bad, message) in [
        (
            "psx",
            "install.sh: psx: dpkg --print-architecture says 'i386', an architecture herd has no package for (arm64, armhf, amd64)",
        ),
        (
            "psn",
            "install.sh: psn: asking its architecture with dpkg --print-architecture failed (sh exited with status 127; a system without dpkg takes the binary: leave out --deb)",
        ),
    ] {
        let out = deb_run(&["psa", bad, "psd"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "stderr: {err}");
        assert!(err.contains(message), "stderr: {err}");
        assert!(err.contains("install.sh: nothing was installed on any host"), "stderr: {err}");
        assert!(out.stdout.is_empty(), "printed commands: {}", text(&out.stdout));
    }
    // No armhf package in the directory: named, nothing touched.
    let out = deb_run(&["psa", "psb"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(&format!("install.sh: no package for psb (armhf) in {}: make it with", dist.display())),
        "stderr: {err}"
    );
    assert!(
        calls(dir.path()).iter().all(|c| c.ends_with("dpkg --print-architecture")),
        "{:?}",
        calls(dir.path())
    );
    // --deb and --binary contradict each other.
    let out = run(install_sh().args(["--deb", "--binary", "/bin/true", "psa"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("install.sh: --deb installs packages, --binary a bare binary: choose one")
    );
}
