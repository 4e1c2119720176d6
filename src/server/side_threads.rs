//! The threads beside the workers — access-log writer, span exporter, JWKS
//! fetchers, global rate limiter (with its Redis sync), health-check prober, admin
//! listener — started
//! together before the data listeners are bound, and stopped together after the
//! workers. A reload changes some of them (`side_reload.rs`): the limiter's
//! policies, the prober's targets, the JWKS fetchers.
//!
//! Each one has its own stop path, so none waits on another: the limiter, the
//! prober and the admin listener look at a stop flag, the fetchers at a stop
//! channel, and the
//! access-log writer and the span exporter get an explicit stop message after the
//! last batch (the workers' buffers can outlive them, so neither waits for them to
//! be dropped). [`SideThreads::stop`] tells them all first, then waits for each until
//! one shared deadline.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::admin::{self, Admin, ConfigApi, Sources};
use crate::auth::jwks::{self, JwksFetchers, KeySetSlot};
use crate::compose::PublishedCompose;
use crate::config::Snapshot;
use crate::limit::{GlobalLimiter, LimiterThread, WorkerLink};
use crate::observe::metrics::PublishedMetrics;
use crate::observe::{AccessLogWriter, PublishedCounters, SpanExporter};
use crate::upstream::{EndpointBoard, Prober};

use super::reuseport::{bind_shared, check_alone, ADMIN_BACKLOG};
use super::shutdown::{join_until, ADMIN_WAIT};

/// The running side threads.
#[derive(Default)]
pub struct SideThreads {
    pub access_log: Option<AccessLogWriter>,
    /// With `[tracing] otlp_endpoint`.
    pub spans: Option<SpanExporter>,
    /// JWKS fetchers, started in groups (at start-up, then by reloads), each with
    /// the key-set slots it fills.
    pub jwks: Vec<(Vec<Arc<KeySetSlot>>, JwksFetchers)>,
    pub limiter: Option<LimiterThread>,
    /// Where the limiter publishes (it may start only with a reload).
    pub limiter_counters: Arc<PublishedCounters>,
    /// Not joined: it looks at its flag on its tick and holds nothing the exit
    /// needs (the process ending ends it). It follows reloads by itself (the
    /// board's targets); a reload starts it if none runs.
    pub prober: Option<Prober>,
    /// Where the prober publishes (across its restarts).
    pub prober_counters: Arc<PublishedCounters>,
    pub admin: Option<Admin>,
}

/// The configuration the gateway serves now, for `/ready` (it looks at the
/// running configuration's remote key sets).
pub type Running = Arc<Mutex<Arc<Snapshot>>>;

/// What the control thread gives the side threads: `/config` for the admin
/// listener, its counters, and the running configuration; and whether the process
/// shares its addresses on purpose (`--takeover`).
pub struct ControlParts {
    pub config_api: ConfigApi,
    pub counters: Arc<PublishedCounters>,
    pub running: Running,
    pub takeover: bool,
}

/// Starts the side threads in order: access log, span exporter, JWKS fetchers,
/// limiter, health-check prober, admin listener. On an error, what was started is
/// stopped again. Returns the threads and one limiter link per worker (empty
/// without a limiter). `published`, `compose` and `metrics` are the workers'
/// counters and series the admin shows.
pub fn start(
    snapshot: &Arc<Snapshot>,
    published: &[Arc<PublishedCounters>],
    compose: &[Arc<PublishedCompose>],
    metrics: &[Arc<PublishedMetrics>],
    board: &Arc<EndpointBoard>,
    control: ControlParts,
) -> Result<(SideThreads, Vec<WorkerLink>), String> {
    let mut side = SideThreads::default();
    match start_each(
        &mut side, snapshot, published, compose, metrics, board, control,
    ) {
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
    metrics: &[Arc<PublishedMetrics>],
    board: &Arc<EndpointBoard>,
    control: ControlParts,
) -> Result<Vec<WorkerLink>, String> {
    side.access_log =
        AccessLogWriter::start(&snapshot.log.access_log, snapshot.log.access_log_format)
            .map_err(|e| format!("cannot open the access log: {e}"))?;
    if let Some(tracing) = &snapshot.tracing {
        side.spans = SpanExporter::start(tracing)
            .map_err(|e| format!("cannot start the span exporter: {e}"))?;
    }
    // Remote JWKS prefetch starts now; /ready waits for it.
    side.start_fetchers(snapshot)?;
    let links = match GlobalLimiter::start(
        snapshot.rate_limits.clone(),
        published.len(),
        side.limiter_counters.clone(),
    )? {
        Some((thread, links)) => {
            side.limiter = Some(thread);
            links
        }
        None => Vec::new(),
    };
    // Endpoint health: the prober (if any upstream has health checks) writes
    // verdicts to the board, workers read them on their tick.
    side.prober = Prober::start(board.clone(), side.prober_counters.clone())?;
    if let Some(addr) = snapshot.admin {
        let side_counters = [
            side.limiter_counters.clone(),
            side.prober_counters.clone(),
            control.counters,
        ]
        .into_iter()
        .chain(side.spans.iter().map(|s| s.counters.clone()))
        .collect();
        let listener = bind_shared(addr, ADMIN_BACKLOG)
            .map_err(|e| format!("cannot start the admin listener on {addr}: {e}"))?;
        if !control.takeover {
            check_alone(addr, 1, "start the admin listener on")?;
        }
        side.admin = Some(
            admin::start(
                listener,
                Sources {
                    workers: published.to_vec(),
                    side: side_counters,
                    compose: compose.to_vec(),
                    metrics: metrics.to_vec(),
                    endpoints: board.clone(),
                },
                readiness(control.running),
                control.config_api,
            )
            .map_err(|e| format!("cannot start the admin listener on {addr}: {e}"))?,
        );
    }
    Ok(links)
}

impl SideThreads {
    /// Starts fetchers for the remote key sets of `snapshot` that no running
    /// fetcher fills (at start-up: all of them).
    pub fn start_fetchers(&mut self, snapshot: &Snapshot) -> Result<(), String> {
        let fetched = |slot: &Arc<KeySetSlot>| {
            self.jwks
                .iter()
                .any(|(slots, _)| slots.iter().any(|s| Arc::ptr_eq(s, slot)))
        };
        let new: Vec<_> = snapshot
            .auth
            .providers
            .iter()
            .filter(|p| p.remote.is_some() && !fetched(&p.keys))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let slots = new.iter().map(|p| p.keys.clone()).collect();
        let fetchers = jwks::start(new)?;
        self.jwks.push((slots, fetchers));
        Ok(())
    }

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
        for (_, fetchers) in self.jwks {
            for (name, thread) in fetchers.stop() {
                stopping.push((format!("the JWKS fetcher of {name}"), thread));
            }
        }
        if let Some(spans) = self.spans {
            stopping.push(("the span exporter".to_string(), spans.stop(deadline)));
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
/// serve yet (a remote JWKS of the running configuration not fetched for the first
/// time).
fn readiness(running: Running) -> admin::Readiness {
    Arc::new(move || {
        let snapshot = running.lock().unwrap_or_else(|e| e.into_inner()).clone();
        snapshot.auth.not_ready()
    })
}
