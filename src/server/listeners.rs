//! A worker's listeners: the accept loop of each, with the per-worker connection
//! cap, the TLS handshake on TLS listeners, and the hand-off of each connection to
//! its protocol's downstream (`protocol.rs`: HTTP/1.1, or HTTP/2 by ALPN or h2c).
//!
//! Past `max_connections_per_worker`, a new plaintext connection is answered at once
//! with `503` and `Connection: close` (and counted), rather than left waiting in the
//! backlog: clients and load balancers see a clear, fast refusal. A TLS connection
//! past the cap is closed without a handshake (answering it would cost a handshake).
//!
//! When the process is out of file descriptors, waiting clients are refused the same
//! way with a spare descriptor ([`FdShortage`]), and the loop backs off.
//!
//! On a TLS listener each accepted connection runs its handshake in its own task,
//! bounded by the listener's `handshake_timeout_ms`, before it is served.
//!
//! When the worker drains, the loop stops, takes the connections already waiting in
//! the listener's queue (the kernel would reset them when the listener closes: see
//! docs/operations.md, "Takeover"), serves their first request, and closes the
//! listener.

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncWriteRentExt, Canceller};
use monoio::net::{TcpListener, TcpStream};

use crate::downstream::ConnInfo;
use crate::http::{FieldList, OVERLOADED, OVERLOADED_NO_FD};
use crate::observe::Counters;
use crate::proxy::Worker;
use crate::tls::{self, ListenerTls};

use super::fd_shortage::{is_fd_exhaustion, FdShortage, Taken};
use super::protocol;

/// What a listener speaks.
#[derive(Clone, Copy)]
pub enum ListenerKind {
    Plain,
    /// Index into the snapshot's TLS listeners (and the worker's TLS configs).
    Tls(usize),
}

/// The accepting side of one worker: its TLS contexts and open connections.
pub struct Acceptor {
    pub worker: Rc<Worker>,
    /// One rustls config per TLS listener, this worker's own (its session cache).
    tls_configs: RefCell<Vec<Arc<rustls::ServerConfig>>>,
    /// Connections open on this worker.
    pub active: Cell<usize>,
}

impl Acceptor {
    pub fn new(worker: Rc<Worker>) -> Self {
        Acceptor {
            worker,
            tls_configs: RefCell::new(Vec::new()),
            active: Cell::new(0),
        }
    }

    /// Installs new certificates: new handshakes use them; open connections keep
    /// what they negotiated.
    pub fn install_tls(&self, contexts: &[Arc<ListenerTls>]) -> Result<(), String> {
        let h2 = self.worker.generation().snapshot.server.http2.alpn;
        let configs = contexts
            .iter()
            .map(|c| c.server_config(h2))
            .collect::<Result<Vec<_>, _>>()?;
        *self.tls_configs.borrow_mut() = configs;
        Ok(())
    }

    fn tls_config(&self, index: usize) -> Option<Arc<rustls::ServerConfig>> {
        self.tls_configs.borrow().get(index).cloned()
    }
}

/// Most connections taken from the queue when the drain begins (the backlog bounds
/// the queue anyway; this bounds the loop).
const DRAIN_SWEEP_MAX: usize = 65_536;

/// Accepts connections on `listener` until the worker drains, then takes what
/// waits in its queue and closes it.
pub async fn accept_loop(acceptor: Rc<Acceptor>, listener: TcpListener, kind: ListenerKind) {
    let worker = acceptor.worker.clone();
    let mut shortage = FdShortage::new();
    // One for the loop's life: each accept registers with it (no allocation), and
    // the drain cancels the one in flight.
    let canceller = Canceller::new();
    loop {
        let accept = listener.cancelable_accept(canceller.handle());
        let mut accept = std::pin::pin!(accept);
        let accepted = monoio::select! {
            a = &mut accept => a,
            _ = worker.drain.raised() => {
                // Cancel the accept in flight and wait for its outcome: with io_uring
                // the kernel may have taken a connection off the queue already, and
                // simply dropping the operation would leak it unanswered.
                let _ = canceller.cancel();
                if let Ok((stream, peer)) = accept.await {
                    start_connection(&acceptor, stream, peer, kind);
                }
                break;
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                shortage.recovered();
                let _ = stream.set_nodelay(true);
                start_connection(&acceptor, stream, peer, kind);
            }
            Err(e) if is_fd_exhaustion(&e) => {
                Counters::bump(&worker.counters.accept_fd_exhausted);
                shortage.note_failure(worker.id, &e);
                if !serve_while_short(&acceptor, &listener, kind, &mut shortage).await {
                    break;
                }
            }
            Err(e) => {
                // A client that reset before it was accepted, and the like.
                tracing::debug!(worker = worker.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    take_waiting(&acceptor, &listener, kind);
}

/// Starts serving an accepted connection in its own task, or refuses it when the
/// worker is at `max_connections_per_worker`.
fn start_connection(
    acceptor: &Rc<Acceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
) {
    let worker = &acceptor.worker;
    let limit = worker
        .generation()
        .snapshot
        .server
        .limits
        .max_connections_per_worker;
    if acceptor.active.get() >= limit {
        Counters::bump(&worker.counters.connections_rejected);
        if let ListenerKind::Plain = kind {
            monoio::spawn(refuse(stream));
        }
        return;
    }
    Counters::bump(&worker.counters.connections_accepted);
    acceptor.active.set(acceptor.active.get() + 1);
    let acceptor = acceptor.clone();
    monoio::spawn(async move {
        match kind {
            ListenerKind::Plain => {
                protocol::serve_plain(&acceptor.worker, stream, ConnInfo::plain(peer)).await;
            }
            ListenerKind::Tls(index) => serve_tls(&acceptor, stream, peer, index).await,
        }
        acceptor.active.set(acceptor.active.get() - 1);
    });
}

/// Out of descriptors: until one is free again, waits for clients (a poll needs no
/// descriptor, whereas with io_uring an accept fails at once whether or not a client
/// waits) and takes each at once, serving it if a descriptor is free and refusing
/// it with the spare otherwise. True when descriptors are back, false on drain.
async fn serve_while_short(
    acceptor: &Rc<Acceptor>,
    listener: &TcpListener,
    kind: ListenerKind,
    shortage: &mut FdShortage,
) -> bool {
    let worker = &acceptor.worker;
    let answer = matches!(kind, ListenerKind::Plain).then_some(OVERLOADED_NO_FD);
    loop {
        let waiting = monoio::select! {
            r = listener.readable(false) => r.is_ok(),
            _ = worker.drain.raised() => return false,
        };
        if !waiting {
            // The poll failed: do not spin on it.
            monoio::time::sleep(shortage.next_backoff()).await;
            continue;
        }
        match shortage.take_one(|| accept_now(listener), answer) {
            Taken::Served(stream, peer) => {
                start_std_connection(acceptor, stream, peer, kind);
                return true;
            }
            Taken::Refused(e) => {
                Counters::bump(&worker.counters.accept_fd_exhausted);
                Counters::bump(&worker.counters.connections_rejected);
                shortage.note_failure(worker.id, &e);
            }
            Taken::NoSpare(e) => {
                Counters::bump(&worker.counters.accept_fd_exhausted);
                shortage.note_failure(worker.id, &e);
                let wait = shortage.next_backoff();
                monoio::select! {
                    _ = monoio::time::sleep(wait) => {},
                    _ = worker.drain.raised() => return false,
                }
            }
            Taken::Nobody => {}
        }
    }
}

/// The drain began: takes the connections already waiting in the listener's queue
/// and serves their first request, so that closing the listener resets none of them.
fn take_waiting(acceptor: &Rc<Acceptor>, listener: &TcpListener, kind: ListenerKind) {
    for _ in 0..DRAIN_SWEEP_MAX {
        let Ok((stream, peer)) = accept_now(listener) else {
            return; // empty (WouldBlock), or out of descriptors: nothing more to take
        };
        start_std_connection(acceptor, stream, peer, kind);
    }
}

/// [`start_connection`] for a connection accepted with [`accept_now`].
fn start_std_connection(
    acceptor: &Rc<Acceptor>,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
) {
    let _ = stream.set_nodelay(true);
    if let Ok(stream) = stream
        .set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(stream))
    {
        start_connection(acceptor, stream, peer, kind);
    }
}

/// One `accept(2)` on the listener's non-blocking socket, outside the runtime: it
/// answers at once (`WouldBlock` when the queue is empty) and never leaves an
/// operation in flight that could complete after its caller gave up.
fn accept_now(listener: &TcpListener) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    // SAFETY: the descriptor stays owned by `listener` (ManuallyDrop never closes
    // it); the std view only lives for this call.
    let std =
        ManuallyDrop::new(unsafe { std::net::TcpListener::from_raw_fd(listener.as_raw_fd()) });
    std.accept()
}

/// Handshakes, then serves; failures and timeouts are counted and logged at debug.
async fn serve_tls(acceptor: &Acceptor, stream: TcpStream, peer: SocketAddr, index: usize) {
    let worker = &acceptor.worker;
    let snapshot = worker.generation().snapshot.clone();
    let Some(listener) = snapshot.server.tls.get(index) else {
        return;
    };
    let Some(config) = acceptor.tls_config(index) else {
        return;
    };
    let timeout = listener.settings.handshake_timeout;
    match monoio::time::timeout(timeout, tls::accept(stream, config)).await {
        Ok(Ok(stream)) => {
            Counters::bump(&worker.counters.tls_handshakes);
            if stream.session().handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                Counters::bump(&worker.counters.tls_resumed);
            }
            let client_subject = listener
                .settings
                .client_subject_header
                .as_ref()
                .and_then(|h| {
                    let subject = tls::client_subject(stream.session().peer_certificates())?;
                    let mut field = FieldList::new();
                    field.push(h.as_bytes(), subject.as_bytes());
                    Some(field)
                });
            let info = ConnInfo {
                peer,
                secure: true,
                client_subject,
            };
            protocol::serve_tls(worker, stream, info).await;
        }
        Ok(Err(e)) => {
            Counters::bump(&worker.counters.tls_handshake_failures);
            tracing::debug!(worker = worker.id, %peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            Counters::bump(&worker.counters.tls_handshake_failures);
            tracing::debug!(worker = worker.id, %peer, "TLS handshake timed out");
        }
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = monoio::time::timeout(Duration::from_secs(1), stream.write_all(OVERLOADED)).await;
}
