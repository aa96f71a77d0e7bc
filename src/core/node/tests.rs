//! The node alone, with datagrams handed in: what needs no simulated
//! network (the simulator in tests/sim does not loop multicast back).

use rand::SeedableRng;
use rand::rngs::SmallRng;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Dest, Event, Fanout, Identity, Node, NodeConfig, Tuning, Via};
use crate::core::baton::BatonConfig;
use crate::core::links::LinkConfig;

const NAME: &str = "raspberrypi";

fn config(ip: Ipv4Addr, incarnation: u64) -> NodeConfig {
    let identity = Identity {
        name: NAME.into(),
        cluster: "lab".into(),
        incarnation,
        max_members: 256,
        data_port: 45893,
        ip,
        gossip_port: 45892,
        fanout: Fanout::Group,
    };
    let tuning = Tuning {
        keys: vec![b"one secret".to_vec()],
        heartbeat_interval: Duration::from_secs(1),
        suspect_after: Duration::from_secs(3),
        down_after: Duration::from_secs(5),
        baton: BatonConfig {
            enabled: false,
            main_node: String::new(),
            hold: Duration::from_millis(100),
            pass_timeout: Duration::from_millis(250),
            max_retries: 3,
            regenerate_after: Duration::from_secs(3),
        },
        links: LinkConfig { probe_interval: Duration::from_secs(1), window: 60, sweep: false },
    };
    NodeConfig { identity, tuning, reserved: None }
}

/// The next heartbeat `node` sends to the group, at `now`.
fn heartbeat(node: &mut Node<SmallRng>, now: Instant) -> Vec<u8> {
    node.handle_timeout(now);
    let mut found = None;
    while let Some(t) = node.poll_transmit() {
        if t.dest == Dest::Group {
            found = Some(t.payload);
        }
    }
    found.expect("a heartbeat to the group")
}

fn from(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), 45892)
}

#[test]
fn a_namesake_started_in_the_same_millisecond_is_a_conflict_and_the_own_loopback_is_not() {
    let (ip_a, ip_b) = (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2));
    let t0 = Instant::now();
    let incarnation = 1_796_604_009_984;
    let mut a = Node::new(config(ip_a, incarnation), SmallRng::seed_from_u64(1), t0);
    let mut b = Node::new(config(ip_b, incarnation), SmallRng::seed_from_u64(2), t0);

    // Its own multicast, looped back: nothing.
    let own = heartbeat(&mut a, t0);
    a.handle(t0, Via::Gossip, from(ip_a), &mut own.clone());
    assert!(a.name_conflicts(t0).is_empty());
    assert_eq!(a.rejections().name_conflict, 0);

    // The namesake's heartbeat: same name, same incarnation, another IP.
    let t1 = t0 + Duration::from_millis(3);
    a.handle(t1, Via::Gossip, from(ip_b), &mut heartbeat(&mut b, t0));
    let conflicts: Vec<(IpAddr, u64)> =
        a.name_conflicts(t1).iter().map(|c| (c.addr(), c.incarnation)).collect();
    assert_eq!(conflicts, [(IpAddr::V4(ip_b), incarnation)]);
    assert_eq!(a.rejections().name_conflict, 1);
    let events: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e, Event::NameConflict(h) if h.addr == IpAddr::V4(ip_b))),
        "{events:?}"
    );

    // Renumbered (DHCP): a heartbeat it sent with its old IP, still on its
    // way back, is its own too.
    let ip_new = Ipv4Addr::new(10, 77, 0, 9);
    a.set_ip(t0 + Duration::from_secs(1), ip_new);
    let t2 = t0 + Duration::from_secs(2);
    let after = heartbeat(&mut a, t2);
    a.handle(t2, Via::Gossip, from(ip_a), &mut own.clone());
    a.handle(t2, Via::Gossip, from(ip_new), &mut after.clone());
    assert_eq!(a.rejections().name_conflict, 1, "its own heartbeats, old IP and new");
    assert_eq!(a.name_conflicts(t2).len(), 1);
}
