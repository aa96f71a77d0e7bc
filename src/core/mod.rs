//! The protocol core. Nothing here does I/O, reads a clock or draws OS
//! randomness: callers pass `now` and an RNG in and take datagrams and events
//! out (STYLE.md 1-3). That is what lets `tests/sim` run whole clusters on a
//! virtual clock.

pub mod baton;
pub mod conflict;
pub mod health;
pub mod limit;
pub mod links;
pub mod membership;
pub mod node;
pub mod probe;
pub mod reserve;
pub mod wire;
