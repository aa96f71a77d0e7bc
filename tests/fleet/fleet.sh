#!/usr/bin/env bash
# herd's fleet lab: emulated Pis with real systemd and real sshd, on one
# bridge, so deploy/install.sh, the hardened unit and multicast discovery run
# exactly as on a shelf of Raspberry Pis.
#
#   sudo tests/fleet/fleet.sh up [--pis 3] [--guests 0]
#       builds (or reuses) the images, boots the Pis (the last --guests of
#       them aarch64 guests), deploys herd to them with deploy/install.sh as
#       the README says, prints `herd status` of the first Pi every 5 s
#       until Ctrl-C, then removes everything (trap).
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
#                                directory
#   fleet.sh create ID N [G]     namespace herdfleet-ID-hub (the switch, and
#                                the operator's laptop at 10.78.0.254) and
#                                Pis pi1..piN (10.78.0.<i>, hostnames psa, psb,
#                                ...): systemd-nspawn containers booted from
#                                the image through an overlay of their own,
#                                the last G of them (default 0) aarch64
#                                guests under qemu-system-aarch64 instead
#   fleet.sh wait ID N           until every Pi answers ssh
#   fleet.sh env ID              SSH=, SCP= and HOSTS= lines for install.sh
#                                (HOSTS_X86_64= and HOSTS_AARCH64= too: the
#                                containers, the guests)
#   fleet.sh ssh ID I CMD...     a command on Pi I as the `pi` user
#   fleet.sh pid ID I            the PID of Pi I as the host sees it: a
#                                container's init (its namespaces), a
#                                guest's qemu
#   fleet.sh cut ID              a power cut: every Pi killed at once (what it
#                                wrote to disk stays)
#   fleet.sh power ID            power back: every Pi boots again
#   fleet.sh destroy ID          stops every Pi, unmounts, deletes the namespace
#   fleet.sh sweep               destroys fleets whose creating process is gone
#
# ID is "<pid>-<tag>" as in tests/lab/lab.sh. Nothing is created in the
# caller's network namespace: the bridge and every veth live in the fleet's
# hub namespace (a guest's tap too), and nspawn and qemu run under
# `nsenter --net` into it (under `ip netns exec` nspawn cannot find the
# cgroup hierarchy). The host has no systemd, so nspawn runs with
# --register=no --keep-unit. Images are cached under /var/tmp/herd-fleet; a
# new recipe's image replaces the old one's.
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
# dpkg, apt and libc-bin (ldconfig, which dpkg wants): herd's arm64 package
# is installed with apt-get (scenario 10).
ARM64_PACKAGES=$PACKAGES,$ESSENTIAL,dpkg,apt,libc-bin,linux-image-arm64,busybox-static
# Modules the initramfs loads, in dependency order: the virtio disk and NIC
# on qemu's `virt` machine, and ext4.
INITRD_MODULES="virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk failover net_failover virtio_net crc16 mbcache jbd2 crc32c_generic ext4"
# Bump when an image recipe below changes: each is part of its cache key.
RECIPE=3
ARM64_RECIPE=5

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
# Pi I's hostname: psa, psb, ... (as herd demo names its nodes).
name_of() {
  local letters=abcdefghijklmnopqrstuvwxyz
  echo "ps${letters:$(($1 - 1)):1}"
}

# with_lock NAME CMD...: CMD with $CACHE/NAME.lock held, so that of fleets
# started in parallel one builds an image and the others wait and use it. The
# lock is released before anything CMD started can inherit it for good.
with_lock() {
  local name=$1 lock
  shift
  mkdir -p "$CACHE"
  exec {lock}>"$CACHE/$name.lock"
  flock "$lock"
  "$@"
  exec {lock}>&-
}

image_dir() {
  local key
  key=$(printf '%s\n' "$RECIPE" "$SUITE" "$PACKAGES" "$(uname -m)" | sha256sum | cut -c1-12)
  echo "$CACHE/amd64-$key"
}

# The image: a minimal Debian with systemd as init, sshd and sudo, a `pi`
# user with passwordless sudo (as Raspberry Pi OS has), networkd for the
# address, and nothing host-specific (no hostname, no machine-id).
image() { with_lock amd64 image_build; }
image_build() {
  local dir tmp
  dir=$(image_dir)
  if [[ -f $dir/done ]]; then
    echo "$dir"
    return
  fi
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  trap 'rm -rf "$tmp"; trap - RETURN' RETURN
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
  rm -rf "$dir" "$CACHE"/amd64-*
  mkdir -p "$dir"
  mv "$tmp/ready" "$dir/rootfs"
  touch "$dir/done"
  echo "$dir"
}

arm64_dir() {
  local key
  key=$(printf '%s\n' "$ARM64_RECIPE" "$SUITE" "$ARM64_PACKAGES" "$INITRD_MODULES" | sha256sum | cut -c1-12)
  echo "$CACHE/arm64-$key"
}

# The aarch64 image: extracted, never configured (so nothing runs under
# emulation: mmdebstrap's own install of these packages spends over 20
# minutes in qemu-user, mostly in mkinitramfs). What the packages' scripts
# would have made is made here with the host's tools, or taken from the
# amd64 image of the same release where it is the same on every
# architecture (the PAM stacks pam-auth-update writes).
image_arm64() { with_lock arm64 image_arm64_build; }

# dpkg_database ROOT: /var/lib/dpkg/status and info/*.list of ROOT from the
# packages mmdebstrap left in its apt cache, read with the host's dpkg-deb.
dpkg_database() {
  local r=$1 deb name file debs
  mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates"
  : >"$r/var/lib/dpkg/status"
  debs=("$r"/var/cache/apt/archives/*.deb)
  [[ -f ${debs[0]} ]] || die "mmdebstrap left no packages in $r/var/cache/apt/archives"
  for deb in "${debs[@]}"; do
    name=$(dpkg-deb -f "$deb" Package)
    if [[ $(dpkg-deb -f "$deb" Multi-Arch) == same ]]; then
      file=$name:$(dpkg-deb -f "$deb" Architecture)
    else
      file=$name
    fi
    dpkg-deb -f "$deb" | awk '{ print } /^Package:/ { print "Status: install ok installed" }' >>"$r/var/lib/dpkg/status"
    echo >>"$r/var/lib/dpkg/status"
    dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's|^\./|/|' -e 's|/$||' -e 's|^$|/.|' >"$r/var/lib/dpkg/info/$file.list"
  done
  : >"$r/var/lib/dpkg/available"
}
image_arm64_build() {
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
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  trap 'rm -rf "$tmp"; trap - RETURN' RETURN
  echo "fleet.sh: building the aarch64 Pi image (extracting $SUITE arm64, about 30 s)" >&2
  r=$tmp/rootfs
  mmdebstrap --variant=extract --skip=cleanup/apt/cache --arch=arm64 --include="$ARM64_PACKAGES" "$SUITE" "$r" "$MIRROR" \
    >"$tmp/log" 2>&1 || die "mmdebstrap failed; its log: $(tail -5 "$tmp/log")"
  kver=$(ls "$r/lib/modules")
  depmod -b "$r" "$kver"
  # dpkg's database, as installing the packages would have left it (extract
  # writes none): each package installed, with the list of its files, so that
  # apt-get can install a package that depends on them, as on a Pi.
  dpkg_database "$r"
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
  # What base-files', systemd's, openssh-server's and libpam-runtime's
  # scripts make: a persistent journal (so `journalctl` shows earlier boots),
  # the tmpfiles.d tree, the sshd config and the PAM stacks.
  mkdir -p "$r"/usr/local/{bin,sbin,lib,share} "$r/var/log/journal"
  systemd-tmpfiles --root="$r" --create >/dev/null 2>&1 || true
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
for t in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && [ -b /dev/vdb ] && break; /bin/busybox sleep 0.5; done
/bin/busybox mount -t ext4 -o rw /dev/vda /root || { echo "initramfs: cannot mount /dev/vda"; exec /bin/busybox sh; }
# The seed disk (fleet.sh boot_guest): this Pi's hostname, address, host keys
# and authorized key, laid over the root on every boot, as cloud-init's
# NoCloud seed would be.
if [ -b /dev/vdb ]; then
  /bin/busybox mkdir -p /seed
  /bin/busybox mount -t ext4 -o ro /dev/vdb /seed && /bin/busybox cp -a /seed/root/. /root/ && /bin/busybox umount /seed
fi
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
  rm -rf "$dir" "$CACHE"/arm64-*
  mkdir -p "$dir"
  mv "$tmp/vmlinuz" "$tmp/initrd.gz" "$tmp/root.img" "$dir/"
  touch "$dir/done"
  echo "$dir"
}

# Fleets and their state directories.
fleets() {
  ip netns list | awk '{print $1}' | grep -E "^$PREFIX-[0-9]+-[A-Za-z0-9]+-hub\$" | sed -e "s/^$PREFIX-//" -e 's/-hub$//' || true
  if [[ -d $STATE ]]; then ls "$STATE"; fi
  if [[ -d $CACHE/disks ]]; then ls "$CACHE/disks"; fi
}

# Every Pi's power off at once: SIGKILL to a container's init (the kernel
# then kills its whole PID namespace, and its nspawn exits) and to a guest's
# qemu, their boot loops first so that no Pi is booted again. What they wrote
# stays (overlays, disk images); page caches die with the guests' kernels.
# An nspawn that is killed instead would leave its container running.
power_off() {
  local id=$1 s i p pidfile inits=() loops=()
  s=$(state "$id")
  for pidfile in "$s"/pi*/boot.pid; do
    [[ -f $pidfile ]] || continue
    i=${pidfile%/boot.pid}
    i=${i##*/pi}
    p=$(pi_pid "$id" "$i")
    [[ -z $p ]] || inits+=("$p")
    loops+=("$(cat "$pidfile")")
  done
  ((${#loops[@]} == 0)) || kill -KILL "${loops[@]}" 2>/dev/null || true
  ((${#inits[@]} == 0)) || kill -KILL "${inits[@]}" 2>/dev/null || true
  for i in $(seq 50); do
    pgrep -f -- "--machine=$PREFIX-$id-|-name $PREFIX-$id-" >/dev/null || break
    sleep 0.1
  done
  pkill -KILL -f -- "--machine=$PREFIX-$id-|-name $PREFIX-$id-" 2>/dev/null || true
}

# Power back on for every Pi of fleet ID, as after a power cut.
power_on() {
  local id=$1 p i
  for p in "$(state "$id")"/pi*; do
    i=${p##*/pi}
    if [[ -f $p/seed.img ]]; then start_guest "$id" "$i"; else start_container "$id" "$i"; fi
  done
}

destroy() {
  local id=$1 s m
  s=$(state "$id")
  if [[ -d $s ]]; then
    power_off "$id"
    for m in "$s"/pi*/root; do
      mountpoint -q "$m" 2>/dev/null && umount -l "$m"
    done
    rm -rf "$s"
  fi
  rm -rf "$(disks "$id")"
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
  local id=$1 n=$2 guests=${3:-0} i dir arm s ns
  [[ $id =~ ^[0-9]+-[A-Za-z0-9]+$ ]] || die "fleet id must be <pid>-<tag>, got '$id'"
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 26)); then die "Pis must be 1-26, got '$n'"; fi
  if ! [[ $guests =~ ^[0-9]+$ ]] || ((guests > n)); then die "guests must be 0-$n, got '$guests'"; fi
  s=$(state "$id")
  [[ ! -e $s ]] || die "fleet $id exists already"
  sweep
  dir=$(image)
  if ((guests > 0)); then
    command -v qemu-system-aarch64 >/dev/null || die "aarch64 guests need qemu-system-aarch64: apt-get install qemu-system-arm"
    arm=$(image_arm64)
  fi
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
  : >"$s/hosts.x86_64"
  : >"$s/hosts.aarch64"
  for ((i = 1; i <= n; i++)); do
    if ((i > n - guests)); then
      boot_guest "$id" "$i" "$arm"
      name_of "$i" >>"$s/hosts.aarch64"
    else
      boot "$id" "$i" "$dir"
      name_of "$i" >>"$s/hosts.x86_64"
    fi
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
  # One connection per Pi, shared by every command for 60 s: a login on an
  # emulated aarch64 Pi costs seconds, a command on an open one milliseconds.
  ControlMaster auto
  ControlPath $s/ssh-%h
  ControlPersist 60
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  ConnectTimeout 5
EOF
  trap - ERR
}

# What makes ROOT Pi I of fleet ID: its hostname and /etc/hosts, its address
# (networkd, on the interface that MATCH names), ssh host keys of its own,
# and the fleet's key authorized for `pi`.
identity() {
  local id=$1 i=$2 root=$3 match=$4 name
  name=$(name_of "$i")
  mkdir -p "$root/etc/systemd/network" "$root/etc/ssh"
  echo "$name" >"$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost ip6-loopback\n' "$name" >"$root/etc/hosts"
  cat >"$root/etc/systemd/network/10-pi.network" <<EOF
[Match]
$match

[Network]
Address=$SUBNET.$i/24
# As behind a home router: the default route (multicast_if = "0.0.0.0"
# joins on its interface). The hub routes nowhere, so nothing leaves it.
Gateway=$LAPTOP
EOF
  ssh-keygen -q -A -f "$root" >/dev/null
  install -d -o 1000 -g 1000 "$root/home/pi"
  install -d -m 0700 -o 1000 -g 1000 "$root/home/pi/.ssh"
  install -m 0600 -o 1000 -g 1000 "$(state "$id")/key.pub" "$root/home/pi/.ssh/authorized_keys"
}

# Pi I: an overlay over the image (its writes survive a reboot of the Pi,
# not the fleet) with its identity.
boot() {
  local id=$1 i=$2 dir=$3 s p name
  s=$(state "$id")
  p=$s/pi$i
  name=$(name_of "$i")
  mkdir -p "$p/upper" "$p/work" "$p/root"
  mount -t overlay overlay -o "lowerdir=$dir/rootfs,upperdir=$p/upper,workdir=$p/work" "$p/root"
  identity "$id" "$i" "$p/root" Name=host0
  start_container "$id" "$i"
}

# Pi I's power on: nspawn on its prepared root, in a loop of its own. A Pi
# that reboots (`systemctl reboot`: nspawn exits with status 133) is booted
# again, as systemd-nspawn@.service does on a real host.
start_container() {
  local id=$1 i=$2 p name
  p=$(state "$id")/pi$i
  name=$(name_of "$i")
  (
    while true; do
      rc=0
      # --system-call-filter: nspawn's own seccomp filter refuses the @clock
      # calls without CAP_SYS_TIME, even adjtimex with no mode bits, which only
      # reads the clock's state (herd.clock.*); a Pi has no such filter.
      # Setting the clock still fails: the container has no CAP_SYS_TIME.
      nsenter --net="/run/netns/$(hub "$id")" \
        systemd-nspawn --quiet --boot --register=no --keep-unit \
        --machine="$PREFIX-$id-$i" --hostname="$name" \
        --system-call-filter="adjtimex clock_adjtime" \
        --directory="$p/root" --network-bridge=br0 || rc=$?
      ((rc == 133)) || exit "$rc"
    done
  ) </dev/null >>"$p/console.log" 2>&1 &
  echo $! >"$p/boot.pid"
}

# Pi I as an aarch64 guest: Debian's arm64 kernel under qemu-system-aarch64
# (`virt`, Cortex-A72, 2 cores, 512 MiB as a Pi 3), booted from its own copy
# of the image's root disk (which survives its reboots, not the fleet) and a
# seed disk with what makes it this Pi (see the initramfs), its NIC a tap on
# the hub's bridge. Its kernel and network stack are its own: the host sees
# only the qemu process.
boot_guest() {
  local id=$1 i=$2 dir=$3 s p disks
  s=$(state "$id")
  p=$s/pi$i
  disks=$(disks "$id")
  mkdir -p "$p" "$disks"
  cp --sparse=always "$dir/root.img" "$disks/pi$i.img"
  identity "$id" "$i" "$p/seed/root" Type=ether
  truncate -s 8M "$p/seed.img"
  mkfs.ext4 -q -F -L seed -d "$p/seed" "$p/seed.img"
  ip -n "$(hub "$id")" tuntap add "tap$i" mode tap
  ip -n "$(hub "$id")" link set "tap$i" master br0 up
  echo "$dir" >"$p/image"
  start_guest "$id" "$i"
}

# Guest I's power on: qemu on its disks, in a loop of its own.
start_guest() {
  local id=$1 i=$2 p dir disks
  p=$(state "$id")/pi$i
  dir=$(cat "$p/image")
  disks=$(disks "$id")
  # A reboot makes qemu exit (-no-reboot, status 0): the loop starts the Pi
  # again, as a Pi whose power stays on. qemu failing ends the loop.
  (
    while true; do
      nsenter --net="/run/netns/$(hub "$id")" \
        qemu-system-aarch64 -name "$PREFIX-$id-$i" -M virt -cpu cortex-a72 -smp 2 -m 512 \
        -accel tcg,thread=multi -no-reboot -display none -monitor none \
        -kernel "$dir/vmlinuz" -initrd "$dir/initrd.gz" \
        -append "console=ttyAMA0 root=/dev/vda rw panic=-1" \
        -drive "file=$disks/pi$i.img,format=raw,if=none,id=root" -device virtio-blk-pci,drive=root \
        -drive "file=$p/seed.img,format=raw,if=none,id=seed,readonly=on" -device virtio-blk-pci,drive=seed \
        -netdev "tap,id=net,ifname=tap$i,script=no,downscript=no" \
        -device "virtio-net-pci,netdev=net,mac=52:54:00:78:00:$(printf '%02x' "$i")" \
        -serial stdio || exit
    done
  ) </dev/null >>"$p/console.log" 2>&1 &
  echo $! >"$p/boot.pid"
}

# Where the guests' root disks live: on disk, not in /run (often a small tmpfs).
disks() { echo "$CACHE/disks/$1"; }

# The process that is Pi I, as the host sees it: a container's init (the
# child of its nspawn, a child of the boot loop), or a guest's qemu (a child
# of the boot loop). Empty while the Pi is between two boots.
pi_pid() {
  local id=$1 i=$2 s child
  s=$(state "$id")
  child=$(pgrep -P "$(cat "$s/pi$i/boot.pid")" | head -1 || true)
  [[ -n $child ]] || return 0
  if [[ -f $s/pi$i/seed.img ]]; then
    echo "$child"
  else
    pgrep -P "$child" | head -1 || true
  fi
}

# Until every Pi answers ssh: 60 s for a container, 300 s for a guest (an
# emulated aarch64 boots in about 30 s on an idle 2-core machine, several
# times that when the machine is busy).
wait_ssh() {
  local id=$1 n=$2 i limit end
  for ((i = 1; i <= n; i++)); do
    limit=60
    [[ ! -f $(state "$id")/pi$i/seed.img ]] || limit=300
    end=$((SECONDS + limit))
    until pi_ssh "$id" "$i" true 2>/dev/null; do
      ((SECONDS < end)) || die "Pi $i ($(name_of "$i")) does not answer ssh after $limit s; console: $(tail -5 "$(state "$id")/pi$i/console.log")"
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
  echo "HOSTS_X86_64=$(state "$id")/hosts.x86_64"
  echo "HOSTS_AARCH64=$(state "$id")/hosts.aarch64"
}

# `up`: a fleet with herd deployed, for people rather than tests.
up() {
  local pis=3 guests=0 id="$$-up" repo here arch bin
  while (($#)); do
    case $1 in
      --pis) pis=$2; shift 2 ;;
      --guests) guests=$2; shift 2 ;;
      *) die "unknown option '$1' (see the top of $0)" ;;
    esac
  done
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
  repo=$(dirname "$(dirname "$here")")
  for arch in x86_64 aarch64; do
    [[ $arch == x86_64 ]] || ((guests > 0)) || continue
    bin=$repo/target/$arch-unknown-linux-musl/release/herd
    [[ -x $bin ]] || die "no static $arch build at $bin: scripts/dist.sh --no-deb $arch-unknown-linux-musl"
  done
  trap 'destroy "$id"' EXIT
  trap 'exit 130' INT TERM
  create "$id" "$pis" "$guests"
  wait_ssh "$id" "$pis"
  # One install for the mixed fleet: install.sh picks each Pi's build by its
  # uname -m, from the target directory (what was checked above).
  SSH=$(ssh_cmd "$id") SCP=$(scp_cmd "$id") "$repo/deploy/install.sh" --hosts "$(state "$id")/hosts" \
    --dist "$repo/target" --config "$repo/config/herd.toml"
  echo "fleet $id: $pis Pis $SUBNET.1-$pis ($guests of them aarch64 guests); ssh: $(ssh_cmd "$id") psa; Ctrl-C ends it"
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
  create) need_root; (($# == 2 || $# == 3)) || die "usage: fleet.sh create ID N [GUESTS]"; create "$@" ;;
  wait) need_root; (($# == 2)) || die "usage: fleet.sh wait ID N"; wait_ssh "$@" ;;
  env) (($# == 1)) || die "usage: fleet.sh env ID"; env_lines "$1" ;;
  ssh) need_root; (($# >= 3)) || die "usage: fleet.sh ssh ID I CMD..."; pi_ssh "$@" ;;
  pid) (($# == 2)) || die "usage: fleet.sh pid ID I"; pi_pid "$@" ;;
  destroy) need_root; (($# == 1)) || die "usage: fleet.sh destroy ID"; destroy "$1" ;;
  cut) need_root; (($# == 1)) || die "usage: fleet.sh cut ID"; power_off "$1" ;;
  power) need_root; (($# == 1)) || die "usage: fleet.sh power ID"; power_on "$1" ;;
  sweep) need_root; sweep ;;
  up) need_root; up "$@" ;;
  *) die "usage: fleet.sh up|image|image-arm64|create|wait|env|ssh|pid|cut|power|destroy|sweep (see the top of $0)" ;;
esac
