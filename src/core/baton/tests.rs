//! The relay alone, with a member table and the node's side played by
//! hand: what a stall does to a baton held across it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::{BatonConfig, BatonEvent, Relay, RelayCtx};
use crate::core::effects::{Effect, Effects};
use crate::core::membership::{Hello, Members, Timing};
use crate::core::timings::Timings;
use crate::core::wire::{BatonId, BatonView, Lap};

const MS: Duration = Duration::from_millis(1);

fn setup(now: Instant) -> (Relay, Members) {
    let cfg = BatonConfig {
        enabled: true,
        main_node: String::new(),
        hold: 100 * MS,
        pass_timeout: 250 * MS,
        max_retries: 3,
        regenerate_after: 3000 * MS,
    };
    let timings = Timings::from_heartbeat(1000 * MS);
    let timing =
        Timing { suspect_after: 3000 * MS, down_after: 5000 * MS, probe_every: 250 * MS, settle: 4000 * MS };
    let mut members = Members::new(8, timing);
    let addr = SocketAddr::from(([10, 0, 0, 2], 45893));
    let hello = Hello { gossip_addr: addr, data_addr: addr, relays: true };
    members.admit(now, "psb", 1, 1, Some(hello), &mut Effects::default());
    (Relay::new(cfg, timings, "psa", now), members)
}

fn passed(out: &Effects) -> Vec<u64> {
    out.iter()
        .filter_map(
            |e| if let Effect::Baton(BatonEvent::Passed { counter }) = e { Some(*counter) } else { None },
        )
        .collect()
}

/// Without asks (views only in the periodic heartbeats), a baton held
/// across a stall is not passed before the wait; a greater baton heard
/// meanwhile drops it, and none is ever gauged.
#[test]
fn a_stalled_holder_waits_for_views_and_drops_a_superseded_baton() {
    for superseded in [true, false] {
        let t0 = Instant::now();
        let (mut relay, members) = setup(t0);
        relay.set_ask_first(false);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Effects::default();
        let id = BatonId { epoch: 1, origin: 7 };
        let src = SocketAddr::from(([10, 0, 0, 2], 45893));
        let mut ctx = RelayCtx { now: t0, members: &members, rng: &mut rng, out: &mut out };
        relay.on_pass(&mut ctx, src, id, 10, &Lap::default());
        // Frozen past the hold; on waking it settles for an interval and a quarter.
        let woke = t0 + 4000 * MS;
        relay.stalled(woke, 1250 * MS, &mut out);
        assert!(out.iter().any(|e| *e == Effect::AskViews));
        let mut ctx = RelayCtx { now: woke, members: &members, rng: &mut rng, out: &mut out };
        relay.handle_timeout(&mut ctx);
        assert!(passed(&out).is_empty(), "passed at once on waking");
        let view =
            |id, counter| BatonView { id, counter, baton_counter: 0, settled: 0, age_ms: 0, holding: true };
        if superseded {
            relay.on_view(woke + 900 * MS, view(BatonId { epoch: 2, origin: 9 }, 40), &mut out);
        } else {
            relay.on_view(woke + 900 * MS, view(id, 40), &mut out);
        }
        let mut ctx = RelayCtx { now: woke + 1000 * MS, members: &members, rng: &mut rng, out: &mut out };
        relay.handle_timeout(&mut ctx);
        assert!(passed(&out).is_empty(), "passed before the wait");
        let mut ctx = RelayCtx { now: woke + 1250 * MS, members: &members, rng: &mut rng, out: &mut out };
        relay.handle_timeout(&mut ctx);
        if superseded {
            assert!(passed(&out).is_empty() && relay.holding().is_none(), "{out:?}");
        } else {
            assert_eq!(passed(&out), vec![41], "above every counter heard");
        }
    }
}
