//! The bounded queue that carries batches from the workers to an observability
//! side thread (the access-log writer, the span exporter): a worker never waits
//! (`try_send` drops what does not fit, and the caller counts it), and the side
//! thread goes to sleep as soon as the queue is empty.
//!
//! Why not `crossbeam_channel`: its receivers spin and then call `sched_yield(2)`
//! a few times before they sleep. A side thread that finds the queue empty after
//! every batch (a few hundred times a second under load) thus switched to the
//! worker and back several times per batch: 0.4–0.6% of a traced, logged
//! request's CPU in `perf record` (loadtest/bench/observe-cost's setup, where the
//! gateway's threads share one core). Here a receiver checks the queue under a
//! mutex and waits on a condition variable (one futex wait); a sender wakes it
//! only when the queue was empty, the only time it can be asleep.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A queue of at most `capacity` items (at least 1): its sending side, which may
/// be cloned, and its one receiving side.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.min(1024)),
            senders: 1,
            receiving: true,
        }),
        filled: Condvar::new(),
        drained: Condvar::new(),
        capacity,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The sending side: workers and the code that stops the side thread.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side: the side thread.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why [`Receiver::recv_timeout`] returned without an item.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing came within the timeout.
    Timeout,
    /// Every sender is gone and the queue is empty.
    Disconnected,
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or the receiver is gone; then
    /// returns it. Never waits (beyond the queue's mutex, held only to push or pop).
    pub fn try_send(&self, item: T) -> Result<(), T> {
        let mut state = self.shared.lock();
        if !state.receiving || state.items.len() >= self.shared.capacity {
            return Err(item);
        }
        let was_empty = state.items.is_empty();
        state.items.push_back(item);
        drop(state);
        if was_empty {
            self.shared.filled.notify_one();
        }
        Ok(())
    }

    /// Queues `item`, waiting for room until `deadline`; returns it when the
    /// deadline passed first or the receiver is gone. For the stop message only:
    /// a worker uses [`Sender::try_send`].
    pub fn send_deadline(&self, item: T, deadline: Instant) -> Result<(), T> {
        let mut state = self.shared.lock();
        loop {
            if !state.receiving {
                return Err(item);
            }
            if state.items.len() < self.shared.capacity {
                let was_empty = state.items.is_empty();
                state.items.push_back(item);
                drop(state);
                if was_empty {
                    self.shared.filled.notify_one();
                }
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(item);
            }
            state = self
                .shared
                .drained
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        if state.senders == 0 {
            drop(state);
            self.shared.filled.notify_all();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item, waiting for one; `None` once every sender is gone and the
    /// queue is empty.
    pub fn recv(&self) -> Option<T> {
        let mut state = self.shared.lock();
        loop {
            if let Some(item) = self.shared.pop(&mut state) {
                return Some(item);
            }
            if state.senders == 0 {
                return None;
            }
            state = self
                .shared
                .filled
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The next item, waiting at most `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(item) = self.shared.pop(&mut state) {
                return Ok(item);
            }
            if state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            state = self
                .shared
                .filled
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiving = false;
        let items = std::mem::take(&mut state.items);
        drop(state);
        self.shared.drained.notify_all();
        drop(items);
    }
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item arrives in an empty queue, or the last sender goes.
    filled: Condvar,
    /// Signalled when an item leaves a full queue, or the receiver goes.
    drained: Condvar,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiving: bool,
}

impl<T> Shared<T> {
    /// The queue's state. A panic while it was held cannot leave it half-changed
    /// (each change is one push, pop or count), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pop(&self, state: &mut State<T>) -> Option<T> {
        let was_full = state.items.len() >= self.capacity;
        let item = state.items.pop_front()?;
        if was_full {
            self.drained.notify_all();
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_and_a_drained_one_takes_again() {
        let (tx, rx) = bounded(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(3));
        assert_eq!(rx.recv(), Some(1));
        assert_eq!(tx.try_send(4), Ok(()));
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(2));
        assert_eq!(rx.recv(), Some(4));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        );
    }

    #[test]
    fn the_receiver_ends_after_the_last_sender_and_what_it_sent() {
        let (tx, rx) = bounded(4);
        let tx2 = tx.clone();
        tx.try_send("a").unwrap();
        drop(tx);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx2.try_send("b").unwrap();
        });
        assert_eq!(rx.recv(), Some("a"));
        assert_eq!(rx.recv(), Some("b"), "woken by a send into an empty queue");
        sender.join().unwrap();
        assert_eq!(rx.recv(), None);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn send_deadline_waits_for_room_and_gives_up_at_its_deadline() {
        let (tx, rx) = bounded(1);
        tx.try_send(1).unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(tx.send_deadline(2, soon), Err(2), "full until the deadline");
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let first = rx.recv();
            (first, rx.recv())
        });
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            tx.send_deadline(3, later),
            Ok(()),
            "room made by the reader"
        );
        drop(tx);
        assert_eq!(reader.join().unwrap(), (Some(1), Some(3)));
    }

    #[test]
    fn without_a_receiver_nothing_is_queued() {
        let (tx, rx) = bounded(4);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(1));
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(tx.send_deadline(2, later), Err(2));
    }
}
