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
//! bounded by the listener's `handshake_timeout_ms`, which then starts the task that
//! serves it: an idle connection's task (kept as long as the connection lives) holds
//! neither the handshake's state nor, for plaintext, room for it.
//!
//! When the worker drains, or a reload removes the listener's address, the loop
//! stops, takes the connections already waiting in the listener's queue (the kernel
//! would reset them when the listener closes: see docs/operations.md, "Takeover"),
//! and serves their first request; the caller closes the listener.
//!
//! Each connection's task runs under a panic guard ([`guard`]): a panic while
//! serving it closes that connection and is counted (`worker_panics`); the worker
//! and its other connections go on.

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncWriteRentExt, Canceller};
use monoio::net::{TcpListener, TcpStream};

use crate::downstream::{h1, ConnInfo};
use crate::http::{FieldList, OVERLOADED, OVERLOADED_NO_FD};
use crate::observe::Counters;
use crate::proxy::{Gateway, Worker};
use crate::tls;

use crate::config::{Snapshot, TlsListener};
use crate::downstream::DrainSignal;

use super::fd_shortage::{is_fd_exhaustion, FdShortage, Taken};
use super::panic_guard::guard;
use super::protocol;

/// What a listener speaks: plain HTTP, or TLS with the settings of the
/// `[[server.tls]]` listening on its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    Plain,
    Tls,
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
        .map(|t| (t.settings.listen, ListenerKind::Tls));
    plain.chain(tls).collect()
}

/// The accepting side of one worker: its TLS contexts and open connections.
pub struct Acceptor {
    pub worker: Rc<Worker>,
    /// One rustls config per TLS listener address, this worker's own (its session
    /// cache).
    tls_configs: RefCell<Vec<(SocketAddr, Arc<rustls::ServerConfig>)>>,
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

    /// Installs the TLS listeners' certificates and settings (`h2`: ALPN offers
    /// `h2` before `http/1.1`, `[server] http2`): new handshakes use them; open
    /// connections keep what they negotiated. On an error nothing changes.
    pub fn install_tls(&self, listeners: &[TlsListener], h2: bool) -> Result<(), String> {
        let configs = listeners
            .iter()
            .map(|l| Ok((l.settings.listen, l.tls.server_config(h2)?)))
            .collect::<Result<Vec<_>, String>>()?;
        *self.tls_configs.borrow_mut() = configs;
        Ok(())
    }

    fn tls_config(&self, addr: SocketAddr) -> Option<Arc<rustls::ServerConfig>> {
        let configs = self.tls_configs.borrow();
        configs
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, c)| c.clone())
    }
}

/// Most connections taken from the queue when the drain begins (the backlog bounds
/// the queue anyway; this bounds the loop).
const DRAIN_SWEEP_MAX: usize = 65_536;

/// Accepts connections on `listener` (configured as `addr`) until the worker
/// drains or `close` is raised, then takes what waits in its queue; the caller
/// closes it.
pub async fn accept_loop(
    acceptor: Rc<Acceptor>,
    listener: &TcpListener,
    addr: SocketAddr,
    kind: ListenerKind,
    close: &DrainSignal,
) {
    let kind = Kind { addr, kind };
    let in_flight = acceptor
        .worker
        .generation()
        .snapshot
        .server
        .runtime
        .accepts_in_flight;
    if in_flight <= 1 {
        accept_each(&acceptor, listener, kind, close).await;
    } else {
        // `[server.runtime] accepts_in_flight`: as many loops, each with one accept
        // waiting, on the same listener; all end on the drain.
        tracing::info!(
            "worker {} accepts on {addr} with {in_flight} accepts in flight",
            acceptor.worker.id
        );
        let loops = (0..in_flight).map(|_| accept_each(&acceptor, listener, kind, close));
        futures_util::future::join_all(loops).await;
    }
    take_waiting(&acceptor, listener, kind);
}

/// One accept at a time on `listener` until the worker drains or `close` is raised.
async fn accept_each(
    acceptor: &Rc<Acceptor>,
    listener: &TcpListener,
    kind: Kind,
    close: &DrainSignal,
) {
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
            _ = stopped(&worker.drain, close) => {
                // Cancel the accept in flight and wait for its outcome: with io_uring
                // the kernel may have taken a connection off the queue already, and
                // simply dropping the operation would leak it unanswered.
                let _ = canceller.cancel();
                if let Ok((stream, peer)) = accept.await {
                    start_connection(acceptor, stream, peer, kind);
                }
                break;
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                shortage.recovered();
                let _ = stream.set_nodelay(true);
                start_connection(acceptor, stream, peer, kind);
            }
            Err(e) if is_fd_exhaustion(&e) => {
                Counters::bump(&worker.counters.accept_fd_exhausted);
                shortage.note_failure(worker.id, &e);
                if !serve_while_short(acceptor, listener, kind, close, &mut shortage).await {
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
}

/// Where a connection was accepted: the configured address and what it speaks.
#[derive(Clone, Copy)]
struct Kind {
    addr: SocketAddr,
    kind: ListenerKind,
}

/// Resolves when the worker drains or the listener is to close.
async fn stopped(drain: &DrainSignal, close: &DrainSignal) {
    monoio::select! {
        _ = drain.raised() => {},
        _ = close.raised() => {},
    }
}

/// Starts serving an accepted connection in its own task, or refuses it when the
/// worker is at `max_connections_per_worker`.
fn start_connection(acceptor: &Rc<Acceptor>, stream: TcpStream, peer: SocketAddr, kind: Kind) {
    let worker = &acceptor.worker;
    let limit = worker
        .generation()
        .snapshot
        .server
        .limits
        .max_connections_per_worker;
    if acceptor.active.get() >= limit {
        Counters::bump(&worker.counters.connections_rejected);
        if let ListenerKind::Plain = kind.kind {
            monoio::spawn(refuse(stream));
        }
        return;
    }
    Counters::bump(&worker.counters.connections_accepted);
    acceptor.active.set(acceptor.active.get() + 1);
    // `serve` takes the connection off the count when it ends.
    match kind.kind {
        ListenerKind::Plain if !worker.generation().snapshot.server.http2.h2c => {
            let conn = Box::new(h1::ClientConn::new(stream, ConnInfo::plain(peer)));
            monoio::spawn(serve(acceptor.clone(), conn, peer));
        }
        ListenerKind::Plain => {
            monoio::spawn(serve_h2c_or_h1(acceptor.clone(), stream, peer));
        }
        ListenerKind::Tls => {
            monoio::spawn(handshake_then_serve(
                acceptor.clone(),
                stream,
                peer,
                kind.addr,
            ));
        }
    }
}

/// Out of descriptors: until one is free again, waits for clients (a poll needs no
/// descriptor, whereas with io_uring an accept fails at once whether or not a client
/// waits) and takes each at once, serving it if a descriptor is free and refusing
/// it with the spare otherwise. True when descriptors are back, false on drain.
async fn serve_while_short(
    acceptor: &Rc<Acceptor>,
    listener: &TcpListener,
    kind: Kind,
    close: &DrainSignal,
    shortage: &mut FdShortage,
) -> bool {
    let worker = &acceptor.worker;
    let answer = matches!(kind.kind, ListenerKind::Plain).then_some(OVERLOADED_NO_FD);
    loop {
        let waiting = monoio::select! {
            r = listener.readable(false) => r.is_ok(),
            _ = stopped(&worker.drain, close) => return false,
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
                    _ = stopped(&worker.drain, close) => return false,
                }
            }
            Taken::Nobody => {}
        }
    }
}

/// The drain began: takes the connections already waiting in the listener's queue
/// and serves their first request, so that closing the listener resets none of them;
/// then, at once, takes the listener out of its `SO_REUSEPORT` group.
fn take_waiting(acceptor: &Rc<Acceptor>, listener: &TcpListener, kind: Kind) {
    for _ in 0..DRAIN_SWEEP_MAX {
        let Ok((stream, peer)) = accept_now(listener) else {
            break; // empty (WouldBlock), or out of descriptors: nothing more to take
        };
        start_std_connection(acceptor, stream, peer, kind);
    }
    stop_listening(listener);
}

/// Takes the listener out of its port's `SO_REUSEPORT` group now, with one
/// `shutdown(2)` right after the queue was found empty: the kernel stops sending it
/// new connections from this instant (they go to the other listeners of the group,
/// a takeover's new process), instead of from whenever the runtime gets to close the
/// descriptor (monoio queues that close on its ring, to be submitted after other
/// tasks ran): connections that reached the queue in between were reset (a CI run of
/// the takeover test saw one). What can still be reset is only a connection whose
/// handshake ended between the last `accept` and this call (see docs/operations.md,
/// "Takeover"). Errors are ignored: the descriptor is closed right after anyway.
fn stop_listening(listener: &TcpListener) {
    // SAFETY: shutdown on a descriptor `listener` owns and keeps open; no memory
    // is passed.
    let _ = unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RD) };
}

/// [`start_connection`] for a connection accepted with [`accept_now`].
fn start_std_connection(
    acceptor: &Rc<Acceptor>,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    kind: Kind,
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

/// Serves one connection with the worker's current generation, then takes it off
/// the count of open connections. A panic while serving closes this connection
/// only (counted as `worker_panics`, logged); the worker goes on.
async fn serve<S: h1::Io>(acceptor: Rc<Acceptor>, conn: Box<h1::ClientConn<S>>, peer: SocketAddr) {
    let worker = acceptor.worker.clone();
    let served = guard(async {
        let gateway = Gateway::for_connection(worker.clone());
        let server = &gateway.generation.snapshot.server;
        let runtime = &server.runtime;
        let conn = conn.with_buffers(runtime.read_buffer_bytes, runtime.write_buffer_bytes);
        h1::serve(conn, &server.limits, &worker.drain, &worker.idle, &gateway).await;
    });
    if let Err(panic) = served.await {
        panicked(&worker, peer, &panic);
    }
    acceptor.active.set(acceptor.active.get() - 1);
}

fn panicked(worker: &Worker, peer: SocketAddr, panic: &str) {
    Counters::bump(&worker.counters.worker_panics);
    tracing::error!(
        worker = worker.id,
        %peer,
        "a panic while serving a connection closed it (the worker goes on): {panic}"
    );
}

/// Handshakes, then serves the connection in a task of its own (see the module's
/// comment); a connection whose handshake failed is taken off the count here.
/// A plaintext connection on a worker whose generation has `h2c` on: HTTP/2 when
/// its first bytes are the preface, else HTTP/1.1 with those bytes already read
/// (`protocol.rs`). Taken off the count when it ends.
async fn serve_h2c_or_h1(acceptor: Rc<Acceptor>, stream: TcpStream, peer: SocketAddr) {
    let info = ConnInfo::plain(peer);
    let worker = acceptor.worker.clone();
    let timeout = worker
        .generation()
        .snapshot
        .server
        .limits
        .header_read_timeout;
    match guard(protocol::sniff_h2c(&worker, stream, info, timeout)).await {
        Ok(Some(conn)) => serve(acceptor, Box::new(conn), peer).await,
        Ok(None) => acceptor.active.set(acceptor.active.get() - 1),
        Err(panic) => {
            panicked(&worker, peer, &panic);
            acceptor.active.set(acceptor.active.get() - 1);
        }
    }
}

/// Serves an HTTP/2 connection (ALPN `h2`) with the worker's current generation,
/// then takes it off the count; a panic closes this connection only.
async fn serve_h2(
    acceptor: Rc<Acceptor>,
    stream: tls::TlsStream<rustls::server::UnbufferedServerConnection>,
    info: ConnInfo,
) {
    let worker = acceptor.worker.clone();
    let peer = info.peer;
    if let Err(panic) = guard(protocol::serve_h2(&worker, stream, Vec::new(), info)).await {
        panicked(&worker, peer, &panic);
    }
    acceptor.active.set(acceptor.active.get() - 1);
}

/// `addr` names the TLS listener (its settings in the current generation).
async fn handshake_then_serve(
    acceptor: Rc<Acceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    addr: SocketAddr,
) {
    match guard(handshake(&acceptor, stream, peer, addr)).await {
        Ok(Some((stream, info))) if stream.session().alpn_protocol() == Some(b"h2") => {
            monoio::spawn(serve_h2(acceptor, stream, info));
        }
        Ok(Some((stream, info))) => {
            let conn = Box::new(h1::ClientConn::new(stream, info));
            monoio::spawn(serve(acceptor, conn, peer));
        }
        Ok(None) => acceptor.active.set(acceptor.active.get() - 1),
        Err(panic) => {
            panicked(&acceptor.worker, peer, &panic);
            acceptor.active.set(acceptor.active.get() - 1);
        }
    }
}

/// The TLS handshake within the listener's `handshake_timeout_ms`: the stream
/// (ALPN says which protocol follows), with what the handshake says about the
/// client, or `None` when it failed (counted, and logged at debug).
async fn handshake(
    acceptor: &Acceptor,
    stream: TcpStream,
    peer: SocketAddr,
    addr: SocketAddr,
) -> Option<(
    tls::TlsStream<rustls::server::UnbufferedServerConnection>,
    ConnInfo,
)> {
    let worker = &acceptor.worker;
    let snapshot = worker.generation().snapshot.clone();
    let listener = snapshot
        .server
        .tls
        .iter()
        .find(|t| t.settings.listen == addr)?;
    let config = acceptor.tls_config(addr)?;
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
            let info = ConnInfo::new(peer, true, client_subject);
            Some((stream, info))
        }
        Ok(Err(e)) => {
            Counters::bump(&worker.counters.tls_handshake_failures);
            tracing::debug!(worker = worker.id, %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            Counters::bump(&worker.counters.tls_handshake_failures);
            tracing::debug!(worker = worker.id, %peer, "TLS handshake timed out");
            None
        }
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = monoio::time::timeout(Duration::from_secs(1), stream.write_all(OVERLOADED)).await;
}
