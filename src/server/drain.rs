//! The worker-local drain signal: once raised, accept loops stop and idle
//! keep-alive connections close; requests in flight run to completion.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A one-way flag with wake-ups, for tasks on one worker thread.
#[derive(Default)]
pub struct DrainSignal {
    raised: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl DrainSignal {
    pub fn raise(&self) {
        self.raised.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn is_raised(&self) -> bool {
        self.raised.get()
    }

    /// Resolves once the signal is raised.
    pub fn raised(&self) -> Raised<'_> {
        Raised { signal: self }
    }
}

pub struct Raised<'a> {
    signal: &'a DrainSignal,
}

impl Future for Raised<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.raised.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
