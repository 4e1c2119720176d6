//! The worker-local drain signal: once raised, accept loops stop and idle
//! keep-alive connections close; requests in flight run to completion.
//!
//! Waiting is O(1): each waiting future owns a slot in a small slab, filled on its
//! first poll and freed when it is dropped (every keep-alive wait creates one).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A one-way flag with wake-ups, for tasks on one worker thread.
#[derive(Default)]
pub struct DrainSignal {
    raised: Cell<bool>,
    waiters: RefCell<Waiters>,
}

#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl DrainSignal {
    pub fn raise(&self) {
        self.raised.set(true);
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_raised(&self) -> bool {
        self.raised.get()
    }

    /// Resolves once the signal is raised.
    pub fn raised(&self) -> Raised<'_> {
        Raised {
            signal: self,
            slot: None,
        }
    }
}

pub struct Raised<'a> {
    signal: &'a DrainSignal,
    slot: Option<usize>,
}

impl Future for Raised<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.raised.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        match self.slot {
            Some(i) => match &mut waiters.slots[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                entry => *entry = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let i = match waiters.free.pop() {
                    Some(i) => {
                        waiters.slots[i] = waker;
                        i
                    }
                    None => {
                        waiters.slots.push(waker);
                        waiters.slots.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut waiters = self.signal.waiters.borrow_mut();
            waiters.slots[i] = None;
            waiters.free.push(i);
        }
    }
}
