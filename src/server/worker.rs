//! A worker thread: pinned to one core, running one monoio runtime with its own
//! SO_REUSEPORT listeners, and the worker state of `crate::proxy` (connections,
//! upstream pools, counters, the current generation). Its tick polls the control
//! thread's commands.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use crossbeam_channel::{Receiver, Sender};
use monoio::net::{ListenerOpts, TcpListener};
use monoio::{FusionDriver, FusionRuntime, RuntimeBuilder};

use crate::config::Snapshot;
use crate::limit::{WorkerLink, LIMIT_TICK};
use crate::observe::metrics::PublishedMetrics;
use crate::observe::{AccessLogBuffer, PublishedCounters, SpanBuffer};
use crate::proxy::Worker;
use crate::tls::ListenerTls;
use crate::upstream::EndpointBoard;

use super::listeners::{accept_loop, Acceptor, ListenerKind};

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
    /// This worker's way to the span exporter, when spans are exported.
    pub spans: Option<SpanBuffer>,
    pub published: Arc<PublishedCounters>,
    /// Where this worker publishes its metric series for `/metrics`.
    pub metrics: Arc<PublishedMetrics>,
    /// This worker's channels to the global limiter thread, when there is one.
    pub limiter: Option<WorkerLink>,
    /// Health verdicts in, endpoint states out (shared with the prober and admin).
    pub board: Arc<EndpointBoard>,
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
    let worker = Rc::new(Worker::new(
        plan.id,
        plan.access_log,
        plan.spans,
        plan.board,
        snapshot.clone(),
        plan.limiter,
    ));
    let acceptor = Rc::new(Acceptor::new(worker.clone()));
    let contexts: Vec<Arc<ListenerTls>> =
        snapshot.server.tls.iter().map(|t| t.tls.clone()).collect();
    if let Err(e) = acceptor.install_tls(&contexts) {
        let _ = plan.started.send(Err(format!("worker {}: {e}", plan.id)));
        return;
    }
    let _ = plan
        .started
        .send(Ok(format!("worker {} on {core}, driver {driver}", plan.id)));

    let mut accepting = Vec::new();
    for (l, kind) in listeners {
        accepting.push(monoio::spawn(accept_loop(acceptor.clone(), l, kind)));
    }
    if worker.generation().limits.has_limiter() {
        monoio::spawn(limit_tick(worker.clone()));
    }

    // The tick: commands, pool sweeping, key sets, counter and metric publishing, log
    // and span flushing.
    let mut drain_deadline: Option<Instant> = None;
    loop {
        monoio::time::sleep(TICK).await;
        while let Ok(cmd) = plan.commands.try_recv() {
            match cmd {
                Command::ReloadTls(contexts) => match acceptor.install_tls(&contexts) {
                    Ok(()) => tracing::debug!(worker = worker.id, "new certificates installed"),
                    Err(e) => tracing::error!(worker = worker.id, "certificate reload failed: {e}"),
                },
                Command::Drain => {
                    if drain_deadline.is_none() {
                        drain_deadline = Some(Instant::now() + snapshot.server.drain_timeout);
                        worker.start_drain();
                    }
                }
            }
        }
        worker.tick();
        worker.publish(&plan.published);
        plan.metrics
            .store(worker.metrics_snapshot(acceptor.active.get()));
        if let Some(deadline) = drain_deadline {
            if acceptor.active.get() == 0 || Instant::now() >= deadline {
                break;
            }
        }
    }
    for task in accepting {
        task.await;
    }
    worker.publish(&plan.published);
    plan.metrics
        .store_final(worker.metrics_snapshot(acceptor.active.get()));
}

/// Picks up the limiter's grants and hands back expired leases when no request
/// does (requests pick grants up too, with a non-blocking `try_recv`).
async fn limit_tick(worker: Rc<Worker>) {
    while !worker.drain.is_raised() {
        monoio::time::sleep(LIMIT_TICK).await;
        worker.generation().limits.tick(&worker.counters);
    }
}

fn bind(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    let opts = ListenerOpts::new().reuse_port(true).backlog(backlog);
    TcpListener::bind_with_config(addr, &opts)
}
