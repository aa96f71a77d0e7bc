//! `[log]`: how much the agent logs.

use super::key::{Key, Section, choice, text};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogSection {
    pub level: String,
}

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

const LEVEL: Key<LogSection> = Key::live(
    "level",
    || text("info"),
    |l, v| choice(v, &LEVELS, |s| s).map(|s| l.level = s.to_owned()),
    |l| text(&l.level),
);

impl Section for LogSection {
    const NAME: &'static str = "log";
    const KEYS: &'static [Key<Self>] = &[LEVEL];
}
