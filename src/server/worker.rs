//! A worker thread: pinned to one core, running one monoio runtime with its own
//! SO_REUSEPORT listeners (bound by the control thread and handed over at start;
//! bound here for addresses a reload adds), and the worker state of `crate::proxy`
//! (connections, upstream pools, counters, the current generation). Its tick
//! empties the control thread's mailbox: a drain, or a configuration to install.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use crossbeam_channel::{Receiver, Sender};

use crate::compose::PublishedCompose;
use crate::config::{RuntimeSettings, Snapshot};
use crate::limit::{WorkerLink, LIMIT_TICK};
use crate::observe::metrics::PublishedMetrics;
use crate::observe::{AccessLogBuffer, Counters, PublishedCounters, SpanBuffer};
use crate::proxy::Worker;
use crate::runtime::{self, Runtime};
use crate::upstream::EndpointBoard;

use super::listeners::{listen_plan, Acceptor, ListenerKind};
use super::mailbox::{Install, Mailbox};
use super::panic_guard::panic_message;
use super::worker_listeners::WorkerListeners;
use super::worker_status::WorkerStatus;

/// Everything a worker thread needs to start.
pub struct WorkerPlan {
    pub id: usize,
    pub core: Option<CoreId>,
    /// How its runtime is built: `[server.runtime]` as the process started.
    pub runtime: RuntimeSettings,
    /// The configuration it starts with, and its version.
    pub version: u64,
    pub snapshot: Arc<Snapshot>,
    /// Orders from the control thread (drain, a configuration), newest wins.
    pub mailbox: Arc<Mailbox>,
    /// What it tells the control thread (version installed, ticks, sockets).
    pub status: Arc<WorkerStatus>,
    /// Where the worker reports its start-up steps.
    pub reports: Sender<StartReport>,
    /// Its listening sockets, handed over once everything else started; closed
    /// without a message when start-up failed elsewhere.
    pub listeners: Receiver<Handoff>,
    pub access_log: Option<AccessLogBuffer>,
    /// This worker's way to the span exporter, when spans are exported.
    pub spans: Option<SpanBuffer>,
    pub published: Arc<PublishedCounters>,
    /// Where this worker publishes its composition counters.
    pub published_compose: Arc<PublishedCompose>,
    /// Where this worker publishes its metric series for `/metrics`.
    pub metrics: Arc<PublishedMetrics>,
    /// This worker's channels to the global limiter thread, when there is one.
    pub limiter: Option<WorkerLink>,
    /// Health verdicts in, endpoint states out (shared with the prober and admin).
    pub board: Arc<EndpointBoard>,
}

/// Listening sockets handed to a worker, with the address and kind of each.
pub type Handoff = Vec<(std::net::TcpListener, (std::net::SocketAddr, ListenerKind))>;

/// A worker's start-up, step by step.
pub enum StartReport {
    /// Runtime, state and certificates are ready; the line says where it runs.
    Prepared(String),
    /// Its listeners are registered with the runtime and accepting.
    Serving,
    /// It cannot serve; the reason.
    Failed(String),
}

/// How often a worker looks at its mailbox, sweeps pools and publishes counters.
const TICK: Duration = Duration::from_millis(50);

/// The body of a worker thread.
pub fn run(plan: WorkerPlan) {
    let mut pinned = false;
    if let Some(core) = plan.core {
        pinned = core_affinity::set_for_current(core);
    }
    let core = match (plan.core, pinned) {
        (Some(c), true) => format!("core {}", c.id),
        (Some(c), false) => format!("unpinned (pinning to core {} failed)", c.id),
        (None, _) => "unpinned".to_string(),
    };
    let reports = plan.reports.clone();
    let id = plan.id;
    let settings = plan.runtime.clone();
    match runtime::build(&settings) {
        Ok(Runtime::Uring(mut rt)) => {
            let driver = match settings.sqpoll_idle {
                Some(idle) => format!(
                    "io_uring ({} entries, sqpoll idle {} ms)",
                    settings.ring_entries,
                    idle.as_millis()
                ),
                None => format!("io_uring ({} entries)", settings.ring_entries),
            };
            rt.block_on(worker_main(plan, core, driver))
        }
        Ok(Runtime::Epoll(mut rt, why)) => {
            if let Some(why) = why {
                tracing::warn!("worker {id}: io_uring refused ({why}); using epoll");
            }
            rt.block_on(worker_main(plan, core, "epoll".to_string()))
        }
        Err(e) => {
            let _ = reports.send(StartReport::Failed(format!(
                "worker {id}: cannot start a runtime ([server.runtime] driver = \"{}\"): {e}",
                settings.driver.as_str()
            )));
        }
    }
    // Tasks still running here (requests cut off by the drain timeout) are left
    // behind with the runtime; nothing waits for them.
}

async fn worker_main(plan: WorkerPlan, core: String, driver: String) {
    let snapshot = plan.snapshot.clone();
    // A restarted worker's series start at zero: what its predecessor counted stays
    // in /metrics beside them (its counters go on from the published ones instead).
    plan.metrics.retire();
    let worker = Rc::new(Worker::new(
        plan.id,
        plan.access_log,
        plan.spans,
        plan.board,
        (plan.version, snapshot.clone()),
        plan.limiter,
        &plan.published,
    ));
    let acceptor = Rc::new(Acceptor::new(worker.clone()));
    if let Err(e) = acceptor.install_tls(&snapshot.server.tls, snapshot.server.http2.alpn) {
        let _ = plan
            .reports
            .send(StartReport::Failed(format!("worker {}: {e}", plan.id)));
        return;
    }
    let _ = plan.reports.send(StartReport::Prepared(format!(
        "worker {} on {core}, driver {driver}",
        plan.id
    )));
    // Blocking here is fine: nothing runs on this runtime yet.
    let Ok(sockets) = plan.listeners.recv() else {
        return; // start-up failed elsewhere
    };
    let mut listeners = WorkerListeners::new(plan.status.clone());
    for (socket, (addr, kind)) in sockets {
        if let Err(e) = listeners.start(&acceptor, addr, kind, socket) {
            let _ = plan
                .reports
                .send(StartReport::Failed(format!("worker {}: {e}", plan.id)));
            return;
        }
    }
    let mut limit_tick_task = None;
    if worker.limiter.has_limiter() {
        limit_tick_task = Some(monoio::spawn(limit_tick(worker.clone())));
    }
    plan.status.set_installed(plan.version, None);
    let _ = plan.reports.send(StartReport::Serving);

    let published = Published {
        counters: plan.published.clone(),
        compose: plan.published_compose.clone(),
        metrics: plan.metrics.clone(),
    };
    // The tick: mailbox, pool sweeping, key sets, counter and metric publishing, log
    // and span flushing.
    let deadline = loop {
        monoio::time::sleep(TICK).await;
        let posted = plan.mailbox.take();
        if let Some(deadline) = posted.drain {
            worker.start_drain();
            break deadline;
        }
        if let Some(order) = posted.install {
            // A configuration whose generation cannot be built must not end the
            // worker (with `canary = false` every worker would build it at once).
            let version = order.version;
            let installed = catch_unwind(AssertUnwindSafe(|| {
                install(&worker, &acceptor, &mut listeners, order, &plan.status)
            }));
            match installed {
                Ok(None) => {}
                Ok(Some(e)) => tracing::error!(worker = worker.id, "{e}"),
                Err(payload) => {
                    let why = panic_message(payload.as_ref());
                    Counters::bump(&worker.counters.worker_panics);
                    tracing::error!(
                        worker = worker.id,
                        "installing version {version} panicked ({why}); the worker serves on the version it had"
                    );
                    plan.status.set_failed(version, why);
                }
            }
            if limit_tick_task.is_none() && worker.limiter.has_limiter() {
                limit_tick_task = Some(monoio::spawn(limit_tick(worker.clone())));
            }
        }
        #[cfg(debug_assertions)]
        crate::proxy::test_panic::worker_tick();
        worker.tick();
        published.publish(&worker, &acceptor, false);
        plan.status.tick();
    };

    // The drain: the accept loops (after taking the connections waiting in their
    // queues) and the limit tick end on the drain signal; wait for them, so that
    // none is left holding the worker's state. Then the connections finish, until
    // the deadline; those still running then are left behind.
    listeners.finish().await;
    if let Some(task) = limit_tick_task {
        task.await;
    }
    while acceptor.active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(TICK).await;
        worker.tick();
        published.publish(&worker, &acceptor, false);
    }
    published.publish(&worker, &acceptor, true);
}

/// Where a worker publishes for the admin thread.
struct Published {
    counters: Arc<PublishedCounters>,
    compose: Arc<PublishedCompose>,
    metrics: Arc<PublishedMetrics>,
}

impl Published {
    /// Flushes the access-log and span buffers and publishes the counters,
    /// composition counters and metric series; the `last` time, the metrics wait
    /// for a scrape in progress rather than skip this publication.
    fn publish(&self, worker: &Worker, acceptor: &Acceptor, last: bool) {
        worker.publish(&self.counters);
        worker.generation().compose.publish(&self.compose);
        let metrics = worker.metrics_snapshot(acceptor.active.get());
        if last {
            self.metrics.store_final(metrics);
        } else {
            self.metrics.store(metrics);
        }
    }
}

/// Installs the configuration `order` carries: the generation new connections pin,
/// the TLS listeners' certificates, the listening addresses (new ones bound here,
/// gone ones closed after taking their queues), and a limiter link if it brings
/// one. Reports the version installed; returns what failed, if anything (the rest
/// is installed anyway).
fn install(
    worker: &Rc<Worker>,
    acceptor: &Rc<Acceptor>,
    listeners: &mut WorkerListeners,
    order: Install,
    status: &WorkerStatus,
) -> Option<String> {
    let Install {
        version,
        snapshot,
        limiter,
    } = order;
    if let Some(link) = limiter {
        worker.limiter.connect(link);
    }
    let plan = listen_plan(&snapshot);
    let (backlog, tls) = (snapshot.server.listen_backlog, snapshot.clone());
    // The generation first: if building it panics, nothing else changed.
    worker.install(version, snapshot);
    let mut failed = Vec::new();
    if let Err(e) = acceptor.install_tls(&tls.server.tls, tls.server.http2.alpn) {
        failed.push(format!(
            "its TLS listeners' certificates were not installed: {e}"
        ));
    }
    if let Err(e) = listeners.follow(acceptor, &plan, backlog) {
        failed.push(e);
    }
    let error = (!failed.is_empty()).then(|| {
        format!(
            "worker {}: version {version}: {}",
            worker.id,
            failed.join("; ")
        )
    });
    status.set_installed(version, error.clone());
    tracing::debug!(worker = worker.id, "version {version} installed");
    error
}

/// Picks up the limiter's grants and hands back expired leases when no request
/// does (requests pick grants up too, with a non-blocking `try_recv`). Ends as
/// soon as the drain begins.
async fn limit_tick(worker: Rc<Worker>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(LIMIT_TICK) => {
                worker.limiter.tick(&worker.counters);
            }
            _ = worker.drain.raised() => return,
        }
    }
}
