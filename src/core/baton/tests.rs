//! The relay alone, with a member table and the node's side played by
//! hand: what a stall does to a baton held across it, and what a reload
//! that takes a node out of the relay, or back in, does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::{BatonConfig, BatonEvent, Relay, RelayCtx};
use crate::core::effects::{Effect, Effects, Unicast};
use crate::core::membership::{Hello, Members, Timing};
use crate::core::timings::Timings;
use crate::core::wire::{BatonId, BatonView, Lap, PassAck, PassVerdict};

const MS: Duration = Duration::from_millis(1);

/// psb's address, both sockets.
const PSB: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 45893);

fn config(enabled: bool) -> BatonConfig {
    BatonConfig {
        enabled,
        main_node: String::new(),
        hold: 100 * MS,
        pass_timeout: 250 * MS,
        max_retries: 3,
        regenerate_after: 3000 * MS,
    }
}

fn timings() -> Timings {
    Timings::from_heartbeat(1000 * MS)
}

/// psb's heartbeat (its `seq`), saying whether it relays.
fn heartbeat(members: &mut Members, now: Instant, seq: u64, relays: bool, out: &mut Effects) {
    let hello = Hello { gossip_addr: PSB, data_addr: PSB, relays };
    members.admit(now, "psb", 1, seq, Some(hello), out);
}

/// psa's relay (`enabled`) and a member table with psb, which relays.
fn setup_with(now: Instant, enabled: bool) -> (Relay, Members) {
    let timing = Timing { settle: 4000 * MS };
    let mut members = Members::new(8, timing);
    heartbeat(&mut members, now, 1, true, &mut Effects::default());
    (Relay::new(config(enabled), timings(), "psa", now), members)
}

fn setup(now: Instant) -> (Relay, Members) {
    setup_with(now, true)
}

/// The passes sent, as (to, counter).
fn sent_passes(out: &Effects) -> Vec<(SocketAddr, u64)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg: Unicast::Pass { counter, .. } } => Some((*to, *counter)),
            _ => None,
        })
        .collect()
}

/// The verdicts of the acks sent.
fn verdicts(out: &Effects) -> Vec<PassVerdict> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Send { msg: Unicast::PassAck(ack), .. } => Some(ack.verdict),
            _ => None,
        })
        .collect()
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

/// Taken out of the relay while psb does not relay either, psa keeps the
/// baton; back in, it still finds nobody to pass to and keeps it, with no
/// deadline; psb's heartbeat saying it relays again is reported by the
/// member table, and the baton moves on that, above its counter.
#[test]
fn a_baton_held_alone_moves_when_a_peer_relays_again() {
    let t0 = Instant::now();
    let (mut relay, mut members) = setup(t0);
    let mut rng = SmallRng::seed_from_u64(2);
    let id = BatonId { epoch: 1, origin: 7 };
    let mut out = Effects::default();
    let mut ctx = RelayCtx { now: t0, members: &members, rng: &mut rng, out: &mut out };
    relay.on_pass(&mut ctx, PSB, id, 10, &Lap::default());

    // psb is out of the relay (its reload), then psa (its own).
    let mut out = Effects::default();
    heartbeat(&mut members, t0 + 10 * MS, 2, false, &mut out);
    assert!(out.iter().any(|e| *e == Effect::Relays { name: "psb".into(), relays: false }), "{out:?}");
    let off = t0 + 20 * MS;
    relay.set_config(config(false), timings(), off);
    assert_eq!(relay.poll_timeout(), Some(off), "passed on at its next turn");
    let mut ctx = RelayCtx { now: off, members: &members, rng: &mut rng, out: &mut out };
    relay.handle_timeout(&mut ctx);
    assert!(passed(&out).is_empty() && sent_passes(&out).is_empty(), "nobody relays: {out:?}");
    assert_eq!(relay.holding(), Some((id, 10)), "kept, not lost");
    assert_eq!(relay.poll_timeout(), None);

    // psa back in first: its next turn comes at once, and still finds nobody.
    let on = t0 + 5000 * MS;
    relay.set_config(config(true), timings(), on);
    assert_eq!(relay.poll_timeout(), Some(on));
    let mut out = Effects::default();
    let mut ctx = RelayCtx { now: on, members: &members, rng: &mut rng, out: &mut out };
    relay.handle_timeout(&mut ctx);
    assert!(passed(&out).is_empty(), "{out:?}");
    assert_eq!(relay.poll_timeout(), None, "held alone");

    // psb back in: its heartbeat is a change the relay hears of.
    let back = on + 300 * MS;
    let mut out = Effects::default();
    heartbeat(&mut members, back, 3, true, &mut out);
    assert!(out.iter().any(|e| *e == Effect::Relays { name: "psb".into(), relays: true }), "{out:?}");
    let mut ctx = RelayCtx { now: back, members: &members, rng: &mut rng, out: &mut out };
    relay.on_members_changed(&mut ctx);
    let first = passed(&out);
    assert!(first.first().is_some_and(|&c| c == 11), "{out:?}");
    assert!(relay.view(back).is_some_and(|v| v.id == id), "the same baton");
}

/// Out of the relay, a node starts no baton and takes none; a resend of a
/// pass it took before is acknowledged again (else its sender would skip it
/// and pass a second baton). The baton it took goes on to psb at its next
/// turn, not to itself; refused there, it stays here with no gauge and no
/// deadline.
#[test]
fn out_of_the_relay_a_node_starts_takes_and_gauges_nothing() {
    let t0 = Instant::now();
    let (mut relay, members) = setup_with(t0, false);
    let mut rng = SmallRng::seed_from_u64(3);
    let id = BatonId { epoch: 1, origin: 7 };
    assert_eq!(relay.poll_timeout(), None);
    let mut out = Effects::default();
    for at in [t0, t0 + 5000 * MS, t0 + 60_000 * MS] {
        let mut ctx = RelayCtx { now: at, members: &members, rng: &mut rng, out: &mut out };
        relay.handle_timeout(&mut ctx);
    }
    let mut ctx = RelayCtx { now: t0 + 60_000 * MS, members: &members, rng: &mut rng, out: &mut out };
    relay.on_pass(&mut ctx, PSB, id, 10, &Lap::default());
    assert_eq!(verdicts(&out), [PassVerdict::Refused]);
    assert!(out.iter().all(|e| matches!(e, Effect::Send { .. })), "no event: {out:?}");
    assert_eq!(relay.holding(), None);

    // Taken while in the relay, then taken out of it before the resend.
    let (mut relay, members) = setup(t0);
    let mut out = Effects::default();
    let mut ctx = RelayCtx { now: t0, members: &members, rng: &mut rng, out: &mut out };
    relay.on_pass(&mut ctx, PSB, id, 10, &Lap::default());
    let off = t0 + 10 * MS;
    relay.set_config(config(false), timings(), off);
    let mut out = Effects::default();
    let mut ctx = RelayCtx { now: off, members: &members, rng: &mut rng, out: &mut out };
    relay.on_pass(&mut ctx, PSB, id, 10, &Lap::default());
    assert_eq!(verdicts(&out), [PassVerdict::Taken], "a resend of what it took");

    // Its next turn is now: the baton goes to psb, once.
    assert_eq!(relay.poll_timeout(), Some(off));
    let mut out = Effects::default();
    let mut ctx = RelayCtx { now: off, members: &members, rng: &mut rng, out: &mut out };
    relay.handle_timeout(&mut ctx);
    assert_eq!(passed(&out), [11]);
    assert_eq!(sent_passes(&out), [(PSB, 11)]);

    // psb was taken out too (its heartbeat has not said so yet): refused.
    let refused = PassAck { id: Some(id), counter: 11, verdict: PassVerdict::Refused, delay_us: 0 };
    let mut out = Effects::default();
    let mut ctx = RelayCtx { now: off + 2 * MS, members: &members, rng: &mut rng, out: &mut out };
    relay.on_ack(&mut ctx, "psb", refused);
    assert!(passed(&out).is_empty() && sent_passes(&out).is_empty(), "{out:?}");
    assert_eq!(relay.holding(), Some((id, 11)), "kept here");
    assert_eq!(relay.poll_timeout(), None);
}
