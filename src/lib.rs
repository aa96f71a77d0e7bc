//! herd: a small agent for Raspberry Pi clusters. It discovers its peers by
//! multicast gossip (or static hosts, or DNS), keeps an authenticated member
//! table, relays a baton counter across shuffled laps of its peers, and
//! reports the counter, CPU temperature, throttling and link health as StatsD
//! gauges.
//!
//! Map of the crate:
//! - [`config`]: the TOML schema, one file per section with each key declared
//!   once, defaults and validation (`herd check`).
//! - [`core`]: the protocol, with no I/O and no clock: the wire format
//!   ([`core::wire`]), the member table ([`core::membership`]), the failure
//!   detector ([`core::probe`]), the baton relay ([`core::baton`]), link
//!   statistics ([`core::links`]) and the node state machine that drives
//!   them ([`core::node`]) ([`core`] lists them all).
//! - [`agent`]: the shell that owns all I/O: `herd run`'s set-up, loop and
//!   tear-down ([`agent::runtime`]), one turn of the event loop
//!   ([`agent::driver`]) over a [`agent::transport`], the one place that
//!   counts and reports ([`agent::report`]), sockets ([`agent::net`]), the
//!   StatsD sink, sensors, the status endpoint and `herd ping`
//!   ([`agent`] lists them all).
//! - [`demo`]: `herd demo`, a whole cluster of real agents on this machine
//!   with an embedded StatsD listener and a live table.

/// The wire versions this release speaks and understands (`core::wire`
/// defines them from this), as literals so that [`VERSION`] can name them.
macro_rules! wire_version {
    (speaks) => {
        4
    };
    (understands) => {
        3
    };
}

pub mod agent;
pub mod cli;
pub mod config;
pub mod core;
pub mod demo;

/// The version and git revision alone: what a node gossips as its version
/// (`core::health`) and the cluster view shows.
pub const SHORT_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("HERD_GIT_REV"));

/// `herd --version`: version, target triple, git revision and the wire
/// versions (which releases talk to which: docs/operating.md, "Upgrading
/// one Pi at a time").
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HERD_TARGET"),
    ", git ",
    env!("HERD_GIT_REV"),
    ", wire ",
    wire_version!(speaks),
    ", understands ",
    wire_version!(understands),
    "-",
    wire_version!(speaks),
    ")"
);
