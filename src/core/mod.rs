//! The protocol core. Nothing here does I/O, reads a clock or draws OS
//! randomness: callers pass `now` and an RNG in and take datagrams and events
//! out, and every timer is a deadline kept as data (an instant in the state
//! it belongs to, recomputed rather than cancelled). That is what lets
//! `tests/sim` run whole clusters on a virtual clock.

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
