//! The endpoint board: what crosses threads about endpoints, never on the request
//! path. The health prober writes its verdicts here (one flag per probed endpoint
//! and a version number); each worker looks at the version on its tick and applies
//! what changed. The probe targets are those of every configuration in use (the
//! running one, and a canary's); a reload replaces them ([`EndpointBoard::retarget`]),
//! carrying each endpoint's verdict over by identity, and the prober follows the
//! new set on its next tick. Each worker, on its tick, publishes how it sees its
//! endpoints (healthy, ejected, requests, failures); the admin listener merges them
//! for `/stats`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{EndpointKey, Snapshot};

/// One endpoint the prober checks.
pub struct ProbeTarget {
    /// The configuration whose `health_check` it is probed with.
    pub snapshot: Arc<Snapshot>,
    /// Index of its upstream in `snapshot`.
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
    probes: Mutex<Arc<ProbeSet>>,
    version: AtomicU64,
    published: Vec<Mutex<Vec<EndpointStatus>>>,
}

/// A probed endpoint's identity: its upstream's name and the endpoint's key.
pub type TargetId = (String, EndpointKey);

/// The probe targets of the configurations in use, with the prober's verdicts.
pub struct ProbeSet {
    targets: Vec<ProbeTarget>,
    healthy: Vec<AtomicBool>,
    /// Where each target is in `targets`.
    index: HashMap<TargetId, usize>,
}

impl ProbeSet {
    pub fn targets(&self) -> &[ProbeTarget] {
        &self.targets
    }

    /// Where the target `id` is in [`targets`](Self::targets), if it is one.
    pub fn position(&self, id: &TargetId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The verdict on target `i` (true while unknown).
    pub fn is_healthy(&self, i: usize) -> bool {
        self.healthy
            .get(i)
            .is_none_or(|h| h.load(Ordering::Relaxed))
    }
}

impl EndpointBoard {
    /// A board for `workers` workers serving `snapshot`: every endpoint of an
    /// upstream with `health_check` is a probe target, healthy to begin with.
    pub fn new(snapshot: &Arc<Snapshot>, workers: usize) -> Self {
        EndpointBoard {
            workers: workers.max(1),
            probes: Mutex::new(Arc::new(probe_set(std::slice::from_ref(snapshot), None))),
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

    /// The probe targets now, with their verdicts.
    pub fn probes(&self) -> Arc<ProbeSet> {
        self.probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes the endpoints with `health_check` in `in_use` (the configurations
    /// some worker serves, the newest first: its settings are the ones probed
    /// with) the probe targets. An endpoint already probed keeps its verdict (by
    /// upstream name and identity); a new one starts healthy. The prober follows
    /// the new set on its next tick: it starts probing new targets, stops probing
    /// those that are gone, and goes on with the others (their pass and failure
    /// streaks too).
    pub fn retarget(&self, in_use: &[Arc<Snapshot>]) -> Arc<ProbeSet> {
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        let set = Arc::new(probe_set(in_use, Some(&probes)));
        *probes = set.clone();
        self.version.fetch_add(1, Ordering::Release);
        set
    }

    /// The prober's verdict on target `i` of `set`.
    pub fn set_healthy(&self, set: &ProbeSet, i: usize, healthy: bool) {
        if let Some(flag) = set.healthy.get(i) {
            flag.store(healthy, Ordering::Relaxed);
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Bumped after every verdict change and every new set of targets.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Worker `worker`'s view of its endpoints (from its tick).
    pub fn publish(&self, worker: usize, statuses: Vec<EndpointStatus>) {
        if let Some(slot) = self.published.get(worker) {
            if let Ok(mut s) = slot.lock() {
                *s = statuses;
            }
        }
    }

    /// Forgets what worker `worker` published (it died; its restart publishes anew).
    pub fn forget_worker(&self, worker: usize) {
        self.publish(worker, Vec::new());
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

/// The targets of `in_use` (newest first), one per upstream name and endpoint
/// identity, with the verdicts of `old` carried over.
fn probe_set(in_use: &[Arc<Snapshot>], old: Option<&ProbeSet>) -> ProbeSet {
    let mut targets: Vec<ProbeTarget> = Vec::new();
    let mut healthy = Vec::new();
    let mut index = HashMap::new();
    for snapshot in in_use {
        for (u, upstream) in snapshot.upstreams.iter().enumerate() {
            if upstream.health_check.is_none() {
                continue;
            }
            for (e, endpoint) in upstream.endpoints.iter().enumerate() {
                let id = (upstream.name.clone(), endpoint.key.clone());
                if index.contains_key(&id) {
                    continue;
                }
                let verdict = old
                    .and_then(|o| o.position(&id).map(|i| o.is_healthy(i)))
                    .unwrap_or(true);
                index.insert(id, targets.len());
                healthy.push(AtomicBool::new(verdict));
                targets.push(ProbeTarget {
                    snapshot: snapshot.clone(),
                    upstream: u,
                    endpoint: e,
                    upstream_name: upstream.name.clone(),
                    key: endpoint.key.clone(),
                });
            }
        }
    }
    ProbeSet {
        targets,
        healthy,
        index,
    }
}
