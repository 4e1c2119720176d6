//! The server: the process around the pipeline. Start one pinned worker thread per
//! core, the side threads (access log, span exporter, limiter, JWKS fetchers) and
//! the admin listener; turn SIGTERM/SIGINT into a graceful drain and SIGHUP into a reload;
//! exit when all are done.

mod control;
mod layout;
mod listeners;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::admin;
use crate::config::Snapshot;
use crate::limit::GlobalLimiter;
use crate::observe::metrics::PublishedMetrics;
use crate::observe::{AccessLogWriter, PublishedCounters, SpanExporter};
use crate::upstream::{EndpointBoard, Prober};
use worker::{Command, WorkerPlan};

/// Runs the gateway until a signal drains it. Errors are start-up failures
/// (a port in use, a log file that cannot be opened), reported before serving.
pub fn run(snapshot: Arc<Snapshot>) -> Result<(), String> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let access_log =
        AccessLogWriter::start(&snapshot.log.access_log, snapshot.log.access_log_format)
            .map_err(|e| format!("cannot open the access log: {e}"))?;
    let spans = match &snapshot.tracing {
        Some(t) => {
            SpanExporter::start(t).map_err(|e| format!("cannot start the span exporter: {e}"))?
        }
        None => None,
    };
    let cores = layout::worker_cores(snapshot.server.workers, snapshot.server.pin_workers);
    // Remote JWKS prefetch starts now; /ready waits for it.
    crate::auth::jwks::start(&snapshot.auth)?;
    // The global limiter thread (instance and fleet rate limits), one link per worker.
    let (limiter, mut limiter_links) =
        match GlobalLimiter::start(snapshot.rate_limits.clone(), cores.len())? {
            Some((thread, links)) => (Some(thread), links.into_iter().map(Some).collect()),
            None => (None, Vec::new()),
        };

    // Endpoint health and states: the prober (if any upstream has health checks)
    // writes verdicts, workers read them on their tick and publish their view.
    let board = Arc::new(EndpointBoard::new(&snapshot, cores.len()));
    let prober = Prober::start(snapshot.clone(), board.clone())?;

    let (started_tx, started_rx) = bounded(cores.len());
    let mut commands: Vec<Sender<Command>> = Vec::new();
    let mut threads = Vec::new();
    let mut published = Vec::new();
    let mut published_metrics = Vec::new();
    for (id, core) in cores.iter().enumerate() {
        let (tx, rx) = bounded(16);
        commands.push(tx);
        let counters = Arc::new(PublishedCounters::default());
        published.push(counters.clone());
        let metrics = Arc::new(PublishedMetrics::default());
        published_metrics.push(metrics.clone());
        let plan = WorkerPlan {
            id,
            core: *core,
            snapshot: snapshot.clone(),
            commands: rx,
            started: started_tx.clone(),
            access_log: access_log.as_ref().map(AccessLogWriter::buffer),
            spans: spans.as_ref().map(SpanExporter::buffer),
            published: counters,
            metrics,
            limiter: limiter_links.get_mut(id).and_then(Option::take),
            board: board.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("portico-worker-{id}"))
            .spawn(move || worker::run(plan))
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        threads.push(handle);
    }
    let mut failure = None;
    for _ in 0..cores.len() {
        match started_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(line)) => tracing::info!("{line}"),
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some("a worker did not start within 10 s".to_string()),
        }
    }
    if let Some(e) = failure {
        for c in &commands {
            let _ = c.send(Command::Drain);
        }
        for t in threads {
            let _ = t.join();
        }
        if let Some(l) = limiter {
            l.stop();
        }
        if let Some(p) = &prober {
            p.stop();
        }
        return Err(e);
    }

    let side_counters = limiter
        .iter()
        .map(|l| l.counters.clone())
        .chain(prober.iter().map(|p| p.counters.clone()))
        .chain(spans.iter().map(|s| s.counters.clone()))
        .collect();
    let admin = match snapshot.admin {
        Some(addr) => Some(
            admin::start(
                addr,
                published.clone(),
                side_counters,
                published_metrics,
                readiness(&snapshot),
                board.clone(),
            )
            .map_err(|e| format!("cannot start the admin listener on {addr}: {e}"))?,
        ),
        None => None,
    };
    let listen: Vec<String> = snapshot
        .server
        .listen
        .iter()
        .map(|a| format!("http://{a}"))
        .chain(
            snapshot
                .server
                .tls
                .iter()
                .map(|t| format!("https://{}", t.settings.listen)),
        )
        .collect();
    tracing::info!(
        "portico {} serving {} on {} with {} worker(s)",
        env!("CARGO_PKG_VERSION"),
        snapshot.source,
        listen.join(", "),
        cores.len()
    );

    let (signal_tx, signal_rx) = bounded(16);
    std::thread::Builder::new()
        .name("portico-signals".into())
        .spawn(move || {
            // The same stop signal twice (Ctrl-C, Ctrl-C) exits at once. A different
            // one does not: a supervisor's SIGTERM after a terminal's SIGINT (both sent
            // on one Ctrl-C to a script that also stops its children) must not cut
            // the drain short.
            let mut first_stop = None;
            for sig in signals.forever() {
                if sig != SIGHUP {
                    match first_stop {
                        None => first_stop = Some(sig),
                        Some(first) if first == sig => {
                            tracing::warn!(
                                "signal {sig} again: exiting without waiting for the drain"
                            );
                            std::process::exit(1);
                        }
                        Some(_) => {
                            tracing::info!("signal {sig}: already draining");
                            continue;
                        }
                    }
                }
                let _ = signal_tx.send(sig);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    let sig = control::serve_until_stopped(&snapshot, &commands, &signal_rx);
    tracing::info!(
        "signal {sig}: draining (up to {} ms); the same signal again exits at once",
        snapshot.server.drain_timeout.as_millis()
    );
    if let Some(a) = &admin {
        a.set_draining();
    }
    for c in &commands {
        let _ = c.send(Command::Drain);
    }
    for t in threads {
        let _ = t.join();
    }
    if let Some(l) = limiter {
        l.stop();
    }
    if let Some(p) = &prober {
        p.stop();
    }
    if let Some(s) = spans {
        s.finish();
    }
    if let Some(log) = access_log {
        log.finish();
    }
    tracing::info!("stopped");
    Ok(())
}

/// What `/ready` asks beyond draining: `Some(reason)` while the gateway cannot
/// serve yet (a remote JWKS not fetched for the first time).
fn readiness(snapshot: &Arc<Snapshot>) -> admin::Readiness {
    let snapshot = snapshot.clone();
    Arc::new(move || snapshot.auth.not_ready())
}
