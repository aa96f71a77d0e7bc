//! control: which of the driver's inputs need a look this turn. The control
//! inputs (shutdown, seeds, network changes, status requests, reloads) are
//! rare, and the turns many (one per datagram at full speed), so they are
//! polled with a waker of their own: one that marks them due, then wakes the
//! loop. A turn polls them only when they are due, that is when one of them
//! woke the loop or gave it something the turn before; the sockets and the
//! timer are polled every turn as before.
//!
//! Contract: an input polled with [`Control::context`] and left pending
//! registered this waker, so whatever it receives next marks the inputs due
//! and wakes the loop; an input that returned an item is polled again next
//! turn ([`Control::again`]), as it may hold more.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

pub(super) struct Control {
    inner: Arc<Inner>,
    waker: Waker,
}

struct Inner {
    due: AtomicBool,
    /// The loop's own waker, woken after `due` is set.
    task: Mutex<Option<Waker>>,
}

impl Wake for Inner {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        if let Ok(task) = self.task.lock()
            && let Some(w) = task.as_ref()
        {
            w.wake_by_ref();
        }
    }
}

impl Control {
    /// Due at first: every input is polled once, which registers the waker.
    pub(super) fn new() -> Control {
        let inner = Arc::new(Inner { due: AtomicBool::new(true), task: Mutex::new(None) });
        let waker = Waker::from(inner.clone());
        Control { inner, waker }
    }

    /// Whether the control inputs are due, clearing it; `cx` is the loop's
    /// context, whose waker this one wakes from now on.
    pub(super) fn take_due(&self, cx: &Context<'_>) -> bool {
        if let Ok(mut task) = self.inner.task.lock()
            && !task.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        {
            *task = Some(cx.waker().clone());
        }
        self.inner.due.swap(false, Ordering::AcqRel)
    }

    /// The context to poll the control inputs with.
    pub(super) fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }

    /// An input gave an item: look at them all again next turn.
    pub(super) fn again(&self) {
        self.inner.due.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Poll;

    #[tokio::test]
    async fn a_message_marks_the_inputs_due_and_wakes_the_loop() {
        let control = Control::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
        std::future::poll_fn(|cx| {
            assert!(control.take_due(cx), "due at first");
            assert!(rx.poll_recv(&mut control.context()).is_pending());
            assert!(!control.take_due(cx), "nothing came since");
            Poll::Ready(())
        })
        .await;
        tx.send(7).await.unwrap();
        let got = std::future::poll_fn(|cx| {
            assert!(control.take_due(cx), "the send marked them due");
            let got = rx.poll_recv(&mut control.context());
            if got.is_ready() {
                control.again();
            }
            got
        })
        .await;
        assert_eq!(got, Some(7));
        let again = std::future::poll_fn(|cx| Poll::Ready(control.take_due(cx))).await;
        assert!(again, "polled again after an item");
    }
}
