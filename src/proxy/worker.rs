//! A worker's long-lived state, shared by all its connections on its one thread:
//! counters, the drain signal, the keep-alive pools and the endpoints' health,
//! ejections and breaker counts (keyed by identity, so they outlive a generation),
//! the requests in progress, request IDs, the access-log buffer, and the current
//! [`Generation`] that new connections pin.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Snapshot;
use crate::downstream::DrainSignal;
use crate::limit::WorkerLink;
use crate::observe::{AccessLogBuffer, Counters, PublishedCounters};
use crate::upstream::{EndpointBoard, Exchanger, H2Pools, UpstreamPools, UpstreamStates};

use super::generation::Generation;
use super::request_id::RequestIds;

/// Upstream request heads are built in buffers kept here between requests; more
/// than this many idle ones are dropped.
const SPARE_HEAD_BUFFERS: usize = 64;
const HEAD_BUFFER_BYTES: usize = 4 * 1024;

/// One worker's state (never shared across threads).
pub struct Worker {
    pub id: usize,
    pub counters: Counters,
    pub drain: DrainSignal,
    pub pools: UpstreamPools,
    /// Multiplexed connections to HTTP/2 upstreams.
    pub h2_pools: H2Pools,
    /// Endpoint health and ejections, breaker counts (by identity).
    pub upstreams: UpstreamStates,
    pub request_ids: RequestIds,
    pub access_log: Option<AccessLogBuffer>,
    current: RefCell<Rc<Generation>>,
    head_buffers: RefCell<Vec<Vec<u8>>>,
    /// Requests in progress on this worker (for `max_in_flight_per_worker`).
    in_flight: Cell<usize>,
}

impl Worker {
    /// Worker `id`, serving `snapshot` to begin with; `board` carries health
    /// verdicts in and endpoint states out, `limiter` is its link to the global
    /// limiter thread (when there is one).
    pub fn new(
        id: usize,
        access_log: Option<AccessLogBuffer>,
        board: Arc<EndpointBoard>,
        snapshot: Arc<Snapshot>,
        limiter: Option<WorkerLink>,
    ) -> Self {
        let upstreams = UpstreamStates::new(id, board);
        let generation = Generation::new(snapshot, &upstreams, limiter);
        Worker {
            id,
            counters: Counters::default(),
            drain: DrainSignal::default(),
            pools: UpstreamPools::new(),
            h2_pools: H2Pools::new(),
            upstreams,
            request_ids: RequestIds::new(id),
            access_log,
            current: RefCell::new(Rc::new(generation)),
            head_buffers: RefCell::new(Vec::new()),
            in_flight: Cell::new(0),
        }
    }

    /// Counts a request as in progress until the guard drops.
    pub fn enter_request(&self) -> InProgress<'_> {
        self.in_flight.set(self.in_flight.get() + 1);
        InProgress(&self.in_flight)
    }

    /// Requests in progress on this worker (the asking one included).
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// The generation a new connection pins (it keeps it to its end).
    pub fn generation(&self) -> Rc<Generation> {
        self.current.borrow().clone()
    }

    /// What an upstream exchange uses of this worker.
    pub fn exchanger(&self) -> Exchanger<'_> {
        Exchanger {
            pools: &self.pools,
            h2: &self.h2_pools,
            counters: &self.counters,
        }
    }

    /// A buffer to build an upstream request head in (empty).
    pub fn head_buffer(&self) -> Vec<u8> {
        self.head_buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(HEAD_BUFFER_BYTES))
    }

    /// Returns a buffer from [`head_buffer`](Self::head_buffer) for reuse.
    pub fn give_head_buffer(&self, mut buf: Vec<u8>) {
        let mut spare = self.head_buffers.borrow_mut();
        if spare.len() < SPARE_HEAD_BUFFERS {
            buf.clear();
            spare.push(buf);
        }
    }

    /// The drain began: idle upstream connections close, and none are kept again.
    pub fn start_drain(&self) {
        self.drain.raise();
        self.pools.close();
        self.h2_pools.close();
    }

    /// The worker tick: close expired idle connections, take new key sets, apply
    /// health verdicts and end ejections (publishing the endpoints' state).
    pub fn tick(&self) {
        self.pools.sweep();
        self.h2_pools.sweep();
        let generation = self.generation();
        generation.auth.refresh_keys(&generation.snapshot.auth);
        self.upstreams.tick(&generation.balancer);
    }

    /// Hands buffered access-log lines to the writer and copies the counters where
    /// the admin thread reads them.
    pub fn publish(&self, to: &PublishedCounters) {
        if let Some(log) = &self.access_log {
            log.flush();
            self.counters.access_log_dropped.set(log.dropped());
        }
        self.counters.publish(to);
    }
}

/// One request in progress on a worker (see [`Worker::enter_request`]).
pub struct InProgress<'w>(&'w Cell<usize>);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}
