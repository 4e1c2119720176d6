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

/// Where one worker publishes its [`MetricsSnapshot`] (shared with the admin), and
/// what earlier lives of that worker counted (a worker restarted after it died
/// starts its series at zero; its predecessor's last copy is kept beside, so the
/// totals `/metrics` shows never go backwards).
#[derive(Default)]
pub struct PublishedMetrics {
    current: Mutex<MetricsSnapshot>,
    retired: Mutex<Vec<MetricsSnapshot>>,
}

impl PublishedMetrics {
    /// Replaces the published copy, unless the admin thread is reading it right
    /// now (then this tick's copy is skipped; the next one goes through).
    pub fn store(&self, snapshot: MetricsSnapshot) {
        if let Ok(mut slot) = self.current.try_lock() {
            *slot = snapshot;
        }
    }

    /// Stores even if it has to wait (a worker's last publication, at its end).
    pub fn store_final(&self, snapshot: MetricsSnapshot) {
        *lock(&self.current) = snapshot;
    }

    /// The last published copy.
    pub fn load(&self) -> MetricsSnapshot {
        lock(&self.current).clone()
    }

    /// A worker (re)starts here: what an earlier life of it published is kept
    /// as retired counts (its gauges dropped: they described a thread now gone).
    pub fn retire(&self) {
        let mut current = lock(&self.current);
        if current.routes.is_empty() {
            return; // nothing was published yet (every snapshot has its routes)
        }
        let mut old = std::mem::take(&mut *current);
        old.gauges = WorkerGauges::default();
        lock(&self.retired).push(old);
    }

    /// The counts of this worker's earlier lives (empty unless it was restarted).
    pub fn load_retired(&self) -> Vec<MetricsSnapshot> {
        lock(&self.retired).clone()
    }
}

/// The slot, even if a thread panicked holding it (plain data, always whole).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
