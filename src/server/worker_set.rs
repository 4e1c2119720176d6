//! The workers as the control thread sees them: started in two steps so that the
//! data listeners are bound last, handed configurations while serving, restarted
//! when one dies, then drained and waited for with a deadline.
//!
//! 1. [`WorkerSet::start`]: each worker thread builds its runtime, state and TLS
//!    configs and reports `Prepared` (or why it cannot).
//! 2. [`WorkerSet::listen`]: only then does the control thread bind one
//!    `SO_REUSEPORT` socket per worker and address and hand them over; the workers
//!    register them with their runtimes and report `Serving`.
//!
//! A failure at either step drains the workers started so far; nothing was bound
//! before step 2, so a start-up that fails disturbs no other process's listeners.
//!
//! While serving, [`WorkerSet::post`] hands a worker a configuration (through its
//! mailbox: the newest wins), and [`WorkerSet::reap`] finds workers whose thread
//! ended: a panic outside any connection (connections catch their own). Such a
//! worker's listening sockets are shut down at once (its runtime is gone, and the
//! kernel would go on queueing connections on them), and [`WorkerSet::restart`]
//! starts it again on the running configuration, on the same core, with its
//! sockets bound afresh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::compose::PublishedCompose;
use crate::config::{RuntimeSettings, Snapshot};
use crate::limit::WorkerLink;
use crate::observe::metrics::PublishedMetrics;
use crate::observe::{AccessLogWriter, PublishedCounters, SpanExporter};
use crate::upstream::EndpointBoard;

use super::listeners::{listen_plan, ListenerKind};
use super::mailbox::{Install, Mailbox};
use super::panic_guard::panic_message;
use super::reuseport::{bind_shared, check_alone};
use super::shutdown::join_until;
use super::worker::{self, Handoff, StartReport, WorkerPlan};
use super::worker_status::WorkerStatus;

/// How long a worker may take to report a start-up step.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The running workers.
pub struct WorkerSet {
    threads: Vec<Option<JoinHandle<()>>>,
    cores: Vec<Option<CoreId>>,
    /// `[server.runtime]` as the process started: restarted workers get it too.
    runtime: RuntimeSettings,
    mailboxes: Vec<Arc<Mailbox>>,
    statuses: Vec<Arc<WorkerStatus>>,
    /// Each worker's link to the limiter thread (a copy, for restarts and for
    /// workers started before the limiter was).
    links: Vec<Option<WorkerLink>>,
    /// One per worker; dropped unused when start-up fails.
    handoff: Vec<Sender<Handoff>>,
    report_tx: Sender<StartReport>,
    reports: Receiver<StartReport>,
}

/// What every worker is started with besides its configuration: its counters, the
/// endpoint board, the access-log writer.
pub struct Shared<'a> {
    pub published: &'a [Arc<PublishedCounters>],
    /// Each worker's composition counters.
    pub compose: &'a [Arc<PublishedCompose>],
    pub board: &'a Arc<EndpointBoard>,
    pub access_log: Option<&'a AccessLogWriter>,
    /// The span exporter, when spans are exported.
    pub spans: Option<&'a SpanExporter>,
    /// Each worker's metric series.
    pub metrics: &'a [Arc<PublishedMetrics>],
}

impl WorkerSet {
    /// Starts one worker per entry of `cores` on version 1, `snapshot`, and waits
    /// until each is prepared; logs where each runs. `limiter` has one link per
    /// worker, or is empty.
    pub fn start(
        snapshot: &Arc<Snapshot>,
        cores: &[Option<CoreId>],
        limiter: Vec<WorkerLink>,
        shared: &Shared<'_>,
    ) -> Result<WorkerSet, String> {
        let (report_tx, reports) = bounded(2 * cores.len());
        let mut links = limiter.into_iter();
        let mut set = WorkerSet {
            threads: Vec::new(),
            cores: cores.to_vec(),
            runtime: snapshot.server.runtime.clone(),
            mailboxes: Vec::new(),
            statuses: Vec::new(),
            links: cores.iter().map(|_| links.next()).collect(),
            handoff: Vec::new(),
            report_tx,
            reports,
        };
        for id in 0..cores.len() {
            let mailbox = Arc::new(Mailbox::default());
            let status = Arc::new(WorkerStatus::default());
            set.mailboxes.push(mailbox);
            set.statuses.push(status);
            match set.spawn(id, (1, snapshot.clone()), shared) {
                Ok(handoff) => set.handoff.push(handoff),
                Err(e) => return Err(set.abort(e)),
            }
        }
        for _ in 0..set.threads.len() {
            match set.next_report() {
                Ok(StartReport::Prepared(line)) => tracing::info!("{line}"),
                Ok(_) => {}
                Err(e) => return Err(set.abort(e)),
            }
        }
        Ok(set)
    }

    /// Starts worker `id`'s thread on `configuration`; returns where to hand it
    /// its sockets.
    fn spawn(
        &mut self,
        id: usize,
        (version, snapshot): (u64, Arc<Snapshot>),
        shared: &Shared<'_>,
    ) -> Result<Sender<Handoff>, String> {
        let (handoff_tx, handoff_rx) = bounded(1);
        let plan = WorkerPlan {
            id,
            core: self.cores.get(id).copied().flatten(),
            runtime: self.runtime.clone(),
            version,
            snapshot,
            mailbox: self.mailboxes[id].clone(),
            status: self.statuses[id].clone(),
            reports: self.report_tx.clone(),
            listeners: handoff_rx,
            access_log: shared.access_log.map(AccessLogWriter::buffer),
            spans: shared.spans.map(SpanExporter::buffer),
            published: shared.published.get(id).cloned().unwrap_or_default(),
            metrics: shared.metrics.get(id).cloned().unwrap_or_default(),
            published_compose: shared.compose.get(id).cloned().unwrap_or_default(),
            limiter: self.links.get(id).cloned().flatten(),
            board: shared.board.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("portico-worker-{id}"))
            .spawn(move || worker::run(plan))
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        match self.threads.get_mut(id) {
            Some(slot) => *slot = Some(handle),
            None => self.threads.push(Some(handle)),
        }
        Ok(handoff_tx)
    }

    /// Binds every address in `plan` once per worker, hands the sockets over and
    /// waits until every worker serves them. Called after everything else that can
    /// fail has started. Unless `takeover`, an address another process bound in the
    /// same moment (both passed the start-up check) is refused here.
    pub fn listen(
        mut self,
        plan: &[(SocketAddr, ListenerKind)],
        backlog: i32,
        takeover: bool,
    ) -> Result<WorkerSet, String> {
        let mut sockets = Vec::new();
        for _ in 0..self.threads.len() {
            match bind_all(plan, backlog) {
                Ok(mine) => sockets.push(mine),
                Err(e) => return Err(self.abort(e)),
            }
        }
        if !takeover {
            for &(addr, _) in plan {
                if let Err(e) = check_alone(addr, self.threads.len(), "listen on") {
                    return Err(self.abort(e));
                }
            }
        }
        for (to, mine) in std::mem::take(&mut self.handoff).into_iter().zip(sockets) {
            let _ = to.send(mine);
        }
        for _ in 0..self.threads.len() {
            match self.next_report() {
                Ok(StartReport::Serving) => {}
                Ok(_) => {}
                Err(e) => return Err(self.abort(e)),
            }
        }
        Ok(self)
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.mailboxes.len()
    }

    /// What worker `id` reports about itself.
    pub fn status(&self, id: usize) -> &WorkerStatus {
        &self.statuses[id]
    }

    /// Every worker's status.
    pub fn statuses(&self) -> &[Arc<WorkerStatus>] {
        &self.statuses
    }

    /// Hands worker `id` version `version`, `snapshot` (with its limiter link,
    /// which it keeps if it has none yet).
    pub fn post(&self, id: usize, version: u64, snapshot: &Arc<Snapshot>) {
        if let Some(mailbox) = self.mailboxes.get(id) {
            mailbox.post_install(Install {
                version,
                snapshot: snapshot.clone(),
                limiter: self.links.get(id).cloned().flatten(),
            });
        }
    }

    /// The links of a limiter thread started after the workers (one per worker).
    pub fn set_links(&mut self, links: Vec<WorkerLink>) {
        self.links = links.into_iter().map(Some).collect();
    }

    /// Workers whose thread ended while serving, each with the panic that ended it.
    /// Their listening sockets are shut down (new connections go to the other
    /// workers); [`restart`](Self::restart) them.
    pub fn reap(&mut self) -> Vec<(usize, String)> {
        let mut dead = Vec::new();
        for (id, slot) in self.threads.iter_mut().enumerate() {
            if !slot.as_ref().is_some_and(JoinHandle::is_finished) {
                continue;
            }
            let Some(handle) = slot.take() else { continue };
            let why = match handle.join() {
                Err(payload) => format!("it panicked: {}", panic_message(payload.as_ref())),
                Ok(()) => "its thread ended".to_string(),
            };
            let closed = self.statuses[id].shut_down_listeners();
            tracing::error!(
                "worker {id} died ({why}); its listeners on {} are shut down",
                closed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            dead.push((id, why));
        }
        dead
    }

    /// Starts dead worker `id` again on `configuration`, with its listening
    /// sockets bound afresh; waits (bounded) until it serves.
    pub fn restart(
        &mut self,
        id: usize,
        configuration: (u64, Arc<Snapshot>),
        shared: &Shared<'_>,
    ) -> Result<(), String> {
        let plan = listen_plan(&configuration.1);
        let backlog = configuration.1.server.listen_backlog;
        self.mailboxes[id].take(); // an order for the dead thread is void
        let handoff = self.spawn(id, configuration, shared)?;
        match self.next_report()? {
            StartReport::Prepared(line) => tracing::info!("restarted: {line}"),
            _ => return Err(format!("worker {id} did not prepare")),
        }
        let _ = handoff.send(bind_all(&plan, backlog)?);
        match self.next_report()? {
            StartReport::Serving => Ok(()),
            _ => Err(format!("worker {id} did not serve")),
        }
    }

    /// Tells every worker to drain until `until`, and waits for each until
    /// `deadline`; a worker still running then is named in the log and left behind.
    pub fn drain(self, until: Instant, deadline: Instant) {
        for m in &self.mailboxes {
            m.post_drain(until);
        }
        drop(self.handoff); // workers still waiting for listeners give up
        for (id, thread) in self.threads.into_iter().enumerate() {
            if let Some(thread) = thread {
                join_until(thread, deadline, &format!("worker {id}"));
            }
        }
    }

    /// The next start-up report: an error for a failed worker or a silent one.
    fn next_report(&self) -> Result<StartReport, String> {
        match self.reports.recv_timeout(START_TIMEOUT) {
            Ok(StartReport::Failed(e)) => Err(e),
            Ok(report) => Ok(report),
            Err(_) => Err(format!(
                "a worker did not start within {} s",
                START_TIMEOUT.as_secs()
            )),
        }
    }

    /// Start-up failed with `error`: drains the workers started so far and
    /// returns the error.
    pub fn abort(self, error: String) -> String {
        let deadlines = super::shutdown::StopDeadlines::now();
        self.drain(Instant::now(), deadlines.workers);
        error
    }
}

/// One `SO_REUSEPORT` socket for each address of `plan`.
fn bind_all(plan: &[(SocketAddr, ListenerKind)], backlog: i32) -> Result<Handoff, String> {
    plan.iter()
        .map(|&(addr, kind)| {
            bind_shared(addr, backlog)
                .map(|s| (s, (addr, kind)))
                .map_err(|e| format!("cannot listen on {addr}: {e}"))
        })
        .collect()
}
