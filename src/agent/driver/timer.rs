//! timer: the loop's one timer, a Linux timerfd set to the earliest
//! deadline. The kernel wakes the loop once, at the deadline.
//!
//! tokio's `Sleep` wakes its thread more often than that: its timer wheel
//! keeps a deadline 64 ms to 4 s away in a slot 64 ms wide and wakes at the
//! start of that slot to move it down a level, then again at the deadline
//! (three times from 4 s on), and setting it earlier writes the runtime's
//! eventfd. An idle agent's deadlines (the next pass, probe, heartbeat,
//! flush) are mostly that far apart: the wheel's extra wake-ups were a
//! third of its wake-ups, and a wake-up (a context switch) costs an idle
//! process far more than the instructions of a turn.
//!
//! If the kernel has no timerfd (none that runs herd: Linux has had it since
//! 2.6.25), tokio's `Sleep` does the job.
//!
//! Contract: [`Timer::poll`] is ready once per setting, at or after its
//! deadline; a setting in the past is ready at once. Must not be polled
//! outside a tokio runtime with IO enabled.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::time::Sleep;

pub(super) struct Timer {
    deadline: Instant,
    /// Ready since the last setting.
    fired: bool,
    clock: Clock,
}

enum Clock {
    Fd(AsyncFd<OwnedFd>),
    Tokio(Pin<Box<Sleep>>),
}

impl Timer {
    /// A timer set to `deadline`, on a timerfd if the kernel has them.
    pub fn new(deadline: Instant) -> Timer {
        match timerfd() {
            Ok(fd) => {
                let mut t = Timer { deadline, fired: false, clock: Clock::Fd(fd) };
                t.reset(deadline);
                t
            }
            Err(e) => {
                tracing::debug!(error = %e, "no timerfd: the loop's timer is tokio's");
                Timer::tokio(deadline)
            }
        }
    }

    /// A timer on tokio's `Sleep`.
    pub fn tokio(deadline: Instant) -> Timer {
        let sleep = Box::pin(tokio::time::sleep_until(deadline.into()));
        Timer { deadline, fired: false, clock: Clock::Tokio(sleep) }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Ready since it was last set.
    pub fn is_elapsed(&self) -> bool {
        self.fired
    }

    /// Sets it to `deadline`, which may be earlier or later than before.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.fired = false;
        match &mut self.clock {
            Clock::Fd(fd) => {
                // Relative: an Instant does not say its clock's reading. A
                // zero value would disarm the timer, so a deadline that is
                // due already is one nanosecond away.
                let after = deadline.saturating_duration_since(Instant::now()).max(Duration::from_nanos(1));
                let spec = libc::itimerspec {
                    it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                    it_value: libc::timespec {
                        tv_sec: after.as_secs() as _,
                        tv_nsec: after.subsec_nanos() as _,
                    },
                };
                // SAFETY: a timerfd this Timer owns; both pointers are valid
                // for the call (the old value is not asked for).
                let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
                // Only EBADF/EFAULT/EINVAL can fail it: none with these arguments.
                debug_assert_eq!(rc, 0, "timerfd_settime: {}", io::Error::last_os_error());
            }
            Clock::Tokio(sleep) => sleep.as_mut().reset(deadline.into()),
        }
    }

    /// Ready when the deadline has passed (once per setting).
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired {
            return Poll::Pending;
        }
        match &mut self.clock {
            Clock::Tokio(sleep) => ready!(sleep.as_mut().poll(cx)),
            Clock::Fd(fd) => {
                // An error means the runtime is shutting down: the loop is
                // told so by its shutdown input; the timer just fires.
                while let Ok(mut guard) = ready!(fd.poll_read_ready(cx)) {
                    // The reactor is edge-triggered: every expiry is a new
                    // edge even if the previous one was never read, and
                    // setting the timer clears the count, so the count is
                    // read only when the clock does not say that this
                    // setting has expired.
                    let due = Instant::now() >= self.deadline || {
                        let mut expirations = [0u8; 8];
                        // SAFETY: reads at most 8 bytes into an 8-byte
                        // buffer from the timerfd this Timer owns.
                        unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) == 8 }
                    };
                    // Not readable again before the next expiry's edge.
                    guard.clear_ready();
                    if due {
                        break;
                    }
                }
            }
        }
        self.fired = true;
        Poll::Ready(())
    }
}

/// A non-blocking CLOCK_MONOTONIC timerfd (the clock `Instant` reads),
/// registered for reading.
fn timerfd() -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: no pointers; the result is checked.
    let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor this process owns and nothing else holds.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    crate::agent::net::register_readable(fd)
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::{Duration, Instant};

    use super::{Clock, Timer};

    async fn wait(t: &mut Timer) -> Instant {
        poll_fn(|cx| t.poll(cx)).await;
        Instant::now()
    }

    #[tokio::test]
    async fn fires_once_per_setting_at_its_deadline_moved_earlier_or_later() {
        for mut t in [Timer::new(Instant::now() + Duration::from_secs(60)), Timer::tokio(Instant::now())] {
            let kind = if matches!(t.clock, Clock::Fd(_)) { "timerfd" } else { "tokio" };
            let start = Instant::now();
            // Earlier than set: fires at the new deadline.
            t.reset(start + Duration::from_millis(30));
            let at = wait(&mut t).await;
            assert!(at >= start + Duration::from_millis(30), "{kind}: fired early");
            assert!(t.is_elapsed());
            // Once per setting: pending until set again.
            let again = poll_fn(|cx| std::task::Poll::Ready(t.poll(cx).is_pending())).await;
            assert!(again, "{kind}: fired twice for one setting");
            // Later, then later again before it fires: only the last counts.
            let set = Instant::now();
            t.reset(set + Duration::from_millis(20));
            t.reset(set + Duration::from_millis(60));
            assert!(!t.is_elapsed());
            let at = wait(&mut t).await;
            assert!(at >= set + Duration::from_millis(60), "{kind}: fired at the earlier setting");
            // A deadline in the past is ready at once.
            t.reset(Instant::now() - Duration::from_millis(5));
            let at = wait(&mut t).await;
            assert!(at.elapsed() < Duration::from_secs(1), "{kind}: a past deadline waited");
        }
    }

    #[tokio::test]
    async fn on_linux_it_is_a_timerfd() {
        let t = Timer::new(Instant::now());
        assert!(matches!(t.clock, Clock::Fd(_)), "timerfd_create failed on this kernel");
    }
}
