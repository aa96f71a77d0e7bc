//! process: what every herd command that runs agents sets up once per
//! process: logging to stderr and the shutdown signal. `herd run`,
//! `herd ping` and `herd demo` share them.

use std::io::IsTerminal;

/// Logs go to stderr (stdout is for `herd demo`'s table and command output);
/// `RUST_LOG` overrides `filter`. Under systemd (JOURNAL_STREAM set)
/// timestamps are left to journald. Does nothing if logging is set up already.
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
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
