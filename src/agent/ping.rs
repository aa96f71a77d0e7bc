//! ping: `herd ping [--count N]`, a one-off measure of the links. Joins
//! the cluster briefly as a member that does not relay the baton (named
//! `<node>-ping-<pid>`, on an ephemeral data port, with the config's secret),
//! lets the members answer its first heartbeat, probes every member `count`
//! times, prints RTT, jitter and loss per member, and leaves gracefully.
//!
//! It drives the same core and sockets as `herd run`, set up the same way
//! (`setup`); it must not send metrics, serve status, or take the baton.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rand::rngs::SmallRng;

use super::driver::{Driver, Inputs, Turn};
use super::setup::{self, Helpers};
use crate::config::Config;
use crate::core::links::LinkConfig;
use crate::core::node::Node;

/// Time between two probes of one member.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// Runs the ping and returns the table to print. Err when no member answered.
pub async fn run(mut config: Config, count: usize) -> Result<String> {
    let count = count.max(1);
    let base = format!("{}-ping-{}", config.node.name, std::process::id());
    config.node.name = base.chars().take(crate::core::wire::MAX_NAME).collect();
    config.gossip.data_port = 0;
    config.baton.enabled = false;
    let (sockets, mut cfg) = setup::bind(&config, None)?;
    cfg.tuning.links = LinkConfig { probe_interval: PROBE_EVERY, window: count, sweep: true };
    let (resolver, seeds) = setup::start_resolver(&config, &cfg);
    let (watch, network) = setup::start_network_watch();
    let started = Instant::now();
    // Members answer our first heartbeat at once; allow a whole interval for
    // the static and DNS strategies, then `count` probe rounds, then a second
    // for the last answers.
    let end =
        started + config.gossip.heartbeat_interval + PROBE_EVERY * count as u32 + Duration::from_secs(1);
    let (shutdown, timer) = setup::start_shutdown(tokio::time::sleep_until(end.into()));
    let node = Node::new(cfg, rand::make_rng::<SmallRng>(), started);
    let inputs = Inputs { shutdown: Some(shutdown), seeds, network, status: None, reload: None, apply: None };
    let mut driver = Driver::quiet(&config, node, sockets, inputs);
    let helpers = Helpers::new([resolver, watch, Some(timer)]);
    if let Some(why) = driver.waiting() {
        bail!("cannot ping: no network ({why})");
    }
    while driver.turn().await == Turn::Continue {}
    let now = Instant::now();
    let stats = driver.node().link_stats(now);
    let rejected = driver.node().rejections();
    driver.leave();
    drop(helpers);
    if stats.is_empty() {
        let hint = if rejected.auth > 0 {
            format!(" ({} datagrams failed authentication: is [gossip] secret the cluster's?)", rejected.auth)
        } else {
            String::new()
        };
        bail!("no member of cluster {:?} answered within {:?}{hint}", config.node.cluster, end - started);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<22} {:>9} {:>10} {:>7}",
        "member", "address", "rtt ms", "jitter ms", "loss %"
    );
    for s in &stats {
        let addr = driver.node().members().get(&s.peer).map(|m| m.data_addr.to_string()).unwrap_or_default();
        let f = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
        let _ = writeln!(
            out,
            "{:<16} {:<22} {:>9} {:>10} {:>7}",
            s.peer,
            addr,
            f(s.rtt_ms, 3),
            f(s.jitter_ms, 3),
            f(s.loss_pct, 1)
        );
    }
    Ok(out)
}
