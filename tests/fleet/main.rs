//! The fleet lab: herd deployed to emulated Pis (systemd-nspawn containers
//! with real systemd and sshd, on one bridge, see fleet.sh and harness.rs)
//! with `deploy/install.sh`, exactly as the README's "Run it on your Pis"
//! says. Needs root; without it every test says why and skips (under CI=true
//! they fail instead).
//!
//! Each scenario prints `FLEET | scenario | what was checked | figures`
//! lines: `cargo test --test fleet -- --nocapture | grep '^FLEET'` gives the
//! report.

#[path = "../common/mod.rs"]
mod common;
mod harness;
/// The previous release, built from git history (the rolling upgrade).
#[path = "../compat/previous.rs"]
mod previous;

mod deploy;
mod lifecycle;
mod network;
mod operations;
mod packages;
mod powercut;
mod upgrade;
