//! runtime: `herd run`'s set-up, its loop and its tear-down, nothing else.
//! Set-up binds the sockets (no network needed), logs the start, starts the
//! resolver, the network watch and the status endpoint, builds the
//! [`Driver`] (which joins the cluster, or says what network it waits for)
//! and tells systemd it is ready;
//! the loop is `driver.turn()` until shutdown; tear-down leaves the cluster
//! (baton handed off, leave announced, metrics flushed, summary logged) and
//! stops the helper tasks, so `herd run` exits well within 2 s of SIGTERM.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::driver::{Driver, Inputs, Turn};
use super::net;
use super::network;
use super::snapshot::SnapshotRequest;
use super::status;
use crate::config::{Config, Strategy};
use crate::core::baton::BatonConfig;
use crate::core::links::LinkConfig;
use crate::core::node::{Fanout, Identity, Node, NodeConfig, Tuning};

/// Runs the agent until `shutdown` completes, then leaves the cluster.
/// `config_file` is where `config` was read from: SIGHUP reads it again
/// (`None`, the built-in defaults, has nothing to re-read).
pub async fn run(
    config: Config,
    config_file: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_inner(config, config_file, shutdown, None).await
}

/// What `herd demo` hands each of its agents besides the shutdown future.
pub struct Control {
    /// Each config that arrives is applied as a reload of the file would
    /// apply it (`config::reload`: what needs a restart keeps its running
    /// value), without a file: the demo changes its agents' keys this way
    /// to split and heal the cluster.
    pub configs: mpsc::Receiver<Config>,
    /// Snapshot requests, answered as the status endpoint's are (what
    /// `herd status` reads, in process): the demo asks who holds the baton.
    /// Used only when `[status] listen` is off.
    pub snapshots: mpsc::Receiver<SnapshotRequest>,
}

/// [`run`], controlled through `control` (see [`Control`]).
///
/// Dropping the future (aborting its task) is a crash: no leave is
/// announced, nothing is flushed, and the agent's helper tasks end with it.
pub async fn run_with(
    config: Config,
    config_file: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    control: Control,
) -> Result<()> {
    run_inner(config, config_file, shutdown, Some(control)).await
}

async fn run_inner(
    config: Config,
    config_file: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    control: Option<Control>,
) -> Result<()> {
    let g = &config.gossip;
    let sockets = net::bind(g)?;
    let node_cfg = node_config(&config, sockets.data.local_addr()?.port(), read_state(&config));
    info!(
        node = %node_cfg.identity.name,
        cluster = %node_cfg.identity.cluster,
        incarnation = node_cfg.identity.incarnation,
        gossip = %describe_gossip(&config),
        data = %sockets.data.local_addr()?,
        version = crate::VERSION,
        "herd started"
    );
    if let Some(warning) = config.node.name_warning() {
        warn!("{warning}");
    }
    if node_cfg.tuning.keys.is_empty() {
        warn!(
            "no [gossip] secret or secret_file set: datagrams are neither authenticated nor encrypted, \
             and anyone on the network can join or disturb this cluster"
        );
    }
    let (resolver, seeds) = start_resolver(&config, &node_cfg);
    let (watch, network) = start_network_watch();
    let (status_task, status) = start_status(&config).await;
    let (shutdown, stopper) = Inputs::shutdown_on(shutdown);
    let node = Node::new(node_cfg, rand::make_rng::<SmallRng>(), std::time::Instant::now());
    let (reload_task, reload) = start_reload_signal();
    // Aborted when this future ends or is dropped (a crash, see `run_with`).
    let _helpers = Helpers([resolver, watch, status_task, reload_task, Some(stopper)]);
    let (apply, snapshots) = control.map_or((None, None), |c| (Some(c.configs), Some(c.snapshots)));
    let status = status.or(snapshots);
    let inputs = Inputs { shutdown: Some(shutdown), seeds, network, status, reload, apply };
    let mut driver = Driver::new(&config, node, sockets, inputs);
    driver.set_config_file(config_file);
    // systemd (Type=notify): the sockets are bound, and the agent runs,
    // whether it has a network yet or not (`systemctl status herd` shows
    // which). Without $NOTIFY_SOCKET this does nothing.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        debug!(error = %e, "sd_notify READY failed");
    }

    while driver.turn().await == Turn::Continue {}

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    driver.leave();
    Ok(())
}

/// The agent's helper tasks (resolver, network watch, status endpoint,
/// SIGHUP, shutdown), aborted when the agent's future returns or is dropped.
struct Helpers([Option<tokio::task::JoinHandle<()>>; 5]);

impl Drop for Helpers {
    fn drop(&mut self) {
        for task in self.0.iter().flatten() {
            task.abort();
        }
    }
}

/// The counter ceiling of `[node] state_dir`'s state file: `None` without a
/// state directory (nothing will be written), else the file's (0 for none
/// yet). A corrupt or unreadable file is a warning and counts as none.
fn read_state(config: &Config) -> Option<u64> {
    let dir = config.node.state_dir.as_ref()?;
    match super::state::read(dir) {
        Ok(Some(ceiling)) => {
            info!(dir = %dir.display(), ceiling, "counter reservations restored: a new baton starts above {ceiling}");
            Some(ceiling)
        }
        Ok(None) => {
            info!(dir = %dir.display(), "no counter reservations yet (first start with this state_dir)");
            Some(0)
        }
        Err(e) => {
            warn!(
                "{e:#}; starting without the earlier reservations (after a power cut of the whole cluster the counter may start lower)"
            );
            Some(0)
        }
    }
}

/// The kernel's address, link and route changes as a channel the loop
/// polls; without netlink (a sandbox that forbids AF_NETLINK) the loop
/// re-checks the network on a timer instead (logged).
pub(crate) fn start_network_watch() -> (Option<tokio::task::JoinHandle<()>>, Option<mpsc::Receiver<()>>) {
    match network::watch() {
        Ok((task, rx)) => (Some(task), Some(rx)),
        Err(e) => {
            warn!(error = %e, "cannot watch the network (netlink): address and link changes are noticed within 5 s instead");
            (None, None)
        }
    }
}

/// SIGHUP (`systemctl reload herd`) as a channel the loop polls; `None` if
/// it cannot be listened for (then a SIGHUP would end the process: logged).
fn start_reload_signal() -> (Option<tokio::task::JoinHandle<()>>, Option<mpsc::Receiver<()>>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            let (tx, rx) = mpsc::channel(1);
            let task = tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    info!("SIGHUP: reading the config again");
                    // A reload already queued covers this one too.
                    let _ = tx.try_send(());
                }
            });
            (Some(task), Some(rx))
        }
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP: `systemctl reload herd` would stop the agent");
            (None, None)
        }
    }
}

/// How heartbeats travel, for the start line.
fn describe_gossip(config: &Config) -> String {
    let g = &config.gossip;
    match (g.strategy, g.broadcast_only) {
        (Strategy::Multicast, false) => format!("multicast {}:{}", g.multicast_addr, g.port),
        (Strategy::Multicast, true) => format!("broadcast {}:{}", g.multicast_addr, g.port),
        (Strategy::Static, _) => format!("static hosts {}", g.hosts.join(", ")),
        (Strategy::Dns, _) => format!("dns {}:{}", g.dns_name, g.port),
    }
}

/// The resolver of static hosts or DNS names, for the unicast strategies;
/// `herd ping` uses it too.
pub(crate) fn start_resolver(
    config: &Config,
    node: &NodeConfig,
) -> (Option<tokio::task::JoinHandle<()>>, Option<mpsc::Receiver<Vec<std::net::SocketAddr>>>) {
    if node.identity.fanout != Fanout::Unicast {
        return (None, None);
    }
    let (tx, rx) = mpsc::channel(1);
    let g = config.gossip.clone();
    let every = g.heartbeat_interval;
    (Some(tokio::spawn(net::resolve_seeds(g, every, tx))), Some(rx))
}

/// The status endpoint, if `[status] listen` is set and can be bound; a bind
/// failure is logged and the agent runs without it.
async fn start_status(
    config: &Config,
) -> (Option<tokio::task::JoinHandle<()>>, Option<mpsc::Receiver<SnapshotRequest>>) {
    let Some(addr) = config.status.listen else { return (None, None) };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            info!(%addr, "status endpoint listening (GET /, /status, /metrics)");
            let (tx, rx) = mpsc::channel(16);
            (Some(tokio::spawn(status::serve(listener, tx))), Some(rx))
        }
        Err(e) => {
            warn!(%addr, error = %e, "cannot listen for the status endpoint; running without it ([status] listen)");
            (None, None)
        }
    }
}

/// The core's configuration from the validated config; `data_port` is the
/// port the data socket actually got (the config may say 0), `reserved` the
/// counter ceiling of the state file as read at start (`read_state`).
pub(crate) fn node_config(config: &Config, data_port: u16, reserved: Option<u64>) -> NodeConfig {
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

/// What a reload hands the core (`Node::reconfigure`): the keyring, the
/// gossip timings, the baton's and the links' settings.
pub(crate) fn tuning(config: &Config) -> Tuning {
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
pub(crate) fn incarnation() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1)
}
