//! A worker's listening sockets while it serves: one accept loop per address, each
//! with its own close signal, so that installing a configuration can add an
//! address (a `SO_REUSEPORT` socket bound here, beside the other workers' and any
//! process sharing it by takeover) and close one the configuration no longer has
//! (its loop takes what waits in its queue, serves it, and the socket closes; the
//! connections it accepted finish).
//!
//! Each socket is also registered in the worker's [`WorkerStatus`] until it
//! closes, so that the control thread can shut it down should the worker die.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;

use monoio::net::TcpListener;
use monoio::task::JoinHandle;

use crate::downstream::DrainSignal;

use super::listeners::{accept_loop, Acceptor, ListenerKind};
use super::reuseport::bind_shared;
use super::worker_status::WorkerStatus;

/// The accept loops of one worker.
pub struct WorkerListeners {
    loops: Vec<AcceptLoop>,
    status: Arc<WorkerStatus>,
}

struct AcceptLoop {
    addr: SocketAddr,
    kind: ListenerKind,
    close: Rc<DrainSignal>,
    task: JoinHandle<()>,
}

impl WorkerListeners {
    /// No listeners yet; sockets are registered in `status`.
    pub fn new(status: Arc<WorkerStatus>) -> Self {
        WorkerListeners {
            loops: Vec::new(),
            status,
        }
    }

    /// Starts accepting on `socket` (bound elsewhere, non-blocking) at `addr`.
    pub fn start(
        &mut self,
        acceptor: &Rc<Acceptor>,
        addr: SocketAddr,
        kind: ListenerKind,
        socket: std::net::TcpListener,
    ) -> Result<(), String> {
        self.status
            .listening(addr, &socket)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let fd = socket.as_raw_fd();
        let listener = match TcpListener::from_std(socket) {
            Ok(l) => l,
            Err(e) => {
                self.status.closing(fd);
                return Err(format!("cannot listen on {addr}: {e}"));
            }
        };
        let close = Rc::new(DrainSignal::default());
        let (acceptor, status, stop) = (acceptor.clone(), self.status.clone(), close.clone());
        let task = monoio::spawn(async move {
            accept_loop(acceptor, &listener, addr, kind, &stop).await;
            status.closing(fd);
            drop(listener);
        });
        self.loops.push(AcceptLoop {
            addr,
            kind,
            close,
            task,
        });
        Ok(())
    }

    /// Listens on exactly the addresses of `plan`: loops on addresses it lacks
    /// are closed, addresses it does not have yet are bound (with `backlog`) and
    /// accepted on. Returns what could not be bound (the rest is done anyway).
    pub fn follow(
        &mut self,
        acceptor: &Rc<Acceptor>,
        plan: &[(SocketAddr, ListenerKind)],
        backlog: i32,
    ) -> Result<(), String> {
        let (keep, gone): (Vec<AcceptLoop>, Vec<AcceptLoop>) = std::mem::take(&mut self.loops)
            .into_iter()
            .partition(|l| plan.contains(&(l.addr, l.kind)));
        self.loops = keep;
        for l in gone {
            tracing::info!(
                worker = acceptor.worker.id,
                "no longer listening on {}: taking what waits in its queue, then closing it",
                l.addr
            );
            l.close.raise();
        }
        let mut failed = Vec::new();
        for &(addr, kind) in plan {
            if self.loops.iter().any(|l| l.addr == addr && l.kind == kind) {
                continue;
            }
            let started = bind_shared(addr, backlog)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))
                .and_then(|socket| self.start(acceptor, addr, kind, socket));
            if let Err(e) = started {
                failed.push(e);
            }
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(failed.join("; ")),
        }
    }

    /// Waits for every accept loop to end (they end when the worker drains).
    pub async fn finish(self) {
        for l in self.loops {
            l.task.await;
        }
    }
}
