//! The fleet harness: a [`Fleet`] is N emulated Pis (systemd-nspawn
//! containers with systemd and sshd on one bridge, built by
//! `tests/fleet/fleet.sh`), and this module deploys herd to them the way the
//! README tells an operator to and watches them from outside.
//!
//! - Deploying is `deploy/install.sh` itself, with `SSH`/`SCP` pointed into
//!   the fleet's namespace (`fleet.sh env`) and the static x86_64 build.
//! - Each Pi has a StatsD listener on its own 127.0.0.1:8125, where its
//!   Datadog Agent would be: a socket the test binds inside the Pi's network
//!   namespace, so herd's default `[statsd] address` is used unchanged and the
//!   test reads back exactly what each Pi sent. All feed one [`Statsd`].
//! - The fleet is destroyed on drop; one left behind by a killed test is
//!   swept by the next `fleet.sh create`.
//!
//! Must not: send anything outside the fleet's namespaces, or run without
//! root and the tools (then [`Fleet::new`] says why and the test skips, or
//! fails under CI=true).

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use herd::agent::snapshot::Snapshot;

use crate::common::{Statsd, gauges, in_netns_at, unique_cluster, wait_until};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script_path() -> PathBuf {
    repo().join("tests/fleet/fleet.sh")
}

/// The binary install.sh copies to the amd64 Pis.
pub fn x86_64_build() -> PathBuf {
    repo().join("target/x86_64-unknown-linux-musl/release/herd")
}

/// Why the fleet cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the fleet lab needs root (namespaces, mounts, containers)".into());
    }
    for tool in ["ip", "debootstrap", "systemd-nspawn", "ssh"] {
        if Command::new("which").arg(tool).output().map_or(true, |o| !o.status.success()) {
            return Some(format!(
                "the fleet lab needs {tool}: apt-get install iproute2 debootstrap systemd-container openssh-client"
            ));
        }
    }
    if !x86_64_build().exists() {
        return Some(format!(
            "the fleet lab deploys the static build {}: cargo build --release --target x86_64-unknown-linux-musl",
            x86_64_build().display()
        ));
    }
    None
}

pub fn report(scenario: &str, checked: &str, figures: &str) {
    println!("FLEET | {scenario} | {checked} | {figures}");
}

pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

pub struct Fleet {
    pub id: String,
    pub pis: usize,
    pub cluster: String,
    /// How long `fleet.sh image` took (a cached image: well under a second).
    pub image_time: Duration,
    /// From `fleet.sh create` to every Pi answering ssh.
    pub boot_time: Duration,
    env: Vec<(String, String)>,
}

impl Fleet {
    /// A booted fleet of `pis` Pis (1-based: Pi 1 is psa at 10.78.0.1), or
    /// `None` after printing why it cannot be built here. Under `CI=true`
    /// that is a failure instead: CI installs what the fleet needs.
    pub fn new(tag: &str, pis: usize) -> Option<Fleet> {
        if let Some(why) = unavailable() {
            assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "CI must run the fleet: {why}");
            eprintln!("skipped: {why}");
            return None;
        }
        let cluster = unique_cluster(tag);
        let id = format!("{}-{}", std::process::id(), cluster.rsplit('-').next().unwrap_or("x"));
        let t0 = Instant::now();
        script(&["image"]);
        let image_time = t0.elapsed();
        let t1 = Instant::now();
        let mut fleet = Fleet { id, pis, cluster, image_time, boot_time: Duration::ZERO, env: Vec::new() };
        script(&["create", &fleet.id, &pis.to_string()]);
        script(&["wait", &fleet.id, &pis.to_string()]);
        fleet.boot_time = t1.elapsed();
        let env = script(&["env", &fleet.id]);
        fleet.env = env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        Some(fleet)
    }

    pub fn name(&self, i: usize) -> String {
        format!("ps{}", (b'a' + (i - 1) as u8) as char)
    }

    fn env(&self, key: &str) -> &str {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).expect("fleet.sh env")
    }

    /// `cmd` on Pi `i` as the `pi` user, through its login shell.
    pub fn ssh(&self, i: usize, cmd: &str) -> Output {
        Command::new("bash")
            .arg(script_path())
            .args(["ssh", &self.id, &i.to_string(), cmd])
            .output()
            .expect("run fleet.sh ssh")
    }

    /// [`Fleet::ssh`], which must succeed; its stdout.
    pub fn run(&self, i: usize, cmd: &str) -> String {
        let out = self.ssh(i, cmd);
        assert!(
            out.status.success(),
            "{} `{cmd}`: {}\n{}",
            self.name(i),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The operator's config: `config/herd.toml` with this fleet's cluster,
    /// the secret in `/etc/herd/secret` and a paced baton, as the README's
    /// step 2 says.
    pub fn config(&self) -> String {
        let shipped = std::fs::read_to_string(repo().join("config/herd.toml")).expect("config/herd.toml");
        let mut text = shipped.clone();
        for (from, to) in [
            ("cluster = \"herd\"", format!("cluster = \"{}\"", self.cluster)),
            ("secret_file = \"\"", "secret_file = \"/etc/herd/secret\"".to_owned()),
            ("hold = \"0ms\"", "hold = \"100ms\"".to_owned()),
        ] {
            assert!(text.contains(from), "config/herd.toml has no `{from}` line");
            text = text.replacen(from, &to, 1);
        }
        text
    }

    /// `deploy/install.sh` with `args`, on the hosts of the fleet (as
    /// `deploy/hosts` would list them); its output, which must be a success.
    pub fn install(&self, args: &[&str]) -> Output {
        let out = Command::new(repo().join("deploy/install.sh"))
            .current_dir(repo())
            .env("SSH", self.env("SSH"))
            .env("SCP", self.env("SCP"))
            .args(["--hosts", self.env("HOSTS"), "--binary"])
            .arg(x86_64_build())
            .args(args)
            .output()
            .expect("run deploy/install.sh");
        assert!(
            out.status.success(),
            "install.sh {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The init process of Pi `i` as the host sees it.
    pub fn pid(&self, i: usize) -> u32 {
        let out = script(&["pid", &self.id, &i.to_string()]);
        out.trim().parse().unwrap_or_else(|_| panic!("fleet.sh pid: {out:?}"))
    }

    /// A StatsD listener on 127.0.0.1:8125 of every Pi, in one [`Statsd`].
    /// A Pi that reboots gets a new network namespace: listen there again
    /// with [`Fleet::statsd_on`].
    pub fn statsd(&self) -> Statsd {
        self.statsd_on(&(1..=self.pis).collect::<Vec<_>>())
    }

    /// A StatsD listener on 127.0.0.1:8125 of each Pi in `pis`.
    pub fn statsd_on(&self, pis: &[usize]) -> Statsd {
        let socks: Vec<UdpSocket> = pis
            .iter()
            .map(|&i| {
                in_netns_at(&format!("/proc/{}/ns/net", self.pid(i)), || {
                    UdpSocket::bind("127.0.0.1:8125").expect("bind 127.0.0.1:8125 on the Pi")
                })
            })
            .collect();
        Statsd::start_on(socks)
    }

    /// Until Pi `i` answers ssh again (after a reboot), for at most `within`.
    pub fn wait_ssh(&self, i: usize, within: Duration) -> bool {
        wait_until(within, || self.ssh(i, "true").status.success())
    }

    /// The ids of the batons held across the fleet now (`held_id` of every
    /// Pi that answers): one baton is at most one id.
    pub fn batons(&self) -> BTreeSet<String> {
        (1..=self.pis).filter_map(|i| self.status(i)?.baton.held_id).collect()
    }

    /// herd's log on Pi `i` (`journalctl -u herd`, messages only).
    pub fn journal(&self, i: usize) -> String {
        self.run(i, "journalctl -u herd --no-pager -o cat")
    }

    /// README steps 2 and 3 on every Pi (a config with `secret_file` and a
    /// paced baton, the secret, `install.sh`), then until every Pi lists all
    /// and `statsd` has baton gauges from every Pi (15 s). The operator's
    /// files live as long as the returned directory.
    pub fn deploy(&self, statsd: &Statsd) -> tempfile::TempDir {
        let (dir, config, secret) = self.operator_files();
        self.install(&["--config", &config, "--secret", &secret]);
        let n = self.pis;
        let formed = wait_until(Duration::from_secs(15), || {
            (1..=n).all(|i| self.status(i).is_some_and(|s| s.live_members == n))
        });
        assert!(formed, "every Pi lists {n} live members within 15 s of the install");
        let names: BTreeSet<String> = (1..=n).map(|i| self.name(i)).collect();
        let relaying = wait_until(Duration::from_secs(15), || {
            gauges(statsd, "").iter().map(|(_, _, h)| h.clone()).collect::<BTreeSet<_>>() == names
        });
        assert!(relaying, "baton gauges from every Pi within 15 s");
        dir
    }

    /// README step 2: the operator's config and secret, in a directory of
    /// theirs; (directory, config path, secret path).
    pub fn operator_files(&self) -> (tempfile::TempDir, String, String) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("my-herd.toml");
        std::fs::write(&config, self.config()).expect("write config");
        let secret = dir.path().join("herd.secret");
        std::fs::write(&secret, format!("{}\n", self.cluster)).expect("write secret");
        let path = |p: PathBuf| p.display().to_string();
        (dir, path(config), path(secret))
    }

    /// `herd status --json` on Pi `i`, over ssh.
    pub fn status(&self, i: usize) -> Option<Snapshot> {
        let out = self.ssh(i, "herd status --json");
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script_path()).args(["destroy", &self.id]).output();
    }
}

/// Runs `fleet.sh <args>`, panicking with its stderr if it fails; its stdout.
fn script(args: &[&str]) -> String {
    let out = Command::new("bash").arg(script_path()).args(args).output().expect("run fleet.sh");
    assert!(out.status.success(), "fleet.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
