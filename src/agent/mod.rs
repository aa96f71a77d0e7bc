//! The shell: everything that touches the operating system. The protocol
//! itself lives in [`crate::core`]; this module feeds it datagrams and the
//! time, sends what it asks, and turns what it reports into logs, metrics and
//! the status endpoint.
//!
//! Map of the shell:
//! - [`runtime`]: `herd run`: set-up, `loop { driver.turn() }`, tear-down.
//! - [`ping`]: `herd ping`, a short-lived member that probes every peer.
//! - [`setup`]: what `herd run` and `herd ping` both build from a config
//!   (the sockets, the core's config, the resolver and the network watch).
//! - [`driver`]: one turn of the event loop in named steps (wait, input,
//!   timer, periodic jobs, transmits, events); `herd run` and `herd ping`
//!   drive the same [`driver::Driver`].
//! - [`reload`]: the config the agent runs with, and a new one applied to
//!   it (SIGHUP, or handed in) by `config::reload`'s plan.
//! - [`transport`]: the datagram device behind a small trait: the UDP sockets,
//!   and an in-memory network for unit tests.
//! - [`net`]: the sockets (socket2: TTL, loop, reuse, bound with or without
//!   a network) and the resolver of static hosts and DNS names.
//! - [`network`]: the host's network followed as the kernel reports it
//!   (netlink): the multicast group joined where heartbeats go out, the
//!   advertised IP, or what the agent waits for; each change said once.
//! - [`report`]: core events into logs and metrics, and traffic: the one
//!   place that counts.
//! - [`state`]: the state file (the baton counter's reservations), read at
//!   start and written when the core asks.
//! - [`statsd`]: the cadence client and its sinks (UDP or Unix datagram), tags.
//! - [`telemetry`]: a sensor reading and link statistics into gauges.
//! - [`sensors`]: thermal zones, hwmon, cpufreq, Pi throttling, the NIC,
//!   under `sysfs_root`; CPU, load and memory from sysinfo.
//! - [`snapshot`]: the point-in-time picture the status endpoint serves.
//! - [`history`]: the last 15 minutes for the page's charts, a fixed ring buffer.
//! - [`status`]: the local endpoint (JSON, HTML page, Prometheus) and its
//!   client `herd status`.
//! - [`process`]: logging and the shutdown signal, once per process.

pub mod driver;
pub mod history;
pub mod net;
pub mod network;
pub mod ping;
pub mod process;
pub mod reload;
pub mod report;
pub mod runtime;
pub mod sensors;
pub mod setup;
pub mod snapshot;
pub mod state;
pub mod statsd;
pub mod status;
pub mod telemetry;
pub mod transport;

pub use runtime::{Control, run, run_with};
