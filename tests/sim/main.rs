//! The simulator tests: whole clusters of the real core (`herd::core`) on a
//! virtual clock, with a seeded network that loses packets, partitions nodes
//! and kills, restarts or freezes them (harness/: the simulator, and the
//! relay's helpers on it). Deterministic: the same RNG seed gives the same
//! run, event for event.
//!
//! - `membership`: joins, crashes, loss, partitions, leaves, restarts, clock
//!   offsets, shared names and hostile datagrams;
//! - `relay`: the baton's laps, failover, partitions, loss, power cuts and a
//!   long random run, against the exactly-one-baton rules (docs/design.md);
//! - `relay_faults`: the adversarial cases of those rules (a heal, a leave or
//!   a kill at full speed, a holder restarted at once, a late or disabled
//!   main node, the relay turned off and on by reloads), each of which once
//!   broke them;
//! - `stall`: a node frozen for seconds, often the holder;
//! - `health`: gossiped health and links, and what they cost;
//! - `scale`: traffic per node at 32 and 256 nodes, and bounds at 256.
//!
//! `cargo test --release --test sim` runs them all (debug is slow),
//! `cargo test --release --test sim relay_faults::` one module. Measured
//! figures are printed (`-- --nocapture`; the `SIM |` lines are the report).

mod harness;

mod health;
mod membership;
mod relay;
mod relay_faults;
mod scale;
mod stall;
