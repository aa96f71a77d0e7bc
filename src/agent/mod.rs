//! The shell: everything that touches the operating system. It binds the
//! sockets, runs the event loop that drives the core, and turns the core's
//! events into logs. The protocol itself lives in [`crate::core`].

pub mod net;
pub mod ping;
pub mod runtime;
pub mod sensors;
pub mod snapshot;
pub mod statsd;
pub mod status;
pub mod telemetry;

pub use runtime::run;
