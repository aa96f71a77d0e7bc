//! read: how every sensor item is read. It owns the two roots (`[telemetry] sysfs_root` and the
//! sibling `proc`), the bounded reads of their files, why an item has no value ([`Fault`]), and the
//! log that names each failing item once per disappearance ([`Reader::check`]).

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tracing::debug;

/// sysfs attributes are one page at most; procfs tables here are a few lines per interface or route.
const MAX_FILE: u64 = 64 * 1024;

/// The roots every file is read under, and the items whose fault is logged.
#[derive(Debug)]
pub(super) struct Reader {
    sys: PathBuf,
    proc: PathBuf,
    /// The items whose fault was logged and that have not read well since: each fault is logged
    /// once per disappearance. Bounded by the number of items read.
    logged: HashSet<String>,
}

impl Reader {
    /// `sysfs_root` as configured; the proc root is its sibling directory named "proc" (so /sys ->
    /// /proc, and a fixture tree `x/sys` -> `x/proc`).
    pub(super) fn new(sysfs_root: &Path) -> Reader {
        let proc = sysfs_root.parent().unwrap_or(Path::new("/")).join("proc");
        Reader { sys: sysfs_root.to_owned(), proc, logged: HashSet::new() }
    }

    /// `relative` under the sysfs root.
    pub(super) fn sys(&self, relative: &str) -> PathBuf {
        self.sys.join(relative)
    }

    /// `relative` under the proc root.
    pub(super) fn proc(&self, relative: &str) -> PathBuf {
        self.proc.join(relative)
    }

    /// The value of `item` if it read well (and forgets its fault); else logs why, if not done yet.
    pub(super) fn check<T>(&mut self, item: &str, result: Result<T, Fault>) -> Option<T> {
        match result {
            Ok(value) => {
                self.logged.remove(item);
                Some(value)
            }
            Err(fault) => {
                if self.logged.insert(item.to_owned()) {
                    debug!("sensor {item}: {fault}; not reported while this lasts");
                }
                None
            }
        }
    }

    /// [`Reader::check`] with the file's path as the item.
    pub(super) fn check_file<T>(&mut self, path: &Path, result: Result<T, Fault>) -> Option<T> {
        self.check(&path.to_string_lossy(), result)
    }

    /// One single-value file (see [`read_value`]), logged by its path when it fails.
    pub(super) fn value<T>(&mut self, path: &Path, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        self.check_file(path, read_value(path, parse))
    }

    /// The entries of directory `relative` under the sysfs root named `<prefix>N`, in N order, with
    /// their paths; `None` (logged) when the directory cannot be listed.
    pub(super) fn numbered_dir(&mut self, relative: &str, prefix: &str) -> Option<Vec<(PathBuf, String)>> {
        let dir = self.sys(relative);
        let entries = self.check_file(&dir, list_dir(&dir))?;
        Some(numbered(entries, prefix, "").into_iter().map(|(_, name)| (dir.join(&name), name)).collect())
    }
}

/// Why an item has no value now: the second half of its debug line.
#[derive(Debug)]
pub(super) enum Fault {
    Unreadable(io::Error),
    Empty,
    Garbled(String),
    Unavailable(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Unreadable(e) => write!(f, "cannot read it: {e}"),
            Fault::Empty => write!(f, "it is empty"),
            Fault::Garbled(text) => write!(f, "cannot parse {text:?}"),
            Fault::Unavailable(why) => write!(f, "{why}"),
        }
    }
}

/// A file's text, at most [`MAX_FILE`] bytes of it.
pub(super) fn read_text(path: &Path) -> Result<String, Fault> {
    let mut text = String::new();
    File::open(path)
        .and_then(|file| file.take(MAX_FILE).read_to_string(&mut text))
        .map_err(Fault::Unreadable)?;
    Ok(text)
}

/// A one-value file: its trimmed contents, non-empty, through `parse`.
pub(super) fn read_value<T>(path: &Path, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, Fault> {
    let text = read_text(path)?;
    let value = text.trim();
    if value.is_empty() {
        return Err(Fault::Empty);
    }
    parse(value).ok_or_else(|| Fault::Garbled(value.chars().take(40).collect()))
}

pub(super) fn read_string(path: &Path) -> Result<String, Fault> {
    read_value(path, text)
}

/// The parse of a text value: the text itself.
pub(super) fn text(value: &str) -> Option<String> {
    Some(value.to_owned())
}

pub(super) fn list_dir(dir: &Path) -> Result<Vec<String>, Fault> {
    let entries = fs::read_dir(dir).map_err(Fault::Unreadable)?;
    Ok(entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect())
}

/// The names of the form `<prefix>N<suffix>`, with their N, in N order.
pub(super) fn numbered(names: Vec<String>, prefix: &str, suffix: &str) -> Vec<(u32, String)> {
    let mut found: Vec<(u32, String)> = names
        .into_iter()
        .filter_map(|name| Some((name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()?, name)))
        .collect();
    found.sort();
    found
}
