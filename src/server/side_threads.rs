//! The threads beside the workers — access-log writer, JWKS fetchers, global rate
//! limiter (with its Redis sync), health-check prober, admin listener — started
//! together before the data listeners are bound, and stopped together after the
//! workers.
//!
//! Each one has its own stop path, so none waits on another: the limiter, the
//! prober and the admin listener look at a stop flag, the fetchers at a stop
//! channel, and the
//! access-log writer gets an explicit stop message after the last batch (the
//! workers' log buffers can outlive them, so the writer never waits for them to be
//! dropped). [`SideThreads::stop`] tells them all first, then waits for each until
//! one shared deadline.

use std::sync::Arc;
use std::time::Instant;

use crate::admin::{self, Admin};
use crate::auth::jwks::{self, JwksFetchers};
use crate::compose::PublishedCompose;
use crate::config::Snapshot;
use crate::limit::{GlobalLimiter, LimiterThread, WorkerLink};
use crate::observe::{AccessLogWriter, PublishedCounters};
use crate::upstream::{EndpointBoard, Prober};

use super::reuseport::{bind_shared, check_alone, ADMIN_BACKLOG};
use super::shutdown::{join_until, ADMIN_WAIT};

/// The running side threads.
#[derive(Default)]
pub struct SideThreads {
    pub access_log: Option<AccessLogWriter>,
    jwks: Option<JwksFetchers>,
    limiter: Option<LimiterThread>,
    /// Not joined: it looks at its flag between probes and holds nothing the exit
    /// needs (the process ending ends it).
    prober: Option<Prober>,
    pub admin: Option<Admin>,
}

/// Starts the side threads in order: access log, JWKS fetchers, limiter,
/// health-check prober, admin listener. On an error, what was started is stopped
/// again. Returns the threads and one limiter link per worker (empty without a
/// limiter). `published` and `compose` are the workers' counters the admin shows.
pub fn start(
    snapshot: &Arc<Snapshot>,
    published: &[Arc<PublishedCounters>],
    compose: &[Arc<PublishedCompose>],
    board: &Arc<EndpointBoard>,
    takeover: bool,
) -> Result<(SideThreads, Vec<WorkerLink>), String> {
    let mut side = SideThreads::default();
    match start_each(&mut side, snapshot, published, compose, board, takeover) {
        Ok(links) => Ok((side, links)),
        Err(e) => {
            side.stop(super::shutdown::StopDeadlines::now().side_threads());
            Err(e)
        }
    }
}

fn start_each(
    side: &mut SideThreads,
    snapshot: &Arc<Snapshot>,
    published: &[Arc<PublishedCounters>],
    compose: &[Arc<PublishedCompose>],
    board: &Arc<EndpointBoard>,
    takeover: bool,
) -> Result<Vec<WorkerLink>, String> {
    side.access_log = AccessLogWriter::start(&snapshot.log.access_log)
        .map_err(|e| format!("cannot open the access log: {e}"))?;
    // Remote JWKS prefetch starts now; /ready waits for it.
    side.jwks = Some(jwks::start(&snapshot.auth)?);
    let links = match GlobalLimiter::start(snapshot.rate_limits.clone(), published.len())? {
        Some((thread, links)) => {
            side.limiter = Some(thread);
            links
        }
        None => Vec::new(),
    };
    // Endpoint health: the prober (if any upstream has health checks) writes
    // verdicts to the board, workers read them on their tick.
    side.prober = Prober::start(snapshot.clone(), board.clone())?;
    if let Some(addr) = snapshot.admin {
        let side_counters = side
            .limiter
            .iter()
            .map(|l| l.counters.clone())
            .chain(side.prober.iter().map(|p| p.counters.clone()))
            .collect();
        let listener = bind_shared(addr, ADMIN_BACKLOG)
            .map_err(|e| format!("cannot start the admin listener on {addr}: {e}"))?;
        if !takeover {
            check_alone(addr, 1, "start the admin listener on")?;
        }
        side.admin = Some(
            admin::start(
                listener,
                published.to_vec(),
                side_counters,
                compose.to_vec(),
                readiness(snapshot),
                board.clone(),
            )
            .map_err(|e| format!("cannot start the admin listener on {addr}: {e}"))?,
        );
    }
    Ok(links)
}

impl SideThreads {
    /// Tells the side threads to stop, then waits for each until `deadline`; one
    /// still running then is named in the log and left behind. The admin listener
    /// goes last (until then `/healthz` answers 503 `stopping`), with at most
    /// [`ADMIN_WAIT`] more. Called after the workers ended (they feed the limiter
    /// and the access log until then).
    pub fn stop(self, deadline: Instant) {
        if let Some(prober) = &self.prober {
            prober.stop();
        }
        let mut stopping = Vec::new();
        if let Some(limiter) = self.limiter {
            stopping.push(("the rate limiter thread".to_string(), limiter.stop()));
        }
        for (name, thread) in self.jwks.map(JwksFetchers::stop).unwrap_or_default() {
            stopping.push((format!("the JWKS fetcher of {name}"), thread));
        }
        if let Some(log) = self.access_log {
            stopping.push(("the access-log writer".to_string(), log.stop(deadline)));
        }
        for (what, thread) in stopping {
            join_until(thread, deadline, &what);
        }
        if let Some(admin) = self.admin {
            let deadline = deadline.max(Instant::now()) + ADMIN_WAIT;
            join_until(admin.stop(), deadline, "the admin listener");
        }
    }
}

/// What `/ready` asks beyond the gateway's phase: `Some(reason)` while it cannot
/// serve yet (a remote JWKS not fetched for the first time).
fn readiness(snapshot: &Arc<Snapshot>) -> admin::Readiness {
    let snapshot = snapshot.clone();
    Arc::new(move || snapshot.auth.not_ready())
}
