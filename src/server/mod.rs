//! The server: the process around the pipeline. Start-up in an order where the
//! data listeners are bound last, after everything else that can fail; one pinned
//! worker per core and the side threads; a stop signal drains it; every wait on the
//! way out has a deadline.
//!
//! Start-up (docs/operations.md, "Start-up"): signal handlers; the descriptor
//! limit; the check that no other process listens on our addresses (skipped with
//! `--takeover`); the side threads (access log, JWKS fetchers, rate limiter,
//! health-check prober, admin listener); the workers (runtime, state,
//! certificates); then the data listeners.
//!
//! Shutdown (docs/operations.md, "Shutdown"): `/ready` turns 503, the workers drain
//! until `drain_timeout_ms` after the signal, `/healthz` turns 503, the side threads
//! stop, and the process exits 0 — within `drain_timeout_ms` + 1 s whatever any
//! thread does ([`shutdown`]).

mod control;
mod descriptors;
mod fd_shortage;
mod layout;
mod listeners;
mod mailbox;
mod protocol;
mod reuseport;
mod shutdown;
mod side_threads;
mod signals;
mod worker;
mod worker_set;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::admin::Phase;
use crate::compose::PublishedCompose;
use crate::config::Snapshot;
use crate::observe::PublishedCounters;
use crate::upstream::EndpointBoard;
use listeners::ListenerKind;
use shutdown::StopDeadlines;
use worker_set::WorkerSet;

/// How `portico run` was asked to start.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Share the listen addresses with the gateway already listening there (a binary
    /// upgrade: docs/operations.md, "Takeover") instead of refusing to start.
    pub takeover: bool,
}

/// Runs the gateway until a signal drains it. Errors are start-up failures
/// (a port in use, a log file that cannot be opened), reported before any data
/// listener is bound.
pub fn run(snapshot: Arc<Snapshot>, options: RunOptions) -> Result<(), String> {
    // First, so that a stop signal during start-up is kept rather than fatal.
    let signals = signals::start(snapshot.server.drain_timeout)?;
    let cores = layout::worker_cores(snapshot.server.workers, snapshot.server.pin_workers);
    descriptors::check_limit(&snapshot, cores.len())?;
    let plan = worker_set::listen_plan(&snapshot);
    check_addresses(&plan, snapshot.admin, options)?;

    let published: Vec<Arc<PublishedCounters>> = cores.iter().map(|_| Arc::default()).collect();
    let published_compose: Vec<Arc<PublishedCompose>> = cores
        .iter()
        .map(|_| Arc::new(PublishedCompose::new(&snapshot)))
        .collect();
    // Endpoint health verdicts in, endpoint states out: prober, workers and admin.
    let board = Arc::new(EndpointBoard::new(&snapshot, cores.len()));
    let (side, limiter_links) = side_threads::start(
        &snapshot,
        &published,
        &published_compose,
        &board,
        options.takeover,
    )?;
    let started = WorkerSet::start(
        &snapshot,
        &cores,
        side.access_log.as_ref(),
        limiter_links,
        &published,
        &published_compose,
        &board,
    );
    let workers = match started {
        Ok(w) => w,
        Err(e) => {
            side.stop(StopDeadlines::now().side_threads());
            return Err(e);
        }
    };
    // Everything that can fail has started: now, and only now, the data listeners
    // (checked once more, so that a race with another start has a tiny window).
    let recheck = match options.takeover {
        true => Ok(()),
        false => check_addresses(&plan, None, options),
    };
    let listening = match recheck {
        Ok(()) => workers.listen(&plan, snapshot.server.listen_backlog, options.takeover),
        Err(e) => Err(workers.abort(e)),
    };
    let workers = match listening {
        Ok(w) => w,
        Err(e) => {
            side.stop(StopDeadlines::now().side_threads());
            return Err(e);
        }
    };
    if let Some(admin) = &side.admin {
        admin.set_phase(Phase::Serving);
    }
    log_serving(&snapshot, &plan, cores.len());

    let (sig, at) = control::serve_until_stopped(&snapshot, workers.mailboxes(), &signals);
    let drain_timeout = snapshot.server.drain_timeout;
    tracing::info!(
        "signal {sig}: draining (up to {} ms); the same signal again exits at once",
        drain_timeout.as_millis()
    );
    let deadlines = StopDeadlines::after_signal(at, drain_timeout);
    if let Some(admin) = &side.admin {
        admin.set_phase(Phase::Draining);
    }
    workers.drain(at + drain_timeout, deadlines.workers);
    if let Some(admin) = &side.admin {
        admin.set_phase(Phase::Stopping);
    }
    side.stop(deadlines.side_threads());
    tracing::info!("stopped");
    Ok(())
}

/// The start-up check: no other process may listen on a data address (or the
/// admin one, when given), unless `--takeover` asks to share them (then it says
/// what it shares).
fn check_addresses(
    plan: &[(SocketAddr, ListenerKind)],
    admin: Option<SocketAddr>,
    options: RunOptions,
) -> Result<(), String> {
    let data = plan.iter().map(|(a, _)| (*a, "listen on"));
    let admin = admin.map(|a| (a, "start the admin listener on"));
    for (addr, what) in data.chain(admin) {
        let checked = reuseport::check_nobody_listens(addr, what);
        match (options.takeover, checked) {
            (false, checked) => checked?,
            (true, Ok(())) => tracing::info!("takeover: nothing listens on {addr} yet"),
            (true, Err(_)) => tracing::info!(
                "takeover: sharing {addr} with the process already listening there; \
                 stop that one (SIGTERM) once this one is ready"
            ),
        }
    }
    Ok(())
}

fn log_serving(snapshot: &Snapshot, plan: &[(SocketAddr, ListenerKind)], workers: usize) {
    let listen: Vec<String> = plan
        .iter()
        .map(|(a, kind)| match kind {
            ListenerKind::Plain => format!("http://{a}"),
            ListenerKind::Tls(_) => format!("https://{a}"),
        })
        .collect();
    tracing::info!(
        "portico {} serving {} on {} with {} worker(s)",
        env!("CARGO_PKG_VERSION"),
        snapshot.source,
        listen.join(", "),
        workers
    );
}
