#!/usr/bin/env bash
# fuzz.sh: builds every cargo-fuzz target in fuzz/ and runs each for a fixed
# time from the seed corpus, all at once (one libFuzzer process per target).
#
#   scripts/fuzz.sh [SECONDS]     # per target; default 60 (CI), 600 for a release
#
# Installs what it lacks: the nightly toolchain (rustup) and cargo-fuzz
# (crates.io, --locked). Writes the seed corpora with the write_seeds example
# (fuzz/corpus/<target>/, kept between runs: a corpus grown by one run seeds
# the next). Exits non-zero if any target fails to build or stops on a
# finding; a finding's log tail, its reproduction command and its bytes (hex)
# are printed, and the input stays in fuzz/artifacts/<target>/. Each target's
# last line says how many inputs it ran and the coverage it reached.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: SECONDS must be a positive integer, not '$seconds'" >&2; exit 2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "== installing the nightly toolchain (cargo-fuzz's sanitizer flags need it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked
fi

targets=()
while read -r t; do targets+=("$t"); done < <(cargo +nightly fuzz list)
((${#targets[@]})) || { echo "fuzz.sh: cargo fuzz list found no targets" >&2; exit 1; }

echo "== seed corpora (fuzz/examples/write_seeds.rs)"
cargo run --quiet --locked --manifest-path fuzz/Cargo.toml --example write_seeds

echo "== cargo +nightly fuzz build (${targets[*]})"
cargo +nightly fuzz build

logs="fuzz/target/logs"
mkdir -p "$logs"
echo "== running ${targets[*]}, ${seconds} s each, at once"
declare -A pids
for t in "${targets[@]}"; do
  # -rss_limit_mb: libFuzzer's 2 GiB default, spelled out; -timeout: any one
  # input taking 10 s is a finding (a hang), not a slow machine.
  cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -print_final_stats=1 \
    -rss_limit_mb=2048 -timeout=10 >"$logs/$t.log" 2>&1 &
  pids[$t]=$!
done

failed=()
for t in "${targets[@]}"; do
  if wait "${pids[$t]}"; then
    runs=$(grep -o '^stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    rate=$(grep -o '^stat::average_exec_per_sec: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    done_line=$(grep -o 'DONE .*' "$logs/$t.log" | tail -1 || true)
    echo "FUZZ | $t | ${seconds} s | ${runs} runs, ${rate}/s, no finding | ${done_line#DONE }"
  else
    failed+=("$t")
    echo "FUZZ | $t | FAILED: the log's end follows"
    tail -60 "$logs/$t.log"
    for a in fuzz/artifacts/"$t"/*; do
      [[ -f $a ]] || continue
      echo "-- $a ($(stat -c %s "$a") bytes), hex:"
      od -An -tx1 -v "$a" | head -40
    done
  fi
done
if ((${#failed[@]})); then
  echo "fuzz.sh: ${failed[*]} stopped on a finding; reproduce with cargo +nightly fuzz run <target> <artifact>," \
    "and keep it as a test in tests/fuzz_regressions.rs (fuzz/README.md)" >&2
  exit 1
fi
