//! process: what every herd command that runs agents sets up once per
//! process: logging to stderr and the shutdown signal. `herd run`,
//! `herd ping` and `herd demo` share them.

use std::io::IsTerminal;

/// Logs go to stderr (stdout is for `herd demo`'s table and command output);
/// `RUST_LOG` overrides `filter`. Under systemd (JOURNAL_STREAM set)
/// timestamps are left to journald. Does nothing if logging is set up already.
///
/// Filters are `tracing_subscriber`'s `Targets`: `level` and `target=level`
/// directives, comma-separated (`herd=debug,warn`), which is what RUST_LOG
/// is used for here; span and field filters (EnvFilter's) are not
/// understood. EnvFilter would bring a regex engine, a fifth of the binary.
pub fn init_tracing(filter: &str) {
    use tracing_subscriber::prelude::*;
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let from_env = from_env.and_then(|v| match v.parse::<Targets>() {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("herd: RUST_LOG={v:?} is not a filter ({e}); using [log] level");
            None
        }
    });
    let overridden = from_env.is_some();
    let targets = from_env.unwrap_or_else(|| parse_filter(filter));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(targets);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let ok = if std::env::var_os("JOURNAL_STREAM").is_some() {
        registry.with(fmt.without_time()).try_init().is_ok()
    } else {
        registry.with(fmt).try_init().is_ok()
    };
    if ok {
        let _ = LOG_FILTER.set(Box::new(move |t| handle.reload(t).map_err(|e| e.to_string())));
        if overridden {
            let _ = LOG_FIXED.set(());
        }
    }
}

use tracing_subscriber::filter::Targets;

/// `filter` as Targets; one the config checked cannot fail, and anything
/// else falls back to `herd=info,warn`.
fn parse_filter(filter: &str) -> Targets {
    filter.parse().unwrap_or_else(|_| "herd=info,warn".parse().expect("a valid filter"))
}

type Reloader = Box<dyn Fn(Targets) -> Result<(), String> + Send + Sync>;

/// How to change the log filter of the running process (`[log] level` on a
/// reload); set once by [`init_tracing`].
static LOG_FILTER: std::sync::OnceLock<Reloader> = std::sync::OnceLock::new();
/// Set when `RUST_LOG` chose the filter: then a reload leaves it alone.
static LOG_FIXED: std::sync::OnceLock<()> = std::sync::OnceLock::new();

/// Makes `filter` the log filter from now on, unless `RUST_LOG` set it at
/// start (it wins, as at start). False if there is nothing to change (no
/// logging set up by [`init_tracing`], or `RUST_LOG`).
pub fn set_log_filter(filter: &str) -> bool {
    if LOG_FIXED.get().is_some() {
        return false;
    }
    LOG_FILTER.get().is_some_and(|reload| reload(parse_filter(filter)).is_ok())
}

/// The signal that ended the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
}

/// Completes on SIGTERM or SIGINT (Ctrl-C), saying which. A signal that
/// cannot be listened for is left out (with a warning), and if neither can,
/// this never completes.
pub async fn shutdown_signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Signal::Int,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGINT (Ctrl-C)");
                std::future::pending().await
            }
        }
    };
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => Signal::Term,
            s = ctrl_c => s,
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            ctrl_c.await
        }
    }
}
