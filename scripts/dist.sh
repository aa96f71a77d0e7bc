#!/usr/bin/env bash
# dist.sh: the static release binaries for every Raspberry Pi (and x86_64
# Linux), into dist/ as herd-<version>-<target triple>, with SHA256SUMS.
#
#   scripts/dist.sh [--out DIR] [TRIPLE ...]
#
# Default triples, and the Pis each serves (deploy/install.sh picks by uname -m):
#   aarch64-unknown-linux-musl       aarch64  64-bit Pi OS: Pi 3, 4, 5, Zero 2 W
#   armv7-unknown-linux-musleabihf   armv7l   32-bit Pi OS on a Pi 2, 3, 4, Zero 2 W
#   arm-unknown-linux-musleabihf     armv6l   Pi 1, Zero, Zero W (ARM1176)
#   x86_64-unknown-linux-musl        x86_64   a PC in the cluster, the fleet lab
#
# How each is built, and why:
# - aarch64 and x86_64: rustup serves their std; Rust's bundled rust-lld links
#   them fully static (.cargo/config.toml). Needs only rustup.
# - armv7 and armv6: rustup serves no std for these musl targets, so std is
#   built from source (-Z build-std, from the rust-src component of the same
#   toolchain) and zig links it: zig carries musl's libc and start files for
#   every ARM, so there is no hand-made cross toolchain. -Z is unlocked on the
#   toolchain that builds everything else with RUSTC_BOOTSTRAP=1 (as the Linux
#   kernel builds its Rust), so all four binaries come from one compiler.
#   zig and cargo-zigbuild come from PyPI at the pinned versions below, into a
#   virtualenv under target/ (needs python3 with venv, and pip's registry).
# - RUSTFLAGS would replace .cargo/config.toml's rustflags (the cipher backends
#   and, for 32-bit ARM, link-self-contained=no), so it is refused.
#
# Each binary must be at most 3 MiB (herd's budget, benches/README.md); each names its
# triple in `herd --version`.
set -euo pipefail

prog=dist.sh
cd "$(dirname "$0")/.."

ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
BUDGET=$((3 * 1024 * 1024))
ALL=(aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf arm-unknown-linux-musleabihf x86_64-unknown-linux-musl)

die() {
  echo "$prog: $*" >&2
  exit 1
}

out=dist
triples=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out=$2; shift ;;
    --out=*) out=${1#*=} ;;
    -*) echo "$prog: unknown option $1 (try --help)" >&2; exit 2 ;;
    *)
      case " ${ALL[*]} " in
        *" $1 "*) triples+=("$1") ;;
        *) echo "$prog: no such target: $1 (one of: ${ALL[*]})" >&2; exit 2 ;;
      esac ;;
  esac
  shift
done
[[ ${#triples[@]} -gt 0 ]] || triples=("${ALL[@]}")

if [[ -n ${RUSTFLAGS:-} || -n ${CARGO_ENCODED_RUSTFLAGS:-} ]]; then
  die "RUSTFLAGS is set: it would replace .cargo/config.toml's rustflags (cipher backends, how 32-bit ARM links); unset it"
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || die "no version in Cargo.toml"
target_dir=${CARGO_TARGET_DIR:-target}

# zig and cargo-zigbuild, pinned, in a virtualenv of their own.
tools=$target_dir/dist-tools
zig_tools() {
  local pins="ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  if [[ -x $tools/bin/cargo-zigbuild && $(cat "$tools/pins" 2>/dev/null) == "$pins" ]]; then
    return
  fi
  command -v python3 >/dev/null || die "32-bit ARM builds need python3 (for zig from PyPI)"
  echo "== $pins from PyPI into $tools"
  python3 -m venv "$tools" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  # shellcheck disable=SC2086 # $pins is two words
  "$tools/bin/pip" install --quiet --disable-pip-version-check $pins || die "pip could not install $pins"
  echo "$pins" >"$tools/pins"
}

# rust-src of the active toolchain, which -Z build-std compiles.
rust_src() {
  if [[ -d $(rustc --print sysroot)/lib/rustlib/src/rust/library ]]; then
    return
  fi
  command -v rustup >/dev/null || die "-Z build-std needs the rust-src component of $(rustc --version)"
  rustup component add rust-src || die "-Z build-std needs the rust-src component: rustup component add rust-src"
}

build() {
  local triple=$1
  case $triple in
    arm*-musleabihf)
      zig_tools
      rust_src
      echo "== $triple: std from source, linked by zig"
      PATH=$PWD/$tools/bin:$PATH RUSTC_BOOTSTRAP=1 \
        cargo zigbuild --locked --release -Z build-std=std,panic_abort --target "$triple"
      ;;
    *)
      if command -v rustup >/dev/null; then rustup target add "$triple" >/dev/null; fi
      echo "== $triple: linked by rust-lld"
      cargo build --locked --release --target "$triple"
      ;;
  esac
}

mkdir -p "$out"
for triple in "${triples[@]}"; do
  build "$triple"
  bin=$target_dir/$triple/release/herd
  name=herd-$version-$triple
  size=$(stat -c %s "$bin")
  if ((size > BUDGET)); then
    die "$bin is $size bytes, over the 3 MiB budget ($BUDGET bytes)"
  fi
  rm -f "$out"/herd-*-"$triple"
  cp "$bin" "$out/$name"
done

# SHA256SUMS covers every binary in $out, also those of an earlier run.
(
  cd "$out"
  sha256sum herd-"$version"-* >SHA256SUMS
)
{
  echo "rustc: $(rustc --version)"
  if [[ -x $tools/bin/python-zig ]]; then
    echo "zig: $("$tools/bin/python-zig" version) (PyPI ziglang $ZIGLANG_VERSION), cargo-zigbuild $CARGO_ZIGBUILD_VERSION"
  fi
} >"$out/BUILDINFO"
echo "== $out"
for triple in "${triples[@]}"; do
  printf '%10d  %s\n' "$(stat -c %s "$out/herd-$version-$triple")" "$out/herd-$version-$triple"
done
cat "$out/SHA256SUMS"
