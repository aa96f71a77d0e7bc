//! `[baton]`: the relay: who starts it, how fast it goes, when a pass is
//! given up on and when a lost baton is regenerated.

use std::time::Duration;

use super::key::{Key, Section, boolean, duration, int, integer, span, text};
use super::{Problem, check_name, format_duration};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatonSection {
    pub enabled: bool,
    pub main_node: String,
    pub metric: String,
    pub hold: Duration,
    pub pass_timeout: Duration,
    pub max_retries: u32,
    pub regenerate_after: Duration,
}

type B = BatonSection;

const ENABLED: Key<B> =
    Key::live("enabled", || true.into(), |b, v| boolean(v).map(|e| b.enabled = e), |b| b.enabled.into());
const MAIN_NODE: Key<B> = Key::live(
    "main_node",
    || text(""),
    |b, v| {
        let n = v.as_str().ok_or("must be a string")?;
        if !n.is_empty() {
            check_name(n).map_err(|e| format!("{e}, or \"\" for leaderless"))?;
        }
        b.main_node = n.to_owned();
        Ok(())
    },
    |b| text(&b.main_node),
);
const METRIC: Key<B> = Key::live(
    "metric",
    || text("baton"),
    |b, v| {
        let m = v.as_str().unwrap_or_default();
        let ok = !m.is_empty() && m.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
        if !ok {
            return Err("must be a metric name of letters, digits, '_' or '.'".into());
        }
        b.metric = m.to_owned();
        Ok(())
    },
    |b| text(&b.metric),
);
const HOLD: Key<B> = Key::live(
    "hold",
    // An always-on pace (about 10 passes/s cluster-wide, well under 1 % of a
    // Pi's core); "0ms" is the benchmark's and `herd demo`'s.
    || text("100ms"),
    |b, v| duration(v, Duration::ZERO).map(|d| b.hold = d),
    |b| span(b.hold),
);
const PASS_TIMEOUT: Key<B> = Key::live(
    "pass_timeout",
    || text("250ms"),
    |b, v| duration(v, Duration::from_millis(1)).map(|d| b.pass_timeout = d),
    |b| span(b.pass_timeout),
);
const MAX_RETRIES: Key<B> = Key::live(
    "max_retries",
    || integer(3),
    |b, v| int(v, 0, 100).map(|n| b.max_retries = n as u32),
    |b| integer(b.max_retries),
);
const REGENERATE_AFTER: Key<B> = Key::live(
    "regenerate_after",
    || text("3s"),
    |b, v| duration(v, Duration::from_millis(10)).map(|d| b.regenerate_after = d),
    |b| span(b.regenerate_after),
);

impl Section for BatonSection {
    const NAME: &'static str = "baton";
    const KEYS: &'static [Key<Self>] =
        &[ENABLED, MAIN_NODE, METRIC, HOLD, PASS_TIMEOUT, MAX_RETRIES, REGENERATE_AFTER];
}

impl BatonSection {
    pub(super) fn check(&self, p: &mut Vec<Problem>) {
        let slowest_pass = self.pass_timeout * (self.max_retries + 1);
        if self.regenerate_after <= slowest_pass {
            let allowed = format!(
                "must be longer than {} × ({} + 1) = {}, or a slow pass looks like a lost baton",
                PASS_TIMEOUT.name,
                MAX_RETRIES.name,
                format_duration(slowest_pass)
            );
            p.push(REGENERATE_AFTER.problem(self, allowed));
        }
    }
}
