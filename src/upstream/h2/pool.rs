//! A worker's HTTP/2 connections to upstream endpoints: per endpoint (keyed by its
//! identity, [`EndpointKey`]) a few multiplexed connections, each carrying up to
//! `max_concurrent_streams` requests at once (fewer if the endpoint's SETTINGS say
//! so). A request takes the first connection with a free stream; when all are
//! busy it opens another (within the upstream's `max_connections`; past it, it
//! shares the least busy one and h2 queues its stream). Requests that arrive while
//! a connection is being opened wait for that one instead of opening their own.
//!
//! This is what makes an HTTP/2 upstream cheap: requests from many client
//! connections handled in the same event-loop turn leave in one write and come back
//! in one read of the same connection.
//!
//! Each connection is driven by a task of its own (`conn/`); when it ends, the
//! connection is gone from the pool. Connections idle past the upstream's
//! `pool_idle_timeout_ms`, or past `max_requests_per_connection` requests, are
//! retired (GOAWAY once their streams are done), as are all of them when the
//! worker drains.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::config::{Endpoint, EndpointKey, Upstream};
use crate::observe::Counters;

use super::super::breaker::{Breaker, BreakerLimit, ConnSlot};
use super::super::failure::{ExchangeError, FailureSource};
use super::super::pool::Fnv;
use super::conn::Connection;
use super::connect::open;

/// All HTTP/2 upstream connections of one worker.
#[derive(Default)]
pub struct H2Pools {
    endpoints: RefCell<HashMap<EndpointKey, Endpoints, BuildHasherDefault<Fnv>>>,
    closed: Cell<bool>,
}

/// The connections to one endpoint, and the one being opened.
#[derive(Default)]
struct Endpoints {
    conns: Vec<Rc<H2Conn>>,
    opening: Option<Rc<Opening>>,
}

/// One multiplexed connection.
pub struct H2Conn {
    /// The connection requests are sent on.
    conn: Rc<Connection>,
    /// Streams in progress.
    in_flight: Cell<usize>,
    /// Requests sent so far.
    requests: Cell<u64>,
    /// Our limit of streams at once (the endpoint may allow fewer).
    max_streams: usize,
    max_requests: u64,
    idle_timeout: Duration,
    idle_since: Cell<Instant>,
    /// Its place under `max_connections`, given back when it is dropped.
    _slot: Option<ConnSlot>,
}

/// A connection being opened, which requests arriving meanwhile wait for.
struct Opening {
    waiting: Cell<usize>,
    /// How the opening ended: `None` while in progress.
    outcome: RefCell<Option<Result<(), ExchangeError>>>,
    wakers: RefCell<Vec<Waker>>,
}

/// One stream of a connection in progress; dropped when its exchange ends.
pub struct StreamSlot(Rc<H2Conn>);

impl StreamSlot {
    /// The connection is going away (GOAWAY, or it failed): no new streams on it.
    pub fn retire_connection(&self) {
        self.0.retire();
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let c = &self.0;
        c.in_flight.set(c.in_flight.get().saturating_sub(1));
        if c.in_flight.get() == 0 {
            c.idle_since.set(Instant::now());
        }
    }
}

impl H2Conn {
    /// The handle to send one more request on, if this connection has a free
    /// stream: counted as in progress until the returned slot drops.
    fn start_stream(self: &Rc<Self>) -> Option<(Rc<Connection>, StreamSlot)> {
        if !self.usable() {
            return None;
        }
        let limit = self.max_streams.min(self.conn.peer_max_streams());
        if self.in_flight.get() >= limit {
            return None;
        }
        Some((self.conn.clone(), self.count_stream()))
    }

    /// Counts a stream on this connection whatever its load (the upstream is at
    /// `max_connections`: the exchange waits until the endpoint allows its stream).
    fn share_stream(self: &Rc<Self>) -> Option<(Rc<Connection>, StreamSlot)> {
        if !self.usable() {
            return None;
        }
        Some((self.conn.clone(), self.count_stream()))
    }

    fn count_stream(self: &Rc<Self>) -> StreamSlot {
        self.in_flight.set(self.in_flight.get() + 1);
        let n = self.requests.get() + 1;
        self.requests.set(n);
        if n >= self.max_requests {
            self.retire();
        }
        StreamSlot(self.clone())
    }

    /// No new streams: GOAWAY, and the connection closes once the open ones are
    /// done.
    fn retire(&self) {
        self.conn.retire();
    }

    fn usable(&self) -> bool {
        self.conn.is_usable()
    }
}

impl H2Pools {
    pub fn new() -> Self {
        H2Pools::default()
    }

    /// A stream to `endpoint` of `upstream`: on a connection with room, on one
    /// being opened, or on a new one (counted under `breaker`'s `max_connections`
    /// when given). Returns the handle, the stream's slot, and whether the
    /// connection was opened for this request.
    pub async fn stream(
        &self,
        upstream: &Upstream,
        endpoint: &Endpoint,
        breaker: Option<&Breaker>,
        deadline: monoio::time::Instant,
        counters: &Counters,
    ) -> Result<(Rc<Connection>, StreamSlot, bool), ExchangeError> {
        loop {
            if let Some((send, slot)) = self.with_room(&endpoint.key) {
                Counters::bump(&counters.upstream_reused);
                return Ok((send, slot, false));
            }
            if let Some(opening) = self.opening(&endpoint.key, upstream.max_concurrent_streams) {
                opening.wait(deadline).await?;
                continue;
            }
            let slot = match breaker {
                None => None,
                Some(b) => match b.connection_slot() {
                    Some(slot) => Some(slot),
                    None => {
                        if let Some((send, slot)) = self.least_busy(&endpoint.key) {
                            Counters::bump(&counters.upstream_reused);
                            return Ok((send, slot, false));
                        }
                        b.wait_for_connection(deadline).await.map_err(overflow)?;
                        continue;
                    }
                },
            };
            return self
                .open_new(upstream, endpoint, slot, deadline, counters)
                .await;
        }
    }

    /// The first connection to `key` with a free stream.
    fn with_room(&self, key: &EndpointKey) -> Option<(Rc<Connection>, StreamSlot)> {
        let endpoints = self.endpoints.borrow();
        endpoints
            .get(key)?
            .conns
            .iter()
            .find_map(|c| c.start_stream())
    }

    /// The open connection to `key` with the fewest streams in progress.
    fn least_busy(&self, key: &EndpointKey) -> Option<(Rc<Connection>, StreamSlot)> {
        let endpoints = self.endpoints.borrow();
        let conns = &endpoints.get(key)?.conns;
        conns
            .iter()
            .filter(|c| c.usable())
            .min_by_key(|c| c.in_flight.get())?
            .share_stream()
    }

    /// The opening in progress to `key`, if it can take one more waiting request.
    fn opening(&self, key: &EndpointKey, max_streams: usize) -> Option<Rc<Opening>> {
        let endpoints = self.endpoints.borrow();
        let opening = endpoints.get(key)?.opening.clone()?;
        (opening.waiting.get() + 1 < max_streams).then_some(opening)
    }

    /// Opens a connection, lets the requests that waited for it know, and takes
    /// its first stream.
    async fn open_new(
        &self,
        upstream: &Upstream,
        endpoint: &Endpoint,
        slot: Option<ConnSlot>,
        deadline: monoio::time::Instant,
        counters: &Counters,
    ) -> Result<(Rc<Connection>, StreamSlot, bool), ExchangeError> {
        let opening = Rc::new(Opening {
            waiting: Cell::new(0),
            outcome: RefCell::new(None),
            wakers: RefCell::new(Vec::new()),
        });
        self.endpoints
            .borrow_mut()
            .entry(endpoint.key.clone())
            .or_default()
            .opening = Some(opening.clone());
        // Whatever happens (this future may be dropped: the request timed out), the
        // opening ends and its waiters are woken.
        let _settle = Settle {
            pools: self,
            key: &endpoint.key,
            opening: &opening,
        };
        let opened = open(upstream, endpoint, deadline, counters).await;
        let connection = match opened {
            Ok(connection) => connection,
            Err(e) => {
                *opening.outcome.borrow_mut() = Some(Err(e.clone()));
                return Err(e);
            }
        };
        let conn = Rc::new(H2Conn {
            conn: connection,
            in_flight: Cell::new(0),
            requests: Cell::new(0),
            max_streams: upstream.max_concurrent_streams,
            max_requests: upstream.max_requests_per_connection,
            idle_timeout: upstream.pool_idle_timeout,
            idle_since: Cell::new(Instant::now()),
            _slot: slot,
        });
        let first = conn.share_stream();
        if self.closed.get() {
            conn.retire();
        } else {
            self.endpoints
                .borrow_mut()
                .entry(endpoint.key.clone())
                .or_default()
                .conns
                .push(conn);
        }
        *opening.outcome.borrow_mut() = Some(Ok(()));
        match first {
            Some((send, slot)) => Ok((send, slot, true)),
            None => Err(ExchangeError::new(
                FailureSource::Closed,
                "upstream HTTP/2 connection closed at once",
            )),
        }
    }

    /// Forgets closed connections and retires idle ones (the worker's tick).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.endpoints.borrow_mut().retain(|_, e| {
            e.conns.retain(|c| {
                let idle = c.in_flight.get() == 0;
                if idle && now.duration_since(c.idle_since.get()) >= c.idle_timeout {
                    c.retire();
                }
                c.usable() || !idle
            });
            !e.conns.is_empty() || e.opening.is_some()
        });
    }

    /// Retires every connection and keeps none from now on (the drain): each
    /// closes once its streams are done.
    pub fn close(&self) {
        self.closed.set(true);
        for e in self.endpoints.borrow().values() {
            for c in &e.conns {
                c.retire();
            }
        }
    }

    /// Connections open to `key` (tests, `/stats`).
    pub fn connections(&self, key: &EndpointKey) -> usize {
        self.endpoints
            .borrow()
            .get(key)
            .map_or(0, |e| e.conns.iter().filter(|c| c.usable()).count())
    }
}

impl Opening {
    /// Waits for the opening to end (or `deadline`): the caller then looks for room
    /// again. The opening's failure is the waiter's too.
    async fn wait(&self, deadline: monoio::time::Instant) -> Result<(), ExchangeError> {
        self.waiting.set(self.waiting.get() + 1);
        let ended = std::future::poll_fn(|cx| match &*self.outcome.borrow() {
            Some(outcome) => std::task::Poll::Ready(outcome.clone()),
            None => {
                self.wakers.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            }
        });
        let outcome = monoio::time::timeout_at(deadline, ended).await;
        self.waiting.set(self.waiting.get().saturating_sub(1));
        match outcome {
            Ok(outcome) => outcome,
            Err(_) => Err(ExchangeError::new(
                FailureSource::ConnectTimeout,
                "upstream connect timed out",
            )),
        }
    }
}

/// Ends an opening: the endpoint forgets it and its waiters look again.
struct Settle<'a> {
    pools: &'a H2Pools,
    key: &'a EndpointKey,
    opening: &'a Rc<Opening>,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.pools.endpoints.borrow_mut().get_mut(self.key) {
            if e.opening
                .as_ref()
                .is_some_and(|o| Rc::ptr_eq(o, self.opening))
            {
                e.opening = None;
            }
        }
        if self.opening.outcome.borrow().is_none() {
            *self.opening.outcome.borrow_mut() = Some(Err(ExchangeError::new(
                FailureSource::ConnectTimeout,
                "upstream connect timed out",
            )));
        }
        for waker in self.opening.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

fn overflow(limit: BreakerLimit) -> ExchangeError {
    ExchangeError::new(
        FailureSource::Overflow(limit),
        format!("upstream overflow: {}", limit.name()),
    )
}
