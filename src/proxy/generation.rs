//! A generation: everything a worker derives from one configuration snapshot,
//! built together and pinned by each connection for its whole life, so a request
//! never mixes two configurations. Balancer state, breakers, auth key sets and
//! composition counters are indexed by the snapshot's own positions; state that must
//! outlive a snapshot (keep-alive pools, endpoint health and ejections, breaker
//! counts, metric series) lives on the [`Worker`](super::Worker), keyed by identity,
//! and the generation points at it; so do the rate-limit tables of unchanged
//! policies (`limit::WorkerLimiter`).

use std::rc::Rc;
use std::sync::Arc;

use crate::auth::AuthWorker;
use crate::compose::ComposeCounters;
use crate::config::{Endpoint, Snapshot, Upstream};
use crate::limit::{LocalLimiter, WorkerLimiter};
use crate::observe::metrics::{GenerationMetrics, SeriesNames, WorkerMetrics};
use crate::observe::{endpoint_attributes, route_attribute, SpanLabels};
use crate::upstream::{Balancer, Breaker, UpstreamStates};

pub struct Generation {
    /// The configuration's version, numbered by the control thread (1 at start-up).
    pub version: u64,
    pub snapshot: Arc<Snapshot>,
    /// Round-robin cursors and in-flight counts per endpoint of this snapshot, over
    /// the worker's endpoint states (health, ejection).
    pub balancer: Balancer,
    /// Circuit breakers and retry budget per upstream (by index), over the worker's
    /// breaker counts.
    pub breakers: Vec<Breaker>,
    /// Stage 1 of rate limiting: this worker's buckets and leases (shared with
    /// other generations for unchanged policies).
    pub limits: LocalLimiter,
    /// Key sets and verified-token caches of the auth providers.
    pub auth: AuthWorker,
    /// Calls and failures of the composed routes and their parts.
    pub compose: ComposeCounters,
    /// The worker's metric series of this snapshot's routes, upstreams,
    /// endpoints, providers and policies, by the snapshot's positions.
    pub metrics: GenerationMetrics,
    /// Each endpoint's client-span attributes, encoded once (by `Endpoint::id`).
    span_endpoints: Vec<Vec<u8>>,
    /// Each route's `portico.route` span attribute, encoded once (by index).
    span_routes: Vec<Vec<u8>>,
}

impl Generation {
    /// Builds a worker's state for version `version`, `snapshot`, over its
    /// identity-keyed upstream state, metric series and rate-limit tables.
    pub fn new(
        version: u64,
        snapshot: Arc<Snapshot>,
        upstreams: &UpstreamStates,
        metrics: &WorkerMetrics,
        limiter: &Rc<WorkerLimiter>,
    ) -> Self {
        Generation {
            version,
            balancer: upstreams.balancer(&snapshot),
            breakers: upstreams.breakers(&snapshot),
            limits: LocalLimiter::new(&snapshot.rate_limits, limiter),
            auth: AuthWorker::new(&snapshot.auth),
            compose: ComposeCounters::new(&snapshot),
            metrics: metrics.generation(&series_names(&snapshot)),
            span_endpoints: by_endpoint(&snapshot, Vec::new(), |u, e| {
                endpoint_attributes(e.text.ip(), e.addr.port(), &u.name)
            }),
            span_routes: snapshot
                .routes
                .iter()
                .map(|r| route_attribute(&r.name))
                .collect(),
            snapshot,
        }
    }

    /// The `portico.route` span attribute of route `index` (empty for none).
    pub fn route_span_attribute(&self, index: Option<usize>) -> &[u8] {
        index
            .and_then(|i| self.span_routes.get(i))
            .map_or(&[], Vec::as_slice)
    }
}

impl SpanLabels for Generation {
    fn upstream(&self, index: usize) -> &str {
        self.snapshot
            .upstreams
            .get(index)
            .map_or("", |u| u.name.as_str())
    }

    fn endpoint(&self, id: usize) -> &[u8] {
        self.span_endpoints.get(id).map_or(&[], Vec::as_slice)
    }
}

/// The names the snapshot gives its metric series (endpoints by their number).
fn series_names(snapshot: &Snapshot) -> SeriesNames<'_> {
    let unnamed = ("", std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let endpoints = by_endpoint(snapshot, unnamed, |u, e| (u.name.as_str(), e.addr));
    SeriesNames {
        routes: snapshot.routes.iter().map(|r| r.name.as_str()).collect(),
        upstreams: snapshot.upstreams.iter().map(|u| u.name.as_str()).collect(),
        endpoints,
        auth_providers: snapshot
            .auth
            .providers
            .iter()
            .map(|p| p.name.as_str())
            .collect(),
        policies: snapshot
            .rate_limits
            .policies
            .iter()
            .map(|p| p.name.as_str())
            .collect(),
    }
}

/// One value per endpoint of `snapshot`, indexed by `Endpoint::id` (`empty` at a
/// number no endpoint has): `value` of the endpoint and its upstream.
fn by_endpoint<'s, T: Clone>(
    snapshot: &'s Snapshot,
    empty: T,
    value: impl Fn(&'s Upstream, &'s Endpoint) -> T,
) -> Vec<T> {
    let mut out = vec![empty; snapshot.endpoint_count];
    for u in &snapshot.upstreams {
        for e in &u.endpoints {
            if let Some(slot) = out.get_mut(e.id) {
                *slot = value(u, e);
            }
        }
    }
    out
}
