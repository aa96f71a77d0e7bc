//! process: what every herd command that runs agents sets up once per
//! process: logging to stderr and the shutdown signal. `herd run`,
//! `herd ping` and `herd demo` share them.

use std::io::IsTerminal;

/// Logs go to stderr (stdout is for `herd demo`'s table and command output);
/// `RUST_LOG` overrides `filter`. Under systemd (JOURNAL_STREAM set)
/// timestamps are left to journald. Does nothing if logging is set up already.
pub fn init_tracing(filter: &str) {
    let from_env = tracing_subscriber::EnvFilter::try_from_default_env().ok();
    let overridden = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(filter));
    let base = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // The reloadable filter must be the builder's last layer, after the
    // time format is chosen.
    macro_rules! install {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            let ok = builder.try_init().is_ok();
            if ok {
                let _ = LOG_FILTER.set(Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())));
            }
            ok
        }};
    }
    let ok = if std::env::var_os("JOURNAL_STREAM").is_some() {
        install!(base.without_time())
    } else {
        install!(base)
    };
    if ok && overridden {
        let _ = LOG_FIXED.set(());
    }
}

type Reloader = Box<dyn Fn(tracing_subscriber::EnvFilter) -> Result<(), String> + Send + Sync>;

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
    LOG_FILTER.get().is_some_and(|reload| reload(tracing_subscriber::EnvFilter::new(filter)).is_ok())
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
