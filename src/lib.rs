//! herd: a small agent for Raspberry Pi clusters. It discovers its peers by
//! multicast gossip (or static hosts, or DNS), keeps an authenticated member
//! table, relays a baton counter across shuffled laps of its peers, and
//! reports the counter, CPU temperature, throttling and link health as StatsD
//! gauges.
//!
//! Map of the crate:
//! - [`config`]: the TOML schema, defaults and validation (`herd check`).
//! - [`core`]: the protocol, with no I/O and no clock: the wire format
//!   ([`core::wire`]), the member table ([`core::membership`]), the baton
//!   relay ([`core::baton`]), link statistics ([`core::links`]) and the node
//!   state machine that drives them ([`core::node`]).
//! - [`agent`]: the shell that owns all I/O: sockets ([`agent::net`]), the
//!   single event loop ([`agent::runtime`]) that feeds the core, the StatsD
//!   sink, sensors and the status endpoint.
//! - [`demo`]: `herd demo`, a whole cluster of real agents on this machine
//!   with an embedded StatsD listener and a live table.

pub mod agent;
pub mod config;
pub mod core;
pub mod demo;

/// `herd --version`: version, target triple and git revision.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("HERD_TARGET"), ", git ", env!("HERD_GIT_REV"), ")");
