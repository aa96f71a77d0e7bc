//! setup: what `herd run` and `herd ping` both build from a [`Config`]
//! before their loop: the sockets, the core's [`NodeConfig`], and the helper
//! tasks both need (the resolver of static hosts and DNS names, the network
//! watch, the shutdown), aborted together when the command ends. A reload
//! builds the core's tuning here too ([`tuning`]), so the core is configured
//! from a [`Config`] in one place.
//!
//! Must not: run the loop or touch a running node (the driver drives it,
//! `reload` reconfigures it).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;

use super::net::{self, Sockets};
use super::network;
use crate::config::{Config, Strategy};
use crate::core::baton::BatonConfig;
use crate::core::links::LinkConfig;
use crate::core::node::{Fanout, Identity, NodeConfig, Tuning};

/// Binds the gossip and data sockets (no network needed: see `net`) and
/// builds the core's config with the data port the socket actually got;
/// `reserved`: the state file's counter ceiling, read once at start
/// (`state::restore`, `herd run` alone).
pub fn bind(config: &Config, reserved: Option<u64>) -> Result<(Sockets, NodeConfig)> {
    let sockets = net::bind(&config.gossip)?;
    let node = node_config(config, sockets.data.fd.get_ref().local_addr()?.port(), reserved);
    Ok((sockets, node))
}

/// The core's configuration from the validated config; `data_port` is the
/// port the data socket actually got (the config may say 0), `reserved` the
/// state file's ceiling as read at start.
pub fn node_config(config: &Config, data_port: u16, reserved: Option<u64>) -> NodeConfig {
    let g = &config.gossip;
    let fanout = match (g.strategy, g.broadcast_only) {
        (Strategy::Multicast, _) => Fanout::Group,
        _ => Fanout::Unicast,
    };
    let identity = Identity {
        name: config.node.name.clone(),
        cluster: config.node.cluster.clone(),
        incarnation: incarnation(),
        max_members: g.max_members,
        data_port,
        // The configured address if any; the driver follows the network
        // for the rest before the first heartbeat.
        ip: network::advertised(g, std::net::Ipv4Addr::UNSPECIFIED),
        gossip_port: g.port,
        fanout,
    };
    NodeConfig { identity, tuning: tuning(config), reserved }
}

/// What tunes the core, from the validated config: at start, and whole at
/// each reload (`Node::reconfigure`).
pub fn tuning(config: &Config) -> Tuning {
    let g = &config.gossip;
    Tuning {
        keys: g.keys.iter().map(|k| k.0.clone()).collect(),
        heartbeat_interval: g.heartbeat_interval,
        suspect_after: g.suspect_after,
        down_after: g.down_after,
        baton: BatonConfig {
            enabled: config.baton.enabled,
            main_node: config.baton.main_node.clone(),
            hold: config.baton.hold,
            pass_timeout: config.baton.pass_timeout,
            max_retries: config.baton.max_retries,
            regenerate_after: config.baton.regenerate_after,
        },
        links: LinkConfig {
            probe_interval: config.links.probe_interval,
            window: config.links.window,
            sweep: false,
        },
    }
}

/// This life's incarnation: milliseconds since the Unix epoch at start, so a
/// restarted node is newer than its previous life (see membership.rs for
/// clocks that go backwards).
pub fn incarnation() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1)
}

/// A helper task, if it started, and the channel the loop polls.
pub type Helper<T> = (Option<JoinHandle<()>>, Option<mpsc::Receiver<T>>);

/// The resolver of static hosts or DNS names, for the unicast strategies
/// (nothing for multicast).
pub fn start_resolver(config: &Config, node: &NodeConfig) -> Helper<Vec<std::net::SocketAddr>> {
    if node.identity.fanout != Fanout::Unicast {
        return (None, None);
    }
    let (tx, rx) = mpsc::channel(1);
    let g = config.gossip.clone();
    let every = g.heartbeat_interval;
    (Some(tokio::spawn(net::resolve_seeds(g, every, tx))), Some(rx))
}

/// The kernel's address, link and route changes as a channel the loop
/// polls; without netlink (a sandbox that forbids AF_NETLINK) the loop
/// re-checks the network on a timer instead (logged).
pub fn start_network_watch() -> Helper<()> {
    match network::watch() {
        Ok((task, rx)) => (Some(task), Some(rx)),
        Err(e) => {
            warn!(error = %e, "cannot watch the network (netlink): address and link changes are noticed within 5 s instead");
            (None, None)
        }
    }
}

/// `future`'s completion as a oneshot fired by its own task, so the loop
/// polls an atomic per turn instead of the signal machinery (the driver's
/// `shutdown` input).
pub fn start_shutdown(
    future: impl Future<Output = ()> + Send + 'static,
) -> (oneshot::Receiver<()>, JoinHandle<()>) {
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        future.await;
        let _ = tx.send(());
    });
    (rx, task)
}

/// A command's helper tasks, aborted when it returns or its future is
/// dropped (a crash of an agent run by `herd demo`).
pub struct Helpers(Vec<JoinHandle<()>>);

impl Helpers {
    pub fn new(tasks: impl IntoIterator<Item = Option<JoinHandle<()>>>) -> Helpers {
        Helpers(tasks.into_iter().flatten().collect())
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
