//! The network lab: herd on several hosts of one L2 network (network
//! namespaces on a bridge, see lab.sh and harness.rs), under partitions,
//! loss, churn, intruders, floods, broken neighbours, the networks Pis have
//! (a network that comes late, drops, renumbers), shared names, a stalled
//! process and wall-clock steps. Needs root; without it every test says why
//! and skips (under CI=true they fail instead).
//!
//! Each scenario prints `LAB | scenario | what was checked | figures` lines:
//! `cargo test --test lab -- --nocapture | grep '^LAB'` gives the report.
//! Long scenarios run for `HERD_LAB_SECONDS` (default 180; the loss one 240).

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)] // each scenario uses part of it
mod harness;

mod churn;
mod clock;
mod discovery;
mod flood;
mod intruders;
mod loss;
mod names;
mod neighbours;
mod network;
mod partition;
mod stall;
