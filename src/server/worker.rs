//! A worker: one thread, pinned to one core, running one monoio runtime with its own
//! SO_REUSEPORT listeners, connections, upstream pools and counters.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use crossbeam_channel::{Receiver, Sender};
use monoio::net::{ListenerOpts, TcpListener};
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

/// Orders from the control thread, polled on the worker's tick.
pub enum Command {
    /// Stop accepting, finish in-flight requests, exit within the drain timeout.
    Drain,
    /// New certificates for the TLS listeners (same order as the snapshot's):
    /// new handshakes use them; open connections keep what they negotiated.
    ReloadTls(Vec<Arc<ListenerTls>>),
}

/// Everything a worker thread needs to start.
pub struct WorkerPlan {
    pub id: usize,
    pub core: Option<CoreId>,
    pub snapshot: Arc<Snapshot>,
    pub commands: Receiver<Command>,
    pub started: Sender<Result<String, String>>,
    pub access_log: Option<AccessLogBuffer>,
    pub published: Arc<PublishedCounters>,
    /// This worker's channels to the global limiter thread, when there is one.
    pub limiter: Option<WorkerLink>,
}

/// How often a worker looks at its command channel, sweeps pools and publishes counters.
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
    let started = plan.started.clone();
    let id = plan.id;
    match runtime {
        Ok(FusionRuntime::Uring(mut rt)) => rt.block_on(worker_main(plan, core, "io_uring")),
        Ok(FusionRuntime::Legacy(mut rt)) => rt.block_on(worker_main(plan, core, "epoll")),
        Err(e) => {
            let _ = started.send(Err(format!("worker {id}: cannot start a runtime: {e}")));
        }
    }
}

async fn worker_main(plan: WorkerPlan, core: String, driver: &'static str) {
    let snapshot = plan.snapshot.clone();
    let mut listeners = Vec::new();
    let plain = snapshot
        .server
        .listen
        .iter()
        .map(|a| (*a, ListenerKind::Plain));
    let tls = snapshot
        .server
        .tls
        .iter()
        .enumerate()
        .map(|(i, t)| (t.settings.listen, ListenerKind::Tls(i)));
    for (addr, kind) in plain.chain(tls) {
        match bind(addr, snapshot.server.listen_backlog) {
            Ok(l) => listeners.push((l, kind)),
            Err(e) => {
                let _ = plan.started.send(Err(format!(
                    "worker {}: cannot listen on {addr}: {e}",
                    plan.id
                )));
                return;
            }
        }
    }
    let ctx = Rc::new(WorkerCtx::new(
        plan.id,
        snapshot.clone(),
        plan.access_log,
        plan.limiter,
    ));
    let contexts: Vec<Arc<ListenerTls>> =
        snapshot.server.tls.iter().map(|t| t.tls.clone()).collect();
    if let Err(e) = ctx.install_tls(&contexts) {
        let _ = plan.started.send(Err(format!("worker {}: {e}", plan.id)));
        return;
    }
    let _ = plan
        .started
        .send(Ok(format!("worker {} on {core}, driver {driver}", plan.id)));

    let mut accepting = Vec::new();
    for (l, kind) in listeners {
        accepting.push(monoio::spawn(accept_loop(ctx.clone(), l, kind)));
    }
    if ctx.limits.has_limiter() {
        monoio::spawn(limit_tick(ctx.clone()));
    }

    // The tick: commands, pool sweeping, counter publishing, log flushing.
    let mut drain_deadline: Option<Instant> = None;
    loop {
        monoio::time::sleep(TICK).await;
        while let Ok(cmd) = plan.commands.try_recv() {
            match cmd {
                Command::ReloadTls(contexts) => match ctx.install_tls(&contexts) {
                    Ok(()) => tracing::debug!(worker = ctx.id, "new certificates installed"),
                    Err(e) => tracing::error!(worker = ctx.id, "certificate reload failed: {e}"),
                },
                Command::Drain => {
                    if drain_deadline.is_none() {
                        drain_deadline = Some(Instant::now() + snapshot.server.drain_timeout);
                        ctx.drain.raise();
                        ctx.pools.clear();
                    }
                }
            }
        }
        ctx.pools.sweep();
        ctx.auth.refresh_keys(&snapshot.auth);
        ctx.publish(&plan.published);
        if let Some(deadline) = drain_deadline {
            if ctx.active_connections.get() == 0 || Instant::now() >= deadline {
                break;
            }
        }
    }
    for task in accepting {
        task.await;
    }
    ctx.publish(&plan.published);
    if let Some(log) = &ctx.access_log {
        log.flush();
    }
}

/// Picks up the limiter's grants and hands back expired leases when no request
/// does (requests pick grants up too, with a non-blocking `try_recv`).
async fn limit_tick(ctx: Rc<WorkerCtx>) {
    while !ctx.drain.is_raised() {
        monoio::time::sleep(LIMIT_TICK).await;
        ctx.limits.tick(&ctx.counters);
    }
}

fn bind(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    let opts = ListenerOpts::new().reuse_port(true).backlog(backlog);
    TcpListener::bind_with_config(addr, &opts)
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
