//! history: the last 15 minutes of the cluster as this node saw it, for the
//! status page's charts: the cluster's baton passes per second, the live
//! members, and each node's temperature (its own sensors and the health its
//! peers gossip), one sample every [`EVERY`].
//!
//! A ring buffer of fixed size when the status endpoint is on: [`SAMPLES`]
//! samples of [`Sample`], allocated once at start, plus the names of at
//! most [`MAX_NODES`] nodes as they are first seen: [`History::BYTES`]
//! bytes at most. Nothing is written to disk; a restart starts it empty.
//!
//! Must not: grow (a node beyond [`MAX_NODES`] is not charted), or be
//! sampled when no endpoint can show it (idle CPU).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::core::node::Node;

/// One sample every this long...
pub const EVERY: Duration = Duration::from_secs(5);
/// ...and this many of them: 15 minutes.
pub const SAMPLES: usize = 180;
/// Nodes whose temperatures are charted (the first this many names seen).
pub const MAX_NODES: usize = 32;
/// A temperature slot with no reading.
const NO_TEMP: i16 = i16::MIN;

/// One point of the charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the agent started.
    pub t_s: u32,
    /// Baton passes per second in the whole cluster since the previous
    /// sample (the highest counter's growth); NaN for the first sample.
    pub passes_per_s: f32,
    /// Live members, this node included.
    pub members: u16,
    /// Tenths of a °C per node slot (see [`History::nodes`]).
    pub temps_dc: [i16; MAX_NODES],
}

#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The name of each temperature slot, in the order first seen.
    pub nodes: Vec<String>,
    pub samples: VecDeque<Sample>,
    /// The highest counter and when it was read, for the next rate.
    last: Option<(Instant, u64)>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// The ring buffer's size: the samples and the slot names (at most
    /// [`crate::core::wire::MAX_NAME`] bytes each), fixed from the start.
    pub const BYTES: usize = SAMPLES * size_of::<Sample>() + MAX_NODES * crate::core::wire::MAX_NAME;

    pub fn new() -> Self {
        Self { nodes: Vec::with_capacity(MAX_NODES), samples: VecDeque::with_capacity(SAMPLES), last: None }
    }

    /// Takes one sample of `node` at `now` (`started`: the agent's start).
    pub fn sample<R: rand::Rng>(&mut self, node: &Node<R>, now: Instant, started: Instant) {
        let counter = node.relay().high();
        let passes_per_s = match self.last {
            Some((at, was)) if now > at => {
                (counter.saturating_sub(was) as f64 / (now - at).as_secs_f64()) as f32
            }
            _ => f32::NAN,
        };
        self.last = Some((now, counter));
        let mut temps_dc = [NO_TEMP; MAX_NODES];
        let own = node.health().and_then(|h| h.temp_dc).map(|t| (node.identity().name.as_str(), t));
        let peers = node.board().iter().filter_map(|(name, g)| {
            let live =
                node.members().get(name).is_some_and(|m| m.state.is_live() && m.incarnation == g.incarnation);
            Some((name, g.health.as_ref()?.temp_dc?)).filter(|_| live)
        });
        for (name, t) in own.into_iter().chain(peers) {
            if let Some(slot) = self.slot(name) {
                temps_dc[slot] = t.max(NO_TEMP + 1);
            }
        }
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        let t_s = now.saturating_duration_since(started).as_secs().min(u64::from(u32::MAX)) as u32;
        let members = node.cluster_size().min(usize::from(u16::MAX)) as u16;
        self.samples.push_back(Sample { t_s, passes_per_s, members, temps_dc });
    }

    /// The slot of `name`, taking a new one while there are free slots.
    fn slot(&mut self, name: &str) -> Option<usize> {
        if let Some(i) = self.nodes.iter().position(|n| n == name) {
            return Some(i);
        }
        (self.nodes.len() < MAX_NODES).then(|| {
            self.nodes.push(name.to_owned());
            self.nodes.len() - 1
        })
    }

    /// Node `slot`'s temperatures in °C, one per sample (`None`: no reading).
    pub fn temps(&self, slot: usize) -> impl Iterator<Item = Option<f64>> + '_ {
        self.samples.iter().map(move |s| {
            let t = s.temps_dc[slot];
            (t != NO_TEMP).then(|| f64::from(t) / 10.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_buffer_is_15_minutes_and_its_size_is_what_the_docs_say() {
        assert_eq!(EVERY * SAMPLES as u32, Duration::from_secs(15 * 60));
        assert_eq!(size_of::<Sample>(), 76);
        assert_eq!(History::BYTES, 15_696);
        let doc = include_str!("../../docs/operating.md");
        assert!(doc.contains("15,696 bytes"), "docs/operating.md must state the ring buffer's size");
    }

    #[test]
    fn samples_take_this_nodes_temperature_and_keep_15_minutes() {
        use rand::SeedableRng;
        let config = crate::config::Config::defaults_named("psa").unwrap();
        let start = Instant::now();
        let mut node = Node::new(
            crate::agent::setup::node_config(&config, 40000, None),
            rand::rngs::SmallRng::seed_from_u64(1),
            start,
        );
        let mut h = History::new();
        h.sample(&node, start, start);
        node.set_health(crate::core::health::Health { temp_dc: Some(483), ..Default::default() });
        for i in 1..=200u32 {
            h.sample(&node, start + EVERY * i, start);
        }
        assert_eq!(h.samples.len(), SAMPLES, "the oldest samples are dropped");
        assert_eq!(h.nodes, ["psa"]);
        let last = h.samples.back().unwrap();
        assert_eq!((last.t_s, last.members, last.passes_per_s), (1000, 1, 0.0));
        assert!(h.temps(0).all(|t| t == Some(48.3)));
        assert!(h.samples[0].passes_per_s.is_finite(), "only the very first sample has no rate");
    }
}
