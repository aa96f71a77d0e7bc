//! show: one run of the demo once its agents are up: the loop that takes
//! the metrics as they arrive, draws the table every second and acts on the
//! keys, until the run ends (`--seconds`, Ctrl-C, SIGTERM, `q`, stdout gone
//! or an agent failed); then the terminal put back, the agents stopped and
//! the summary printed.
//!
//! Must not: print anything after the summary but an error, or return
//! before every agent has stopped (unless acting on a key failed: then the
//! agents are aborted as the cluster is dropped).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::net::UdpSocket;

use super::cluster::{Cluster, Held};
use super::events::Events;
use super::keys::{Key, Keyboard};
use super::listener::{self, Stats};
use super::table::{Header, Screen, render};
use crate::agent::process;

/// How often the table is drawn.
const REFRESH: Duration = Duration::from_secs(1);
/// A run at least this long with no agent hearing another means discovery is
/// broken (heartbeats go out every second), not just slow.
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(3);

/// Why the demo stopped.
enum Stop {
    /// `--seconds` elapsed, or Ctrl-C / SIGTERM / `q`.
    Done,
    /// stdout is gone (e.g. piped into `head`): stop quietly.
    OutputClosed,
    /// An agent ended on its own: the demo cannot go on.
    AgentFailed(anyhow::Error),
}

/// Shows `cluster` (its agents started just now, named `names`) until the
/// run ends, then stops it and prints the summary. `listener` is the
/// embedded StatsD server the agents send to; with `keys`, stdin is put in
/// cbreak mode and read for the keys (the keys are off if it cannot be).
pub(super) async fn show(
    listener: &UdpSocket,
    cluster: Cluster,
    names: &[String],
    header: Header,
    screen: Screen,
    keys: bool,
) -> Result<()> {
    let started = Instant::now();
    // Only while the keys are on: stdin in cbreak mode, and the events area.
    let mut keyboard = keys.then(Keyboard::open).and_then(|opened| {
        let off = |e: &std::io::Error| {
            tracing::error!(error = %e, "cannot put the terminal in cbreak mode: the keys are off");
        };
        opened.inspect_err(off).ok()
    });
    let mut shown = Shown {
        header,
        stats: Stats::new(names),
        events: keyboard.is_some().then(|| Events::new(names, started)),
        cluster,
        screen,
        started,
    };
    let stop = shown.watch(listener, keyboard.as_mut()).await?;
    // The terminal as it was, before anything else is printed.
    drop(keyboard);
    shown.finish(stop).await
}

/// What one run shows, and the cluster it shows.
struct Shown {
    header: Header,
    stats: Stats,
    /// `Some` while the keys are on.
    events: Option<Events>,
    cluster: Cluster,
    screen: Screen,
    started: Instant,
}

impl Shown {
    /// Takes the metrics as they arrive, draws the table every [`REFRESH`]
    /// and acts on each key, until the run ends: `--seconds`, a signal, `q`,
    /// stdout gone or an agent failed. `Err` if a key could not be acted on.
    async fn watch(&mut self, listener: &UdpSocket, mut keyboard: Option<&mut Keyboard>) -> Result<Stop> {
        let mut tick = tokio::time::interval_at((self.started + REFRESH).into(), REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let signal = process::shutdown_signal();
        tokio::pin!(signal);
        let mut buf = vec![0u8; 65536];
        loop {
            let key = async {
                match keyboard.as_mut() {
                    Some(k) => k.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut signal => return Ok(Stop::Done),
                r = listener.recv(&mut buf) => listener::drain(listener, r, &mut buf, &mut self.stats),
                _ = tick.tick() => {
                    if let Some(stop) = self.tick() {
                        return Ok(stop);
                    }
                }
                Some(key) = key => {
                    if let Some(stop) = self.key(key).await? {
                        return Ok(stop);
                    }
                }
                why = self.cluster.failed() => return Ok(Stop::AgentFailed(why)),
            }
        }
    }

    /// Once a second: what arrived, into the events area, and the table.
    /// Stops when stdout is gone, or on the tick that ends `--seconds` (so a
    /// run of S seconds shows S tables).
    fn tick(&mut self) -> Option<Stop> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.started);
        let seen = self.stats.take_seen();
        if let Some(e) = self.events.as_mut() {
            e.observe(seen);
            let (passes, high) = self.stats.relay(now);
            e.tick(now, passes, high, &self.cluster.layout());
        }
        if self.draw(now, elapsed).is_err() {
            return Some(Stop::OutputClosed);
        }
        self.header.seconds.is_some_and(|s| elapsed >= s).then_some(Stop::Done)
    }

    /// A key: `q` stops; the others act on the cluster ([`press`]) and the
    /// table is drawn again at once.
    async fn key(&mut self, key: Key) -> Result<Option<Stop>> {
        let Some(e) = self.events.as_mut() else { return Ok(None) };
        if key == Key::Quit {
            return Ok(Some(Stop::Done));
        }
        let now = Instant::now();
        e.observe(self.stats.take_seen());
        press(key, now, &mut self.cluster, &self.stats, e).await?;
        Ok(self.draw(now, now - self.started).is_err().then_some(Stop::OutputClosed))
    }

    /// The table as of `now`, with the keys' status column and events area
    /// while they are on.
    fn draw(&mut self, now: Instant, elapsed: Duration) -> std::io::Result<()> {
        let layout = self.cluster.layout();
        let keys = self.events.as_ref().map(|e| (e, &layout));
        self.screen.draw(&render(&self.header, &mut self.stats, now, elapsed, keys))
    }

    /// Stops every agent and prints the summary of what the run showed;
    /// `Err` if an agent failed, or if no agent heard another (loopback
    /// multicast blocked).
    async fn finish(mut self, stop: Stop) -> Result<()> {
        let elapsed = self.started.elapsed();
        // What the run showed, before the agents' leaves change their gauges.
        let mut summary = self.stats.summary();
        if let Some(e) = &self.events {
            summary.push_str(&format!("; {}", e.counts));
        }
        let nodes = &self.stats.nodes;
        let nobody_heard = nodes.len() > 1 && nodes.iter().all(|n| n.most_members <= 1);

        let stopped = self.cluster.stop().await;
        match stop {
            Stop::AgentFailed(e) => return Err(e),
            Stop::OutputClosed => return stopped,
            Stop::Done => stopped?,
        }
        self.screen.line(&summary);
        if nobody_heard && elapsed >= DISCOVERY_DEADLINE {
            bail!(
                "no agent heard another in {:.0} s: multicast on the loopback interface seems blocked \
                 (`ip link show lo` should say MULTICAST; check the firewall for 127.0.0.1 port {})",
                elapsed.as_secs_f64(),
                self.header.port
            );
        }
        Ok(())
    }
}

/// What a key does to the cluster (all but `q`), told in the events area
/// with the cluster's layout after it. The holder `k` kills is the agent
/// whose own status says it holds the baton ([`Cluster::holder`]); between
/// two of them (a pass in flight), the last one the metrics name
/// ([`Stats::holder`]).
async fn press(
    key: Key,
    now: Instant,
    cluster: &mut Cluster,
    stats: &Stats,
    events: &mut Events,
) -> Result<()> {
    match key {
        Key::Kill => {
            let layout = cluster.layout();
            if layout.live().count() < 2 {
                events.refused(now, "k: one node left: it is spared (r restarts the dead)");
                return Ok(());
            }
            let asked = cluster.holder().await;
            let last_gauge = || stats.holder(|i| layout.is_live(i)).map(|i| (i, Held::LastGauge));
            let Some((holder, held)) = asked.or_else(last_gauge) else {
                events.refused(now, "k: no baton seen yet (the relay starts 2 s after the agents)");
                return Ok(());
            };
            if cluster.kill(holder) {
                events.killed(now, holder, held, &cluster.layout());
            }
        }
        Key::Restart => {
            let restarted = cluster.restart_dead();
            if restarted.is_empty() {
                events.refused(now, "r: nobody is dead (k kills the baton's holder)");
            } else {
                events.restarted(now, &restarted);
            }
        }
        Key::Partition if cluster.layout().is_split() => {
            cluster.heal();
            events.healed(now);
        }
        Key::Partition => {
            if stats.nodes.len() < 2 {
                events.refused(now, "p: one node cannot be split (--nodes 2 or more)");
                return Ok(());
            }
            cluster.split()?;
            events.split(now, &cluster.layout());
        }
        Key::Quit => {}
    }
    Ok(())
}
