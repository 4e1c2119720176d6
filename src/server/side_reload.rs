//! What a reload changes beside the workers. The side threads always serve the
//! configurations in use: the running one and, during a canary, the one on trial
//! (several workers may serve different ones at once). [`SideThreads::follow`]
//! brings them to a new list of configurations in use:
//!
//! - JWKS: a provider whose remote key source did not change keeps its key set
//!   and its fetcher ([`adopt_key_sets`], before the new snapshot is shared); a new
//!   one gets a fetcher, and the reload waits for its first fetch (bounded by its
//!   `jwks_timeout_ms`) so the new configuration does not start without keys;
//!   fetchers no configuration in use needs are stopped.
//! - Rate limits: the limiter thread gets every policy in use (by identity: an
//!   unchanged policy keeps its buckets); it is started now if this is the first
//!   configuration that needs it, and the workers get their links with the
//!   configuration.
//! - Health checks: the probe targets become the endpoints in use (verdicts carry
//!   over by identity); the prober follows them (new endpoints probed, removed ones
//!   no longer, the others go on with their streaks), and is started now if this
//!   is the first configuration with health checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Snapshot;
use crate::limit::{GlobalLimiter, WorkerLink};
use crate::upstream::{EndpointBoard, Prober};

use super::side_threads::SideThreads;

/// How often the wait for a first JWKS fetch looks.
const FETCH_POLL: Duration = Duration::from_millis(10);

/// Gives `next`'s remote JWKS providers the key sets of the same providers in
/// `in_use` (same name, same URL and fetch settings, same key policy), so an
/// unchanged provider is neither fetched again nor unready for a moment.
pub fn adopt_key_sets(next: &mut Snapshot, in_use: &[Arc<Snapshot>]) {
    for p in &mut next.auth.providers {
        let Some(remote) = &p.remote else { continue };
        let same = in_use
            .iter()
            .flat_map(|s| &s.auth.providers)
            .find(|o| o.name == p.name && o.remote.as_ref().is_some_and(|r| r.same_source(remote)));
        if let Some(old) = same {
            p.keys = old.keys.clone();
        }
    }
}

impl SideThreads {
    /// Makes the side threads serve `in_use` (the newest first). Returns new links
    /// to the limiter thread when it was started now (one per worker, to hand out
    /// with the configuration). An error (a fetcher or the limiter could not start)
    /// leaves what was running.
    pub fn follow(
        &mut self,
        in_use: &[Arc<Snapshot>],
        board: &Arc<EndpointBoard>,
        workers: usize,
    ) -> Result<Option<Vec<WorkerLink>>, String> {
        let Some(newest) = in_use.first() else {
            return Ok(None);
        };
        self.start_fetchers(newest)?;
        wait_for_first_fetch(newest);
        self.stop_unused_fetchers(in_use);

        let mut links = None;
        let policies = in_use.iter().rev().map(|s| s.rate_limits.clone()).collect();
        match &self.limiter {
            Some(limiter) => limiter.set_policies(policies),
            None if newest.rate_limits.needs_limiter() => {
                let started = GlobalLimiter::start(
                    newest.rate_limits.clone(),
                    workers,
                    self.limiter_counters.clone(),
                )?;
                if let Some((thread, new_links)) = started {
                    thread.set_policies(policies);
                    self.limiter = Some(thread);
                    links = Some(new_links);
                }
            }
            None => {}
        }

        // The prober follows the new targets on its tick; it starts now if this is
        // the first configuration with health checks.
        board.retarget(in_use);
        if self.prober.is_none() {
            self.prober = Prober::start(board.clone(), self.prober_counters.clone())?;
        }
        Ok(links)
    }

    /// Stops the fetcher groups none of whose key sets a configuration in use has.
    fn stop_unused_fetchers(&mut self, in_use: &[Arc<Snapshot>]) {
        let used = |slot: &Arc<_>| {
            in_use
                .iter()
                .flat_map(|s| &s.auth.providers)
                .any(|p| Arc::ptr_eq(&p.keys, slot))
        };
        let (keep, stop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.jwks)
            .into_iter()
            .partition(|(slots, _)| slots.iter().any(used));
        self.jwks = keep;
        for (_, fetchers) in stop {
            // Not joined: each ends at its next wait, or when its fetch does.
            drop(fetchers.stop());
        }
    }
}

/// Waits until every remote key set of `snapshot` had its first fetch (or gave
/// up), at most the longest `jwks_timeout_ms` of them and a second.
fn wait_for_first_fetch(snapshot: &Snapshot) {
    let remote: Vec<_> = snapshot
        .auth
        .providers
        .iter()
        .filter_map(|p| p.remote.as_ref().map(|r| (p, r.timeout)))
        .collect();
    let Some(longest) = remote.iter().map(|(_, t)| *t).max() else {
        return;
    };
    let deadline = Instant::now() + longest + Duration::from_secs(1);
    while remote.iter().any(|(p, _)| !p.keys.is_ready()) && Instant::now() < deadline {
        std::thread::sleep(FETCH_POLL);
    }
}
