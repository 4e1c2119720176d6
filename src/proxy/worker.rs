//! A worker's long-lived state, shared by all its connections on its one thread:
//! counters and metric series, the drain signal, the idle client connections'
//! deadlines, the keep-alive pools and the endpoints' health, ejections and breaker
//! counts (keyed by identity, so they outlive a generation), the requests in
//! progress, request and trace IDs, the access-log buffer and span buffer, and the
//! current [`Generation`] that new connections pin.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Snapshot;
use crate::downstream::{DrainSignal, IdleDeadlines};
use crate::limit::{WorkerLimiter, WorkerLink};
use crate::observe::metrics::{MetricsSnapshot, WorkerGauges, WorkerMetrics};
use crate::observe::{
    AccessLogBuffer, Counters, PublishedCounters, SpanBuffer, TraceIds, WallClock,
};
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
    /// The idle timeouts of client connections waiting without buffers.
    pub idle: IdleDeadlines,
    pub pools: UpstreamPools,
    /// Multiplexed connections to HTTP/2 upstreams.
    pub h2_pools: H2Pools,
    /// Endpoint health and ejections, breaker counts (by identity).
    pub upstreams: UpstreamStates,
    pub request_ids: RequestIds,
    pub access_log: Option<AccessLogBuffer>,
    /// Metric series by identity (the generations index into them).
    pub metrics: WorkerMetrics,
    /// Trace and span IDs (with `[tracing]`).
    pub trace_ids: TraceIds,
    /// Finished sampled spans on their way to the exporter (with an `otlp_endpoint`).
    pub spans: Option<SpanBuffer>,
    /// Wall-clock time for log lines and spans, re-anchored on every tick.
    pub wall: WallClock,
    /// Rate-limit tables by policy identity, and the link to the limiter thread.
    pub limiter: Rc<WorkerLimiter>,
    current: RefCell<Rc<Generation>>,
    /// The generation installed before the current one, kept so that rolling a
    /// canary back finds its state (balancer cursors, caches) as it was.
    previous: RefCell<Option<Rc<Generation>>>,
    head_buffers: RefCell<Vec<Vec<u8>>>,
    /// Requests in progress on this worker (for `max_in_flight_per_worker`).
    in_flight: Cell<usize>,
}

impl Worker {
    /// Worker `id`, serving version `version`, `snapshot`, to begin with; `board`
    /// carries health verdicts in and endpoint states out, `limiter` is its link to
    /// the global limiter thread (when there is one), `spans` its way to the span
    /// exporter. Its counters go on from `counters` (a restarted worker's totals
    /// never go backwards).
    pub fn new(
        id: usize,
        access_log: Option<AccessLogBuffer>,
        spans: Option<SpanBuffer>,
        board: Arc<EndpointBoard>,
        (version, snapshot): (u64, Arc<Snapshot>),
        limiter: Option<WorkerLink>,
        counters: &PublishedCounters,
    ) -> Self {
        let upstreams = UpstreamStates::new(id, board);
        let metrics = WorkerMetrics::default();
        let limiter = Rc::new(WorkerLimiter::new(limiter, upstreams.board().workers()));
        let generation = Generation::new(version, snapshot, &upstreams, &metrics, &limiter);
        Worker {
            metrics,
            trace_ids: TraceIds::new(id),
            spans,
            wall: WallClock::new(),
            id,
            counters: Counters::resume(counters),
            drain: DrainSignal::default(),
            idle: IdleDeadlines::default(),
            pools: UpstreamPools::new(),
            h2_pools: H2Pools::new(),
            upstreams,
            request_ids: RequestIds::new(id),
            access_log,
            limiter,
            current: RefCell::new(Rc::new(generation)),
            previous: RefCell::new(None),
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

    /// Makes version `version`, `snapshot`, the generation new connections pin;
    /// connections open now finish on theirs. The generation is built here, on the
    /// worker, over the state that outlives generations (pools, endpoint health,
    /// breaker counts and rate-limit tables of unchanged policies carry over). The
    /// generation it replaces is kept, and installed again as it was when its
    /// version comes back (a canary rolled back).
    pub fn install(&self, version: u64, snapshot: Arc<Snapshot>) {
        let current = self.generation();
        if current.version == version {
            return;
        }
        #[cfg(debug_assertions)]
        super::test_panic::on_install(snapshot.routes.iter().map(|r| r.name.as_str()));
        let kept = self.previous.borrow_mut().take();
        let next = match kept {
            Some(g) if g.version == version => g,
            _ => Rc::new(Generation::new(
                version,
                snapshot,
                &self.upstreams,
                &self.metrics,
                &self.limiter,
            )),
        };
        *self.current.borrow_mut() = next;
        *self.previous.borrow_mut() = Some(current);
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

    /// The worker tick: close expired idle connections (upstream and client), take
    /// new key sets, apply health verdicts and end ejections (publishing the
    /// endpoints' state).
    pub fn tick(&self) {
        self.wall.anchor();
        self.pools.sweep();
        self.h2_pools.sweep();
        let now = Instant::now();
        self.idle.expire(now);
        let generation = self.generation();
        generation.auth.refresh_keys(&generation.snapshot.auth);
        self.upstreams.tick(&generation.balancer);
    }

    /// Hands buffered access-log lines and spans on, and copies the counters where
    /// the admin thread reads them.
    pub fn publish(&self, to: &PublishedCounters) {
        if let Some(log) = &self.access_log {
            log.flush();
            self.counters.access_log_dropped.set(log.dropped());
        }
        if let Some(spans) = &self.spans {
            spans.flush(&self.counters);
        }
        self.counters.publish(to);
    }

    /// A copy of the metric series for the admin thread, with the gauges read
    /// now; `connections_open` is the listeners' count of open connections.
    pub fn metrics_snapshot(&self, connections_open: usize) -> MetricsSnapshot {
        let generation = self.generation();
        for u in &generation.snapshot.upstreams {
            for e in &u.endpoints {
                if let Some(series) = generation.metrics.endpoint(e.id) {
                    series.set_idle(self.pools.idle_count(&e.key));
                }
            }
        }
        self.metrics.snapshot(WorkerGauges {
            connections_open: connections_open as u64,
            requests_in_flight: self.in_flight.get() as u64,
            config_version: generation.version,
        })
    }
}

/// One request in progress on a worker (see [`Worker::enter_request`]).
pub struct InProgress<'w>(&'w Cell<usize>);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}
