#!/usr/bin/env bash
# herd's fleet lab: emulated Pis with real systemd and real sshd, on one
# bridge, so deploy/install.sh, the hardened unit and multicast discovery run
# exactly as on a shelf of Raspberry Pis.
#
#   sudo tests/fleet/fleet.sh up [--pis 3]
#       builds (or reuses) the image, boots the Pis, deploys herd to them
#       with deploy/install.sh as the README says, prints `herd status` of
#       the first Pi every 5 s until Ctrl-C, then removes everything (trap).
#
# Building blocks (the fleet tests drive these):
#   fleet.sh image               the amd64 Pi image (debootstrap bookworm,
#                                systemd, sshd, sudo): built once, cached
#                                under /var/tmp/herd-fleet, keyed by the
#                                recipe that built it; prints its directory
#   fleet.sh image-arm64         the aarch64 Pi image for qemu-system-aarch64
#                                (kernel, initramfs, ext4 root disk),
#                                assembled on the host without running any
#                                arm64 code; cached likewise; prints its
#                                directory (not booted by the tests yet)
#   fleet.sh create ID N         namespace herdfleet-ID-hub (the switch, and
#                                the operator's laptop at 10.78.0.254) and
#                                Pis pi1..piN (10.78.0.<i>, hostnames psa, psb,
#                                ...): systemd-nspawn containers booted from
#                                the image through an overlay of their own
#   fleet.sh wait ID N           until every Pi answers ssh
#   fleet.sh env ID              SSH=, SCP= and HOSTS= lines for install.sh
#   fleet.sh ssh ID I CMD...     a command on Pi I as the `pi` user
#   fleet.sh pid ID I            the PID of Pi I's init (its namespaces)
#   fleet.sh destroy ID          stops every Pi, unmounts, deletes the namespace
#   fleet.sh sweep               destroys fleets whose creating process is gone
#
# ID is "<pid>-<tag>" as in tests/lab/lab.sh. Nothing is created in the
# caller's network namespace: the bridge and every veth live in the fleet's
# hub namespace, and nspawn runs under `nsenter --net` into it (under
# `ip netns exec` it cannot find the cgroup hierarchy). The host has no
# systemd, so nspawn runs with --register=no --keep-unit.
set -euo pipefail

PREFIX=herdfleet
SUBNET=10.78.0
LAPTOP=$SUBNET.254
CACHE=/var/tmp/herd-fleet
STATE=/run/herd-fleet
SUITE=bookworm
MIRROR=${HERD_FLEET_MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd,systemd-sysv,dbus,openssh-server,iproute2,sudo,procps,libpam-systemd
# The aarch64 image is only extracted (no maintainer script runs), so it
# names Debian's Essential set itself, and the kernel and busybox for the
# initramfs.
ESSENTIAL=base-files,base-passwd,bash,bsdutils,coreutils,dash,debianutils,diffutils,findutils,grep,gzip,hostname,init-system-helpers,login,mount,ncurses-bin,passwd,perl-base,sed,sysvinit-utils,tar,util-linux
ARM64_PACKAGES=$PACKAGES,$ESSENTIAL,linux-image-arm64,busybox-static
# Modules the initramfs loads, in dependency order: the virtio disk and NIC
# on qemu's `virt` machine, and ext4.
INITRD_MODULES="virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk failover net_failover virtio_net crc16 mbcache jbd2 crc32c_generic ext4"
# Bump when the image recipe below changes: it is part of the cache key.
RECIPE=3

die() {
  echo "fleet.sh: $*" >&2
  exit 1
}

need_root() {
  [[ $(id -u) -eq 0 ]] || die "needs root (namespaces, mounts, containers); try: sudo $0 $cmd ..."
  local tool
  for tool in ip debootstrap systemd-nspawn nsenter ssh ssh-keygen; do
    command -v "$tool" >/dev/null ||
      die "needs $tool: apt-get install iproute2 debootstrap systemd-container openssh-client"
  done
}

hub() { echo "$PREFIX-$1-hub"; }
state() { echo "$STATE/$1"; }
# Pi I's hostname: psa, psb, ... (the seed's names).
name_of() {
  local letters=abcdefghijklmnopqrstuvwxyz
  echo "ps${letters:$(($1 - 1)):1}"
}

image_dir() {
  local key
  key=$(printf '%s\n' "$RECIPE" "$SUITE" "$PACKAGES" "$(uname -m)" | sha256sum | cut -c1-12)
  echo "$CACHE/amd64-$key"
}

# The image: a minimal Debian with systemd as init, sshd and sudo, a `pi`
# user with passwordless sudo (as Raspberry Pi OS has), networkd for the
# address, and nothing host-specific (no hostname, no machine-id).
image() {
  local dir tmp
  dir=$(image_dir)
  if [[ -f $dir/done ]]; then
    echo "$dir"
    return
  fi
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  trap 'rm -rf "$tmp"' RETURN
  echo "fleet.sh: building the Pi image (debootstrap $SUITE, about 90 s)" >&2
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp/rootfs" "$MIRROR" >"$tmp/log" 2>&1 ||
    die "debootstrap failed; its log: $(tail -5 "$tmp/log")"
  local r=$tmp/rootfs
  rm -f "$r/etc/hostname"
  : >"$r/etc/machine-id"
  # In adm, as on Raspberry Pi OS, so `journalctl -u herd` shows the agent's log.
  chroot "$r" useradd --create-home --shell /bin/bash --groups adm,systemd-journal pi
  echo 'pi ALL=(ALL) NOPASSWD: ALL' >"$r/etc/sudoers.d/pi"
  chmod 0440 "$r/etc/sudoers.d/pi"
  chroot "$r" systemctl enable systemd-networkd ssh >/dev/null 2>&1
  # Host keys are made for each Pi when it is created (see `boot`).
  rm -f "$r"/etc/ssh/ssh_host_*
  rm -rf "$r/var/cache/apt/archives"/*.deb "$r/var/lib/apt/lists"/*
  mv "$tmp/rootfs" "$tmp/ready"
  rm -rf "$dir"
  mkdir -p "$dir"
  mv "$tmp/ready" "$dir/rootfs"
  touch "$dir/done"
  echo "$dir"
}

arm64_dir() {
  local key
  key=$(printf '%s\n' "$RECIPE" "$SUITE" "$ARM64_PACKAGES" "$INITRD_MODULES" | sha256sum | cut -c1-12)
  echo "$CACHE/arm64-$key"
}

# The aarch64 image: extracted, never configured (so nothing runs under
# emulation: mmdebstrap's own install of these packages spends over 20
# minutes in qemu-user, mostly in mkinitramfs). What the packages' scripts
# would have made is made here with the host's tools, or taken from the
# amd64 image of the same release where it is the same on every
# architecture (the PAM stacks pam-auth-update writes).
image_arm64() {
  local dir tmp r kver amd64 m
  dir=$(arm64_dir)
  if [[ -f $dir/done ]]; then
    echo "$dir"
    return
  fi
  for m in mmdebstrap depmod mkfs.ext4 cpio; do
    command -v "$m" >/dev/null || die "the aarch64 image needs $m: apt-get install mmdebstrap kmod e2fsprogs cpio"
  done
  amd64=$(image)/rootfs
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  trap 'rm -rf "$tmp"' RETURN
  echo "fleet.sh: building the aarch64 Pi image (extracting $SUITE arm64, about 30 s)" >&2
  r=$tmp/rootfs
  mmdebstrap --variant=extract --arch=arm64 --include="$ARM64_PACKAGES" "$SUITE" "$r" "$MIRROR" \
    >"$tmp/log" 2>&1 || die "mmdebstrap failed; its log: $(tail -5 "$tmp/log")"
  kver=$(ls "$r/lib/modules")
  depmod -b "$r" "$kver"
  # Accounts: base-passwd's tables, systemd's users, sshd's, and pi (in adm
  # and systemd-journal, with passwordless sudo, as on Raspberry Pi OS).
  cp "$r/usr/share/base-passwd/passwd.master" "$r/etc/passwd"
  cp "$r/usr/share/base-passwd/group.master" "$r/etc/group"
  install -m 0640 /dev/null "$r/etc/shadow"
  install -m 0640 /dev/null "$r/etc/gshadow"
  systemd-sysusers --root="$r" >/dev/null 2>&1
  echo 'sshd:x:101:65534::/run/sshd:/usr/sbin/nologin' >>"$r/etc/passwd"
  echo 'pi:x:1000:1000::/home/pi:/bin/bash' >>"$r/etc/passwd"
  echo 'pi:x:1000:' >>"$r/etc/group"
  echo 'pi:*:19000:0:99999:7:::' >>"$r/etc/shadow"
  sed -i -e 's/^\(adm:x:4:\)$/\1pi/' -e 's/^\(systemd-journal:x:[0-9]*:\)$/\1pi/' "$r/etc/group"
  install -d -o 1000 -g 1000 "$r/home/pi"
  echo 'pi ALL=(ALL) NOPASSWD: ALL' >"$r/etc/sudoers.d/pi"
  chmod 0440 "$r/etc/sudoers.d/pi"
  # What base-files', openssh-server's and libpam-runtime's scripts make.
  mkdir -p "$r"/usr/local/{bin,sbin,lib,share}
  cp "$r/usr/share/openssh/sshd_config" "$r/etc/ssh/sshd_config"
  cp "$amd64"/etc/pam.d/common-* "$r/etc/pam.d/"
  rm -f "$r/etc/hostname" "$r"/etc/ssh/ssh_host_*
  : >"$r/etc/machine-id"
  # Without the SysV script, `systemctl --root` enables without running
  # update-rc.d (an arm64 binary).
  rm -f "$r/etc/init.d/ssh"
  systemctl --root="$r" enable systemd-networkd ssh >/dev/null 2>&1
  ln -sf /lib/systemd/systemd "$r/sbin/init"
  # The initramfs: busybox, the modules, and an /init that mounts the disk.
  local i=$tmp/initramfs
  mkdir -p "$i"/{bin,dev,proc,sys,root,lib/modules}
  cp "$r/bin/busybox" "$i/bin/busybox"
  for m in $INITRD_MODULES; do
    cp "$(find "$r/lib/modules/$kver" -name "$m.ko" | head -1)" "$i/lib/modules/" ||
      die "kernel $kver has no module $m"
  done
  echo "$INITRD_MODULES" >"$i/lib/modules/order"
  cat >"$i/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
for m in $(/bin/busybox cat /lib/modules/order); do /bin/busybox insmod "/lib/modules/$m.ko"; done
for t in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; /bin/busybox sleep 0.5; done
/bin/busybox mount -t ext4 -o rw /dev/vda /root || { echo "initramfs: cannot mount /dev/vda"; exec /bin/busybox sh; }
/bin/busybox umount /proc /sys
/bin/busybox mount --move /dev /root/dev
exec /bin/busybox switch_root /root /sbin/init
EOF
  chmod 0755 "$i/init"
  (cd "$i" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmp/initrd.gz"
  cp "$r/boot/vmlinuz-$kver" "$tmp/vmlinuz"
  rm -rf "$r/var/cache/apt/archives"/*.deb "$r/var/lib/apt/lists"/*
  truncate -s 2G "$tmp/root.img"
  mkfs.ext4 -q -F -L root -d "$r" "$tmp/root.img"
  rm -rf "$dir"
  mkdir -p "$dir"
  mv "$tmp/vmlinuz" "$tmp/initrd.gz" "$tmp/root.img" "$dir/"
  touch "$dir/done"
  echo "$dir"
}

# Fleets and their state directories.
fleets() {
  ip netns list | awk '{print $1}' | grep -E "^$PREFIX-[0-9]+-[A-Za-z0-9]+-hub\$" | sed -e "s/^$PREFIX-//" -e 's/-hub$//' || true
  if [[ -d $STATE ]]; then ls "$STATE"; fi
}

destroy() {
  local id=$1 s pid i
  s=$(state "$id")
  if [[ -d $s ]]; then
    # The boot loops first (so no Pi is booted again), then the Pis: nspawn
    # powers its container off on SIGTERM.
    for pidfile in "$s"/pi*/boot.pid; do
      [[ -f $pidfile ]] || continue
      pid=$(cat "$pidfile")
      kill -KILL "$pid" 2>/dev/null || true
    done
    pkill -TERM -f -- "--machine=$PREFIX-$id-" 2>/dev/null || true
    for i in $(seq 50); do
      pgrep -f -- "--machine=$PREFIX-$id-" >/dev/null || break
      sleep 0.1
    done
    pkill -KILL -f -- "--machine=$PREFIX-$id-" 2>/dev/null || true
    for m in "$s"/pi*/root; do
      mountpoint -q "$m" 2>/dev/null && umount -l "$m"
    done
    rm -rf "$s"
  fi
  local ns
  ns=$(hub "$id")
  if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086 # one pid per word
    [[ -z $pids ]] || kill -9 $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  fi
}

sweep() {
  local id pid
  for id in $(fleets | sort -u); do
    pid=${id%%-*}
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "fleet.sh: removing fleet $id left behind by process $pid" >&2
      destroy "$id"
    fi
  done
}

create() {
  local id=$1 n=$2 i dir s ns
  [[ $id =~ ^[0-9]+-[A-Za-z0-9]+$ ]] || die "fleet id must be <pid>-<tag>, got '$id'"
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 26)); then die "Pis must be 1-26, got '$n'"; fi
  s=$(state "$id")
  [[ ! -e $s ]] || die "fleet $id exists already"
  sweep
  dir=$(image)
  trap 'destroy "$id"' ERR
  mkdir -p "$s"
  ssh-keygen -q -t ed25519 -N '' -C "herd fleet $id" -f "$s/key"
  ns=$(hub "$id")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add br0 type bridge
  ip -n "$ns" addr add "$LAPTOP/24" dev br0
  ip -n "$ns" link set br0 up
  : >"$s/ssh_config"
  : >"$s/hosts"
  for ((i = 1; i <= n; i++)); do
    boot "$id" "$i" "$dir"
    cat >>"$s/ssh_config" <<EOF
Host $(name_of "$i")
  HostName $SUBNET.$i
  User pi
EOF
    name_of "$i" >>"$s/hosts"
  done
  cat >>"$s/ssh_config" <<EOF
Host *
  IdentityFile $s/key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  ConnectTimeout 5
EOF
  trap - ERR
}

# Pi I: an overlay over the image (its writes survive a reboot of the Pi,
# not the fleet), its hostname and address, root's and pi's authorized key.
boot() {
  local id=$1 i=$2 dir=$3 s p name
  s=$(state "$id")
  p=$s/pi$i
  name=$(name_of "$i")
  mkdir -p "$p/upper" "$p/work" "$p/root"
  mount -t overlay overlay -o "lowerdir=$dir/rootfs,upperdir=$p/upper,workdir=$p/work" "$p/root"
  echo "$name" >"$p/root/etc/hostname"
  mkdir -p "$p/root/etc/systemd/network"
  cat >"$p/root/etc/systemd/network/10-host0.network" <<EOF
[Match]
Name=host0

[Network]
Address=$SUBNET.$i/24
# As behind a home router: the default route (multicast_if = "0.0.0.0"
# joins on its interface). The hub routes nowhere, so nothing leaves it.
Gateway=$LAPTOP
EOF
  printf '127.0.1.1 %s\n' "$name" >>"$p/root/etc/hosts"
  ssh-keygen -q -A -f "$p/root" >/dev/null
  install -d -m 0700 -o 1000 -g 1000 "$p/root/home/pi/.ssh"
  install -m 0600 -o 1000 -g 1000 "$s/key.pub" "$p/root/home/pi/.ssh/authorized_keys"
  # A Pi that reboots (`systemctl reboot`: nspawn exits with status 133) is
  # booted again, as systemd-nspawn@.service does on a real host.
  (
    while true; do
      rc=0
      nsenter --net="/run/netns/$(hub "$id")" \
        systemd-nspawn --quiet --boot --register=no --keep-unit \
        --machine="$PREFIX-$id-$i" --hostname="$name" \
        --directory="$p/root" --network-bridge=br0 || rc=$?
      ((rc == 133)) || exit "$rc"
    done
  ) </dev/null >>"$p/console.log" 2>&1 &
  echo $! >"$p/boot.pid"
}

# Pi I's init as the host sees it: the child of its nspawn (a child of the
# boot loop). Empty while the Pi is between two boots.
pi_pid() {
  local id=$1 i=$2 s nspawn
  s=$(state "$id")
  nspawn=$(pgrep -P "$(cat "$s/pi$i/boot.pid")" | head -1)
  [[ -z $nspawn ]] || pgrep -P "$nspawn" | head -1
}

wait_ssh() {
  local id=$1 n=$2 i t
  for ((i = 1; i <= n; i++)); do
    for t in $(seq 120); do
      if pi_ssh "$id" "$i" true 2>/dev/null; then break; fi
      ((t < 120)) || die "Pi $i ($(name_of "$i")) does not answer ssh after 60 s; console: $(tail -5 "$(state "$id")/pi$i/console.log")"
      sleep 0.5
    done
  done
}

ssh_cmd() { echo "ip netns exec $(hub "$1") ssh -F $(state "$1")/ssh_config"; }
scp_cmd() { echo "ip netns exec $(hub "$1") scp -q -F $(state "$1")/ssh_config"; }

pi_ssh() {
  local id=$1 i=$2
  shift 2
  # shellcheck disable=SC2046 # the command's words
  $(ssh_cmd "$id") "$(name_of "$i")" "$@"
}

env_lines() {
  local id=$1
  echo "SSH=$(ssh_cmd "$id")"
  echo "SCP=$(scp_cmd "$id")"
  echo "HOSTS=$(state "$id")/hosts"
}

# `up`: a fleet with herd deployed, for people rather than tests.
up() {
  local pis=3 id="$$-up" repo here
  while (($#)); do
    case $1 in
      --pis) pis=$2; shift 2 ;;
      *) die "unknown option '$1' (see the top of $0)" ;;
    esac
  done
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
  repo=$(dirname "$(dirname "$here")")
  local bin=$repo/target/x86_64-unknown-linux-musl/release/herd
  [[ -x $bin ]] || die "no static x86_64 build at $bin: cargo build --release --target x86_64-unknown-linux-musl"
  trap 'destroy "$id"' EXIT
  trap 'exit 130' INT TERM
  create "$id" "$pis"
  wait_ssh "$id" "$pis"
  SSH=$(ssh_cmd "$id") SCP=$(scp_cmd "$id") "$repo/deploy/install.sh" \
    --hosts "$(state "$id")/hosts" --binary "$bin" --config "$repo/config/herd.toml"
  echo "fleet $id: $pis Pis $SUBNET.1-$pis; ssh: $(ssh_cmd "$id") psa; Ctrl-C ends it"
  while sleep 5; do
    echo "---- $(date +%T) herd status on psa"
    pi_ssh "$id" 1 herd status || true
  done
}

cmd=${1:-}
shift || true
case $cmd in
  image) need_root; image ;;
  image-arm64) need_root; image_arm64 ;;
  create) need_root; (($# == 2)) || die "usage: fleet.sh create ID N"; create "$@" ;;
  wait) need_root; (($# == 2)) || die "usage: fleet.sh wait ID N"; wait_ssh "$@" ;;
  env) (($# == 1)) || die "usage: fleet.sh env ID"; env_lines "$1" ;;
  ssh) need_root; (($# >= 3)) || die "usage: fleet.sh ssh ID I CMD..."; pi_ssh "$@" ;;
  pid) (($# == 2)) || die "usage: fleet.sh pid ID I"; pi_pid "$@" ;;
  destroy) need_root; (($# == 1)) || die "usage: fleet.sh destroy ID"; destroy "$1" ;;
  sweep) need_root; sweep ;;
  up) need_root; up "$@" ;;
  *) die "usage: fleet.sh up|image|image-arm64|create|wait|env|ssh|pid|destroy|sweep (see the top of $0)" ;;
esac
