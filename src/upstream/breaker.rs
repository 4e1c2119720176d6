//! Circuit breakers of one upstream on one worker: requests in flight, retries in
//! flight (with the retry budget), open connections and requests waiting for one.
//! Past a bound the request is refused at once (the forward stage answers `503`
//! naming the limit) instead of queueing behind a failing upstream.
//!
//! The counts ([`BreakerState`]) outlive a configuration: they are kept per
//! upstream name on the worker, and every open connection holds a [`ConnSlot`]
//! that gives its place back when the connection closes, whichever generation
//! opened it. The bounds ([`Breaker`]) come from the snapshot: each worker enforces
//! its share of the process-wide `max_*` (`BreakerSettings::share`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use monoio::time::Instant;

use crate::config::{BreakerSettings, RetryBudget};
use crate::observe::Counters;

use super::retry_budget;

/// Which bound refused a request (the value of `x-portico-overflow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerLimit {
    /// No connection could be opened or freed before the request's deadline.
    MaxConnections,
    /// Too many requests already wait for a connection.
    MaxPending,
    /// Too many requests in flight to the upstream.
    MaxRequests,
    /// Too many retries in flight to the upstream.
    MaxRetries,
    /// Retries in flight would pass the retry budget's share of the requests.
    RetryBudget,
}

impl BreakerLimit {
    /// The configuration key (or table) named in replies, counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            BreakerLimit::MaxConnections => "max_connections",
            BreakerLimit::MaxPending => "max_pending",
            BreakerLimit::MaxRequests => "max_requests",
            BreakerLimit::MaxRetries => "max_retries",
            BreakerLimit::RetryBudget => "retry_budget",
        }
    }

    /// The counter of `counters` that counts refusals by this bound.
    pub fn counter(self, counters: &Counters) -> &Cell<u64> {
        match self {
            BreakerLimit::MaxRequests => &counters.upstream_overflow_requests,
            BreakerLimit::MaxPending => &counters.upstream_overflow_pending,
            BreakerLimit::MaxConnections => &counters.upstream_overflow_connections,
            BreakerLimit::MaxRetries => &counters.upstream_overflow_retries,
            BreakerLimit::RetryBudget => &counters.upstream_retry_budget_exhausted,
        }
    }
}

/// One upstream's counts on one worker (kept across configurations).
#[derive(Default)]
pub struct BreakerState {
    requests: Cell<u32>,
    retries: Cell<u32>,
    connections: Cell<u32>,
    pending: Cell<u32>,
    /// Requests waiting for a connection, first come first served.
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

impl BreakerState {
    /// Requests in flight, retries in flight, open connections, waiting requests.
    pub fn counts(&self) -> [u32; 4] {
        [
            self.requests.get(),
            self.retries.get(),
            self.connections.get(),
            self.pending.get(),
        ]
    }

    /// Wakes the longest-waiting request: a connection closed or went idle.
    fn wake_one(&self) {
        let next = self.waiters.borrow_mut().pop_front();
        if let Some(w) = next {
            w.woken.set(true);
            if let Some(waker) = w.waker.take() {
                waker.wake();
            }
        }
    }
}

/// An upstream's breakers on one worker: the shared counts and this worker's
/// shares of the bounds.
pub struct Breaker {
    state: Rc<BreakerState>,
    max_connections: u32,
    max_pending: u32,
    max_requests: u32,
    max_retries: Option<u32>,
    budget: RetryBudget,
}

impl Breaker {
    /// Worker `worker` (of `workers`)'s breakers over `state`.
    pub fn new(
        state: Rc<BreakerState>,
        settings: &BreakerSettings,
        budget: &RetryBudget,
        workers: usize,
        worker: usize,
    ) -> Self {
        let share = |total| BreakerSettings::share(total, workers, worker);
        Breaker {
            state,
            max_connections: share(settings.max_connections),
            max_pending: share(settings.max_pending),
            max_requests: share(settings.max_requests),
            max_retries: settings.max_retries.map(share),
            budget: budget.clone(),
        }
    }

    /// Admits one request to the upstream, or says it would pass `max_requests`.
    /// The request counts as in flight until the guard drops.
    pub fn admit_request(&self) -> Result<InFlight<'_>, BreakerLimit> {
        let n = self.state.requests.get();
        if n >= self.max_requests {
            return Err(BreakerLimit::MaxRequests);
        }
        self.state.requests.set(n + 1);
        Ok(InFlight(&self.state.requests))
    }

    /// Admits one retry, or says which bound refuses it: `max_retries`, or the
    /// retry budget (retries in flight below `max(min_concurrency, percent% ×
    /// requests in flight)`). The retry counts as in flight until the guard drops.
    pub fn admit_retry(&self) -> Result<InFlight<'_>, BreakerLimit> {
        let retries = self.state.retries.get();
        if self.max_retries.is_some_and(|max| retries >= max) {
            return Err(BreakerLimit::MaxRetries);
        }
        if !retry_budget::allows(&self.budget, retries, self.state.requests.get()) {
            return Err(BreakerLimit::RetryBudget);
        }
        self.state.retries.set(retries + 1);
        Ok(InFlight(&self.state.retries))
    }

    /// A place for one more open connection, if `max_connections` allows it.
    pub(super) fn connection_slot(&self) -> Option<ConnSlot> {
        let n = self.state.connections.get();
        if n >= self.max_connections {
            return None;
        }
        self.state.connections.set(n + 1);
        Some(ConnSlot {
            state: self.state.clone(),
        })
    }

    /// Waits (until `deadline`) for a connection of the upstream to close or go
    /// idle; refused at once past `max_pending` waiting requests.
    pub(super) async fn wait_for_connection(&self, deadline: Instant) -> Result<(), BreakerLimit> {
        let pending = self.state.pending.get();
        if pending >= self.max_pending {
            return Err(BreakerLimit::MaxPending);
        }
        let _waiting = InFlight::enter(&self.state.pending);
        let wait = Wait::new(&self.state);
        monoio::time::timeout_at(deadline, wait)
            .await
            .map_err(|_| BreakerLimit::MaxConnections)
    }
}

/// Counts one request (or retry, or waiting request) while it lives.
pub struct InFlight<'a>(&'a Cell<u32>);

impl<'a> InFlight<'a> {
    fn enter(count: &'a Cell<u32>) -> Self {
        count.set(count.get() + 1);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// One open connection's place under `max_connections`, held by the connection
/// (in use or idle in the pool) and given back when it closes.
pub struct ConnSlot {
    state: Rc<BreakerState>,
}

impl ConnSlot {
    /// The connection went idle: a request waiting for one may take it (one load
    /// when none waits, as on every pooled response).
    pub(super) fn went_idle(&self) {
        if self.state.pending.get() > 0 {
            self.state.wake_one();
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let c = &self.state.connections;
        c.set(c.get().saturating_sub(1));
        self.state.wake_one();
    }
}

struct Waiter {
    woken: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

/// A request's place in the queue for a connection (ends when woken).
struct Wait<'a> {
    state: &'a BreakerState,
    me: Rc<Waiter>,
    done: bool,
}

impl<'a> Wait<'a> {
    fn new(state: &'a BreakerState) -> Self {
        let me = Rc::new(Waiter {
            woken: Cell::new(false),
            waker: Cell::new(None),
        });
        state.waiters.borrow_mut().push_back(me.clone());
        Wait {
            state,
            me,
            done: false,
        }
    }
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.me.woken.get() {
            self.done = true;
            return Poll::Ready(());
        }
        self.me.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if !self.me.woken.get() {
            // Gave up (deadline): leave the queue.
            self.state
                .waiters
                .borrow_mut()
                .retain(|w| !Rc::ptr_eq(w, &self.me));
        } else if !self.done {
            // Woken but gone before it looked: pass the turn on.
            self.state.wake_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(settings: BreakerSettings) -> Breaker {
        Breaker::new(
            Rc::new(BreakerState::default()),
            &settings,
            &RetryBudget::default(),
            1,
            0,
        )
    }

    fn settings() -> BreakerSettings {
        BreakerSettings {
            max_connections: 1,
            max_pending: 1,
            max_requests: 2,
            max_retries: Some(1),
        }
    }

    #[test]
    fn requests_past_the_bound_are_refused_until_one_ends() {
        let b = breaker(settings());
        let first = b.admit_request().unwrap();
        let _second = b.admit_request().unwrap();
        assert_eq!(b.admit_request().err(), Some(BreakerLimit::MaxRequests));
        drop(first);
        assert!(b.admit_request().is_ok());
    }

    #[test]
    fn retries_are_held_to_max_retries() {
        let b = breaker(settings());
        let _r = b.admit_request().unwrap();
        let retry = b.admit_retry().unwrap();
        assert_eq!(b.admit_retry().err(), Some(BreakerLimit::MaxRetries));
        drop(retry);
        assert!(b.admit_retry().is_ok());
    }

    #[test]
    fn a_closed_connection_wakes_the_request_waiting_for_one() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = Rc::new(breaker(settings()));
            let slot = b.connection_slot().unwrap();
            assert!(b.connection_slot().is_none());
            let waiter = {
                let b = b.clone();
                monoio::spawn(async move {
                    let deadline = Instant::now() + std::time::Duration::from_secs(5);
                    b.wait_for_connection(deadline).await
                })
            };
            monoio::time::sleep(std::time::Duration::from_millis(5)).await;
            // A second waiter would pass max_pending = 1.
            let deadline = Instant::now() + std::time::Duration::from_millis(1);
            assert_eq!(
                b.wait_for_connection(deadline).await,
                Err(BreakerLimit::MaxPending)
            );
            drop(slot);
            assert_eq!(waiter.await, Ok(()));
            assert!(b.connection_slot().is_some());
        });
    }
}
