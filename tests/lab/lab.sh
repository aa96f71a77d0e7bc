#!/usr/bin/env bash
# herd's network lab: N hosts on one Linux machine, each a network namespace
# with its own eth0 (10.77.0.<i>/24), all plugged into one bridge, so herd
# runs as it would on N Pis on one switch: real multicast, broadcast and
# unicast between separate network stacks, links that can be cut, loss that
# can be injected.
#
#   sudo tests/lab/lab.sh up [--nodes 5] [--herd target/release/herd] [--hold 100ms] [--secret S]
#       builds a lab, starts one `herd run` per host, prints `herd status` of
#       host 1 every 5 s until Ctrl-C, then removes everything (trap).
#
# Building blocks (the Rust lab tests in tests/lab/ drive these):
#   lab.sh create  ID N        namespaces herdlab-ID-hub (the switch) and
#                              herdlab-ID-n1 .. -nN (the hosts)
#   lab.sh destroy ID          kills everything inside them, deletes them
#   lab.sh partition ID I...   moves hosts I... to a second switch: two groups
#                              that cannot reach each other
#   lab.sh heal ID             every host back on the first switch
#   lab.sh cut ID I / uncut ID I   takes host I's cable out / puts it back
#   lab.sh unplug ID I / plug ID I deletes host I's eth0 (a USB dongle
#                              pulled: the interface is gone) / creates it
#                              again, plugged into the first switch, up,
#                              with no address
#   lab.sh loss ID PCT I...    hosts I... drop PCT % of incoming packets at
#                              random (nftables); PCT 0 removes the rule
#   lab.sh sweep               destroys labs whose creating process is gone
#
# ID is "<pid>-<tag>", pid being the creating process: names cannot collide
# with another lab or anything else, and `sweep` (run by every `create`) can
# tell a lab left behind by a killed test from one in use. Nothing is created
# in the caller's namespace: veth ends are made directly inside the lab's
# namespaces, so no traffic can leave them.
set -euo pipefail

PREFIX=herdlab
SUBNET=10.77.0

die() {
  echo "lab.sh: $*" >&2
  exit 1
}

need_root() {
  [[ $(id -u) -eq 0 ]] || die "needs root (it creates network namespaces); try: sudo $0 $cmd ..."
  command -v ip >/dev/null || die "needs iproute2 (ip): apt-get install iproute2"
}

hub() { echo "$PREFIX-$1-hub"; }
host() { echo "$PREFIX-$1-n$2"; }

# The namespaces of lab ID, hub last.
lab_namespaces() {
  ip netns list | awk '{print $1}' | grep -E "^$PREFIX-$1-(n[0-9]+|hub)\$" | sort -r || true
}

destroy() {
  local id=$1 ns pids
  for ns in $(lab_namespaces "$id"); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086 # one pid per word
    [[ -z $pids ]] || kill -9 $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
}

sweep() {
  local ns id pid
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$PREFIX-[0-9]+-[A-Za-z0-9]+-hub\$" || true); do
    id=${ns#"$PREFIX-"}
    id=${id%-hub}
    pid=${id%%-*}
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "lab.sh: removing lab $id left behind by process $pid" >&2
      destroy "$id"
    fi
  done
}

create() {
  local id=$1 n=$2 i
  [[ $id =~ ^[0-9]+-[A-Za-z0-9]+$ ]] || die "lab id must be <pid>-<tag>, got '$id'"
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 250)); then die "nodes must be 1-250, got '$n'"; fi
  [[ -z $(lab_namespaces "$id") ]] || die "lab $id exists already"
  sweep
  # A half-built lab is removed again.
  trap 'destroy "$id"' ERR
  ip netns add "$(hub "$id")"
  ip -n "$(hub "$id")" link set lo up
  ip -n "$(hub "$id")" link add br0 type bridge
  ip -n "$(hub "$id")" link set br0 up
  for ((i = 1; i <= n; i++)); do
    ip netns add "$(host "$id" "$i")"
    ip -n "$(host "$id" "$i")" link set lo up
    plug "$id" "$i"
    ip -n "$(host "$id" "$i")" addr add "$SUBNET.$i/24" broadcast "$SUBNET.255" dev eth0
  done
  trap - ERR
}

# Host I's eth0, plugged into the first switch and up (no address).
plug() {
  local id=$1 i=$2
  ip link add name eth0 netns "$(host "$id" "$i")" type veth peer name "p$i" netns "$(hub "$id")"
  ip -n "$(hub "$id")" link set "p$i" master br0 up
  ip -n "$(host "$id" "$i")" link set eth0 up
}

hub_port_master() {
  local id=$1 bridge=$2 i=$3
  ip -n "$(hub "$id")" link set "p$i" master "$bridge"
}

partition() {
  local id=$1 i
  shift
  ip -n "$(hub "$id")" link show br1 >/dev/null 2>&1 || {
    ip -n "$(hub "$id")" link add br1 type bridge
    ip -n "$(hub "$id")" link set br1 up
  }
  for i in "$@"; do hub_port_master "$id" br1 "$i"; done
}

heal() {
  local id=$1 port
  for port in $(ip -n "$(hub "$id")" -o link show master br1 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip -n "$(hub "$id")" link set "$port" master br0
  done
}

loss() {
  local id=$1 pct=$2 i ns
  shift 2
  if ! [[ $pct =~ ^[0-9]+$ ]] || ((pct > 100)); then die "loss must be 0-100 (%), got '$pct'"; fi
  command -v nft >/dev/null || die "needs nftables (nft): apt-get install nftables"
  for i in "$@"; do
    ns=$(host "$id" "$i")
    ip netns exec "$ns" nft delete table inet herdlab 2>/dev/null || true
    ((pct == 0)) && continue
    ip netns exec "$ns" nft -f - <<EOF
table inet herdlab {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "eth0" numgen random mod 100 < $pct drop
  }
}
EOF
  done
}

# `up`: a lab with herd running in it, for people rather than tests.
up() {
  local nodes=5 bin=target/release/herd hold=100ms secret="" dir i
  while (($#)); do
    case $1 in
      --nodes) nodes=$2; shift 2 ;;
      --herd) bin=$2; shift 2 ;;
      --hold) hold=$2; shift 2 ;;
      --secret) secret=$2; shift 2 ;;
      *) die "unknown option '$1' (see the top of $0)" ;;
    esac
  done
  [[ -x $bin ]] || die "no herd binary at $bin (cargo build --release, or --herd PATH)"
  bin=$(realpath "$bin")
  local id="$$-up"
  dir=$(mktemp -d)
  trap 'destroy "$id"; rm -rf "$dir"' EXIT
  trap 'exit 130' INT TERM
  create "$id" "$nodes"
  for ((i = 1; i <= nodes; i++)); do
    cat >"$dir/n$i.toml" <<EOF
[node]
name = "n$i"
cluster = "lab"
[gossip]
multicast_if = "$SUBNET.$i"
secret = "$secret"
[baton]
hold = "$hold"
[statsd]
address = "127.0.0.1:8125"
EOF
    ip netns exec "$(host "$id" "$i")" "$bin" run -c "$dir/n$i.toml" >"$dir/n$i.log" 2>&1 &
  done
  echo "lab $id: $nodes hosts $SUBNET.1-$nodes, logs in $dir; Ctrl-C ends it"
  while sleep 5; do
    echo "---- $(date +%T) status of n1"
    ip netns exec "$(host "$id" 1)" "$bin" status --addr 127.0.0.1:45894 || true
  done
}

cmd=${1:-}
shift || true
case $cmd in
  create) need_root; (($# == 2)) || die "usage: lab.sh create ID N"; create "$@" ;;
  destroy) need_root; (($# == 1)) || die "usage: lab.sh destroy ID"; destroy "$1" ;;
  partition) need_root; (($# >= 2)) || die "usage: lab.sh partition ID I..."; partition "$@" ;;
  heal) need_root; (($# == 1)) || die "usage: lab.sh heal ID"; heal "$1" ;;
  cut) need_root; (($# == 2)) || die "usage: lab.sh cut ID I"; ip -n "$(hub "$1")" link set "p$2" down ;;
  uncut) need_root; (($# == 2)) || die "usage: lab.sh uncut ID I"; ip -n "$(hub "$1")" link set "p$2" up ;;
  unplug) need_root; (($# == 2)) || die "usage: lab.sh unplug ID I"; ip -n "$(host "$1" "$2")" link del eth0 ;;
  plug) need_root; (($# == 2)) || die "usage: lab.sh plug ID I"; plug "$1" "$2" ;;
  loss) need_root; (($# >= 3)) || die "usage: lab.sh loss ID PCT I..."; loss "$@" ;;
  sweep) need_root; sweep ;;
  up) need_root; up "$@" ;;
  *) die "usage: lab.sh up|create|destroy|partition|heal|cut|uncut|unplug|plug|loss|sweep (see the top of $0)" ;;
esac
