//! Scale on the simulator: what one node sends and receives at 32 and at
//! 256 members with the baton relaying at the default pace and every node
//! gossiping its health, and that detection, leaves and joins keep their
//! bounds at 256. Every figure is printed as a `SIM |` line.

use std::time::Duration;

use herd::core::membership::{Change, MemberState};

use crate::harness::{HEARTBEAT, SECOND, Sim, Traffic};

/// Per node and second, averaged over the running nodes: datagrams and
/// bytes sent, datagrams and bytes received, and the busiest node's bytes
/// received.
#[derive(Debug, Clone, Copy)]
struct Rates {
    sent_dg: f64,
    sent_b: f64,
    recv_dg: f64,
    recv_b: f64,
    worst_recv_b: f64,
}

/// A cluster of `n` with the baton at `hold = "100ms"` and every node's
/// health set, formed and settled.
fn settled(n: usize, seed: u64) -> Sim {
    let sim = Sim::settled(n, seed, 28 * SECOND);
    for a in 0..n {
        let live = sim.node(a).cluster_size();
        assert_eq!(live, n, "node {a} lists {live} of {n}");
    }
    sim
}

fn measure(sim: &mut Sim, window: Duration) -> Rates {
    sim.reset_traffic();
    sim.run_for(window);
    let n = sim.nodes.len() as f64;
    let s = window.as_secs_f64();
    let sum = |v: &[Traffic], f: fn(&Traffic) -> u64| v.iter().map(f).sum::<u64>() as f64 / n / s;
    Rates {
        sent_dg: sum(&sim.sent, |t| t.datagrams),
        sent_b: sum(&sim.sent, |t| t.bytes),
        recv_dg: sum(&sim.received, |t| t.datagrams),
        recv_b: sum(&sim.received, |t| t.bytes),
        worst_recv_b: sim.received.iter().map(|t| t.bytes).max().unwrap_or(0) as f64 / s,
    }
}

fn report(n: usize, r: Rates) {
    println!(
        "SIM | traffic | {n} nodes, baton at 100 ms, 120 s | per node: sent {:.2} dg/s {:.0} B/s, received {:.2} dg/s {:.0} B/s (busiest {:.0} B/s)",
        r.sent_dg, r.sent_b, r.recv_dg, r.recv_b, r.worst_recv_b
    );
}

#[test]
fn per_node_traffic_at_256_stays_within_twice_that_at_32() {
    let mut small = settled(32, 1);
    let at32 = measure(&mut small, 120 * SECOND);
    report(32, at32);
    // The traffic budget per node at 32 agents.
    assert!(at32.sent_dg <= 6.0, "{at32:?}");
    assert!(at32.sent_b <= 600.0, "{at32:?}");
    assert!(at32.recv_b <= 1500.0, "{at32:?}");
    let mut big = settled(256, 2);
    let at256 = measure(&mut big, 120 * SECOND);
    report(256, at256);
    for (what, a, b) in [
        ("datagrams sent", at32.sent_dg, at256.sent_dg),
        ("bytes sent", at32.sent_b, at256.sent_b),
        ("datagrams received", at32.recv_dg, at256.recv_dg),
        ("bytes received", at32.recv_b, at256.recv_b),
    ] {
        assert!(b <= 2.0 * a, "{what}: {b:.1}/s at 256 against {a:.1}/s at 32");
    }
}

#[test]
fn at_256_a_crash_a_leave_and_a_join_keep_their_bounds() {
    let mut sim = settled(256, 3);
    let n = sim.nodes.len();
    // Crash: every survivor marks it down within down_after + one heartbeat.
    let t0 = sim.elapsed();
    sim.kill(100);
    sim.run_for(10 * SECOND);
    let mut worst = Duration::ZERO;
    for o in (0..n).filter(|&o| o != 100) {
        let at = sim.first(o, 100, t0, |c| matches!(c, Change::Down { .. })).expect("crash detected by all");
        worst = worst.max(at - t0);
    }
    println!("SIM | crash | 256 nodes, kill -9 | seen down by all 255 within {worst:?}");
    assert!(worst <= Duration::from_secs(5) + HEARTBEAT, "detection took {worst:?}");
    // Leave: at once.
    let t1 = sim.elapsed();
    sim.stop(200);
    sim.run_for(SECOND);
    let mut worst_leave = Duration::ZERO;
    for o in (0..n).filter(|&o| o != 100 && o != 200) {
        let at = sim.first(o, 200, t1, |c| matches!(c, Change::Left)).expect("leave seen by all");
        worst_leave = worst_leave.max(at - t1);
    }
    println!("SIM | leave | 256 nodes | seen by all 254 within {worst_leave:?}");
    assert!(worst_leave < Duration::from_millis(10));
    // Join: the crashed node comes back as a new life; all see it, it sees all.
    let t2 = sim.elapsed();
    sim.start(100);
    sim.run_for(2 * SECOND);
    let mut worst_join = Duration::ZERO;
    for o in (0..n).filter(|&o| o != 100 && o != 200) {
        let seen = sim.first(o, 100, t2, |c| matches!(c, Change::Up)).expect("the newcomer is seen");
        let sees = sim.first(100, o, t2, |c| matches!(c, Change::Up)).expect("the newcomer sees all");
        worst_join = worst_join.max(seen - t2).max(sees - t2);
    }
    println!("SIM | join | 256 nodes | seen by all and seeing all within {worst_join:?}");
    assert!(worst_join <= HEARTBEAT + Duration::from_millis(100));
    let baton_holders = sim.holders().len();
    assert!(baton_holders <= 1, "{baton_holders} batons");
}

#[test]
fn no_false_down_at_32_nodes_in_a_simulated_hour_at_20_percent_loss() {
    let mut sim = settled(32, 4);
    let t0 = sim.elapsed();
    sim.loss = 0.20;
    sim.run_for(Duration::from_secs(3600));
    let downs =
        sim.member_events(|c| matches!(c, Change::Down { .. })).into_iter().filter(|e| e.0 >= t0).count();
    let suspects =
        sim.member_events(|c| matches!(c, Change::Suspect { .. })).into_iter().filter(|e| e.0 >= t0).count();
    println!(
        "SIM | loss | 32 nodes, 1 h at 20 % loss, baton at 100 ms | {downs} false downs, {suspects} suspicions"
    );
    assert_eq!(downs, 0);
    for a in 0..32 {
        for b in (0..32).filter(|&b| b != a) {
            assert!(sim.state(a, b).is_some_and(MemberState::is_live), "{a} sees {b}");
        }
    }
}
