//! cluster: the demo's agents, and what the keys do to them. Each agent is
//! the unchanged [`crate::agent::run_with`] as a task of the demo's runtime,
//! with a channel that hands it a new config (applied as a reload of its
//! file would be).
//!
//! - **kill** (of the baton's holder: the agent whose own status says it
//!   holds the baton, asked in process as `herd status` would ask its
//!   endpoint): the agent's task is aborted. That is a crash: no leave is
//!   announced, nothing more is sent or flushed, its sockets close; its
//!   peers find out through their failure detector.
//! - **restart**: a killed agent's task starts again from its config, in its
//!   half's keys if the cluster is split: a new life (a new incarnation).
//! - **split**: the agents share one gossip port on loopback, so a partition
//!   cannot be made by address; it is made by the keys. Every live agent is
//!   handed its config with a new secret of its half's own, the first half
//!   of the names one, the second another; each half then refuses the
//!   other's datagrams as unauthenticated, sees it go silent and down, and
//!   the half without the baton regenerates one. Both halves are re-keyed,
//!   not only one: a pass in flight across the cut is then refused by its
//!   receiver whichever side sent it, and stays with its sender's half, so
//!   the other half has none and regenerates one (with one half keeping the
//!   shared secret, a pass from the re-keyed half would still open on the
//!   other, and both halves could carry a copy of the same baton).
//! - **heal**: every live agent gets the shared secret back; the halves
//!   hear each other, the members merge and the duplicate batons collapse.
//!
//! What the keys did is read back from here alone ([`Cluster::layout`]):
//! which agents run and, while split, which half each is in. The status
//! column and the events area are drawn from it and keep no copy of their
//! own.
//!
//! Must not: stop an agent other than by its shutdown future (leave) or an
//! abort (crash), or let an agent outlive [`Cluster::stop`].

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument;

use crate::agent::Control;
use crate::agent::snapshot::SnapshotRequest;
use crate::config::{Config, Secret};

/// Agents leave within a heartbeat; this is the bound before the demo gives up on them.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an agent may take to answer who holds the baton.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(1);
/// Configs queued per agent: a few presses of `p` in a row.
const CONTROL_QUEUE: usize = 8;

/// How the agent `k` kills held the baton, by its own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    /// Holding it, not passing it.
    Still,
    /// A pass of it on its way, not yet acknowledged.
    Passing,
    /// It said neither: the last to send a `baton` gauge (the metrics').
    LastGauge,
}

/// Which agents run and, while split, where the second half starts: the
/// cluster as the keys have left it, read from [`Cluster::layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    /// Per agent: running (not killed, or restarted since).
    pub(super) live: Vec<bool>,
    /// While split: the index of the first agent of the second half.
    pub(super) split: Option<usize>,
}

impl Layout {
    pub(super) fn is_live(&self, node: usize) -> bool {
        self.live[node]
    }

    pub(super) fn is_split(&self) -> bool {
        self.split.is_some()
    }

    /// The running agents, in name order.
    pub(super) fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.live.len()).filter(|&i| self.live[i])
    }

    /// 0 for the first half (or everyone, when not split), 1 for the second.
    pub(super) fn side(&self, node: usize) -> usize {
        self.split.map_or(0, |b| usize::from(node >= b))
    }

    /// The table's status cell: `dead`, `live`, or while split `live A` /
    /// `live B` (the half the node is in).
    pub(super) fn status(&self, node: usize) -> &'static str {
        match (self.live[node], self.split) {
            (false, _) => "dead",
            (true, None) => "live",
            (true, Some(b)) if node < b => "live A",
            (true, Some(_)) => "live B",
        }
    }
}

pub(super) struct Cluster {
    tasks: JoinSet<(String, Result<()>)>,
    agents: Vec<Agent>,
    /// Each agent's shutdown future completes when this turns true (or when
    /// the sender is dropped, so an early return stops them too).
    stop_tx: watch::Sender<bool>,
    /// While split: where the second half starts, and each half's secret.
    split: Option<(usize, [Secret; 2])>,
}

struct Agent {
    /// Its config, with the cluster's shared secret.
    config: Config,
    /// `None` once killed.
    running: Option<Running>,
}

struct Running {
    abort: AbortHandle,
    control: mpsc::Sender<Config>,
    snapshots: mpsc::Sender<SnapshotRequest>,
}

impl Cluster {
    /// Starts one agent per config.
    pub(super) fn start(configs: Vec<Config>) -> Cluster {
        let (stop_tx, _) = watch::channel(false);
        let agents = configs.into_iter().map(|config| Agent { config, running: None }).collect();
        let mut cluster = Cluster { tasks: JoinSet::new(), agents, stop_tx, split: None };
        for i in 0..cluster.agents.len() {
            cluster.spawn(i);
        }
        cluster
    }

    /// Which agents run, and where the cluster is split if it is.
    pub(super) fn layout(&self) -> Layout {
        Layout {
            live: self.agents.iter().map(|a| a.running.is_some()).collect(),
            split: self.split.as_ref().map(|(boundary, _)| *boundary),
        }
    }

    fn name(&self, i: usize) -> &str {
        &self.agents[i].config.node.name
    }

    /// The live agent that holds the baton now, as its own status says (what
    /// `herd status` shows), asked of every live agent in turn: one that
    /// holds it still, else one that is passing it (`Held::Passing`: the
    /// next node may have it already); `None` if none says so.
    pub(super) async fn holder(&self) -> Option<(usize, Held)> {
        let mut passing = None;
        for (i, a) in self.agents.iter().enumerate() {
            let Some(r) = &a.running else { continue };
            let (tx, rx) = oneshot::channel();
            if r.snapshots.send(tx).await.is_err() {
                continue;
            }
            match tokio::time::timeout(SNAPSHOT_TIMEOUT, rx).await {
                Ok(Ok(s)) if s.baton.holding && !s.baton.passing => return Some((i, Held::Still)),
                Ok(Ok(s)) if s.baton.holding => passing = passing.or(Some((i, Held::Passing))),
                _ => {}
            }
        }
        passing
    }

    /// Crashes agent `i` (see the module doc); false if it is dead already.
    pub(super) fn kill(&mut self, i: usize) -> bool {
        let Some(running) = self.agents[i].running.take() else { return false };
        running.abort.abort();
        true
    }

    /// Starts every killed agent again; returns which.
    pub(super) fn restart_dead(&mut self) -> Vec<usize> {
        let dead: Vec<usize> = (0..self.agents.len()).filter(|&i| self.agents[i].running.is_none()).collect();
        for &i in &dead {
            self.spawn(i);
        }
        dead
    }

    /// Gives each half of the names a fresh secret of its own; the second
    /// half starts at the middle ([`Layout::split`]). Needs two agents.
    /// `Err` (and nothing changed) if no random secret can be had.
    pub(super) fn split(&mut self) -> Result<()> {
        let secrets = [Secret(random_secret()?.into_bytes()), Secret(random_secret()?.into_bytes())];
        let boundary = self.agents.len() / 2;
        self.split = Some((boundary, secrets));
        self.hand_out();
        Ok(())
    }

    /// Gives every agent the shared secret back.
    pub(super) fn heal(&mut self) {
        self.split = None;
        self.hand_out();
    }

    /// Every live agent's config as it should be now, through its channel.
    fn hand_out(&mut self) {
        for i in 0..self.agents.len() {
            let config = self.config_for(i);
            if let Some(r) = &self.agents[i].running
                && r.control.try_send(config).is_err()
            {
                tracing::error!(node = %self.name(i), "cannot hand the agent its new keys (its queue is full)");
            }
        }
    }

    /// Agent `i`'s config with the keys of its half while split.
    fn config_for(&self, i: usize) -> Config {
        let mut config = self.agents[i].config.clone();
        if let Some((boundary, secrets)) = &self.split {
            let half = usize::from(i >= *boundary);
            config.gossip.keys = vec![secrets[half].clone()];
        }
        config
    }

    fn spawn(&mut self, i: usize) {
        let config = self.config_for(i);
        let name = config.node.name.clone();
        let mut stop = self.stop_tx.subscribe();
        let (control, configs) = mpsc::channel(CONTROL_QUEUE);
        let (snapshots, requests) = mpsc::channel(1);
        // Every log line of this agent names it: N agents share one process.
        // An error-level span, so it is on whatever level RUST_LOG asks for.
        let span = tracing::error_span!("agent", node = %name);
        let abort = self.tasks.spawn(
            async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                let control = Control { configs, snapshots: requests };
                (name, crate::agent::run_with(config, None, shutdown, control).await)
            }
            .instrument(span),
        );
        self.agents[i].running = Some(Running { abort, control, snapshots });
    }

    /// Completes when an agent ends on its own (an error, or a bug): the
    /// demo cannot go on. Killed agents do not count; with none running,
    /// never completes.
    pub(super) async fn failed(&mut self) -> anyhow::Error {
        loop {
            match self.tasks.join_next().await {
                None => std::future::pending::<()>().await,
                Some(Ok((name, Ok(())))) => return anyhow!("agent {name} stopped on its own"),
                Some(Ok((name, Err(e)))) => return anyhow!("agent {name} failed: {e:#}"),
                Some(Err(e)) if e.is_cancelled() => continue,
                Some(Err(e)) => return anyhow!("an agent task failed: {e}"),
            }
        }
    }

    /// Stops every live agent through its shutdown future (each announces
    /// its leave, as on SIGTERM) and waits for all to return; aborts them
    /// and fails after [`STOP_TIMEOUT`]. The first agent error, if any, is
    /// returned once all have ended.
    pub(super) async fn stop(&mut self) -> Result<()> {
        let _ = self.stop_tx.send(true);
        let deadline = tokio::time::sleep(STOP_TIMEOUT);
        tokio::pin!(deadline);
        let mut first_error = None;
        loop {
            tokio::select! {
                done = self.tasks.join_next() => match done {
                    None => break,
                    Some(Ok((_, Ok(())))) => {}
                    Some(Ok((name, Err(e)))) => {
                        first_error.get_or_insert(anyhow!("agent {name} failed while leaving: {e:#}"));
                    }
                    Some(Err(e)) if e.is_cancelled() => {}
                    Some(Err(e)) => {
                        first_error.get_or_insert(anyhow!("an agent task failed while leaving: {e}"));
                    }
                },
                _ = &mut deadline => {
                    self.tasks.abort_all();
                    bail!("agents did not stop within {} s", STOP_TIMEOUT.as_secs());
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// 128 bits from the operating system, as 32 hex digits: the cluster's
/// secret, so the demo's gossip is authenticated and encrypted like a real
/// cluster's, and nothing else can join it.
pub(super) fn random_secret() -> Result<String> {
    use rand::TryRng;
    let mut bytes = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| anyhow!("cannot get random bytes for the demo's secret: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_hex() {
        let (a, b) = (random_secret().unwrap(), random_secret().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
