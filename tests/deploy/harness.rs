//! What the deploy tests share: the repository's files, install.sh run as
//! the README says with the exact commands it prints for a host ([`Plan`]),
//! and stand-ins for ssh and scp ([`fake`]) that log every call and answer
//! as a fleet of Pis would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- install.sh

/// The `--binary` of the tests that are about something else: one binary for
/// every host, so install.sh asks no host its machine.
pub const BINARY: &str = "/srv/build/herd";
pub const DEFAULT_CONFIG: &str = "config/herd.toml";
pub const UNIT: &str = "deploy/herd.service";

/// What install.sh runs on every host, in order: the contract of its output.
pub const R_BINARY: &str = r#"if dpkg-query -W -f="\${Status}" herd 2>/dev/null | grep -q " installed$"; then echo "herd is installed from its Debian package here: use install.sh --deb, or apt-get purge herd first" >&2; exit 1; fi; sudo install -m 0755 /tmp/herd /usr/local/bin/herd"#;
pub const R_CONFIG_KEEP: &str = r#"if test -e /etc/herd/herd.toml; then echo "kept the existing /etc/herd/herd.toml (--force-config replaces it)"; else sudo install -D -m 0644 /tmp/herd.toml /etc/herd/herd.toml; fi"#;
pub const R_CONFIG_FORCE: &str = "sudo install -D -m 0644 /tmp/herd.toml /etc/herd/herd.toml";
pub const R_SECRET: &str = "sudo groupadd -f --system herd-secret && sudo install -D -m 0640 -g herd-secret /dev/stdin /etc/herd/secret";
pub const R_CHECK: &str = "sudo /usr/local/bin/herd check -c /etc/herd/herd.toml >/dev/null";
pub const R_UNIT: &str = "sudo groupadd -f --system herd-secret && sudo install -m 0644 /tmp/herd.service /etc/systemd/system/herd.service && rm -f /tmp/herd /tmp/herd.toml /tmp/herd.service";
pub const R_START: &str =
    "sudo systemctl daemon-reload && sudo systemctl enable herd && sync && sudo systemctl restart herd";
/// Before the restart: the live members the running agent lists (0 when none runs).
pub const R_MEMBERS: &str = r#"n=$(sudo /usr/local/bin/herd status --json 2>/dev/null | grep -o "live_members.: *[0-9]*" | tr -cd 0-9; true); echo "${n:-0}""#;
pub const R_VERIFY: &str = "for i in 1 2 3 4 5 6 7 8 9 10; do systemctl is-active --quiet herd && sudo /usr/local/bin/herd status && exit 0; sleep 1; done; systemctl status --no-pager herd; exit 1";

/// The inputs of one install, as install.sh prints them.
pub struct Plan<'a> {
    pub ssh: &'a str,
    pub scp: &'a str,
    pub binary: &'a str,
    pub config: &'a str,
    pub unit: &'a str,
    pub force_config: bool,
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
    pub fn lines(&self, hosts: &[&str]) -> Vec<String> {
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
pub fn install_sh() -> Command {
    let mut cmd = Command::new(root().join("deploy/install.sh"));
    cmd.current_dir(root())
        .env_remove("SSH")
        .env_remove("SCP")
        .env_remove("HERD_HOSTS_FILE")
        .stdin(Stdio::null());
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run deploy/install.sh")
}

pub fn stdout_lines(out: &Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_owned).collect()
}

pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "install.sh failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// After the restart, when `before` members were listed: the wait until the
/// new agent lists as many.
pub fn rejoin(before: usize) -> String {
    format!(
        r#"i=0; while [ $i -lt 150 ]; do n=$(sudo /usr/local/bin/herd status --json 2>/dev/null | grep -o "live_members.: *[0-9]*" | tr -cd 0-9; true); [ "${{n:-0}}" -ge {before} ] && exit 0; i=$((i + 1)); sleep 0.2; done; echo "it lists ${{n:-no}} live members after 30 s, {before} before the restart" >&2; exit 1"#
    )
}

// ------------------------------------------------------------ ssh and scp

/// A stand-in for `name` (ssh or scp) in `dir`: a shell script that appends
/// `name` and its arguments to `dir/calls.log`, then runs `then` (shell code
/// that sees the same arguments) and exits 0 unless `then` exits first. The
/// file is `dir/name`, executable, so `dir` can shadow the real command on
/// `PATH`; returned is `sh FILE`, as `SSH` or `SCP` take it (run through sh:
/// nothing needs the executable bit).
pub fn fake(dir: &Path, name: &str, then: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join(name);
    let log = dir.join("calls.log");
    std::fs::write(&script, format!("#!/bin/sh\necho \"{name} $*\" >> '{}'\n{then}exit 0\n", log.display()))
        .expect("write fake");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod fake");
    format!("sh {}", script.display())
}

/// A fake ssh or scp that fails like `fail_when` says (a shell `case`
/// pattern over all its arguments), saying so on stderr.
pub fn failing(dir: &Path, name: &str, fail_when: &str) -> String {
    fake(
        dir,
        name,
        &format!("case \"$*\" in\n  {fail_when}) echo 'fake {name}: refused' >&2; exit 3 ;;\nesac\n"),
    )
}

/// A fake ssh that answers `uname -m` by host, as these Pis would: psa a
/// 64-bit Pi OS, psb a 32-bit one on a Pi 3, psc a Pi Zero, psd a PC, pse a
/// BSD-style arm64, psf a 32-bit personality on a 64-bit kernel; psx a MIPS
/// router, and psq is unreachable. Every other command succeeds silently.
pub fn machine_ssh(dir: &Path) -> String {
    fake(
        dir,
        "ssh",
        r#"case "$1" in *@*) h=${1#*@} ;; *) h=$1 ;; esac
if [ "$2" = "uname -m" ]; then
  case $h in
    psa*) echo aarch64 ;; psb*) echo armv7l ;; psc*) echo armv6l ;; psd*) echo x86_64 ;;
    pse*) echo arm64 ;; psf*) echo armv8l ;; psx*) echo mips ;;
    psq*) echo "ssh: connect to host $h port 22: Connection refused" >&2; exit 255 ;;
  esac
fi
"#,
    )
}

/// A fake ssh on hosts whose running agent lists 3 live members before the
/// restart; after it, psb's new agent lists 3 again and psc's lists only
/// itself.
pub fn cluster_ssh(dir: &Path) -> String {
    fake(
        dir,
        "ssh",
        r#"case "$2" in
  n=*) echo 3 ;;
  i=0*) case $1 in psc) sh -c "$(echo "$2" | sed 's/sleep 0.2/true/; s/n=\$(sudo[^)]*)/n=1/')"; exit $? ;; esac ;;
esac
"#,
    )
}

/// The calls the fakes in `dir` logged, in order.
pub fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default().lines().map(str::to_owned).collect()
}

pub const TRIPLES: [&str; 4] = [
    "aarch64-unknown-linux-musl",
    "armv7-unknown-linux-musleabihf",
    "arm-unknown-linux-musleabihf",
    "x86_64-unknown-linux-musl",
];

/// A dist/ as scripts/dist.sh leaves it, with stand-in binaries.
pub fn fake_dist(dir: &Path, version: &str) -> PathBuf {
    let dist = dir.join("dist");
    std::fs::create_dir_all(&dist).expect("mkdir dist");
    for t in TRIPLES {
        std::fs::write(dist.join(format!("herd-{version}-{t}")), t).expect("write build");
    }
    std::fs::write(dist.join("SHA256SUMS"), "").expect("write sums");
    dist
}

// ------------------------------------------------------------ install.sh --deb

/// What `install.sh --deb` runs on a host for package `name` (in /tmp there),
/// after the config and before the wait: the check by the package's binary.
pub fn r_deb_check(name: &str) -> String {
    format!(
        "dpkg-deb --fsys-tarfile /tmp/{name} | tar -xOf - ./usr/bin/herd >/tmp/herd-check && chmod 0755 /tmp/herd-check && sudo /tmp/herd-check check -c /etc/herd/herd.toml >/dev/null; rc=$?; rm -f /tmp/herd-check; exit $rc"
    )
}

/// The package's install: a move from install.sh's unit, apt-get keeping the
/// config, a restart where the package itself restarts nothing.
pub fn r_deb_install(name: &str) -> String {
    format!(
        r#"moved=0; if grep -qs '^ExecStart=/usr/local/bin/herd ' /etc/systemd/system/herd.service; then sudo systemctl disable --quiet herd && sudo rm -f /etc/systemd/system/herd.service /usr/local/bin/herd && moved=1 && echo 'moving from install.sh: removed /etc/systemd/system/herd.service and /usr/local/bin/herd'; fi; old=$(dpkg-query -W -f='${{Version}}' herd 2>/dev/null || true); sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold /tmp/{name} && rm -f /tmp/{name} /tmp/herd.toml || exit 1; new=$(dpkg-query -W -f='${{Version}}' herd); if [ -z "$old" ]; then sudo rm -f /etc/herd/herd.toml.dpkg-dist; fi; sync; if [ $moved = 1 ] || [ "$old" = "$new" ]; then sudo systemctl restart herd; fi; echo "herd ${{old:-not installed}} -> $new""#
    )
}

pub const R_MEMBERS_DEB: &str = r#"n=$(sudo herd status --json 2>/dev/null | grep -o "live_members.: *[0-9]*" | tr -cd 0-9; true); echo "${n:-0}""#;
pub const R_VERIFY_DEB: &str = "for i in 1 2 3 4 5 6 7 8 9 10; do systemctl is-active --quiet herd && sudo /usr/bin/herd status && exit 0; sleep 1; done; systemctl status --no-pager herd; exit 1";

/// The exact `+ ` lines of `install.sh --deb` (config kept, no secret) for
/// one host and its package.
pub fn deb_lines(ssh: &str, scp: &str, host: &str, package: &Path) -> Vec<String> {
    let name = package.file_name().and_then(|n| n.to_str()).expect("package name");
    let mut out = vec![
        format!("+ {scp} {} {host}:/tmp/{name}", package.display()),
        format!("+ {scp} {DEFAULT_CONFIG} {host}:/tmp/herd.toml"),
    ];
    for remote in [R_CONFIG_KEEP.to_owned(), r_deb_check(name), R_MEMBERS_DEB.to_owned(), r_deb_install(name)]
    {
        out.push(format!("+ {ssh} {host} '{}'", remote.replace('\'', r"'\''")));
    }
    out.push(format!("+ {ssh} {host} '{R_VERIFY_DEB}'"));
    out
}

/// A fake ssh that answers `dpkg --print-architecture` by host: psa arm64,
/// psb armhf (32-bit Pi OS, any Pi), psd amd64, psx i386; psn has no dpkg.
pub fn arch_ssh(dir: &Path) -> String {
    fake(
        dir,
        "ssh",
        r#"case "$1" in *@*) h=${1#*@} ;; *) h=$1 ;; esac
if [ "$2" = "dpkg --print-architecture" ]; then
  case $h in
    psa*) echo arm64 ;; psb*) echo armhf ;; psd*) echo amd64 ;; psx*) echo i386 ;;
    psn*) echo "sh: 1: dpkg: not found" >&2; exit 127 ;;
  esac
fi
"#,
    )
}

/// A dist/ with stand-in packages for `arches`.
pub fn fake_debs(dir: &Path, version: &str, arches: &[&str]) -> PathBuf {
    let dist = dir.join("debs");
    std::fs::create_dir_all(&dist).expect("mkdir debs");
    for a in arches {
        std::fs::write(dist.join(format!("herd_{version}_{a}.deb")), a).expect("write package");
    }
    dist
}
