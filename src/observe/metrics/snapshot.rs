//! What a worker publishes for the admin thread on its tick: a plain copy of its
//! series and gauges, behind a mutex the worker only ever `try_lock`s (a scrape
//! in progress makes it skip one tick, never wait).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::histogram::HistogramSnapshot;
use super::series::{AuthResult, EndpointCounts, MethodClass, PolicyResult, UpstreamCounts};

/// One worker's gauges, read on its tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerGauges {
    /// Client connections open on this worker.
    pub connections_open: u64,
    /// Requests in progress on this worker.
    pub requests_in_flight: u64,
    /// The version of the configuration new connections get on this worker.
    pub config_version: u64,
}

/// One route's published counts (`route` is empty for requests no route took).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteCounts {
    pub route: Arc<str>,
    /// `(method, status code, requests)`.
    pub codes: Vec<(MethodClass, u16, u64)>,
    pub duration: HistogramSnapshot,
}

/// A copy of one worker's series.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    pub routes: Vec<RouteCounts>,
    pub upstreams: Vec<(Arc<str>, UpstreamCounts)>,
    /// `(upstream, endpoint address, counts)`.
    pub endpoints: Vec<(Arc<str>, SocketAddr, EndpointCounts)>,
    pub auth: Vec<(Arc<str>, [u64; AuthResult::COUNT])>,
    pub policies: Vec<(Arc<str>, [u64; PolicyResult::COUNT])>,
    pub gauges: WorkerGauges,
}

/// Where one worker publishes its [`MetricsSnapshot`] (shared with the admin).
#[derive(Default)]
pub struct PublishedMetrics(Mutex<MetricsSnapshot>);

impl PublishedMetrics {
    /// Replaces the published copy, unless the admin thread is reading it right
    /// now (then this tick's copy is skipped; the next one goes through).
    pub fn store(&self, snapshot: MetricsSnapshot) {
        if let Ok(mut slot) = self.0.try_lock() {
            *slot = snapshot;
        }
    }

    /// Stores even if it has to wait (a worker's last publication, at its end).
    pub fn store_final(&self, snapshot: MetricsSnapshot) {
        match self.0.lock() {
            Ok(mut slot) => *slot = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }

    /// The last published copy.
    pub fn load(&self) -> MetricsSnapshot {
        match self.0.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
