//! Gossiped health on the simulator: every node learns every other's health
//! and links from heartbeats alone, a new life starts afresh, a heartbeat
//! with health and 31 links fits the MTU, and what health adds to each
//! node's traffic at 8, 16 and 32 nodes stays under half of the traffic
//! budget (600 B/s sent, 1.5 KB/s received per node at 32). Figures are
//! printed as `SIM |` lines.

use std::time::Duration;

use herd::core::health::Health;
use herd::core::wire::MAX_DATAGRAM;

use crate::harness::{SECOND, Sim, pi_health};

/// A cluster of `n` with health set, run until every link has been probed
/// and reported: each peer is probed once every n-1 seconds; refreshes
/// follow within max(10, n/2) heartbeat intervals.
fn settled(n: usize, seed: u64) -> Sim {
    Sim::settled(n, seed, Duration::from_secs(n as u64 + 40))
}

#[test]
fn every_node_knows_every_nodes_health_and_links() {
    let n = 6;
    let mut sim = settled(n, 11);
    for a in 0..n {
        let board = sim.node(a).board();
        for b in (0..n).filter(|&b| b != a) {
            let g = board.get(&sim.nodes[b].name).unwrap_or_else(|| panic!("{a} has nothing from {b}"));
            assert_eq!(g.health.as_ref(), Some(&pi_health(b)), "{a}'s view of {b}");
            assert_eq!(g.incarnation, sim.nodes[b].incarnation);
            // b's row: a link to every other node, none to itself.
            let peers: Vec<&str> = g.links.iter().map(|(p, _)| p.as_str()).collect();
            let want: Vec<&str> = (0..n).filter(|&c| c != b).map(|c| sim.nodes[c].name.as_str()).collect();
            assert_eq!(peers, want, "{a}'s row for {b}");
            for (peer, r) in &g.links {
                assert_eq!(r.loss_pct, 0, "{b} -> {peer}");
                assert!(r.rtt_cms.is_some(), "{b} -> {peer}");
            }
        }
    }
    // A new health reaches everyone with the next heartbeats; a restarted
    // node is a new life whose old health is not shown as current.
    let hot = Health { temp_dc: Some(812), ..pi_health(2) };
    sim.nodes[2].node.as_mut().unwrap().set_health(hot.clone());
    sim.kill(3);
    sim.run_for(SECOND);
    sim.start(3);
    sim.run_for(20 * SECOND);
    for a in (0..n).filter(|&a| a != 2 && a != 3) {
        let board = sim.node(a).board();
        assert_eq!(board.get("psc").and_then(|g| g.health.as_ref()), Some(&hot), "{a}");
        let d = board.get("psd").expect("the new life is on the board");
        assert_eq!(d.incarnation, sim.nodes[3].incarnation);
        assert_eq!(d.health, None, "the restarted psd has set no health yet");
    }
}

#[test]
fn health_fits_the_mtu_and_half_the_traffic_budget() {
    // The traffic budget per node at 32: 600 B/s sent, 1.5 KB/s received.
    let (sent_budget, recv_budget) = (600.0, 1500.0);
    for n in [8, 16, 32] {
        let mut sim = settled(n, 20 + n as u64);
        let before: Vec<(u64, u64)> = (0..n).map(|i| sim.node(i).health_bytes()).collect();
        sim.reset_traffic();
        sim.capture = Some(Vec::new());
        let window = 120 * SECOND;
        sim.run_for(window);
        let secs = window.as_secs_f64();
        let per_node = |f: fn((u64, u64), (u64, u64)) -> u64| {
            (0..n).map(|i| f(sim.node(i).health_bytes(), before[i])).sum::<u64>() as f64 / n as f64 / secs
        };
        let sent = per_node(|now, was| now.0 - was.0);
        let received = per_node(|now, was| now.1 - was.1);
        let total_sent = sim.sent.iter().map(|t| t.bytes).sum::<u64>() as f64 / n as f64 / secs;
        let total_recv = sim.received.iter().map(|t| t.bytes).sum::<u64>() as f64 / n as f64 / secs;
        let captured = sim.capture.take().unwrap();
        let biggest = captured.iter().map(|(_, _, b)| b.len()).max().unwrap_or(0);
        println!(
            "SIM | health | {n} nodes, baton at 100 ms, 120 s | health adds per node {sent:.0} B/s sent, \
             {received:.0} B/s received; all traffic {total_sent:.0} B/s sent, {total_recv:.0} B/s received; \
             largest datagram {biggest} B"
        );
        assert!(biggest <= MAX_DATAGRAM, "{biggest} B");
        assert!(sent > 0.0 && received > 0.0, "no health gossiped at {n}");
        assert!(sent <= sent_budget / 2.0, "{n}: {sent:.0} B/s sent for health");
        assert!(received <= recv_budget / 2.0, "{n}: {received:.0} B/s received for health");
        assert!(
            total_sent <= sent_budget && total_recv <= recv_budget,
            "{n}: {total_sent:.0} / {total_recv:.0}"
        );
    }
}
