//! clock: time as the kernel keeps it: its clock discipline (adjtimex(2), read only) and the
//! uptime (`proc/uptime`).

use std::io;

use super::read::{Fault, Reader};

/// The kernel's NTP state (adjtimex(2)): whether a time daemon has synchronised the clock, and its
/// own estimate of the error. A Pi has no RTC: until NTP syncs, its clock is whatever it saved at
/// shutdown.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockState {
    pub synced: bool,
    pub error_ms: f64,
}

/// The clock's state, or `None` (logged) when the kernel refuses adjtimex.
pub(super) fn read(reader: &mut Reader) -> Option<ClockState> {
    reader.check("adjtimex", adjtimex())
}

/// Seconds since boot: the first field of `proc/uptime`.
pub(super) fn uptime_s(reader: &mut Reader) -> Option<f64> {
    let file = reader.proc("uptime");
    reader.value(&file, |s| {
        s.split_whitespace().next()?.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
    })
}

/// The kernel's clock discipline, read-only: adjtimex(2) with `modes = 0` changes nothing (and needs
/// no privilege). Unsynchronised when the kernel says TIME_ERROR or STA_UNSYNC.
fn adjtimex() -> Result<ClockState, Fault> {
    // SAFETY: timex is plain data, for which all-zero is valid (modes = 0: read only).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, writable timex.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state == -1 {
        // EPERM under a seccomp filter that blocks it (systemd's ProtectClock=yes does).
        return Err(Fault::Unreadable(io::Error::last_os_error()));
    }
    let synced = state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0;
    Ok(ClockState { synced, error_ms: tx.esterror as f64 / 1000.0 })
}
