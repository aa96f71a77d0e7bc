//! The Debian packages `scripts/dist.sh` leaves in dist/: what each carries
//! (the dist build itself in /usr/bin, the unit pointing at it, the config as
//! a conffile, herd(1), completions, copyright, changelogs, the maintainer
//! scripts), that lintian has nothing to say of them, that the armhf
//! package's binary runs on a Pi 1's ARM1176, that `man -l` renders the page
//! and that each completion script loads in its shell and completes.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

use crate::common::{may_run, report_line};
use crate::harness::{read, root, text};

/// Debian architecture, the dist build it carries, how to run that here.
const PACKAGES: [(&str, &str, &[&str]); 3] = [
    ("arm64", "aarch64-unknown-linux-musl", &["qemu-aarch64-static"]),
    ("armhf", "arm-unknown-linux-musleabihf", &["qemu-arm-static", "-cpu", "arm1176"]),
    ("amd64", "x86_64-unknown-linux-musl", &[]),
];

fn version() -> String {
    read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_owned))
        .expect("version")
}

/// dist/'s package for `arch`, or why the test cannot run.
fn package(arch: &str) -> Result<PathBuf, String> {
    let dist = root().join("dist");
    let found: Vec<PathBuf> = std::fs::read_dir(&dist)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(&format!("_{arch}.deb")))
                .collect()
        })
        .unwrap_or_default();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("no herd_*_{arch}.deb in {} (scripts/dist.sh makes it)", dist.display())),
        many => panic!("several {arch} packages in dist/: {many:?}"),
    }
}

fn tool(name: &str) -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    (!found).then(|| format!("{name} is not installed"))
}

fn all_packages(test: &str, tools: &[&str]) -> Option<Vec<PathBuf>> {
    let mut missing: Vec<String> = tools.iter().filter_map(|t| tool(t)).collect();
    let mut found = Vec::new();
    for (arch, ..) in PACKAGES {
        match package(arch) {
            Ok(p) => found.push(p),
            Err(e) => missing.push(e),
        }
    }
    may_run(test, (!missing.is_empty()).then(|| missing.join("; "))).then_some(found)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}\n{}{}", out.status, text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn extract(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()));
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(dir.path().join("DEBIAN")));
    dir
}

#[test]
fn each_package_carries_its_dist_build_the_unit_the_conffile_and_the_pages() {
    let Some(debs) =
        all_packages("the packages' contents", &["dpkg-deb", "qemu-arm-static", "qemu-aarch64-static"])
    else {
        return;
    };
    let version = version();
    let mut sizes = Vec::new();
    for ((arch, triple, runner), deb) in PACKAGES.iter().zip(&debs) {
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("herd_{version}-")),
            "{name}: herd_<version>-<revision>_<arch>.deb"
        );
        let field = |f: &str| run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(f)).trim().to_owned();
        assert_eq!(field("Package"), "herd");
        assert_eq!(field("Architecture"), *arch);
        assert!(field("Version").starts_with(&format!("{version}-")));
        assert_eq!(field("Depends"), "systemd", "a static binary: only its unit and the group need systemd");
        assert_eq!(field("Section"), "net");
        let x = extract(deb);
        let at = |p: &str| x.path().join(p);
        // The dist build itself, byte for byte, and it runs (the armhf one
        // on a Pi 1's core).
        let dist_build = root().join(format!("dist/herd-{version}-{triple}"));
        let packaged = std::fs::read(at("usr/bin/herd")).expect("usr/bin/herd");
        assert!(
            packaged == std::fs::read(&dist_build).expect("the dist build"),
            "{name}: /usr/bin/herd is {}",
            dist_build.display()
        );
        let mut cmd = match runner.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(at("usr/bin/herd"));
                c
            }
            None => Command::new(at("usr/bin/herd")),
        };
        let said = run(cmd.arg("--version"));
        assert!(said.contains(triple), "{name}: herd --version says {said}");
        // The unit: deploy/herd.service but for the binary's path.
        let unit = std::fs::read_to_string(at("usr/lib/systemd/system/herd.service")).expect("the unit");
        assert_eq!(
            unit,
            read("deploy/herd.service").replace("ExecStart=/usr/local/bin/herd ", "ExecStart=/usr/bin/herd ")
        );
        assert_eq!(std::fs::read_to_string(at("etc/herd/herd.toml")).unwrap(), read("config/herd.toml"));
        let conffiles = std::fs::read_to_string(at("DEBIAN/conffiles")).expect("conffiles");
        assert_eq!(conffiles.trim(), "/etc/herd/herd.toml");
        for file in [
            "usr/share/man/man1/herd.1.gz",
            "usr/share/bash-completion/completions/herd",
            "usr/share/zsh/vendor-completions/_herd",
            "usr/share/fish/vendor_completions.d/herd.fish",
            "usr/share/doc/herd/copyright",
            "usr/share/doc/herd/changelog.gz",
            "usr/share/doc/herd/changelog.Debian.gz",
            "usr/lib/sysusers.d/herd.conf",
            "usr/share/lintian/overrides/herd",
        ] {
            assert!(at(file).is_file(), "{name} lacks /{file}");
        }
        // The maintainer scripts: the group, enable and start, restart on
        // upgrade, stop on remove, and purge's clean-up.
        let script = |s: &str| std::fs::read_to_string(at(&format!("DEBIAN/{s}"))).unwrap_or_default();
        assert!(script("postinst").contains("systemd-sysusers") && script("postinst").contains("herd.conf"));
        assert!(script("postinst").contains("deb-systemd-helper enable herd.service"));
        assert!(script("postinst").contains("_dh_action=restart"));
        assert!(script("prerm").contains("deb-systemd-invoke stop herd.service"));
        assert!(script("postrm").contains("rm -rf /etc/herd /var/lib/herd /var/lib/private/herd"));
        sizes.push(format!("{name} {} B", std::fs::metadata(deb).unwrap().len()));
    }
    report_line(&format!("DEB | packages | {}", sizes.join(", ")));
}

#[test]
fn lintian_has_nothing_to_say() {
    let Some(debs) = all_packages("lintian", &["lintian"]) else { return };
    let lintian = |extra: &[&str]| {
        Command::new("lintian")
            .args(["--fail-on", "error,warning", "--display-level", ">=warning", "--no-cfg"])
            .args(extra)
            .args(&debs)
            .output()
            .expect("run lintian")
    };
    let out = lintian(&[]);
    let said = text(&out.stdout);
    let complaints: Vec<&str> = said.lines().filter(|l| l.starts_with("E:") || l.starts_with("W:")).collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "lintian ({}):\n{said}{}",
        out.status,
        text(&out.stderr)
    );
    // What deploy/debian/herd.lintian-overrides silences (shown, overrides
    // count towards lintian's exit status, so this run's is not the gate).
    let overridden =
        text(&lintian(&["--show-overrides"]).stdout).lines().filter(|l| l.starts_with("O:")).count();
    report_line(&format!(
        "DEB | lintian on {} packages | errors 0, warnings 0, overridden {overridden}",
        debs.len()
    ));
}

#[test]
fn the_man_page_renders_and_every_completion_loads() {
    let Some(debs) = all_packages("the man page and completions", &["man", "bash", "zsh", "fish"]) else {
        return;
    };
    let x = extract(&debs[2]);
    let at = |p: &str| x.path().join(p);
    let page = at("usr/share/man/man1/herd.1.gz");
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("man");
    // Bold and underline are overstrikes (`X\bX`, `_\bX`) even into a pipe.
    let mut rendered = String::new();
    for c in text(&out.stdout).chars() {
        if c == '\u{8}' {
            rendered.pop();
        } else {
            rendered.push(c);
        }
    }
    assert!(out.status.success() && out.stderr.is_empty(), "man -l: {}\n{}", out.status, text(&out.stderr));
    let cli = herd::cli::Cli::command();
    for section in
        ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "FILES", "ENVIRONMENT", "EXIT STATUS", "SEE ALSO"]
    {
        assert!(rendered.contains(&format!("\n{section}\n")), "herd(1) has no {section}:\n{rendered}");
    }
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        assert!(
            rendered.contains(&format!("herd {}", sub.get_name())),
            "herd(1) lacks herd {}",
            sub.get_name()
        );
        for long in sub.get_arguments().filter_map(|a| a.get_long()).filter(|l| *l != "help") {
            assert!(
                rendered.contains(&format!("--{long}")),
                "herd(1) lacks herd {} --{long}",
                sub.get_name()
            );
        }
    }

    // Each shell loads its script and completes `herd st` to `status`.
    let bash = run(Command::new("bash").arg("--norc").arg("-c").arg(format!(
        "source {}; COMP_WORDS=(herd st); COMP_CWORD=1; COMP_LINE='herd st'; COMP_POINT=7; _herd herd st herd; echo \"${{COMPREPLY[@]}}\"",
        at("usr/share/bash-completion/completions/herd").display()
    )));
    assert!(bash.split_whitespace().any(|w| w == "status"), "bash completes herd st to: {bash}");
    // compinit -D: no dump file (with -d PATH it would replace PATH).
    let zsh = run(Command::new("zsh").arg("-f").arg("-c").arg(format!(
        "autoload -Uz compinit && compinit -u -D; source {}; print -r -- ${{_comps[herd]}}",
        at("usr/share/zsh/vendor-completions/_herd").display()
    )));
    assert_eq!(zsh.trim(), "_herd", "zsh binds herd's completion");
    let fish = run(Command::new("fish").arg("--no-config").arg("-c").arg(format!(
        "source {}; complete -C 'herd st'",
        at("usr/share/fish/vendor_completions.d/herd.fish").display()
    )));
    assert!(fish.lines().any(|l| l.starts_with("status")), "fish completes herd st to: {fish}");
    report_line(&format!(
        "DEB | herd(1) and completions | man -l: {} lines, no warning; bash, zsh and fish complete `herd st` to status",
        rendered.lines().count()
    ));
}
