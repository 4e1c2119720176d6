//! The server: the process around the pipeline. Start-up in an order where the
//! data listeners are bound last, after everything else that can fail; one pinned
//! worker per core and the side threads; a stop signal drains it; every wait on the
//! way out has a deadline.
//!
//! Start-up (docs/operations.md, "Start-up"): signal handlers; the descriptor
//! limit; the check that no other process listens on our addresses (skipped with
//! `--takeover`); the side threads (access log, span exporter, JWKS fetchers,
//! rate limiter, health-check prober, admin listener); the workers (runtime, state,
//! certificates); then the data listeners.
//!
//! While serving (docs/control-plane.md): the control thread reloads the whole
//! configuration on SIGHUP, a file change or `POST /config/reload`, tries it on
//! the canary workers and promotes or rolls it back ([`reload`]); a worker that
//! dies is restarted on the running configuration.
//!
//! Shutdown (docs/operations.md, "Shutdown"): `/ready` turns 503, the workers drain
//! until `drain_timeout_ms` after the signal, `/healthz` turns 503, the side threads
//! stop, and the process exits 0 — within `drain_timeout_ms` + 1 s whatever any
//! thread does ([`shutdown`]).

mod canary;
mod config_watch;
mod control;
mod descriptors;
mod fd_shortage;
mod layout;
mod listeners;
mod mailbox;
mod panic_guard;
mod protocol;
mod reload;
mod reload_history;
mod reuseport;
mod shutdown;
mod side_reload;
mod side_threads;
mod signals;
mod worker;
mod worker_listeners;
mod worker_set;
mod worker_status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use descriptors::{usable_limit, DescriptorEstimate};
pub use layout::cores_within;

use crossbeam_channel::unbounded;

use crate::admin::{ConfigApi, ConfigView, Phase};
use crate::compose::PublishedCompose;
use crate::config::Snapshot;
use crate::observe::metrics::PublishedMetrics;
use crate::observe::PublishedCounters;
use crate::upstream::EndpointBoard;
use listeners::ListenerKind;
use reload::{Reloads, Threads};
use reload_history::History;
use shutdown::StopDeadlines;
use side_threads::ControlParts;
use worker_set::{Shared, WorkerSet};

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
    let cores = layout::worker_cores(&snapshot.server)?;
    descriptors::check_limit(&snapshot, cores.len())?;
    let plan = listeners::listen_plan(&snapshot);
    check_addresses(&plan, snapshot.admin, options)?;

    let token = admin_token(&snapshot)?;

    let published: Vec<Arc<PublishedCounters>> = cores.iter().map(|_| Arc::default()).collect();
    let published_compose: Vec<Arc<PublishedCompose>> = cores
        .iter()
        .map(|_| Arc::new(PublishedCompose::new(&snapshot)))
        .collect();
    let published_metrics: Vec<Arc<PublishedMetrics>> =
        cores.iter().map(|_| Arc::default()).collect();
    // Endpoint health verdicts in, endpoint states out: prober, workers and admin.
    let board = Arc::new(EndpointBoard::new(&snapshot, cores.len()));
    // The control thread's side: admin calls in, `/config` and its counters out.
    let (requests_tx, requests) = unbounded();
    let view: ConfigView = Arc::new(Mutex::new(r#"{"running": null}"#.to_string()));
    let control_counters: Arc<PublishedCounters> = Arc::default();
    let running = Arc::new(Mutex::new(snapshot.clone()));
    let control = ControlParts {
        config_api: ConfigApi::new(requests_tx, signals.waker(), view.clone(), token),
        counters: control_counters.clone(),
        running: running.clone(),
        takeover: options.takeover,
    };
    let (mut side, limiter_links) = side_threads::start(
        &snapshot,
        &published,
        &published_compose,
        &published_metrics,
        &board,
        control,
    )?;
    let shared = Shared {
        published: &published,
        compose: &published_compose,
        board: &board,
        access_log: side.access_log.as_ref(),
        spans: side.spans.as_ref(),
        metrics: &published_metrics,
    };
    let started = WorkerSet::start(&snapshot, &cores, limiter_links, &shared);
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
    let mut workers = match listening {
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

    let config_path = PathBuf::from(&snapshot.source);
    let mut reloads = Reloads::new(
        &config_path,
        options.takeover,
        snapshot.clone(),
        History::new(view),
        (control_counters, running),
    );
    // The access-log writer and the span exporter are lent to worker restarts
    // while the side threads are lent to reloads.
    let access_log = side.access_log.take();
    let spans = side.spans.take();
    let (sig, at) = control::serve_until_stopped(&mut control::Control {
        signals: &signals,
        requests: &requests,
        reloads: &mut reloads,
        threads: Threads {
            workers: &mut workers,
            side: &mut side,
            board: &board,
            published: &published,
        },
        access_log: access_log.as_ref(),
        spans: spans.as_ref(),
        metrics: &published_metrics,
        compose: &published_compose,
        config_path: &config_path,
    });
    side.access_log = access_log;
    side.spans = spans;
    let snapshot = reloads.running().snapshot.clone();
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

/// The admin bearer token from the variable `[admin] token_env` names: it must be
/// set and not empty (a gateway that asks for a token never runs without one).
fn admin_token(snapshot: &Snapshot) -> Result<Option<String>, String> {
    let Some(name) = &snapshot.admin_token_env else {
        return Ok(None);
    };
    match std::env::var(name) {
        Ok(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_string())),
        _ => Err(format!(
            "[admin] token_env names the environment variable {name}, which is not set or empty: \
             set it to the admin bearer token"
        )),
    }
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
    let mut shared = false;
    for (addr, what) in data.chain(admin) {
        let checked = reuseport::check_nobody_listens(addr, what);
        match (options.takeover, checked) {
            (false, checked) => checked?,
            (true, Ok(())) => tracing::info!("takeover: nothing listens on {addr} yet"),
            (true, Err(_)) => {
                shared = true;
                tracing::info!(
                    "takeover: sharing {addr} with the process already listening there; \
                     stop that one (SIGTERM) once this one is ready"
                );
            }
        }
    }
    if shared {
        warn_unless_requests_migrate();
    }
    Ok(())
}

/// Warns when the kernel will reset, rather than hand to this process, the
/// connections still mid-handshake when the old process closes its listeners
/// (`net.ipv4.tcp_migrate_req`, Linux 5.14+, 0 by default, one setting for IPv4
/// and IPv6; docs/operations.md, "Takeover"). Silent where it cannot be read.
fn warn_unless_requests_migrate() {
    let setting = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req");
    if setting.is_ok_and(|v| v.trim() == "0") {
        tracing::warn!(
            "takeover: net.ipv4.tcp_migrate_req is 0, so connections still in their \
             handshake when the old process closes its listeners are reset instead of \
             handed to this one; set it to 1 on hosts that upgrade by takeover \
             (sysctl -w net.ipv4.tcp_migrate_req=1, docs/operations.md)"
        );
    }
}

fn log_serving(snapshot: &Snapshot, plan: &[(SocketAddr, ListenerKind)], workers: usize) {
    let listen: Vec<String> = plan
        .iter()
        .map(|(a, kind)| match kind {
            ListenerKind::Plain => format!("http://{a}"),
            ListenerKind::Tls => format!("https://{a}"),
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
