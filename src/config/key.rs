//! key: how one config key is declared, read and printed. A section (one file
//! beside this one) declares each of its keys once, as a [`Key`]: its name,
//! whether a reload applies it live or it waits for a restart ([`Applies`]),
//! its default, the check that turns a written value into the typed field,
//! and how `herd check` prints it back. Everything else (the list of known
//! keys, "unknown key" messages, defaults, `to_toml`, what a reload holds
//! back) is derived from those declarations, so adding a key is one edit.
//!
//! Reading never stops at the first mistake: every problem of every key is
//! recorded (path, value, what is allowed), which serde's first-error stop
//! would not do.

use std::net::Ipv4Addr;
use std::time::Duration;

use toml::{Table, Value};

use super::{Problem, format_duration};

/// When a new value of a key takes effect in a running agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// At once: a reload (SIGHUP, or a config handed in) applies it.
    Live,
    /// At the next start: the key fixes this life of the agent (its name and
    /// cluster, its sockets and how it finds peers, the member table's size,
    /// the status endpoint's address). A reload keeps the running value and
    /// names the key (`config::reload`).
    Restart,
}

/// One key of section `S`.
pub struct Key<S> {
    pub name: &'static str,
    /// Set by the constructor ([`Key::live`] or [`Key::restart`]): no key is
    /// declared without it, so the restart-only list `config::reload`
    /// derives from it misses none.
    pub applies: Applies,
    /// The default, as the TOML value a user would write. It goes through
    /// `set` like a written value, so a default is valid by construction.
    default: fn() -> Value,
    /// Checks a written value and stores it in the section; on `Err` (what
    /// is allowed instead) the field is left as it was. It may read other
    /// fields of the section: they hold their written values, when valid.
    set: fn(&mut S, &Value) -> Result<(), String>,
    /// The value as `herd check` prints it (and as problems quote it).
    print: fn(&S) -> Value,
}

impl<S: Section> Key<S> {
    /// A key a reload applies at once ([`Applies::Live`]).
    pub const fn live(
        name: &'static str,
        default: fn() -> Value,
        set: fn(&mut S, &Value) -> Result<(), String>,
        print: fn(&S) -> Value,
    ) -> Key<S> {
        Key { name, applies: Applies::Live, default, set, print }
    }

    /// A key whose new value waits for a restart ([`Applies::Restart`]).
    pub const fn restart(
        name: &'static str,
        default: fn() -> Value,
        set: fn(&mut S, &Value) -> Result<(), String>,
        print: fn(&S) -> Value,
    ) -> Key<S> {
        Key { name, applies: Applies::Restart, default, set, print }
    }

    /// Sets `value` as if it were written in the file; a problem if refused.
    pub fn apply(&self, section: &mut S, value: &Value, problems: &mut Vec<Problem>) {
        if let Err(allowed) = (self.set)(section, value) {
            problems.push(Problem { path: self.path(), value: value.to_string(), allowed });
        }
    }

    /// The value as `herd check` prints it.
    pub fn value(&self, section: &S) -> Value {
        (self.print)(section)
    }

    /// Sets a value printed from a valid section of the same kind (a reload
    /// keeping a running value). Checks that read other keys may refuse it
    /// until those are restored too: call again once they are.
    pub fn restore(&self, section: &mut S, value: &Value) -> Result<(), String> {
        (self.set)(section, value)
    }

    /// `<section>.<key>`, as problems name it.
    pub fn path(&self) -> String {
        format!("{}.{}", S::NAME, self.name)
    }

    /// A problem with this key's current value in `section` (a cross-key
    /// rule's finding).
    pub fn problem(&self, section: &S, allowed: impl Into<String>) -> Problem {
        Problem { path: self.path(), value: (self.print)(section).to_string(), allowed: allowed.into() }
    }
}

/// One `[section]` of the config file.
pub trait Section: Default + Sized + 'static {
    const NAME: &'static str;
    /// Every key, in the documented order (`config/herd.toml`, `herd check`).
    const KEYS: &'static [Key<Self>];

    fn key_names() -> Vec<&'static str> {
        Self::KEYS.iter().map(|k| k.name).collect()
    }
}

/// Takes `[S::NAME]` out of `root` and reads every key of it, recording a
/// problem for each bad value and each unknown key.
///
/// Each written value is set twice: once so that every key holds its written
/// value, then again to record problems, so a key's check may depend on any
/// other key of the section (`multicast_addr` on `broadcast_only`).
pub fn read<S: Section>(root: &mut Table, problems: &mut Vec<Problem>) -> S {
    let table = match root.remove(S::NAME) {
        None => Table::new(),
        Some(Value::Table(t)) => t,
        Some(other) => {
            problems.push(Problem {
                path: S::NAME.to_owned(),
                value: other.to_string(),
                allowed: format!("must be a table: [{}]", S::NAME),
            });
            Table::new()
        }
    };
    let mut section = S::default();
    for k in S::KEYS {
        if let Err(e) = (k.set)(&mut section, &(k.default)()) {
            unreachable!("the default of {} is invalid: {e}", k.path());
        }
    }
    let written = || S::KEYS.iter().filter_map(|k| table.get(k.name).map(|v| (k, v)));
    for (k, v) in written() {
        let _ = (k.set)(&mut section, v);
    }
    for (k, v) in written() {
        k.apply(&mut section, v, problems);
    }
    for (name, value) in &table {
        if !S::KEYS.iter().any(|k| k.name == name) {
            problems.push(Problem {
                path: format!("{}.{name}", S::NAME),
                value: value.to_string(),
                allowed: format!("unknown key; [{}] has {}", S::NAME, S::key_names().join(", ")),
            });
        }
    }
    section
}

/// `[S::NAME]` and every key of it, one `key = value` line each.
pub fn print<S: Section>(section: &S) -> String {
    let mut out = format!("[{}]\n", S::NAME);
    for k in S::KEYS {
        out.push_str(&format!("{} = {}\n", k.name, (k.print)(section)));
    }
    out
}

// The checks keys share. Each returns the typed value, or what is allowed.

pub fn string(v: &Value) -> Result<String, String> {
    v.as_str().map(str::to_owned).ok_or_else(|| "must be a string".into())
}

pub fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| "must be true or false".into())
}

pub fn int(v: &Value, lo: i64, hi: i64) -> Result<i64, String> {
    match v.as_integer() {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("must be an integer from {lo} to {hi}")),
    }
}

/// A duration string (`"250ms"`, `"1s"`, `"2m"`, or `"0"`) of at least `min`.
pub fn duration(v: &Value, min: Duration) -> Result<Duration, String> {
    let allowed = || {
        format!(
            "must be a duration string of at least {} such as \"250ms\", \"1s\" or \"2m\"",
            format_duration(min)
        )
    };
    let text = v.as_str().ok_or_else(allowed)?;
    let d = if text.trim() == "0" {
        Duration::ZERO
    } else {
        humantime::parse_duration(text.trim()).map_err(|_| allowed())?
    };
    if d < min { Err(allowed()) } else { Ok(d) }
}

pub fn ipv4(v: &Value) -> Result<Ipv4Addr, String> {
    v.as_str()
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| "must be an IPv4 address such as \"192.168.1.10\" or \"0.0.0.0\"".into())
}

/// One of `options`, each written as `name(option)`.
pub fn choice<T: Copy>(v: &Value, options: &[T], name: fn(T) -> &'static str) -> Result<T, String> {
    let s = v.as_str();
    options.iter().copied().find(|o| Some(name(*o)) == s).ok_or_else(|| {
        let quoted: Vec<String> = options.iter().map(|o| format!("\"{}\"", name(*o))).collect();
        format!("must be one of {}", quoted.join(", "))
    })
}

/// An array of strings, each passing `check`.
pub fn strings(v: &Value, check: fn(&str) -> Result<(), String>) -> Result<Vec<String>, String> {
    let arr = v.as_array().ok_or("must be an array of strings")?;
    let mut out = Vec::with_capacity(arr.len());
    for item in arr {
        let s = item.as_str().ok_or("must be an array of strings")?;
        check(s).map_err(|e| format!("element {item}: {e}"))?;
        out.push(s.to_owned());
    }
    Ok(out)
}

// How keys print.

pub fn text(s: impl ToString) -> Value {
    Value::String(s.to_string())
}

pub fn integer(n: impl Into<i64>) -> Value {
    Value::Integer(n.into())
}

pub fn span(d: Duration) -> Value {
    Value::String(format_duration(d))
}

pub fn list(items: &[String]) -> Value {
    Value::Array(items.iter().map(text).collect())
}
