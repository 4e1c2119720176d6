//! A worker thread: pinned to one core, running one monoio runtime with its own
//! SO_REUSEPORT listeners (bound by the control thread and handed over), and the
//! worker state of `crate::proxy` (connections, upstream pools, counters, the
//! current generation). Its tick empties the control thread's mailbox.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use crossbeam_channel::{Receiver, Sender};
use monoio::net::TcpListener;

use crate::compose::PublishedCompose;
use crate::config::Snapshot;
use crate::limit::{WorkerLink, LIMIT_TICK};
use crate::observe::{AccessLogBuffer, PublishedCounters};
use crate::proxy::Worker;
use crate::tls::ListenerTls;
use crate::upstream::EndpointBoard;

use super::listeners::{accept_loop, Acceptor, ListenerKind};
use super::mailbox::Mailbox;
use crate::runtime::{self, Runtime};

/// Everything a worker thread needs to start.
pub struct WorkerPlan {
    pub id: usize,
    pub core: Option<CoreId>,
    pub snapshot: Arc<Snapshot>,
    /// Orders from the control thread (drain, new certificates), newest wins.
    pub mailbox: Arc<Mailbox>,
    /// Where the worker reports its start-up steps.
    pub reports: Sender<StartReport>,
    /// Its listening sockets, handed over once everything else started; closed
    /// without a message when start-up failed elsewhere.
    pub listeners: Receiver<Vec<(std::net::TcpListener, ListenerKind)>>,
    pub access_log: Option<AccessLogBuffer>,
    pub published: Arc<PublishedCounters>,
    /// Where this worker publishes its composition counters.
    pub published_compose: Arc<PublishedCompose>,
    /// This worker's channels to the global limiter thread, when there is one.
    pub limiter: Option<WorkerLink>,
    /// Health verdicts in, endpoint states out (shared with the prober and admin).
    pub board: Arc<EndpointBoard>,
}

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
    match runtime::build(1024) {
        Ok(Runtime::Uring(mut rt)) => rt.block_on(worker_main(plan, core, "io_uring")),
        Ok(Runtime::Epoll(mut rt, why)) => {
            if let Some(why) = why {
                tracing::warn!("worker {id}: io_uring refused ({why}); using epoll");
            }
            rt.block_on(worker_main(plan, core, "epoll"))
        }
        Err(e) => {
            let _ = reports.send(StartReport::Failed(format!(
                "worker {id}: cannot start a runtime: {e}"
            )));
        }
    }
    // Tasks still running here (requests cut off by the drain timeout) are left
    // behind with the runtime; nothing waits for them.
}

async fn worker_main(plan: WorkerPlan, core: String, driver: &'static str) {
    let snapshot = plan.snapshot.clone();
    let worker = Rc::new(Worker::new(
        plan.id,
        plan.access_log,
        plan.board,
        snapshot.clone(),
        plan.limiter,
    ));
    let acceptor = Rc::new(Acceptor::new(worker.clone()));
    let contexts: Vec<Arc<ListenerTls>> =
        snapshot.server.tls.iter().map(|t| t.tls.clone()).collect();
    if let Err(e) = acceptor.install_tls(&contexts) {
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
    let mut listeners = Vec::new();
    for (socket, kind) in sockets {
        let addr = socket
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        match TcpListener::from_std(socket) {
            Ok(l) => listeners.push((l, kind)),
            Err(e) => {
                let _ = plan.reports.send(StartReport::Failed(format!(
                    "worker {}: cannot listen on {addr}: {e}",
                    plan.id
                )));
                return;
            }
        }
    }
    let mut tasks = Vec::new();
    for (l, kind) in listeners {
        tasks.push(monoio::spawn(accept_loop(acceptor.clone(), l, kind)));
    }
    if worker.generation().limits.has_limiter() {
        tasks.push(monoio::spawn(limit_tick(worker.clone())));
    }
    let _ = plan.reports.send(StartReport::Serving);

    // The tick: mailbox, pool sweeping, key sets, counter publishing, log flushing.
    let deadline = loop {
        monoio::time::sleep(TICK).await;
        let posted = plan.mailbox.take();
        if let Some((generation, contexts)) = posted.tls {
            match acceptor.install_tls(&contexts) {
                Ok(()) => tracing::debug!(
                    worker = worker.id,
                    "certificates of generation {generation} installed"
                ),
                Err(e) => tracing::error!(
                    worker = worker.id,
                    "certificate reload (generation {generation}) failed: {e}; the certificates in use keep serving"
                ),
            }
        }
        if let Some(deadline) = posted.drain {
            worker.start_drain();
            break deadline;
        }
        worker.tick();
        worker.publish(&plan.published);
        worker.generation().compose.publish(&plan.published_compose);
    };

    // The drain: the accept loops (after taking the connections waiting in their
    // queues) and the limit tick end on the drain signal; wait for them, so that
    // none is left holding the worker's state. Then the connections finish, until
    // the deadline; those still running then are left behind.
    for task in tasks {
        task.await;
    }
    while acceptor.active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(TICK).await;
        worker.tick();
        worker.publish(&plan.published);
        worker.generation().compose.publish(&plan.published_compose);
    }
    worker.publish(&plan.published);
    worker.generation().compose.publish(&plan.published_compose);
}

/// Picks up the limiter's grants and hands back expired leases when no request
/// does (requests pick grants up too, with a non-blocking `try_recv`). Ends as
/// soon as the drain begins.
async fn limit_tick(worker: Rc<Worker>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(LIMIT_TICK) => {
                worker.generation().limits.tick(&worker.counters);
            }
            _ = worker.drain.raised() => return,
        }
    }
}
