//! The protocol core. Nothing here does I/O, reads a clock or draws OS
//! randomness: callers pass `now` and an RNG in and take datagrams and events
//! out, and every timer is a deadline kept as data (an instant in the state
//! it belongs to, recomputed rather than cancelled: CONTRIBUTING.md,
//! conventions 1 to 3). That is what lets `tests/sim` run whole clusters on
//! a virtual clock.
//!
//! Map:
//! - [`node`]: one node as a state machine, the shell's one interface: it
//!   routes datagrams and deadlines to the machines below, carries out what
//!   they ask for and merges their deadlines into one;
//! - [`wire`]: the datagram format, sealing and every message;
//! - [`membership`]: the member table;
//! - [`probe`]: the failure detector;
//! - [`baton`]: the baton relay;
//! - [`effects`]: what those three machines ask of the node, in one shape;
//! - [`links`]: link health per peer (RTT, jitter, loss, clock offset);
//! - [`health`]: the health every member gossips, and the board of it;
//! - [`conflict`]: the other nodes heard using this node's name;
//! - [`reserve`]: counter reservations, so the counter survives a power cut;
//! - [`timings`]: the deadlines that follow from the heartbeat interval;
//! - [`limit`]: "at most once per period", without a clock.

pub mod baton;
pub mod conflict;
pub mod effects;
pub mod health;
pub mod limit;
pub mod links;
pub mod membership;
pub mod node;
pub mod probe;
pub mod reserve;
pub mod timings;
pub mod wire;
