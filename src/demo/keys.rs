//! keys: `herd demo`'s keys, on a terminal only. While the demo runs, stdin
//! is in cbreak mode (no line editing, no echo: each key arrives as it is
//! pressed; Ctrl-C still sends SIGINT, which stops the demo as always), and
//! a thread reads it; the terminal's mode is put back when the [`Keyboard`] is
//! dropped, and by a panic hook should the process panic (the release build
//! aborts on panic, so no destructor would run).
//!
//! Must not: touch a stdin that is not a terminal, or one this process does
//! not have in the foreground (changing its mode would stop the process with
//! SIGTTOU, reading it with SIGTTIN).

use std::io::{IsTerminal, Read};
use std::sync::Mutex;

use tokio::sync::mpsc;

/// What a key asks the demo to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    /// `k`: crash the baton's holder.
    Kill,
    /// `r`: start every killed agent again.
    Restart,
    /// `p`: split the cluster in two, or heal it.
    Partition,
    /// `q`: stop, as Ctrl-C does.
    Quit,
}

impl Key {
    /// The key a byte of input is, if any (either case).
    pub(super) fn from_byte(b: u8) -> Option<Key> {
        match b.to_ascii_lowercase() {
            b'k' => Some(Key::Kill),
            b'r' => Some(Key::Restart),
            b'p' => Some(Key::Partition),
            b'q' => Some(Key::Quit),
            _ => None,
        }
    }
}

/// Whether the keys can be on: stdin and stdout are terminals and this
/// process is in the terminal's foreground.
pub(super) fn available() -> bool {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return false;
    }
    // SAFETY: plain queries of this process and of fd 0, no memory passed.
    unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp() }
}

/// The keys while they are on: stdin in cbreak mode, and what is pressed on
/// it. Dropping it stops listening, then puts the terminal's mode back.
pub(super) struct Keyboard {
    // Declared before the mode, so dropped before it.
    pressed: mpsc::UnboundedReceiver<Key>,
    _cbreak: Cbreak,
}

impl Keyboard {
    /// Puts stdin in cbreak mode and starts reading it (see [`read_keys`]).
    pub(super) fn open() -> std::io::Result<Keyboard> {
        let cbreak = Cbreak::enter()?;
        Ok(Keyboard { pressed: read_keys(), _cbreak: cbreak })
    }

    /// The next key pressed; `None` once stdin has ended.
    pub(super) async fn next(&mut self) -> Option<Key> {
        self.pressed.recv().await
    }
}

/// The terminal mode to restore, for the panic hook.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// stdin in cbreak mode until dropped.
struct Cbreak {
    saved: libc::termios,
}

impl Cbreak {
    /// Turns off line editing and echo on stdin (keeping signals and output
    /// processing), after saving the mode to restore.
    fn enter() -> std::io::Result<Cbreak> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        install_panic_hook();
        // SAFETY: a valid termios for fd 0.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Cbreak { saved })
    }
}

impl Drop for Cbreak {
    fn drop(&mut self) {
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = None;
        restore(&self.saved);
    }
}

fn restore(mode: &libc::termios) {
    // SAFETY: a termios read from fd 0 by tcgetattr.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, mode) };
}

/// Once per process: a panic restores the saved mode, then panics as before.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(mode) = SAVED.lock().ok().and_then(|s| *s) {
                restore(&mode);
            }
            previous(info);
        }));
    });
}

/// The keys pressed, from a thread that reads stdin until it ends or the
/// receiver is gone (the thread is left blocked in its read when the demo
/// ends; the process exits right after).
fn read_keys() -> mpsc::UnboundedReceiver<Key> {
    let (tx, rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new().name("demo-keys".into()).spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            // A function or arrow key is an escape sequence, read at once
            // (F1 is ESC O P): none of its letters is a key.
            if buf[..n].contains(&0x1b) {
                continue;
            }
            for key in buf[..n].iter().filter_map(|&b| Key::from_byte(b)) {
                if tx.send(key).is_err() {
                    return;
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot read the demo's keys");
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_either_case_and_nothing_else() {
        assert_eq!(Key::from_byte(b'k'), Some(Key::Kill));
        assert_eq!(Key::from_byte(b'K'), Some(Key::Kill));
        assert_eq!(Key::from_byte(b'r'), Some(Key::Restart));
        assert_eq!(Key::from_byte(b'p'), Some(Key::Partition));
        assert_eq!(Key::from_byte(b'Q'), Some(Key::Quit));
        for b in [b'x', b' ', b'\n', 3, 0x1b, b'1'] {
            assert_eq!(Key::from_byte(b), None, "{b}");
        }
    }
}
