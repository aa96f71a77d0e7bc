#!/usr/bin/env bash
# dist.sh: the static release binaries for every Raspberry Pi (and x86_64
# Linux), into dist/ as herd-<version>-<target triple>, with SHA256SUMS, and
# the Debian packages made from them, herd_<version>-<revision>_<arch>.deb.
#
#   scripts/dist.sh [--out DIR] [--deb-revision N] [--no-deb] [--no-build] [TRIPLE ...]
#
# Default triples, and the Pis each serves (deploy/install.sh picks by uname -m):
#   aarch64-unknown-linux-musl       aarch64  64-bit Pi OS: Pi 3, 4, 5, Zero 2 W
#   armv7-unknown-linux-musleabihf   armv7l   32-bit Pi OS on a Pi 2, 3, 4, Zero 2 W
#   arm-unknown-linux-musleabihf     armv6l   Pi 1, Zero, Zero W (ARM1176)
#   x86_64-unknown-linux-musl        x86_64   a PC in the cluster, the fleet lab
#
# How each is built, and why:
# - aarch64 and x86_64: rustup serves their std; their AEAD is ring's
#   (src/core/wire/aead.rs), whose assembly and C need a C compiler for the
#   target: zig's (cargo zigbuild), which also links them fully static.
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
#
# The Debian packages (cargo-deb, pinned below, installed into the same
# virtualenv's directory if missing; metadata in Cargo.toml), one per Debian
# architecture from the binaries above:
#   herd_<v>_arm64.deb  the aarch64 build
#   herd_<v>_armhf.deb  the armv6 build: Raspberry Pi OS's armhf is ARMv6 with
#                       VFP (Debian's is ARMv7), so one package serves every
#                       32-bit Pi; the armv7 build has no package
#   herd_<v>_amd64.deb  the x86_64 build
# No armel package: Debian's armel is ARMv5 without an FPU, which the armv6
# build (hard float) cannot serve. Each carries /usr/bin/herd, the unit
# (deploy/herd.service with ExecStart=/usr/bin/herd), /etc/herd/herd.toml as a
# conffile, herd(1) and bash/zsh/fish completions (made by examples/pages.rs,
# a host build, from the clap definition) and the maintainer scripts in
# deploy/debian/. --deb-revision N (default 1) sets the Debian revision, e.g.
# for a rebuild of one version; --no-deb makes the binaries only; --no-build
# takes the binaries already in target/<triple>/release instead of building.
set -euo pipefail

prog=dist.sh
cd "$(dirname "$0")/.."

ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
CARGO_DEB_VERSION=3.8.0
BUDGET=$((3 * 1024 * 1024))
ALL=(aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf arm-unknown-linux-musleabihf x86_64-unknown-linux-musl)

die() {
  echo "$prog: $*" >&2
  exit 1
}

out=dist
triples=()
deb_revision=1
debs=true
build_them=true
while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out=$2; shift ;;
    --out=*) out=${1#*=} ;;
    --deb-revision) [[ $# -ge 2 && $2 =~ ^[0-9][0-9a-z.+~]*$ ]] || die "--deb-revision needs a Debian revision (e.g. 2)"; deb_revision=$2; shift ;;
    --no-deb) debs=false ;;
    --no-build) build_them=false ;;
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
  command -v python3 >/dev/null || die "the static builds need python3 (for zig from PyPI)"
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
      zig_tools
      if command -v rustup >/dev/null; then rustup target add "$triple" >/dev/null; fi
      echo "== $triple: ring's assembly compiled and the binary linked by zig"
      PATH=$PWD/$tools/bin:$PATH cargo zigbuild --locked --release --target "$triple"
      ;;
  esac
}

mkdir -p "$out"
for triple in "${triples[@]}"; do
  bin=$target_dir/$triple/release/herd
  if $build_them; then
    build "$triple"
  elif [[ ! -f $bin ]]; then
    die "--no-build, but there is no $bin"
  fi
  name=herd-$version-$triple
  size=$(stat -c %s "$bin")
  if ((size > BUDGET)); then
    die "$bin is $size bytes, over the 3 MiB budget ($BUDGET bytes)"
  fi
  rm -f "$out"/herd-*-"$triple"
  cp "$bin" "$out/$name"
done

# The Debian architecture a triple's package is for; none for armv7.
deb_arch() {
  case $1 in
    aarch64-unknown-linux-musl) echo arm64 ;;
    arm-unknown-linux-musleabihf) echo armhf ;;
    x86_64-unknown-linux-musl) echo amd64 ;;
  esac
}

# cargo-deb, pinned, built once into $tools.
cargo_deb() {
  if [[ -x $tools/bin/cargo-deb && $("$tools/bin/cargo-deb" --version) == *" $CARGO_DEB_VERSION" ]]; then
    return
  fi
  echo "== cargo-deb $CARGO_DEB_VERSION from crates.io into $tools"
  cargo install --quiet --locked --root "$tools" --version "$CARGO_DEB_VERSION" cargo-deb ||
    die "cargo install cargo-deb $CARGO_DEB_VERSION failed"
}

# What the packages carry beside the binary, made once per run into
# target/deb-stage (the paths Cargo.toml's [package.metadata.deb] names).
deb_stage() {
  local stage=target/deb-stage
  rm -rf "$stage"
  mkdir -p "$stage/unit"
  echo "== man page and completions (examples/pages.rs)"
  cargo run --quiet --locked --example pages -- "$stage" >/dev/null
  # The unit, with the package's binary. Anything but exactly one replaced
  # ExecStart= line means herd.service changed shape: stop.
  sed 's|^ExecStart=/usr/local/bin/herd |ExecStart=/usr/bin/herd |' deploy/herd.service >"$stage/unit/herd.service"
  [[ $(diff deploy/herd.service "$stage/unit/herd.service" | grep -c '^>') == 1 ]] ||
    die "deploy/herd.service has no single 'ExecStart=/usr/local/bin/herd ' line to point at /usr/bin/herd"
  cp deploy/debian/herd.sysusers "$stage/unit/herd.sysusers"
  # The Debian changelog: one entry per package version, pointing to the
  # project's own (usr/share/doc/herd/changelog.gz).
  local date
  date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
  {
    echo "herd ($version-$deb_revision) unstable; urgency=medium"
    echo
    echo "  * herd $version, built from static binaries by scripts/dist.sh."
    echo "    What changed: /usr/share/doc/herd/changelog.gz."
    echo
    echo " -- $(sed -n 's/^maintainer = "\(.*\)"$/\1/p' Cargo.toml)  $date"
  } >"$stage/changelog"
}

deb() {
  local triple=$1 arch=$2
  echo "== $triple: herd_${version}-${deb_revision}_$arch.deb"
  rm -f "$out"/herd_*_"$arch".deb
  "$tools/bin/cargo-deb" --no-build --locked --quiet --target "$triple" --deb-revision "$deb_revision" \
    --output "$out/herd_${version}-${deb_revision}_$arch.deb" >/dev/null ||
    die "cargo-deb failed for $triple"
}

made_debs=()
if $debs; then
  for triple in "${triples[@]}"; do
    arch=$(deb_arch "$triple")
    [[ -n $arch ]] || continue
    if ((${#made_debs[@]} == 0)); then
      cargo_deb
      deb_stage
    fi
    deb "$triple" "$arch"
    made_debs+=("herd_${version}-${deb_revision}_$arch.deb")
  done
fi

# SHA256SUMS covers every binary and package in $out, also those of an
# earlier run.
(
  cd "$out"
  shopt -s nullglob
  sha256sum herd-"$version"-* herd_*.deb >SHA256SUMS
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
for deb in "${made_debs[@]}"; do
  printf '%10d  %s\n' "$(stat -c %s "$out/$deb")" "$out/$deb"
done
cat "$out/SHA256SUMS"
