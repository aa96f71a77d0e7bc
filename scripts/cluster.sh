#!/usr/bin/env bash
# Builds herd and runs a local cluster of N agents (default 3: psa, psb, psc)
# on loopback multicast, with a shared secret, each logging to this terminal
# with its name in front. Ctrl-C stops them all gracefully (each announces its
# leave). Needs no root and no config: everything lives in a temporary
# directory that is removed on exit.
#
#   scripts/cluster.sh [N] [--release]
set -euo pipefail

n=3
profile=debug
for arg in "$@"; do
  case "$arg" in
    --release) profile=release ;;
    ''|*[!0-9]*) echo "usage: $0 [N] [--release]" >&2; exit 2 ;;
    *) n=$arg ;;
  esac
done
if (( n < 1 || n > 26 )); then echo "N must be 1..26" >&2; exit 2; fi

cd "$(dirname "$0")/.."
if [[ $profile == release ]]; then cargo build --release --quiet; else cargo build --quiet; fi
bin=target/$profile/herd

dir=$(mktemp -d -t herd-cluster.XXXXXX)
pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup INT TERM EXIT

# A port of our own (not the default 45892) keeps this cluster apart from a
# real one on the same machine.
port=${HERD_CLUSTER_PORT:-46892}
for ((i = 0; i < n; i++)); do
  letters=abcdefghijklmnopqrstuvwxyz
  name=ps${letters:i:1}
  cat > "$dir/$name.toml" <<TOML
[node]
name = "$name"
cluster = "local"
[gossip]
port = $port
multicast_if = "127.0.0.1"
data_port = 0
secret = "local cluster secret"
[status]
listen = ""
TOML
  # Each log line prefixed with the node's name; $! is herd itself, so the
  # cleanup's SIGTERM reaches the agent and it leaves gracefully.
  RUST_LOG=${RUST_LOG:-herd=info} "$bin" run -c "$dir/$name.toml" 2> >(sed -u "s/^/$name | /" >&2) &
  pids+=($!)
done
echo "local cluster of $n agents on 127.0.0.1 (gossip port $port); Ctrl-C to stop" >&2
wait
