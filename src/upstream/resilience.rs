//! A worker's upstream state that outlives a configuration: per endpoint (by
//! upstream name and endpoint identity) its health, ejection and failure streaks,
//! and per upstream (by name) its circuit-breaker counts. A generation is built
//! over it ([`UpstreamStates::balancer`], [`UpstreamStates::breakers`]), so a new
//! snapshot finds unchanged endpoints as they were; the worker's tick applies the
//! prober's verdicts, ends ejections, and publishes the endpoints' state.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{EndpointKey, Snapshot};

use super::balance::Balancer;
use super::board::{EndpointBoard, EndpointStatus};
use super::breaker::{Breaker, BreakerState};
use super::endpoint_health::EndpointHealth;

/// One worker's identity-keyed upstream state.
pub struct UpstreamStates {
    worker: usize,
    board: Arc<EndpointBoard>,
    endpoints: RefCell<HashMap<(String, EndpointKey), Rc<EndpointHealth>>>,
    breakers: RefCell<HashMap<String, Rc<BreakerState>>>,
    /// The board's verdict version last applied.
    seen_version: Cell<u64>,
}

impl UpstreamStates {
    /// Worker `worker`'s state, fed by (and publishing to) `board`.
    pub fn new(worker: usize, board: Arc<EndpointBoard>) -> Self {
        UpstreamStates {
            worker,
            board,
            endpoints: RefCell::new(HashMap::new()),
            breakers: RefCell::new(HashMap::new()),
            seen_version: Cell::new(u64::MAX),
        }
    }

    /// The board this worker reads verdicts from and publishes to.
    pub fn board(&self) -> &Arc<EndpointBoard> {
        &self.board
    }

    /// A balancer for `snapshot` over the states of its endpoints (found, or made).
    pub fn balancer(&self, snapshot: &Snapshot) -> Balancer {
        let mut endpoints = self.endpoints.borrow_mut();
        let mut health: Vec<Option<Rc<EndpointHealth>>> = vec![None; snapshot.endpoint_count];
        for u in &snapshot.upstreams {
            for e in &u.endpoints {
                let state = endpoints
                    .entry((u.name.clone(), e.key.clone()))
                    .or_insert_with(|| Rc::new(EndpointHealth::new(&u.name, e.addr)))
                    .clone();
                if let Some(slot) = health.get_mut(e.id) {
                    *slot = Some(state);
                }
            }
        }
        let health = health
            .into_iter()
            .map(|h| {
                h.unwrap_or_else(|| Rc::new(EndpointHealth::new("", ([0, 0, 0, 0], 0).into())))
            })
            .collect();
        drop(endpoints);
        // Verdicts already known apply to the new endpoints at once.
        self.seen_version.set(u64::MAX);
        self.apply_verdicts();
        Balancer::new(snapshot.upstreams.len(), health, self.worker)
    }

    /// The circuit breakers of each upstream of `snapshot` (by index), over the
    /// counts kept per upstream name.
    pub fn breakers(&self, snapshot: &Snapshot) -> Vec<Breaker> {
        let mut states = self.breakers.borrow_mut();
        snapshot
            .upstreams
            .iter()
            .map(|u| {
                let state = states.entry(u.name.clone()).or_default().clone();
                Breaker::new(
                    state,
                    &u.breakers,
                    &u.retry_budget,
                    self.board.workers(),
                    self.worker,
                )
            })
            .collect()
    }

    /// The worker's tick: apply new health verdicts, end ejections whose time is
    /// over, forget states no generation uses, and publish how `current` (the
    /// current generation's balancer) sees its endpoints.
    pub fn tick(&self, current: &Balancer) {
        self.apply_verdicts();
        let now = Instant::now();
        let mut endpoints = self.endpoints.borrow_mut();
        for h in endpoints.values() {
            if h.tick(now) {
                tracing::info!(upstream = %h.upstream, endpoint = %h.addr, "ejection ended");
            }
        }
        endpoints.retain(|_, h| Rc::strong_count(h) > 1);
        drop(endpoints);
        self.breakers
            .borrow_mut()
            .retain(|_, b| Rc::strong_count(b) > 1);
        let statuses = current
            .endpoints()
            .filter(|h| !h.upstream.is_empty())
            .map(|h| EndpointStatus {
                upstream: h.upstream.clone(),
                addr: h.addr,
                healthy: h.healthy(),
                ejected: h.ejected(),
                ejections: h.ejections(),
                requests: h.requests.get(),
                failures: h.failures.get(),
            })
            .collect();
        self.board.publish(self.worker, statuses);
    }

    /// Applies the prober's verdicts if the board changed since the last look. An
    /// endpoint no configuration in use probes any more (its upstream lost its
    /// `health_check`) is healthy again: no verdict of the past holds it back.
    fn apply_verdicts(&self) {
        let version = self.board.version();
        if version == self.seen_version.get() {
            return;
        }
        self.seen_version.set(version);
        let endpoints = self.endpoints.borrow();
        let probes = self.board.probes();
        for (id, h) in endpoints.iter() {
            let healthy = probes.position(id).is_none_or(|i| probes.is_healthy(i));
            if h.set_healthy(healthy) && self.worker == 0 {
                // One line per change for the process, not one per worker.
                if healthy {
                    tracing::info!(upstream = %h.upstream, endpoint = %h.addr, "endpoint healthy");
                } else {
                    tracing::warn!(upstream = %h.upstream, endpoint = %h.addr, "endpoint unhealthy");
                }
            }
        }
    }
}
