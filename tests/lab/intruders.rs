//! Scenario 5: intruders. Hosts 1-4 run herd with secret A; host 5 runs herd
//! with secret B under the same cluster name, and is never admitted. Then
//! host 5 plays an attacker on the wire: it captures the good cluster's
//! sealed heartbeats from the multicast group and sends them back (replays),
//! altered in one bit, and cut short. Every such datagram must be refused and
//! counted in the right `rejected` class of each host that received it, with
//! no effect on membership, while the baton keeps moving.
//!
//! How herd counts (src/core/wire/, src/core/node/): a datagram is judged once per
//! receiving agent. A replay authenticates, then fails the sender's replay
//! window (`replay`), except that an agent's own datagram coming back to it is
//! dropped uncounted (it takes it for multicast loopback). A flipped bit
//! fails authentication (`auth`), unless it is in the 4-byte plain header:
//! magic, version and unknown flags are `malformed`, the sealed flag cleared
//! is `auth` (unauthenticated). A sealed datagram shorter than header + tag
//! (48 bytes: plain header 4, key id 4, nonce 24, tag 16) is `malformed`
//! (truncated); a longer cut fails its tag (`auth`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Agent, gauges, member, random_bytes, toml_str, wait_until};
use crate::harness::{
    GOSSIP_PORT, GROUP, Lab, assert_monotonic, expect_mesh, longest_gap, rejections, report,
};

const GOOD: usize = 4;
const INTRUDER: usize = 5;
/// Each captured datagram is sent this many times per target path.
const REPEAT: usize = 3;
/// Sealed header (magic, version, flags, 4-byte key id, 24-byte nonce) plus
/// the 16-byte tag: the codec's `SEALED_HEADER + TAG_LEN`.
const SEALED_MIN: usize = 4 + 4 + 24 + 16;

/// Expected or measured counts per rejection class.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    auth: u64,
    replay: u64,
    malformed: u64,
}

impl Counts {
    fn add(&mut self, class: Class, n: u64) {
        match class {
            Class::Auth => self.auth += n,
            Class::Replay => self.replay += n,
            Class::Malformed => self.malformed += n,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Auth,
    Replay,
    Malformed,
}

/// A captured heartbeat: the good host that sent it, and its bytes.
struct Captured {
    from: usize,
    bytes: Vec<u8>,
}

/// A datagram to send in a phase, and what each target should make of it
/// (`None`: dropped uncounted).
struct Shot {
    bytes: Vec<u8>,
    verdict: fn(target: usize, from: usize) -> Option<Class>,
    from: usize,
}

/// A cheap xorshift for positions and lengths.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng(u64::from_le_bytes(random_bytes(8).try_into().unwrap()) | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn counts(r: &BTreeMap<String, u64>) -> Counts {
    let get = |k: &str| r.get(k).copied().unwrap_or(0);
    Counts { auth: get("auth"), replay: get("replay"), malformed: get("malformed") }
}

fn delta(before: Counts, after: Counts) -> Counts {
    Counts {
        auth: after.auth - before.auth,
        replay: after.replay - before.replay,
        malformed: after.malformed - before.malformed,
    }
}

/// The outcome of one attack phase, per good host.
struct Phase {
    name: &'static str,
    sent: usize,
    expected: BTreeMap<usize, Counts>,
    before: BTreeMap<usize, Counts>,
    after: BTreeMap<usize, Counts>,
    secs: f64,
}

impl Phase {
    /// Panics unless every good host counted at least 90 % of what it should
    /// have in each class, and no more than that plus noise: host 5's own
    /// heartbeats (secret B) are `auth` rejections at 1/s.
    fn check(&self) {
        let intruder_heartbeats = (self.secs * 1.15).ceil() as u64 + 2;
        for (i, exp) in &self.expected {
            let got = delta(self.before[i], self.after[i]);
            for (class, e, g, noise) in [
                ("auth", exp.auth, got.auth, intruder_heartbeats),
                ("replay", exp.replay, got.replay, 2),
                ("malformed", exp.malformed, got.malformed, 2),
            ] {
                assert!(
                    g * 10 >= e * 9 && g <= e + noise,
                    "{}: n{i} counted {g} {class} rejections, expected {e} (+ up to {noise} noise); \
                     all expected {exp:?}, got {got:?}",
                    self.name
                );
            }
        }
    }

    fn summary(&self) -> String {
        let show = |m: &BTreeMap<usize, Counts>, i: usize| {
            let c = m[&i];
            format!("{}/{}/{}", c.auth, c.replay, c.malformed)
        };
        let per: Vec<String> = self
            .expected
            .keys()
            .map(|&i| {
                let e = self.expected[&i];
                format!(
                    "n{i} {}->{} (exp +{}/{}/{})",
                    show(&self.before, i),
                    show(&self.after, i),
                    e.auth,
                    e.replay,
                    e.malformed
                )
            })
            .collect();
        format!(
            "{}: {} sent in {:.1} s; auth/replay/malformed {}",
            self.name,
            self.sent,
            self.secs,
            per.join(", ")
        )
    }
}

/// Sends every shot to host 1's gossip port and to the multicast group
/// (reaching hosts 1-4), paced so no socket buffer overflows, and waits for
/// the counts to arrive.
fn attack(lab: &Lab, sender: &UdpSocket, name: &'static str, shots: &[Shot]) -> Phase {
    let good: Vec<usize> = (1..=GOOD).collect();
    let snapshot = || -> BTreeMap<usize, Counts> {
        let r = rejections(lab, &good);
        assert_eq!(r.len(), GOOD, "{name}: every good host's status should answer");
        r.iter().map(|(i, r)| (*i, counts(r))).collect()
    };
    let mut expected: BTreeMap<usize, Counts> = good.iter().map(|&i| (i, Counts::default())).collect();
    let unicast = SocketAddr::from((lab.addr(1), GOSSIP_PORT));
    let group = SocketAddr::from((GROUP, GOSSIP_PORT));
    let before = snapshot();
    let start = Instant::now();
    let mut sent = 0;
    for shot in shots {
        for (dest, targets) in [(unicast, vec![1]), (group, good.clone())] {
            let n = sender.send_to(&shot.bytes, dest).expect("send");
            assert_eq!(n, shot.bytes.len());
            sent += 1;
            for t in targets {
                if let Some(class) = (shot.verdict)(t, shot.from) {
                    expected.get_mut(&t).unwrap().add(class, 1);
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
    // Counted within a loop turn; wait for the last, then a little for strays.
    wait_until(Duration::from_secs(3), || {
        let now = snapshot();
        expected.iter().all(|(i, e)| {
            let d = delta(before[i], now[i]);
            d.auth >= e.auth && d.replay >= e.replay && d.malformed >= e.malformed
        })
    });
    thread::sleep(Duration::from_millis(300));
    let after = snapshot();
    Phase { name, sent, expected, before, after, secs: start.elapsed().as_secs_f64() }
}

fn replay(target: usize, from: usize) -> Option<Class> {
    (target != from).then_some(Class::Replay)
}

fn auth(_: usize, _: usize) -> Option<Class> {
    Some(Class::Auth)
}

fn malformed(_: usize, _: usize) -> Option<Class> {
    Some(Class::Malformed)
}

#[test]
fn intruders_are_refused_and_counted() {
    let Some(lab) = Lab::new("intruders", INTRUDER) else { return };
    let good_hosts: Vec<usize> = (1..=GOOD).collect();
    let statsd = lab.statsd(INTRUDER);
    let hold = toml_str("100ms");
    let good: Vec<Agent> = lab.start_all(GOOD, |_, spec| spec.secret("secret A").set("baton", "hold", &hold));
    for a in &good {
        for b in good.iter().filter(|b| b.name != a.name) {
            a.expect(&member("up", &b.name), Duration::from_secs(5));
        }
    }
    // Started once every good host has joined the group, so each hears the
    // intruder's first heartbeat.
    let intruder = lab.start(INTRUDER, &lab.spec(INTRUDER).secret("secret B").set("baton", "hold", &hold));

    // Phase 0: the wrong secret. Thirteen seconds (the intruder's three
    // heartbeats of the start, an interval apart, and its first refresh ten
    // intervals after the last of them, less up to 10 % jitter; the good
    // hosts' refreshes and holders' heartbeats) without anyone admitting
    // anyone across the secrets.
    let before0 = rejections(&lab, &(1..=INTRUDER).collect::<Vec<_>>());
    thread::sleep((intruder.spawned + Duration::from_secs(13)).saturating_duration_since(Instant::now()));
    for a in &good {
        assert!(!a.has_line(&member("up", "n5")), "{} admitted n5 (secret B)", a.name);
    }
    assert!(!intruder.has_line("member up"), "n5 (secret B) admitted someone: {:?}", intruder.lines());
    let statuses = lab.statuses(&(1..=INTRUDER).collect::<Vec<_>>());
    assert_eq!(statuses.len(), INTRUDER, "every status endpoint should answer");
    assert_eq!(statuses[&INTRUDER].live_members, 1, "n5 should be alone: {:?}", statuses[&INTRUDER].members);
    for i in &good_hosts {
        assert_eq!(statuses[i].live_members, GOOD, "n{i}: {:?}", statuses[i].members);
    }
    let auth0: Vec<(u64, u64)> = (1..=INTRUDER)
        .map(|i| (before0.get(&i).map_or(0, |r| counts(r).auth), counts(&statuses[&i].rejected).auth))
        .collect();
    for (k, (b, a)) in auth0.iter().enumerate() {
        assert!(a > b && *a >= 4, "n{}: auth rejections {b} -> {a}: the other secret's heartbeats", k + 1);
    }

    // Phase 1: capture the good cluster's sealed heartbeats on host 5.
    let attack_start = Instant::now();
    let listener = lab.gossip_listener(INTRUDER);
    listener.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut captured: Vec<Captured> = Vec::new();
    let mut buf = vec![0u8; 65536];
    // Each good host multicasts a heartbeat at least every 10 s, and the
    // baton's holder about once a second.
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let Ok((n, SocketAddr::V4(src))) = listener.recv_from(&mut buf) else { continue };
        let from = src.ip().octets()[3] as usize;
        let sealed = n >= SEALED_MIN && buf[..2] == *b"HD" && buf[3] & 1 == 1;
        if (1..=GOOD).contains(&from) && sealed {
            captured.push(Captured { from, bytes: buf[..n].to_vec() });
        }
    }
    drop(listener);
    let senders: std::collections::BTreeSet<usize> = captured.iter().map(|c| c.from).collect();
    assert!(
        captured.len() >= 12 && senders.len() == GOOD,
        "host 5 should capture a heartbeat or more from each good host: {} from {senders:?}",
        captured.len()
    );
    let sizes = (
        captured.iter().map(|c| c.bytes.len()).min().unwrap(),
        captured.iter().map(|c| c.bytes.len()).max().unwrap(),
    );

    let sender = lab.udp(INTRUDER);
    let mut rng = Rng::new();

    // Phase 2: replays, each captured heartbeat REPEAT times.
    let shots: Vec<Shot> = (0..REPEAT)
        .flat_map(|_| captured.iter())
        .map(|c| Shot { bytes: c.bytes.clone(), verdict: replay, from: c.from })
        .collect();
    let replays = attack(&lab, &sender, "replays", &shots);
    replays.check();

    // Phase 3: one flipped bit each, at a random byte and bit.
    let mut header_hits = 0;
    let shots: Vec<Shot> = (0..REPEAT)
        .flat_map(|_| captured.iter())
        .map(|c| {
            let mut bytes = c.bytes.clone();
            let (at, bit) = (rng.below(bytes.len()), rng.below(8));
            bytes[at] ^= 1 << bit;
            // Magic, version, unknown flags: malformed; the sealed flag
            // cleared: unauthenticated; anything else: the tag fails.
            let verdict = match (at, bit) {
                (0..=2, _) | (3, 1..) => malformed,
                _ => auth,
            };
            header_hits += usize::from(at < 4);
            Shot { bytes, verdict, from: c.from }
        })
        .collect();
    let flips = attack(&lab, &sender, "bit flips", &shots);
    flips.check();

    // Phase 4: cut short, once below the sealed minimum, once above it.
    let shots: Vec<Shot> = captured
        .iter()
        .flat_map(|c| {
            let short = rng.below(SEALED_MIN);
            let long = SEALED_MIN + rng.below(c.bytes.len() - SEALED_MIN);
            [
                Shot { bytes: c.bytes[..short].to_vec(), verdict: malformed, from: c.from },
                Shot { bytes: c.bytes[..long].to_vec(), verdict: auth, from: c.from },
            ]
        })
        .collect();
    let cuts = attack(&lab, &sender, "truncations", &shots);
    cuts.check();
    let attack_end = Instant::now();

    // No effect on membership: the same four members at their own addresses,
    // no member event since they met, never a name nobody runs.
    let statuses = lab.statuses(&good_hosts);
    for (i, s) in &statuses {
        assert_eq!(s.live_members, GOOD, "n{i} after the attacks: {:?}", s.members);
        for m in &s.members {
            let j: usize = m.name.trim_start_matches('n').parse().unwrap_or(0);
            assert!((1..=GOOD).contains(&j), "n{i} knows a member {:?}", m.name);
            assert_eq!(m.addr, format!("{}:45893", lab.addr(j)), "n{i}'s address of {}", m.name);
            assert_eq!(m.state, "alive", "n{i}: {} after the attacks", m.name);
        }
    }
    let names: Vec<String> = (1..=GOOD).map(|j| format!("n{j}")).collect();
    for a in &good {
        for l in a.lines().iter().filter(|l| l.contains("member ")) {
            let up_of_known = names.iter().any(|n| l.contains(&member("up", n)));
            assert!(up_of_known, "{}: a member event other than the first meetings: {l}", a.name);
        }
    }

    // The baton kept moving through it all, among hosts 1-4.
    let all = gauges(&statsd, "");
    assert_monotonic(&all);
    let during: Vec<_> = all
        .iter()
        .filter(|(at, _, h)| *at >= attack_start && *at <= attack_end && h.as_str() != "n5")
        .collect();
    for n in &names {
        assert!(during.iter().any(|(_, _, h)| h == n), "{n} passed no baton during the attacks");
    }
    let gap = longest_gap(&during, attack_start, attack_end);
    assert!(gap < Duration::from_secs(2), "the baton stopped for {gap:?} during the attacks");

    let end = rejections(&lab, &[INTRUDER]);
    report(
        "5. intruders",
        "secret B never admitted (13 s), auth counted both ways; captured heartbeats replayed, \
         bit-flipped and truncated to n1:45892 and the group: each counted once per receiving host in \
         the expected class (>= 90 %, <= expected + noise), membership untouched, baton never paused 2 s",
        &format!(
            "phase 0: n1-n5 auth {:?} after 13 s, n5 live_members 1; captured {} heartbeats ({}-{} \
             bytes) from {} hosts; {}; {} (header hits {header_hits}); {}; n5 (secret B) auth \
             {}; {} gauges from n1-n4 during the attacks, longest gap {} ms",
            auth0.iter().map(|(_, a)| a).collect::<Vec<_>>(),
            captured.len(),
            sizes.0,
            sizes.1,
            senders.len(),
            replays.summary(),
            flips.summary(),
            cuts.summary(),
            end.get(&INTRUDER).map_or(0, |r| counts(r).auth),
            during.len(),
            gap.as_millis()
        ),
    );
}

/// Runs `nft -f -` with `rules` in host `i`'s namespace.
fn nft(lab: &Lab, i: usize, rules: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns(i), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "nft in n{i}: {rules}");
}

/// A heartbeat the target never received (lost on the way) is fresh to its
/// replay window, so a replay of it from another address is accepted as
/// liveness; the member's addresses must still come from the IP sealed inside
/// the heartbeat, not from the replayer's source address (before that fix
/// n1 moved n2 to 10.77.0.4). n1 is made to lose every heartbeat of n2 (n2
/// stays alive for n1 through its data-port traffic and n3's sightings), host
/// 4 replays n2's heartbeats to n1: n1 must keep n2 at 10.77.0.2.
#[test]
fn a_replayed_lost_heartbeat_cannot_move_a_member() {
    let Some(lab) = Lab::new("hijack", 4) else { return };
    let agents: Vec<Agent> = lab.start_all(3, |_, spec| spec.secret("secret A"));
    expect_mesh(&agents, Duration::from_secs(5));
    nft(
        &lab,
        1,
        "table inet hijack {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    \
         ip saddr 10.77.0.2 udp dport 45892 drop\n  }\n}\n",
    );
    let listener = lab.gossip_listener(4);
    listener.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let sender = lab.udp(4);
    let mut buf = vec![0u8; 65536];
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let Ok((n, SocketAddr::V4(src))) = listener.recv_from(&mut buf) else { continue };
        if src.ip() == &lab.addr(2) {
            sender.send_to(&buf[..n], (lab.addr(1), GOSSIP_PORT)).expect("replay");
            thread::sleep(Duration::from_millis(50));
            let s = lab.status(1).expect("n1's status");
            seen.extend(s.members.into_iter().filter(|m| m.name == "n2").map(|m| m.addr));
        }
    }
    assert!(!seen.is_empty(), "no heartbeat of n2 captured");
    assert!(seen.iter().all(|a| a == "10.77.0.2:45893"), "n1's address of n2 after each replay: {seen:?}");
    report(
        "5. intruders (replayed lost heartbeats)",
        "n1 drops n2's own heartbeats; host 4 replays n2's captured heartbeats to n1: n2's address stays 10.77.0.2",
        &format!(
            "{} replays accepted as liveness, n1 kept n2 at 10.77.0.2:45893 after every one",
            seen.len()
        ),
    );
}
