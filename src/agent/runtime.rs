//! runtime: `herd run`'s set-up, its loop and its tear-down, nothing else.
//! Set-up binds the sockets (no network needed), reads the state file, logs
//! the start, starts the resolver, the network watch (those three as
//! `herd ping` does, from `setup`), the status endpoint and the SIGHUP
//! listener, builds the
//! [`Driver`] (which joins the cluster, or says what network it waits for)
//! and tells systemd it is ready;
//! the loop is `driver.turn()` until shutdown; tear-down leaves the cluster
//! (baton handed off, leave announced, metrics flushed, summary logged) and
//! stops the helper tasks, so `herd run` exits well within 2 s of SIGTERM.

use anyhow::Result;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::driver::{Driver, Inputs, Turn};
use super::setup::{self, Helper, Helpers};
use super::snapshot::SnapshotRequest;
use super::state;
use super::status;
use crate::config::{Config, Strategy};
use crate::core::node::Node;

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
    let (sockets, node_cfg) = setup::bind(&config, state::restore(&config))?;
    info!(
        node = %node_cfg.identity.name,
        cluster = %node_cfg.identity.cluster,
        incarnation = node_cfg.identity.incarnation,
        gossip = %describe_gossip(&config),
        data = %sockets.data.fd.get_ref().local_addr()?,
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
    let (resolver, seeds) = setup::start_resolver(&config, &node_cfg);
    let (watch, network) = setup::start_network_watch();
    let (status_task, status) = start_status(&config).await;
    let (shutdown, stopper) = setup::start_shutdown(shutdown);
    let node = Node::new(node_cfg, rand::make_rng::<SmallRng>(), std::time::Instant::now());
    let (reload_task, reload) = start_reload_signal();
    // Aborted when this future ends or is dropped (a crash, see `run_with`).
    let _helpers = Helpers::new([resolver, watch, status_task, reload_task, Some(stopper)]);
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

/// SIGHUP (`systemctl reload herd`) as a channel the loop polls; `None` if
/// it cannot be listened for (then a SIGHUP would end the process: logged).
fn start_reload_signal() -> Helper<()> {
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

/// The status endpoint, if `[status] listen` is set and can be bound; a bind
/// failure is logged and the agent runs without it.
async fn start_status(config: &Config) -> Helper<SnapshotRequest> {
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
