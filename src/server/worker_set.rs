//! The workers as the control thread sees them: started in two steps so that the
//! data listeners are bound last, then drained and waited for with a deadline.
//!
//! 1. [`WorkerSet::start`]: each worker thread builds its runtime, state and TLS
//!    configs and reports `Prepared` (or why it cannot).
//! 2. [`WorkerSet::listen`]: only then does the control thread bind one
//!    `SO_REUSEPORT` socket per worker and address and hand them over; the workers
//!    register them with their runtimes and report `Serving`.
//!
//! A failure at either step drains the workers started so far; nothing was bound
//! before step 2, so a start-up that fails disturbs no other process's listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::compose::PublishedCompose;
use crate::config::Snapshot;
use crate::limit::WorkerLink;
use crate::observe::{AccessLogWriter, PublishedCounters};
use crate::upstream::EndpointBoard;

use super::listeners::ListenerKind;
use super::mailbox::Mailbox;
use super::reuseport::{bind_shared, check_alone};
use super::shutdown::join_until;
use super::worker::{self, StartReport, WorkerPlan};

/// How long a worker may take to report a start-up step.
const START_TIMEOUT: Duration = Duration::from_secs(10);

type Handoff = Vec<(std::net::TcpListener, ListenerKind)>;

/// The running workers.
pub struct WorkerSet {
    threads: Vec<JoinHandle<()>>,
    mailboxes: Vec<Arc<Mailbox>>,
    /// One per worker; dropped unused when start-up fails.
    handoff: Vec<Sender<Handoff>>,
    reports: Receiver<StartReport>,
}

/// Every data address with what it speaks: the plaintext ones, then the TLS ones.
pub fn listen_plan(snapshot: &Snapshot) -> Vec<(SocketAddr, ListenerKind)> {
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
    plain.chain(tls).collect()
}

impl WorkerSet {
    /// Starts one worker per entry of `cores` and waits until each is prepared;
    /// logs where each runs. `limiter` has one link per worker, or is empty.
    pub fn start(
        snapshot: &Arc<Snapshot>,
        cores: &[Option<CoreId>],
        access_log: Option<&AccessLogWriter>,
        limiter: Vec<WorkerLink>,
        published: &[Arc<PublishedCounters>],
        compose: &[Arc<PublishedCompose>],
        board: &Arc<EndpointBoard>,
    ) -> Result<WorkerSet, String> {
        let (report_tx, reports) = bounded(2 * cores.len());
        let mut set = WorkerSet {
            threads: Vec::new(),
            mailboxes: Vec::new(),
            handoff: Vec::new(),
            reports,
        };
        let mut links = limiter.into_iter();
        for (id, core) in cores.iter().enumerate() {
            let mailbox = Arc::new(Mailbox::default());
            let (handoff_tx, handoff_rx) = bounded(1);
            let plan = WorkerPlan {
                id,
                core: *core,
                snapshot: snapshot.clone(),
                mailbox: mailbox.clone(),
                reports: report_tx.clone(),
                listeners: handoff_rx,
                access_log: access_log.map(AccessLogWriter::buffer),
                published: published.get(id).cloned().unwrap_or_default(),
                published_compose: compose
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(PublishedCompose::new(snapshot))),
                limiter: links.next(),
                board: board.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("portico-worker-{id}"))
                .spawn(move || worker::run(plan));
            match spawned {
                Ok(handle) => {
                    set.threads.push(handle);
                    set.mailboxes.push(mailbox);
                    set.handoff.push(handoff_tx);
                }
                Err(e) => return Err(set.abort(format!("cannot start worker {id}: {e}"))),
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
            let mut mine = Vec::new();
            for &(addr, kind) in plan {
                match bind_shared(addr, backlog) {
                    Ok(s) => mine.push((s, kind)),
                    Err(e) => return Err(self.abort(format!("cannot listen on {addr}: {e}"))),
                }
            }
            sockets.push(mine);
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

    /// The workers' mailboxes, for the control loop.
    pub fn mailboxes(&self) -> &[Arc<Mailbox>] {
        &self.mailboxes
    }

    /// Tells every worker to drain until `until`, and waits for each until
    /// `deadline`; a worker still running then is named in the log and left behind.
    pub fn drain(self, until: Instant, deadline: Instant) {
        for m in &self.mailboxes {
            m.post_drain(until);
        }
        drop(self.handoff); // workers still waiting for listeners give up
        for (id, thread) in self.threads.into_iter().enumerate() {
            join_until(thread, deadline, &format!("worker {id}"));
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
