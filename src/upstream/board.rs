//! The endpoint board: what crosses threads about endpoints, never on the request
//! path. The health prober writes its verdicts here (one flag per probed endpoint
//! and a version number); each worker looks at the version on its tick and applies
//! what changed. Each worker, on its tick, publishes how it sees its endpoints
//! (healthy, ejected, requests, failures); the admin listener merges them for
//! `/stats`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::config::{EndpointKey, Snapshot};

/// One endpoint the prober checks.
pub struct ProbeTarget {
    /// Index of its upstream in the snapshot the board was made from.
    pub upstream: usize,
    /// Index of the endpoint in that upstream's `endpoints`.
    pub endpoint: usize,
    pub upstream_name: String,
    pub key: EndpointKey,
}

/// How one worker sees one endpoint, as published on its tick.
#[derive(Clone, Debug)]
pub struct EndpointStatus {
    pub upstream: String,
    pub addr: SocketAddr,
    pub healthy: bool,
    pub ejected: bool,
    pub ejections: u32,
    pub requests: u64,
    pub failures: u64,
}

/// One endpoint over all workers, for `/stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointReport {
    pub upstream: String,
    pub addr: SocketAddr,
    /// Healthy on every worker (always true without health checks).
    pub healthy: bool,
    /// Workers on which it is ejected now.
    pub ejected_workers: usize,
    /// Ejection multipliers summed over workers (ejections not yet decayed).
    pub ejections: u32,
    /// Tries sent to it, over all workers.
    pub requests: u64,
    /// Tries that failed (5xx, connect failure, reset, timeout), over all workers.
    pub failures: u64,
}

/// Shared by the prober, the workers and the admin listener (in an `Arc`).
pub struct EndpointBoard {
    workers: usize,
    targets: Vec<ProbeTarget>,
    healthy: Vec<AtomicBool>,
    version: AtomicU64,
    published: Vec<Mutex<Vec<EndpointStatus>>>,
}

impl EndpointBoard {
    /// A board for `workers` workers serving `snapshot`: every endpoint of an
    /// upstream with `health_check` is a probe target, healthy to begin with.
    pub fn new(snapshot: &Snapshot, workers: usize) -> Self {
        let mut targets = Vec::new();
        for (u, upstream) in snapshot.upstreams.iter().enumerate() {
            if upstream.health_check.is_none() {
                continue;
            }
            for (e, endpoint) in upstream.endpoints.iter().enumerate() {
                targets.push(ProbeTarget {
                    upstream: u,
                    endpoint: e,
                    upstream_name: upstream.name.clone(),
                    key: endpoint.key.clone(),
                });
            }
        }
        EndpointBoard {
            workers: workers.max(1),
            healthy: targets.iter().map(|_| AtomicBool::new(true)).collect(),
            targets,
            version: AtomicU64::new(0),
            published: (0..workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        }
    }

    /// The number of workers (circuit breakers split their bounds over them).
    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn targets(&self) -> &[ProbeTarget] {
        &self.targets
    }

    /// The prober's verdict on target `i`.
    pub fn set_healthy(&self, i: usize, healthy: bool) {
        if let Some(flag) = self.healthy.get(i) {
            flag.store(healthy, Ordering::Relaxed);
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Bumped after every verdict change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every target with its current verdict.
    pub fn verdicts(&self) -> impl Iterator<Item = (&ProbeTarget, bool)> {
        self.targets
            .iter()
            .zip(&self.healthy)
            .map(|(t, h)| (t, h.load(Ordering::Relaxed)))
    }

    /// Worker `worker`'s view of its endpoints (from its tick).
    pub fn publish(&self, worker: usize, statuses: Vec<EndpointStatus>) {
        if let Some(slot) = self.published.get(worker) {
            if let Ok(mut s) = slot.lock() {
                *s = statuses;
            }
        }
    }

    /// Every endpoint over all workers, in configuration order.
    pub fn report(&self) -> Vec<EndpointReport> {
        let mut out: Vec<EndpointReport> = Vec::new();
        for slot in &self.published {
            let Ok(statuses) = slot.lock() else { continue };
            for s in statuses.iter() {
                let i = match out
                    .iter()
                    .position(|r| r.upstream == s.upstream && r.addr == s.addr)
                {
                    Some(i) => i,
                    None => {
                        out.push(EndpointReport {
                            upstream: s.upstream.clone(),
                            addr: s.addr,
                            healthy: true,
                            ejected_workers: 0,
                            ejections: 0,
                            requests: 0,
                            failures: 0,
                        });
                        out.len() - 1
                    }
                };
                let r = &mut out[i];
                r.healthy &= s.healthy;
                r.ejected_workers += usize::from(s.ejected);
                r.ejections += s.ejections;
                r.requests += s.requests;
                r.failures += s.failures;
            }
        }
        out
    }
}
