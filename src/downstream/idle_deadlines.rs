//! Coarse deadlines for idle connections, checked on the worker's tick.
//!
//! An idle keep-alive connection waits for its next request with a deadline (the
//! idle timeout). A monoio timer costs 640 bytes of the waiting future (its entry is
//! cache-line padded for a multi-threaded design), more than everything else an idle
//! connection keeps; a slot here costs 32 bytes. The price is precision: a deadline
//! fires on the first tick after it passes (the tick is 50 ms), which suits timeouts
//! counted in seconds. Busy connections keep monoio's exact timers.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The deadlines one worker's idle connections wait on.
#[derive(Default)]
pub struct IdleDeadlines {
    waiters: RefCell<Waiters>,
}

#[derive(Default)]
struct Waiters {
    slots: Vec<Option<(Instant, Waker)>>,
    free: Vec<usize>,
}

impl IdleDeadlines {
    /// Resolves on the first [`IdleDeadlines::expire`] at or after `deadline`.
    pub fn wait_until(&self, deadline: Instant) -> IdleDeadline<'_> {
        IdleDeadline {
            deadlines: self,
            deadline,
            slot: None,
        }
    }

    /// Wakes every waiter whose deadline is at or before `now` (the worker's tick).
    pub fn expire(&self, now: Instant) {
        let due: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .slots
            .iter_mut()
            .filter(|s| matches!(s, Some((d, _)) if *d <= now))
            .filter_map(|s| s.take().map(|(_, w)| w))
            .collect();
        for w in due {
            w.wake();
        }
    }
}

/// A wait for one deadline; its slot is freed when it resolves or is dropped.
pub struct IdleDeadline<'a> {
    deadlines: &'a IdleDeadlines,
    deadline: Instant,
    slot: Option<usize>,
}

impl Future for IdleDeadline<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let entry = Some((self.deadline, cx.waker().clone()));
        let mut waiters = self.deadlines.waiters.borrow_mut();
        match self.slot {
            // `expire` empties a slot it wakes; refilling it keeps the same index.
            Some(i) => waiters.slots[i] = entry,
            None => {
                let i = match waiters.free.pop() {
                    Some(i) => {
                        waiters.slots[i] = entry;
                        i
                    }
                    None => {
                        waiters.slots.push(entry);
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

impl Drop for IdleDeadline<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut waiters = self.deadlines.waiters.borrow_mut();
            waiters.slots[i] = None;
            waiters.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiter_is_woken_by_the_first_expire_past_its_deadline() {
        let deadlines = IdleDeadlines::default();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let start = Instant::now();
        let mut wait = Box::pin(deadlines.wait_until(start + Duration::from_millis(30)));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        deadlines.expire(start);
        assert!(!flag.0.load(std::sync::atomic::Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(40));
        deadlines.expire(Instant::now());
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        drop(wait);
        // The slot went back to the free list.
        assert_eq!(deadlines.waiters.borrow().free, vec![0]);
    }
}
