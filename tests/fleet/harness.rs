//! The fleet harness: a [`Fleet`] is N emulated Pis on one bridge, built by
//! `tests/fleet/fleet.sh`: systemd-nspawn containers (amd64, systemd and
//! sshd) and aarch64 guests (Debian's arm64 kernel under qemu-system-aarch64,
//! the last Pis of a [`Fleet::mixed`] fleet). This module deploys herd to
//! them the way the README tells an operator to and watches them from
//! outside.
//!
//! - Deploying is `deploy/install.sh` itself, with `SSH`/`SCP` pointed into
//!   the fleet's namespace (`fleet.sh env`): the static x86_64 build to the
//!   containers, the static aarch64 build to the guests (one run per
//!   architecture, as an operator does until install.sh picks by `uname -m`).
//! - Metrics: each container has a StatsD listener on its own
//!   127.0.0.1:8125, where its Datadog Agent would be (a socket bound inside
//!   its network namespace), so herd's default `[statsd] address` is used
//!   unchanged. A guest's network stack is inside its own kernel, out of the
//!   test's reach, so a guest stands for the Pi with no Agent of its own (a
//!   Pi Zero: Datadog has no ARMv6 agent) and sends to the cluster's
//!   DogStatsD on the operator's machine, 10.78.0.254:8125 on the bridge: its
//!   config differs in that one line. All feed one [`Statsd`].
//! - The fleet is destroyed on drop; one left behind by a killed test is
//!   swept by the next `fleet.sh create`.
//!
//! Must not: send anything outside the fleet's namespaces, or run without
//! root and the tools (then [`Fleet::new`] says why and the test skips, or
//! fails under CI=true).

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use herd::agent::snapshot::Snapshot;

use crate::common::{Statsd, gauges, in_netns_at, is_root, may_run, unique_cluster, wait_until};

/// The operator's machine on the bridge, where the guests' DogStatsD listens.
pub const LAPTOP_STATSD: &str = "10.78.0.254:8125";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script_path() -> PathBuf {
    repo().join("tests/fleet/fleet.sh")
}

/// The binary install.sh copies to the amd64 Pis.
pub fn x86_64_build() -> PathBuf {
    repo().join("target/x86_64-unknown-linux-musl/release/herd")
}

/// The binary install.sh picks for the aarch64 guests (from target/).
pub fn aarch64_build() -> PathBuf {
    repo().join("target/aarch64-unknown-linux-musl/release/herd")
}

fn installed(tool: &str) -> bool {
    Command::new("which").arg(tool).output().is_ok_and(|o| o.status.success())
}

/// Why the fleet cannot run here, if it cannot.
fn unavailable(guests: usize) -> Option<String> {
    if !is_root() {
        return Some("the fleet lab needs root (namespaces, mounts, containers)".into());
    }
    let mut tools = vec![
        ("ip", "iproute2"),
        ("debootstrap", "debootstrap"),
        ("systemd-nspawn", "systemd-container"),
        ("ssh", "openssh-client"),
    ];
    let mut builds = vec![("x86_64", x86_64_build())];
    if guests > 0 {
        tools.extend([
            ("qemu-system-aarch64", "qemu-system-arm"),
            ("mmdebstrap", "mmdebstrap"),
            ("depmod", "kmod"),
            ("mkfs.ext4", "e2fsprogs"),
            ("cpio", "cpio"),
        ]);
        builds.push(("aarch64", aarch64_build()));
    }
    if let Some((tool, package)) = tools.iter().find(|(tool, _)| !installed(tool)) {
        return Some(format!("the fleet lab needs {tool}: apt-get install {package}"));
    }
    if let Some((arch, path)) = builds.iter().find(|(_, path)| !path.exists()) {
        return Some(format!(
            "the fleet lab deploys the static build {}: scripts/dist.sh --no-deb {arch}-unknown-linux-musl",
            path.display()
        ));
    }
    None
}

pub fn report(scenario: &str, checked: &str, figures: &str) {
    crate::common::report_line(&format!("FLEET | {scenario} | {checked} | {figures}"));
}

pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

pub struct Fleet {
    pub id: String,
    pub pis: usize,
    /// How many of the Pis are aarch64 guests: the last ones.
    pub guests: usize,
    pub cluster: String,
    /// How long `fleet.sh create` spent on the images (cached: well under a
    /// second).
    pub image_time: Duration,
    /// From the images being ready to every Pi answering ssh.
    pub boot_time: Duration,
    env: Vec<(String, String)>,
}

/// README step 2's files, in a directory of the operator's: the config, the
/// guests' variant of it (metrics to [`LAPTOP_STATSD`]) and the secret. They
/// live as long as this does.
pub struct Files {
    _dir: tempfile::TempDir,
    pub config: String,
    pub guest_config: String,
    pub secret: String,
}

impl Fleet {
    /// A booted fleet of `pis` containers (1-based: Pi 1 is psa at
    /// 10.78.0.1), or `None` after printing why it cannot be built here.
    /// Under `CI=true` that is a failure instead: CI installs what the fleet
    /// needs.
    pub fn new(tag: &str, pis: usize) -> Option<Fleet> {
        Fleet::mixed(tag, pis, 0)
    }

    /// A booted fleet of `containers` containers and then `guests` aarch64
    /// guests, as [`Fleet::new`].
    pub fn mixed(tag: &str, containers: usize, guests: usize) -> Option<Fleet> {
        if !may_run("the fleet lab", unavailable(guests)) {
            return None;
        }
        let pis = containers + guests;
        let cluster = unique_cluster(tag);
        let id = format!("{}-{}", std::process::id(), cluster.rsplit('-').next().unwrap_or("x"));
        let t0 = Instant::now();
        script(&["image"]);
        if guests > 0 {
            script(&["image-arm64"]);
        }
        let image_time = t0.elapsed();
        let t1 = Instant::now();
        let mut fleet =
            Fleet { id, pis, guests, cluster, image_time, boot_time: Duration::ZERO, env: Vec::new() };
        script(&["create", &fleet.id, &pis.to_string(), &guests.to_string()]);
        script(&["wait", &fleet.id, &pis.to_string()]);
        fleet.boot_time = t1.elapsed();
        let env = script(&["env", &fleet.id]);
        fleet.env = env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        Some(fleet)
    }

    /// Whether Pi `i` is an aarch64 guest (else an amd64 container).
    pub fn is_guest(&self, i: usize) -> bool {
        i > self.pis - self.guests
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

    /// The operator's config: `config/herd.toml` with this fleet's cluster
    /// and the secret in `/etc/herd/secret`, as the README's step 2 says.
    pub fn config(&self) -> String {
        let shipped = std::fs::read_to_string(repo().join("config/herd.toml")).expect("config/herd.toml");
        self.config_of(&shipped)
    }

    /// [`Fleet::config`] made from another release's `config/herd.toml`.
    pub fn config_of(&self, shipped: &str) -> String {
        let mut text = shipped.to_owned();
        for (from, to) in [
            ("cluster = \"herd\"", format!("cluster = \"{}\"", self.cluster)),
            ("secret_file = \"\"", "secret_file = \"/etc/herd/secret\"".to_owned()),
        ] {
            assert!(text.contains(from), "config/herd.toml has no `{from}` line");
            text = text.replacen(from, &to, 1);
        }
        text
    }

    /// README step 2: `config` and its guests' variant and the secret, in a
    /// directory of the operator's.
    pub fn files(&self, config: &str) -> Files {
        let dir = tempfile::tempdir().expect("temporary directory");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
            path.display().to_string()
        };
        let local = "address = \"127.0.0.1:8125\"";
        assert!(config.contains(local), "the config has no `{local}` line");
        let guest = config.replacen(local, &format!("address = \"{LAPTOP_STATSD}\""), 1);
        Files {
            config: write("my-herd.toml", config),
            guest_config: write("my-herd-guest.toml", &guest),
            secret: write("herd.secret", &format!("{}\n", self.cluster)),
            _dir: dir,
        }
    }

    /// [`Fleet::files`] of [`Fleet::config`].
    pub fn operator_files(&self) -> Files {
        self.files(&self.config())
    }

    /// README step 3: `deploy/install.sh` with `files` and `extra` options
    /// on every Pi, as `deploy/hosts` would list them, each Pi getting the
    /// build for its `uname -m` from target/: once for the containers and
    /// once for the guests (whose config sends to [`LAPTOP_STATSD`]), each of
    /// which must succeed; how long each took (containers, guests).
    pub fn install(&self, files: &Files, extra: &[&str]) -> (Duration, Duration) {
        self.install_builds(files, None, extra)
    }

    /// [`Fleet::install`], with `x86_64` (the previous release, for an
    /// upgrade) as every container's binary if given.
    pub fn install_builds(
        &self,
        files: &Files,
        x86_64: Option<PathBuf>,
        extra: &[&str],
    ) -> (Duration, Duration) {
        let containers = match x86_64 {
            Some(binary) => Source::Binary(binary),
            None => Source::Builds,
        };
        self.install_from(files, containers, Source::Builds, extra)
    }

    /// `deploy/install.sh --deb --dist DIR` as [`Fleet::install`] does it:
    /// each Pi gets the package in `debs` for its `dpkg --print-architecture`.
    pub fn install_packages(&self, files: &Files, debs: &Path) -> (Duration, Duration) {
        self.install_from(files, Source::Packages(debs.to_owned()), Source::Packages(debs.to_owned()), &[])
    }

    fn install_from(
        &self,
        files: &Files,
        containers: Source,
        guests: Source,
        extra: &[&str],
    ) -> (Duration, Duration) {
        let run = |hosts: &str, source: Source, config: &str| {
            let t0 = Instant::now();
            let mut cmd = Command::new(repo().join("deploy/install.sh"));
            cmd.current_dir(repo())
                .env("SSH", self.env("SSH"))
                .env("SCP", self.env("SCP"))
                .args(["--hosts", self.env(hosts)]);
            match source {
                Source::Binary(binary) => cmd.arg("--binary").arg(binary),
                Source::Builds => cmd.arg("--dist").arg(repo().join("target")),
                Source::Packages(dir) => cmd.arg("--deb").arg("--dist").arg(dir),
            };
            let out = cmd
                .args(["--config", config, "--secret", &files.secret])
                .args(extra)
                .output()
                .expect("run deploy/install.sh");
            assert!(
                out.status.success(),
                "install.sh {extra:?} on {hosts}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            t0.elapsed()
        };
        let amd64 = if self.guests < self.pis {
            run("HOSTS_X86_64", containers, &files.config)
        } else {
            Duration::ZERO
        };
        let arm64 =
            if self.guests > 0 { run("HOSTS_AARCH64", guests, &files.guest_config) } else { Duration::ZERO };
        (amd64, arm64)
    }

    /// Runs `work` while every answering Pi is polled: its result, the
    /// fewest live members a Pi up for a second listed (as
    /// [`Fleet::cluster_view`]: a joining agent is not a drop), and the most
    /// batons held at once.
    pub fn watch<T: Send>(&self, work: impl FnOnce() -> T + Send) -> (T, usize, usize) {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicBool, Ordering};
        let done = AtomicBool::new(false);
        let (fewest, most) = (Mutex::new(usize::MAX), Mutex::new(0));
        let out = std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let mut held = BTreeSet::new();
                    for i in 1..=self.pis {
                        if let Some(st) = self.status(i) {
                            if st.uptime_s >= 1.0 {
                                let mut f = fewest.lock().unwrap();
                                *f = (*f).min(st.live_members);
                            }
                            held.extend(st.baton.held_id);
                        }
                    }
                    let mut m = most.lock().unwrap();
                    *m = (*m).max(held.len());
                }
            });
            let out = work();
            done.store(true, Ordering::Relaxed);
            out
        });
        (out, fewest.into_inner().unwrap(), most.into_inner().unwrap())
    }

    /// `install.sh --dry-run` on every Pi at once: which binary it says goes
    /// to which host (`uname -m` asked over ssh), as `(host, binary)`.
    pub fn planned_builds(&self) -> Vec<(String, String)> {
        let out = Command::new(repo().join("deploy/install.sh"))
            .current_dir(repo())
            .env("SSH", self.env("SSH"))
            .env("SCP", self.env("SCP"))
            .args(["--dry-run", "--hosts", self.env("HOSTS")])
            .arg("--dist")
            .arg(repo().join("target"))
            .output()
            .expect("run deploy/install.sh");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "install.sh --dry-run: {}\n{err}", out.status);
        err.lines()
            .filter_map(|l| {
                let (host, rest) = l.strip_prefix("install.sh: ")?.split_once(" is ")?;
                let (_machine, binary) = rest.split_once(": ")?;
                Some((host.to_owned(), binary.to_owned()))
            })
            .collect()
    }

    /// The process that is Pi `i` as the host sees it: a container's init, a
    /// guest's qemu. `None` while it is between two boots.
    pub fn try_pid(&self, i: usize) -> Option<u32> {
        script(&["pid", &self.id, &i.to_string()]).trim().parse().ok()
    }

    /// [`Fleet::try_pid`], which must be there.
    pub fn pid(&self, i: usize) -> u32 {
        self.try_pid(i).unwrap_or_else(|| panic!("{} is not running", self.name(i)))
    }

    /// The fleet's StatsD listeners in one [`Statsd`]: 127.0.0.1:8125 of
    /// every container, and [`LAPTOP_STATSD`] when there are guests. A
    /// container that reboots gets a new network namespace: listen there
    /// again with [`Fleet::statsd_on`].
    pub fn statsd(&self) -> Statsd {
        let mut socks =
            self.local_listeners(&(1..=self.pis).filter(|&i| !self.is_guest(i)).collect::<Vec<_>>());
        if self.guests > 0 {
            socks.push(in_netns_at(&format!("/run/netns/herdfleet-{}-hub", self.id), || {
                UdpSocket::bind(LAPTOP_STATSD).expect("bind the laptop's DogStatsD on the bridge")
            }));
        }
        Statsd::start_on(socks)
    }

    /// A StatsD listener on 127.0.0.1:8125 of each container in `pis`.
    pub fn statsd_on(&self, pis: &[usize]) -> Statsd {
        Statsd::start_on(self.local_listeners(pis))
    }

    fn local_listeners(&self, pis: &[usize]) -> Vec<UdpSocket> {
        pis.iter()
            .map(|&i| {
                assert!(!self.is_guest(i), "{} is a guest: its metrics go to {LAPTOP_STATSD}", self.name(i));
                in_netns_at(&format!("/proc/{}/ns/net", self.pid(i)), || {
                    UdpSocket::bind("127.0.0.1:8125").expect("bind 127.0.0.1:8125 on the Pi")
                })
            })
            .collect()
    }

    /// A power cut: every Pi killed at once (what each wrote to its disk
    /// stays, as on an SD card).
    pub fn cut(&self) {
        script(&["cut", &self.id]);
    }

    /// Power back after [`Fleet::cut`]: every Pi boots again.
    pub fn power(&self) {
        script(&["power", &self.id]);
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
    /// and `statsd` has baton gauges from every Pi (30 s: an emulated
    /// aarch64 Pi is slow on a busy machine).
    pub fn deploy(&self, statsd: &Statsd) -> Files {
        let files = self.operator_files();
        self.install(&files, &[]);
        let n = self.pis;
        let formed = wait_until(Duration::from_secs(30), || {
            (1..=n).all(|i| self.status(i).is_some_and(|s| s.live_members == n))
        });
        assert!(formed, "every Pi lists {n} live members within 30 s of the install");
        let names: BTreeSet<String> = (1..=n).map(|i| self.name(i)).collect();
        let relaying = wait_until(Duration::from_secs(30), || {
            gauges(statsd, "").iter().map(|(_, _, h)| h.clone()).collect::<BTreeSet<_>>() == names
        });
        assert!(relaying, "baton gauges from every Pi within 30 s");
        files
    }

    /// `herd status --json` on Pi `i`, over ssh.
    pub fn status(&self, i: usize) -> Option<Snapshot> {
        let out = self.ssh(i, "herd status --json");
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }

    /// The live members Pi `i`'s agent lists, once it has been up a second:
    /// a just-started agent lists only itself until the others answer its
    /// first heartbeat (milliseconds later), and joining is not the cluster
    /// dropping a member. install.sh waits for that answer before the next Pi.
    pub fn cluster_view(&self, i: usize) -> Option<usize> {
        self.status(i).filter(|s| s.uptime_s >= 1.0).map(|s| s.live_members)
    }
}

/// What install.sh installs on a group of Pis.
enum Source {
    /// `--binary PATH` on each.
    Binary(PathBuf),
    /// Each Pi's build for its `uname -m`, from target/.
    Builds,
    /// `--deb`: each Pi's package for its architecture, from the directory.
    Packages(PathBuf),
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
