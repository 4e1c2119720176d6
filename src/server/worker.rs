//! A worker: one thread, pinned to one core, running one monoio runtime with its own
//! SO_REUSEPORT listeners, connections, upstream pools and counters.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use crossbeam_channel::{Receiver, Sender};
use monoio::net::TcpListener;
use monoio::{FusionDriver, FusionRuntime, RuntimeBuilder};

use crate::auth::AuthWorker;
use crate::config::Snapshot;
use crate::limit::{LocalLimiter, WorkerLink, LIMIT_TICK};
use crate::observe::{AccessLogBuffer, AccessRecord, Counters, PublishedCounters};
use crate::proxy::{Outcome, RequestIds};
use crate::tls::ListenerTls;
use crate::upstream::{Balancer, UpstreamPools};

use super::accept::{accept_loop, ListenerKind};
use super::connection::{ClientConn, Io};
use super::drain::DrainSignal;
use super::mailbox::Mailbox;

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
    /// This worker's channels to the global limiter thread, when there is one.
    pub limiter: Option<WorkerLink>,
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
    let entries = 1024;
    let runtime = RuntimeBuilder::<FusionDriver>::new()
        .enable_timer()
        .with_entries(entries)
        .build();
    let reports = plan.reports.clone();
    let id = plan.id;
    match runtime {
        Ok(FusionRuntime::Uring(mut rt)) => rt.block_on(worker_main(plan, core, "io_uring")),
        Ok(FusionRuntime::Legacy(mut rt)) => rt.block_on(worker_main(plan, core, "epoll")),
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
    let ctx = Rc::new(WorkerCtx::new(
        plan.id,
        snapshot.clone(),
        plan.access_log,
        plan.limiter,
    ));
    let contexts: Vec<Arc<ListenerTls>> =
        snapshot.server.tls.iter().map(|t| t.tls.clone()).collect();
    if let Err(e) = ctx.install_tls(&contexts) {
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
        tasks.push(monoio::spawn(accept_loop(ctx.clone(), l, kind)));
    }
    if ctx.limits.has_limiter() {
        tasks.push(monoio::spawn(limit_tick(ctx.clone())));
    }
    let _ = plan.reports.send(StartReport::Serving);

    // The tick: mailbox, pool sweeping, counter publishing, log flushing.
    let deadline = loop {
        monoio::time::sleep(TICK).await;
        let posted = plan.mailbox.take();
        if let Some((generation, contexts)) = posted.tls {
            match ctx.install_tls(&contexts) {
                Ok(()) => tracing::debug!(
                    worker = ctx.id,
                    "certificates of generation {generation} installed"
                ),
                Err(e) => tracing::error!(
                    worker = ctx.id,
                    "certificate reload (generation {generation}) failed: {e}; the certificates in use keep serving"
                ),
            }
        }
        if let Some(deadline) = posted.drain {
            ctx.drain.raise();
            ctx.pools.clear();
            break deadline;
        }
        ctx.tick(&plan.published);
    };

    // The drain: the accept loops (after taking the connections waiting in their
    // queues) and the limit tick end on the drain signal; wait for them, so that
    // none is left holding the worker's state. Then the connections finish, until
    // the deadline; those still running then are left behind.
    for task in tasks {
        task.await;
    }
    while ctx.active_connections.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(TICK).await;
        ctx.tick(&plan.published);
    }
    ctx.publish(&plan.published);
}

/// Picks up the limiter's grants and hands back expired leases when no request
/// does (requests pick grants up too, with a non-blocking `try_recv`). Ends as
/// soon as the drain begins.
async fn limit_tick(ctx: Rc<WorkerCtx>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(LIMIT_TICK) => ctx.limits.tick(&ctx.counters),
            _ = ctx.drain.raised() => return,
        }
    }
}

/// The state one worker shares among its connections (never across threads).
pub struct WorkerCtx {
    pub id: usize,
    snapshot: RefCell<Arc<Snapshot>>,
    pub pools: UpstreamPools,
    pub balancer: Balancer,
    pub counters: Counters,
    pub drain: DrainSignal,
    pub active_connections: Cell<usize>,
    pub request_ids: RequestIds,
    pub access_log: Option<AccessLogBuffer>,
    /// Stage 1 of rate limiting: this worker's buckets and leases.
    pub limits: LocalLimiter,
    /// One rustls config per TLS listener, this worker's own (its session cache).
    tls_configs: RefCell<Vec<Arc<rustls::ServerConfig>>>,
    /// Key sets and verified-token caches of the auth providers.
    pub auth: AuthWorker,
}

impl WorkerCtx {
    fn new(
        id: usize,
        snapshot: Arc<Snapshot>,
        access_log: Option<AccessLogBuffer>,
        limiter: Option<WorkerLink>,
    ) -> Self {
        WorkerCtx {
            id,
            limits: LocalLimiter::new(&snapshot.rate_limits, limiter),
            pools: UpstreamPools::new(snapshot.endpoint_count),
            balancer: Balancer::new(snapshot.upstreams.len(), snapshot.endpoint_count, id),
            auth: AuthWorker::new(&snapshot.auth),
            snapshot: RefCell::new(snapshot),
            counters: Counters::default(),
            drain: DrainSignal::default(),
            active_connections: Cell::new(0),
            request_ids: RequestIds::new(id),
            access_log,
            tls_configs: RefCell::new(Vec::new()),
        }
    }

    /// The current rustls config of TLS listener `index`.
    pub fn tls_config(&self, index: usize) -> Option<Arc<rustls::ServerConfig>> {
        self.tls_configs.borrow().get(index).cloned()
    }

    fn install_tls(&self, contexts: &[Arc<ListenerTls>]) -> Result<(), String> {
        let configs = contexts
            .iter()
            .map(|c| c.server_config())
            .collect::<Result<Vec<_>, _>>()?;
        *self.tls_configs.borrow_mut() = configs;
        Ok(())
    }

    /// The snapshot a new connection starts on.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn max_connections(&self) -> usize {
        self.snapshot
            .borrow()
            .server
            .limits
            .max_connections_per_worker
    }

    /// The periodic chores: expired pooled connections, key refreshes, counters and
    /// the access-log buffer.
    fn tick(&self, published: &PublishedCounters) {
        self.pools.sweep();
        self.auth.refresh_keys(&self.snapshot.borrow().auth);
        self.publish(published);
    }

    fn publish(&self, to: &PublishedCounters) {
        if let Some(log) = &self.access_log {
            log.flush();
            self.counters.access_log_dropped.set(log.dropped());
        }
        self.counters.publish(to);
    }

    /// Counts a finished request and writes its access-log line.
    pub fn record<S: Io>(
        &self,
        conn: &ClientConn<S>,
        route: Option<&str>,
        outcome: &Outcome,
        started: Instant,
    ) {
        self.counters.count_status(outcome.status);
        let Some(log) = &self.access_log else { return };
        let head = conn.logged_request();
        log.record(&AccessRecord {
            client: conn.peer.ip(),
            method: head.method,
            target: head.target,
            minor_version: conn.head.minor_version,
            status: outcome.status,
            bytes_sent: outcome.bytes_sent,
            duration: started.elapsed(),
            route: route.unwrap_or(""),
            upstream: outcome.upstream,
            request_id: outcome.request_id.as_str(),
        });
    }
}
