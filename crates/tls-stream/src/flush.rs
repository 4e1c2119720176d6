//! One writer of records at a time. A read and a write may be in flight on one
//! stream at once (HTTP/2 under monoio-compat, a tunnel relaying both ways), and
//! both can have records to send: the read path an alert or the refusal of a TLS 1.2
//! renegotiation, the write path its data. Whichever sends holds the flush; a read
//! that finds one in progress leaves its records to it (the flush loops while
//! records wait), a write waits for it to end, so two writes never interleave
//! their bytes on the socket.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Which path asks for a flush: the read path only sends what it must (an alert, a
/// renegotiation refusal) and may leave it to a flush in progress; the write path
/// must see its own records written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Read,
    Write,
}

/// Whether a flush is in progress, and who waits for it. Shared with
/// [`Flushing`], the guard that ends a flush even when its future is dropped (a
/// read or a write cancelled by a timeout), so a cancelled flush never leaves the
/// stream locked.
#[derive(Default)]
pub(crate) struct FlushState {
    active: Cell<bool>,
    /// Writes waiting for the flush in progress to end.
    waiters: Cell<Vec<Waker>>,
}

impl FlushState {
    /// A flush is in progress.
    pub(crate) fn active(&self) -> bool {
        self.active.get()
    }

    /// Resolves once no flush is in progress.
    pub(crate) async fn idle(&self) {
        poll_fn(|cx| {
            if !self.active.get() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.take();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            self.waiters.set(waiters);
            Poll::Pending
        })
        .await
    }
}

/// A flush in progress; dropping it (at the end, or with a cancelled future) ends
/// the flush and wakes the writes that waited.
pub(crate) struct Flushing(Rc<FlushState>);

impl Flushing {
    pub(crate) fn begin(state: &Rc<FlushState>) -> Flushing {
        state.active.set(true);
        Flushing(state.clone())
    }
}

impl Drop for Flushing {
    fn drop(&mut self) {
        self.0.active.set(false);
        for waker in self.0.waiters.take() {
            waker.wake();
        }
    }
}
