#!/usr/bin/env bash
# install.sh: installs (or upgrades) herd on Raspberry Pis over plain ssh and
# scp, one host after the other, and stops at the first host that fails.
# `deploy/install.sh -h` says how; tests/deploy holds it to that.
set -euo pipefail

prog=install.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname "$here")

# Default paths are the repository's; printed relative when run from its top.
if [[ $(pwd -P) == "$repo" ]]; then
  base=
else
  base=$repo/
fi
binary=
dist=${HERD_DIST:-}
config=${base}config/herd.toml
unit=${base}deploy/herd.service
hosts_file=${HERD_HOSTS_FILE:-}
secret=
dry_run=false
force_config=false
deb=false

usage() {
  cat <<EOF
Usage: deploy/install.sh [options] [host ...]

Installs herd on each host in turn, over ssh and scp. First it asks every host
its machine ('uname -m') and picks the static build for it:

  aarch64, arm64   aarch64-unknown-linux-musl      (64-bit Pi OS; Pi 3, 4, 5, Zero 2 W)
  armv7l, armv8l   armv7-unknown-linux-musleabihf  (32-bit Pi OS on a Pi 2, 3, 4, Zero 2 W)
  armv6l           arm-unknown-linux-musleabihf    (Pi 1, Zero, Zero W)
  x86_64, amd64    x86_64-unknown-linux-musl

from dist/ (scripts/dist.sh puts herd-<version>-<triple> there), else from
target/<triple>/release/herd; an unknown machine, or one with no build, stops
the run before any host is touched. Then, host after host, it copies the
binary, the config and the systemd unit to the host's /tmp, installs them as
/usr/local/bin/herd, /etc/herd/herd.toml and /etc/systemd/system/herd.service,
installs the gossip secret if given (--secret), validates the config with
'herd check', enables and restarts the herd service, and waits until it
answers 'herd status'. Stops at the first host that fails.

With --deb it installs herd's Debian package instead: it asks every host
'dpkg --print-architecture' and picks herd_<version>_<arch>.deb (arm64,
armhf or amd64) from dist/; then, host after host: the config and the secret
as above, 'herd check' of the config by the package's own binary, and
'apt-get install' of the package (keeping an installed /etc/herd/herd.toml).
The package enables and starts herd, or restarts it on an upgrade; a host
where install.sh had installed herd moves to the package (its unit in
/etc/systemd/system and /usr/local/bin/herd are removed, herd is restarted
from /usr/bin/herd). Then the same wait for 'herd status' and the cluster.

Hosts are the arguments ([user@]host, e.g. pi@psa.local), else the lines of
deploy/hosts (see deploy/hosts.example): one host per line, '#' starts a
comment, blank lines are ignored.

Options:
  -n, --dry-run       ask each host its machine (uname -m: the only command
                      run), show which binary goes to which host, and print
                      every scp and ssh command, prefixed '+ ', running none
                      (with --binary: no network at all)
  -b, --binary PATH   install PATH on every host, whatever its machine (no
                      uname -m); default: each host's build, as above
  -d, --dist DIR      where the builds are: DIR/herd-<version>-<triple> (as
                      scripts/dist.sh writes them) or DIR/<triple>/release/herd
                      (a cargo target directory); default: dist/, then target/
  -c, --config PATH   the config to install (default: config/herd.toml)
      --force-config  replace an existing /etc/herd/herd.toml (default: an
                      installed config is kept, so local edits survive upgrades)
      --secret FILE   install FILE as /etc/herd/secret (mode 0640, group
                      herd-secret, which the unit's dynamic user joins), for
                      [gossip] secret_file = "/etc/herd/secret"; it goes over
                      ssh's stdin, never through a file in /tmp
      --hosts FILE    read the hosts from FILE instead of deploy/hosts
      --deb           install the Debian package for each host's
                      architecture (see above) instead of the bare binary
  -h, --help          show this help

Environment:
  SSH, SCP            the commands to run instead of 'ssh' and 'scp', options
                      included, e.g. to reuse one connection per host:
                      SSH="ssh -o ControlMaster=auto -o ControlPath=~/.ssh/%C -o ControlPersist=60"
                      SCP="scp -o ControlMaster=auto -o ControlPath=~/.ssh/%C -o ControlPersist=60"
  HERD_HOSTS_FILE     like --hosts
  HERD_DIST           like --dist

The ssh user needs sudo without a password (Raspberry Pi OS's default user has
it). The builds for every Pi are made with:
  scripts/dist.sh
or, for 64-bit Pis only:
  scripts/dist.sh aarch64-unknown-linux-musl

Exit status: 0 when every host is done, 1 when one failed (the message names
it), 2 for a usage error.
EOF
}

# usage_error MESSAGE: for mistakes in the command line or the hosts file.
usage_error() {
  echo "$prog: $1" >&2
  echo "Try 'deploy/install.sh --help'." >&2
  exit 2
}

# Option values are the next argument, or after '=' (--binary=PATH).
need_value() {
  if [[ $# -lt 2 || -z $2 ]]; then
    usage_error "option $1 needs a value"
  fi
}

hosts=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -n | --dry-run) dry_run=true ;;
    --force-config) force_config=true ;;
    --deb) deb=true ;;
    -b | --binary) need_value "$@"; binary=$2; shift ;;
    -d | --dist) need_value "$@"; dist=$2; shift ;;
    --dist=*) dist=${1#*=} ;;
    -c | --config) need_value "$@"; config=$2; shift ;;
    --hosts) need_value "$@"; hosts_file=$2; shift ;;
    --secret) need_value "$@"; secret=$2; shift ;;
    --binary=*) binary=${1#*=} ;;
    --secret=*) secret=${1#*=} ;;
    --config=*) config=${1#*=} ;;
    --hosts=*) hosts_file=${1#*=} ;;
    --) shift; hosts+=("$@"); break ;;
    -*) usage_error "unknown option: $1" ;;
    *) hosts+=("$1") ;;
  esac
  shift
done

# A host is [user@]name: no spaces, quotes or shell characters, and nothing
# ssh or scp could take for an option or a path.
valid_host() {
  [[ $1 =~ ^([A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9_][A-Za-z0-9._-]*$ ]]
}

if [[ ${#hosts[@]} -eq 0 ]]; then
  file=${hosts_file:-$here/hosts}
  if [[ -n $hosts_file && ! -f $hosts_file ]]; then
    usage_error "no hosts file $hosts_file"
  fi
  if [[ -f $file ]]; then
    n=0
    while IFS= read -r line || [[ -n $line ]]; do
      n=$((n + 1))
      line=${line%%#*}
      read -r -a words <<<"$line"
      case ${#words[@]} in
        0) ;;
        1) valid_host "${words[0]}" || usage_error "$file:$n: not a host: ${words[0]}"
           hosts+=("${words[0]}") ;;
        *) usage_error "$file:$n: one host per line: ${words[*]}" ;;
      esac
    done <"$file"
  fi
  if [[ ${#hosts[@]} -eq 0 ]]; then
    usage_error "no hosts: name them as arguments ([user@]host ...) or one per line in ${hosts_file:-deploy/hosts} (see deploy/hosts.example)"
  fi
else
  for h in "${hosts[@]}"; do
    valid_host "$h" || usage_error "not a host: $h"
  done
fi

read -r -a ssh <<<"${SSH:-ssh}"
read -r -a scp <<<"${SCP:-scp}"
[[ ${#ssh[@]} -gt 0 ]] || ssh=(ssh)
[[ ${#scp[@]} -gt 0 ]] || scp=(scp)

# A missing input is an error, except in a dry run, which only shows the plan.
missing() {
  if $dry_run; then
    echo "$prog: warning: $1" >&2
  else
    echo "$prog: $1" >&2
    exit 1
  fi
}
if $deb && [[ -n $binary ]]; then
  usage_error "--deb installs packages, --binary a bare binary: choose one"
fi
[[ -z $binary || -f $binary ]] || missing "no binary at $binary: build it first with
  scripts/dist.sh
(or name another one with --binary PATH)"
[[ -z $dist || -d $dist ]] || missing "no directory $dist (--dist DIR)"
[[ -f $config ]] || missing "no config at $config (name one with --config PATH)"
[[ -f $unit ]] || missing "no systemd unit at $unit: is this a complete copy of herd?"
[[ -z $secret || -f $secret ]] || missing "no secret file at $secret (--secret FILE)"

# quote ARG...: the arguments as one shell command line, each quoted only when
# it has to be, so that a printed line can be pasted into a shell.
quote() {
  local out=() a q="'\\''"
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+=("$a")
    else
      out+=("'${a//\'/$q}'")
    fi
  done
  printf '%s\n' "${out[*]}"
}

current=
done_hosts=()

# fail MESSAGE: names the host being installed and stops.
fail() {
  echo "$prog: failed on $current: $1" >&2
  local i rest=() seen=false
  for i in "${hosts[@]}"; do
    if $seen; then rest+=("$i"); fi
    if [[ $i == "$current" ]]; then seen=true; fi
  done
  echo "$prog: done before it: ${done_hosts[*]:-none}; not attempted: ${rest[*]:-none}" >&2
  exit 1
}

# step WHAT COMMAND...: prints the command after '+ ' and, unless this is a
# dry run, runs it; a failure stops everything, naming the host and WHAT.
# With $input set, the command reads that file on its stdin ('< FILE').
step() {
  local what=$1 rc=0
  shift
  echo "+ $(quote "$@")${input:+ < $(quote "$input")}"
  if $dry_run; then
    return 0
  fi
  "$@" <"${input:-/dev/null}" || rc=$?
  if [[ $rc -ne 0 ]]; then
    fail "$what ($1 exited with status $rc)"
  fi
}
input=

# What runs on each host, in order (the host's login shell runs each line).
# A host with the package is refused: the bare binary and a unit in
# /etc/systemd/system would shadow it (docs/operating.md, "Packages or
# install.sh"). (The remote shell expands \${Status}: dpkg-query's field.)
# shellcheck disable=SC2016
r_binary='if dpkg-query -W -f="\${Status}" herd 2>/dev/null | grep -q " installed$"; then echo "herd is installed from its Debian package here: use install.sh --deb, or apt-get purge herd first" >&2; exit 1; fi; sudo install -m 0755 /tmp/herd /usr/local/bin/herd'
if $force_config; then
  r_config='sudo install -D -m 0644 /tmp/herd.toml /etc/herd/herd.toml'
else
  r_config='if test -e /etc/herd/herd.toml; then echo "kept the existing /etc/herd/herd.toml (--force-config replaces it)"; else sudo install -D -m 0644 /tmp/herd.toml /etc/herd/herd.toml; fi'
fi
# The group first: the secret belongs to it, and the unit refuses to start without it.
r_secret='sudo groupadd -f --system herd-secret && sudo install -D -m 0640 -g herd-secret /dev/stdin /etc/herd/secret'
if $deb; then herd_bin=/usr/bin/herd; else herd_bin=/usr/local/bin/herd; fi
r_check="sudo $herd_bin check -c /etc/herd/herd.toml >/dev/null"
r_unit='sudo groupadd -f --system herd-secret && sudo install -m 0644 /tmp/herd.service /etc/systemd/system/herd.service && rm -f /tmp/herd /tmp/herd.toml /tmp/herd.service'
# enable + restart starts a stopped service and restarts a running one (with
# `enable --now` a first install would start it twice).
# sync: what was installed (binary, config, secret, unit, the enable symlink)
# is on the SD card before herd runs, so a power cut right after an install
# cannot leave an empty unit file behind (found by the fleet's power cut).
r_start='sudo systemctl daemon-reload && sudo systemctl enable herd && sync && sudo systemctl restart herd'
r_verify="for i in 1 2 3 4 5 6 7 8 9 10; do systemctl is-active --quiet herd && sudo $herd_bin status && exit 0; sleep 1; done; systemctl status --no-pager herd; exit 1"
# A rolling install must not take the next Pi down before this one is back
# in the cluster: how many live members the running agent lists before the
# restart (nothing when herd is not running), and after it the wait until the
# new agent lists as many again (30 s).
if $deb; then
  # sudo's PATH: /usr/local/bin/herd on a host install.sh had installed, so
  # the count is asked before such a host moves to the package too.
  members='sudo herd status --json 2>/dev/null | grep -o "live_members.: *[0-9]*" | tr -cd 0-9; true'
else
  members='sudo /usr/local/bin/herd status --json 2>/dev/null | grep -o "live_members.: *[0-9]*" | tr -cd 0-9; true'
fi
r_members="n=\$($members); echo \"\${n:-0}\""
r_rejoin() {
  echo "i=0; while [ \$i -lt 150 ]; do n=\$($members); [ \"\${n:-0}\" -ge $1 ] && exit 0; i=\$((i + 1)); sleep 0.2; done; echo \"it lists \${n:-no} live members after 30 s, $1 before the restart\" >&2; exit 1"
}

# With --deb, on each host (the package is /tmp/$pkg there):
# - the config is checked by the package's own binary before anything runs it;
# - a unit install.sh had put in /etc/systemd/system (it would shadow the
#   package's) is disabled and removed with /usr/local/bin/herd, the agent
#   left running until the package's restarts it;
# - apt-get keeps an installed /etc/herd/herd.toml (confold), also when it
#   was not the package's (on a first install dpkg then leaves the shipped
#   config beside it as herd.toml.dpkg-dist: removed, config/herd.toml is
#   that file; on an upgrade one means the shipped config changed, and stays
#   for the operator to compare); the package starts herd on a first install and
#   restarts it on an upgrade; anything else (a move from install.sh, the
#   same version again, e.g. a config push) is restarted here.
r_deb_check() {
  echo "dpkg-deb --fsys-tarfile /tmp/$1 | tar -xOf - ./usr/bin/herd >/tmp/herd-check && chmod 0755 /tmp/herd-check && sudo /tmp/herd-check check -c /etc/herd/herd.toml >/dev/null; rc=\$?; rm -f /tmp/herd-check; exit \$rc"
}
r_deb_install() {
  echo "moved=0; if grep -qs '^ExecStart=/usr/local/bin/herd ' /etc/systemd/system/herd.service; then sudo systemctl disable --quiet herd && sudo rm -f /etc/systemd/system/herd.service /usr/local/bin/herd && moved=1 && echo 'moving from install.sh: removed /etc/systemd/system/herd.service and /usr/local/bin/herd'; fi; old=\$(dpkg-query -W -f='\${Version}' herd 2>/dev/null || true); sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold /tmp/$1 && rm -f /tmp/$1 /tmp/herd.toml || exit 1; new=\$(dpkg-query -W -f='\${Version}' herd); if [ -z \"\$old\" ]; then sudo rm -f /etc/herd/herd.toml.dpkg-dist; fi; sync; if [ \$moved = 1 ] || [ \"\$old\" = \"\$new\" ]; then sudo systemctl restart herd; fi; echo \"herd \${old:-not installed} -> \$new\""
}

# deb_for ARCH: sets $path to the package for a Debian architecture in
# --dist DIR (default dist/), or to nothing; several versions are an error.
deb_for() {
  local d=${dist:-${base}dist} f found=()
  path=
  for f in "${d%/}"/herd_*_"$1".deb; do
    [[ -f $f ]] && found+=("$f")
  done
  if [[ ${#found[@]} -gt 1 ]]; then
    probe_fail "several packages for $1 in $d: ${found[*]}; keep one"
  fi
  path=${found[0]:-}
}

# triple_for MACHINE: the build for what `uname -m` says, or nothing.
triple_for() {
  case $1 in
    aarch64 | arm64) echo aarch64-unknown-linux-musl ;;
    armv7l | armv8l) echo armv7-unknown-linux-musleabihf ;;
    armv6l) echo arm-unknown-linux-musleabihf ;;
    x86_64 | amd64) echo x86_64-unknown-linux-musl ;;
  esac
}

# build_for TRIPLE: sets $path to the binary for TRIPLE (see --dist), or to
# nothing. Several versions of one triple in one directory are an error:
# which one is meant?
build_for() {
  local dirs d f found=()
  path=
  if [[ -n $dist ]]; then dirs=("$dist"); else dirs=("${base}dist" "${CARGO_TARGET_DIR:-${base}target}"); fi
  for d in "${dirs[@]}"; do
    d=${d%/}
    d=${d:-/}
    found=()
    for f in "$d"/herd-*-"$1"; do
      [[ -f $f ]] && found+=("$f")
    done
    if [[ ${#found[@]} -gt 1 ]]; then
      probe_fail "several builds for $1 in $d: ${found[*]}; keep one, or name it with --binary PATH"
    fi
    if [[ ${#found[@]} -eq 1 ]]; then path=${found[0]}; return; fi
    if [[ -f $d/$1/release/herd ]]; then path=$d/$1/release/herd; return; fi
  done
}

# probe_fail MESSAGE: a host's machine cannot be served; nothing was touched.
probe_fail() {
  echo "$prog: $current: $1" >&2
  echo "$prog: nothing was installed on any host" >&2
  exit 1
}

# ask COMMAND WHAT [HINT]: $host's answer to a read-only COMMAND over ssh,
# whitespace removed, in $answer; a failure stops the run before any host is
# touched, naming WHAT was asked (and HINT).
ask() {
  local rc=0
  answer=$("${ssh[@]}" "$host" "$1" </dev/null) || rc=$?
  if [[ $rc -ne 0 ]]; then
    probe_fail "asking $2 with $1 failed (${ssh[0]} exited with status $rc${3:+; $3})"
  fi
  answer=${answer//[$'\r\n\t ']/}
}

# Which binary goes to which host, for every host before any is touched:
# `uname -m` over ssh (read-only, also in a dry run), unless --binary says.
binaries=()
if $deb; then
  for host in "${hosts[@]}"; do
    current=$host
    ask 'dpkg --print-architecture' 'its architecture' 'a system without dpkg takes the binary: leave out --deb'
    arch=$answer
    case $arch in
      arm64 | armhf | amd64) ;;
      *) probe_fail "dpkg --print-architecture says '$arch', an architecture herd has no package for (arm64, armhf, amd64)" ;;
    esac
    deb_for "$arch"
    if [[ -z $path ]]; then
      missing "no package for $host ($arch) in ${dist:-${base}dist}: make it with
  scripts/dist.sh"
      path="<no package for $arch>"
    fi
    echo "$prog: $host is $arch: $path" >&2
    binaries+=("$path")
  done
  current=
elif [[ -z $binary ]]; then
  for host in "${hosts[@]}"; do
    current=$host
    ask 'uname -m' 'its machine'
    machine=$answer
    triple=$(triple_for "$machine")
    if [[ -z $triple ]]; then
      probe_fail "uname -m says '$machine', a machine herd has no build for (herd runs on aarch64, armv7l, armv8l, armv6l and x86_64)"
    fi
    build_for "$triple"
    if [[ -z $path ]]; then
      where=${dist:-${base}dist/ or ${CARGO_TARGET_DIR:-${base}target}/$triple/release/herd}
      missing "no build for $host ($machine: $triple) in $where: build it with
  scripts/dist.sh
(or name one with --binary PATH)"
      path="<no build for $triple>"
    fi
    echo "$prog: $host is $machine: $path" >&2
    binaries+=("$path")
  done
  current=
fi

# restart_in_turn WHAT COMMAND: runs the step that (re)starts herd on $host,
# between asking the running agent its live members and waiting until the
# new one is up and lists as many: the rolling rule, for both routes.
restart_in_turn() {
  local what=$1 before=0 rc
  shift
  echo "+ $(quote "${ssh[@]}" "$host" "$r_members")"
  if ! $dry_run; then
    rc=0
    before=$("${ssh[@]}" "$host" "$r_members" </dev/null) || rc=$?
    if [[ $rc -ne 0 ]]; then
      fail "asking the running agent its members failed (${ssh[0]} exited with status $rc)"
    fi
    before=${before//[^0-9]/}
  fi
  step "$what" "$@"
  step "the service did not come up (systemctl is-active herd; herd status)" "${ssh[@]}" "$host" "$r_verify"
  if [[ ${before:-0} -gt 1 ]]; then
    step "herd did not rejoin the cluster (a changed [gossip] cluster, port or secret? journalctl -u herd)" "${ssh[@]}" "$host" "$(r_rejoin "$before")"
  fi
}

# config_and_secret: the copied config (kept if installed, unless
# --force-config) and the secret over ssh's stdin, both routes alike.
config_and_secret() {
  step "installing the config" "${ssh[@]}" "$host" "$r_config"
  if [[ -n $secret ]]; then
    input=$secret step "installing the secret" "${ssh[@]}" "$host" "$r_secret"
  fi
}

total=${#hosts[@]}
i=0
for host in "${hosts[@]}"; do
  i=$((i + 1))
  current=$host
  echo "$prog: $host ($i of $total)" >&2
  if $deb; then
    pkg=${binaries[$((i - 1))]}
    name=${pkg##*/}
    step "copying the package" "${scp[@]}" "$pkg" "$host:/tmp/$name"
    step "copying the config" "${scp[@]}" "$config" "$host:/tmp/herd.toml"
    config_and_secret
    step "herd check rejected /etc/herd/herd.toml" "${ssh[@]}" "$host" "$(r_deb_check "$name")"
    restart_in_turn "installing the package" "${ssh[@]}" "$host" "$(r_deb_install "$name")"
  else
    step "copying the binary" "${scp[@]}" "${binary:-${binaries[$((i - 1))]}}" "$host:/tmp/herd"
    step "copying the config" "${scp[@]}" "$config" "$host:/tmp/herd.toml"
    step "copying the unit" "${scp[@]}" "$unit" "$host:/tmp/herd.service"
    step "installing the binary" "${ssh[@]}" "$host" "$r_binary"
    config_and_secret
    step "herd check rejected /etc/herd/herd.toml" "${ssh[@]}" "$host" "$r_check"
    step "installing the unit" "${ssh[@]}" "$host" "$r_unit"
    restart_in_turn "starting the service" "${ssh[@]}" "$host" "$r_start"
  fi
  done_hosts+=("$host")
done

if $dry_run; then
  echo "$prog: dry run: nothing was done on ${hosts[*]}" >&2
else
  echo "$prog: herd is running on ${hosts[*]}" >&2
fi
