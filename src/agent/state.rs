//! state: the one file herd writes, `<state_dir>/counter`: the ceiling of
//! the baton counter's reservations (`core::reserve`), so that after a power
//! cut of the whole cluster the counter continues above every value sent.
//! Written as a crash-safe replace: a temporary file written and fsynced,
//! renamed over the old one, the directory fsynced. Read once at start: a
//! missing file is a first start; an unreadable or corrupt one is a warning,
//! and the agent starts as if there were none.
//!
//! [`restore`] is the read at start, [`Store`] the running agent's writes
//! (what the core asks for, through the driver).
//!
//! Must not: be touched without a `state_dir` (then herd writes nothing).

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::core::limit::LogLimiter;

const FILE: &str = "counter";
const HEADER: &str = "herd counter ceiling v1";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The ceiling in `dir`'s state file: `Ok(None)` when there is none yet.
pub fn read(dir: &Path) -> Result<Option<u64>> {
    let path = path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut lines = text.lines();
    let (Some(HEADER), Some(value), None) = (lines.next(), lines.next(), lines.next()) else {
        bail!("{} is not a herd state file (expected {HEADER:?} and a number)", path.display());
    };
    let ceiling = value.strip_prefix("ceiling ").and_then(|v| v.parse::<u64>().ok());
    ceiling.map(Some).with_context(|| format!("{}: not a ceiling: {value:?}", path.display()))
}

/// Replaces `dir`'s state file with `ceiling`, durably: on return the new
/// value survives a power cut; on error the old file is intact.
pub fn write(dir: &Path, ceiling: u64) -> Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(format!("{HEADER}\nceiling {ceiling}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, path(dir)).with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(())
}

/// The counter ceiling of `[node] state_dir`'s state file, read once at
/// start for the core: `None` without a state directory (nothing will be
/// written), else the file's (0 for none yet). A corrupt or unreadable file
/// is a warning and counts as none.
pub fn restore(config: &Config) -> Option<u64> {
    let dir = config.node.state_dir.as_ref()?;
    match read(dir) {
        Ok(Some(ceiling)) => {
            info!(dir = %dir.display(), ceiling, "counter reservations restored: a new baton starts above {ceiling}");
            Some(ceiling)
        }
        Ok(None) => {
            info!(dir = %dir.display(), "no counter reservations yet (first start with this state_dir)");
            Some(0)
        }
        Err(e) => {
            warn!(
                "{e:#}; starting without the earlier reservations (after a power cut of the whole cluster the counter may start lower)"
            );
            Some(0)
        }
    }
}

/// How often a failing write is logged (it is tried again as often, when
/// the core asks again).
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The running agent's writes of the state file. `state_dir` needs a
/// restart to change, so the directory is fixed for this life.
pub struct Store {
    dir: Option<PathBuf>,
    failures: LogLimiter,
}

impl Store {
    pub fn new(config: &Config) -> Store {
        Store { dir: config.node.state_dir.clone(), failures: LogLimiter::new(FAILURE_LOG_EVERY) }
    }

    /// Writes the ceiling `up_to` the core asked for: a few milliseconds (an
    /// fsync), about once per 10 minutes. `Some(written)` for the core's
    /// `Node::reserved`; `None` without a `state_dir` (the core never asks
    /// then). A failure is logged at most once per 10 s; the core asks
    /// again 10 s later.
    pub fn reserve(&mut self, up_to: u64) -> Option<bool> {
        let dir = self.dir.as_ref()?;
        match write(dir, up_to) {
            Ok(()) => {
                debug!(ceiling = up_to, "counter reserved");
                Some(true)
            }
            Err(e) => {
                if self.failures.allow(Instant::now()).is_some() {
                    warn!("{e:#}; the counter is not protected against a power cut until it works");
                }
                Some(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None, "a first start");
        write(dir.path(), 12_345).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(12_345));
        write(dir.path(), 99).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(99));
        assert!(!dir.path().join("counter.tmp").exists());
        for bad in ["", "garbage", "herd counter ceiling v1\nceiling -3\n", "herd counter ceiling v1\n"] {
            fs::write(dir.path().join("counter"), bad).unwrap();
            let e = read(dir.path()).unwrap_err();
            assert!(format!("{e:#}").contains("counter"), "{bad:?}: {e:#}");
        }
    }
}
