//! conflict: the other nodes heard using this node's name. Names identify
//! members, so a node refuses every datagram that carries its own name with
//! another incarnation (its own multicast looping back carries its own):
//! two nodes with one name never join each other, and neither can join a
//! cluster the other is in. That is a misconfiguration only the operator can
//! fix (every Raspberry Pi OS image is named `raspberrypi`), so it is kept
//! here as state for the status endpoint, not only counted as rejections.
//!
//! One entry per other life, known by its incarnation and the address its
//! datagrams come from (two namesakes started in the same millisecond share
//! an incarnation, not a source): the IP its heartbeats advertise, and when
//! it was heard. An entry
//! is current while it was heard within the window the caller passes (see
//! [`Conflicts::current`]); a leave from that life ends it at once. Each entry
//! allows one log line per [`LOG_EVERY`] while it lasts.
//!
//! Must not: read a clock (every call takes `now`) or grow without bound
//! (at most [`MAX_CONFLICTS`] entries: a spoofing flood without a secret
//! cannot fill memory).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::limit::LogLimiter;

/// A conflict's log line is repeated at most this often while it lasts.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// Other lives remembered; beyond it the one heard longest ago is forgotten.
pub const MAX_CONFLICTS: usize = 16;

/// Another life of a node that uses this node's name.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub incarnation: u64,
    /// Where its datagrams come from.
    pub source: IpAddr,
    /// The IP its last heartbeat advertised (`None`: none heard, or it
    /// advertised none).
    pub advertised: Option<Ipv4Addr>,
    /// When it was first heard, and last.
    pub since: Instant,
    pub last_heard: Instant,
    log: LogLimiter,
}

impl Conflict {
    /// Its address for operators: the advertised IP (authenticated with a
    /// secret), else the source of its datagrams.
    pub fn addr(&self) -> IpAddr {
        self.advertised.map_or(self.source, IpAddr::V4)
    }
}

/// A conflict's log line is due: what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub incarnation: u64,
    /// [`Conflict::addr`].
    pub addr: IpAddr,
    pub source: IpAddr,
    /// Datagrams of this life since its previous line.
    pub suppressed: u64,
    /// Other lives currently using the name, this one included.
    pub others: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Conflicts {
    entries: Vec<Conflict>,
}

impl Conflicts {
    /// A datagram of another life using this node's name, from `source`,
    /// advertising `advertised` if it is a heartbeat that names its IP.
    /// `Some` when a log line about it is due (its first datagram, then at
    /// most once per [`LOG_EVERY`]). Entries not heard within `window` are
    /// dropped first.
    pub fn heard(
        &mut self,
        now: Instant,
        window: Duration,
        incarnation: u64,
        source: IpAddr,
        advertised: Option<Ipv4Addr>,
    ) -> Option<Heard> {
        self.entries.retain(|c| is_current(c, now, window));
        let at = match self.entries.iter().position(|c| c.incarnation == incarnation && c.source == source) {
            Some(at) => at,
            None => {
                if self.entries.len() >= MAX_CONFLICTS
                    && let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].last_heard)
                {
                    self.entries.swap_remove(oldest);
                }
                self.entries.push(Conflict {
                    incarnation,
                    source,
                    advertised: None,
                    since: now,
                    last_heard: now,
                    log: LogLimiter::new(LOG_EVERY),
                });
                self.entries.len() - 1
            }
        };
        let others = self.entries.len();
        let c = &mut self.entries[at];
        c.advertised = advertised.or(c.advertised);
        c.last_heard = c.last_heard.max(now);
        let suppressed = c.log.allow(now)?;
        Some(Heard { incarnation, addr: c.addr(), source, suppressed, others })
    }

    /// That life left the cluster (its leave was heard from `source`): the
    /// conflict with it is over. The entry, if there was one.
    pub fn left(&mut self, incarnation: u64, source: IpAddr) -> Option<Conflict> {
        let at = self.entries.iter().position(|c| c.incarnation == incarnation && c.source == source)?;
        Some(self.entries.swap_remove(at))
    }

    /// The conflicts heard within `window` of `now`, first heard first.
    ///
    /// The caller's window must cover a few of the other node's heartbeat
    /// refreshes: two nodes with one name are not members of each other,
    /// so each hears the other only through its periodic heartbeats (and
    /// its news), possibly only one per refresh period.
    pub fn current(&self, now: Instant, window: Duration) -> Vec<&Conflict> {
        let mut current: Vec<&Conflict> =
            self.entries.iter().filter(|c| is_current(c, now, window)).collect();
        current.sort_by_key(|c| (c.since, c.incarnation));
        current
    }
}

fn is_current(c: &Conflict, now: Instant, window: Duration) -> bool {
    now.saturating_duration_since(c.last_heard) < window
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);
    const S: Duration = Duration::from_secs(1);

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, last))
    }

    #[test]
    fn each_other_life_is_recorded_with_its_addresses_and_logged_once_a_minute() {
        let t0 = Instant::now();
        let mut c = Conflicts::default();
        let first = c.heard(t0, WINDOW, 7, ip(2), Some(Ipv4Addr::new(10, 77, 0, 2)));
        assert_eq!(
            first,
            Some(Heard { incarnation: 7, addr: ip(2), source: ip(2), suppressed: 0, others: 1 })
        );
        // A second node with the name: its own line at once.
        let second = c.heard(t0 + S, WINDOW, 9, ip(3), None).expect("a line for the second node");
        assert_eq!((second.addr, second.others), (ip(3), 2));
        // The first again within the minute: no line, but heard.
        for k in 2..30 {
            assert_eq!(c.heard(t0 + k * S, WINDOW, 7, ip(2), None), None);
        }
        let again = c.heard(t0 + 60 * S, WINDOW, 7, ip(2), None).expect("repeated after a minute");
        assert_eq!(again.suppressed, 28);
        let now = t0 + 60 * S;
        let current: Vec<(u64, IpAddr, u64)> = c
            .current(now, WINDOW)
            .iter()
            .map(|c| (c.incarnation, c.addr(), now.duration_since(c.last_heard).as_secs()))
            .collect();
        // The advertised address is kept from the heartbeat that carried it.
        assert_eq!(current, [(7, ip(2), 0), (9, ip(3), 59)]);
    }

    #[test]
    fn the_advertised_address_is_shown_rather_than_the_source() {
        let t0 = Instant::now();
        let mut c = Conflicts::default();
        let heard = c.heard(t0, WINDOW, 7, ip(9), Some(Ipv4Addr::new(192, 168, 1, 20))).unwrap();
        assert_eq!(heard.addr, "192.168.1.20".parse::<IpAddr>().unwrap());
        assert_eq!(heard.source, ip(9));
        let now = c.current(t0, WINDOW);
        assert_eq!(now[0].source, ip(9));
        assert_eq!(now[0].addr(), heard.addr);
    }

    #[test]
    fn a_conflict_ends_when_not_heard_for_the_window_or_when_that_life_leaves() {
        let t0 = Instant::now();
        let mut c = Conflicts::default();
        c.heard(t0, WINDOW, 7, ip(2), None);
        c.heard(t0, WINDOW, 9, ip(3), None);
        assert_eq!(c.current(t0 + 59 * S, WINDOW).len(), 2);
        assert!(c.left(9, ip(3)).is_some_and(|gone| gone.source == ip(3)));
        assert!(c.left(9, ip(3)).is_none(), "already gone");
        assert_eq!(c.current(t0 + 59 * S, WINDOW).len(), 1);
        assert!(c.current(t0 + WINDOW, WINDOW).is_empty(), "silent for the window: over");
        // Heard again later: a new conflict, logged at once.
        let back = c.heard(t0 + 200 * S, WINDOW, 7, ip(2), None).expect("logged again");
        assert_eq!(back.others, 1);
        assert_eq!(c.current(t0 + 200 * S, WINDOW)[0].since, t0 + 200 * S);
    }

    /// Two namesakes started in the same millisecond have one incarnation:
    /// each is its own conflict, logged and shown with its own address.
    #[test]
    fn namesakes_of_one_incarnation_are_told_apart_by_their_source() {
        let (mut c, t0) = (Conflicts::default(), Instant::now());
        let first = c.heard(t0, WINDOW, 7, ip(1), None).expect("a line for the first");
        let second = c.heard(t0, WINDOW, 7, ip(2), None).expect("a line for the second");
        assert_eq!((first.addr, second.addr, second.others), (ip(1), ip(2), 2));
        assert!(c.left(7, ip(1)).is_some());
        let now: Vec<_> = c.current(t0, WINDOW).iter().map(|c| c.addr()).collect();
        assert_eq!(now, [ip(2)]);
    }

    #[test]
    fn memory_is_bounded_whatever_a_flood_of_incarnations_claims() {
        let t0 = Instant::now();
        let mut c = Conflicts::default();
        for inc in 0..1000u64 {
            c.heard(t0 + Duration::from_millis(inc), WINDOW, inc, ip(2), None);
        }
        let now = t0 + S;
        let current = c.current(now, WINDOW);
        assert_eq!(current.len(), MAX_CONFLICTS);
        // The ones heard last are kept.
        assert!(current.iter().all(|c| c.incarnation >= 1000 - MAX_CONFLICTS as u64));
    }
}
