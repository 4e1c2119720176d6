//! The accept loop of one listener on one worker, with the per-worker connection cap.
//!
//! Past `max_connections_per_worker`, a new plaintext connection is answered at once
//! with `503` and `Connection: close` (and counted), rather than left waiting in the
//! backlog: clients and load balancers see a clear, fast refusal. A TLS connection
//! past the cap is closed without a handshake (answering it would cost a handshake).
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

use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::Duration;

use monoio::io::{AsyncWriteRentExt, Canceller};
use monoio::net::{TcpListener, TcpStream};

use crate::observe::Counters;
use crate::tls;

use super::connection::{serve, ConnMeta};
use super::fd_shortage::{is_fd_exhaustion, FdShortage, Taken};
use super::worker::WorkerCtx;

/// What a listener speaks.
#[derive(Clone, Copy)]
pub enum ListenerKind {
    Plain,
    /// Index into the snapshot's TLS listeners (and the worker's TLS configs).
    Tls(usize),
}

/// Most connections taken from the queue when the drain begins (the backlog bounds
/// the queue anyway; this bounds the loop).
const DRAIN_SWEEP_MAX: usize = 65_536;

pub async fn accept_loop(ctx: Rc<WorkerCtx>, listener: TcpListener, kind: ListenerKind) {
    let mut shortage = FdShortage::new();
    loop {
        let canceller = Canceller::new();
        let accept = listener.cancelable_accept(canceller.handle());
        let mut accept = std::pin::pin!(accept);
        let accepted = monoio::select! {
            a = &mut accept => a,
            _ = ctx.drain.raised() => {
                // Cancel the accept in flight and wait for its outcome: with io_uring
                // the kernel may have taken a connection off the queue already, and
                // simply dropping the operation would leak it unanswered.
                let _ = canceller.cancel();
                if let Ok((stream, peer)) = accept.await {
                    start_connection(&ctx, stream, peer, kind);
                }
                break;
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                shortage.recovered();
                let _ = stream.set_nodelay(true);
                start_connection(&ctx, stream, peer, kind);
            }
            Err(e) if is_fd_exhaustion(&e) => {
                Counters::bump(&ctx.counters.accept_fd_exhausted);
                shortage.note_failure(ctx.id, &e);
                if !serve_while_short(&ctx, &listener, kind, &mut shortage).await {
                    break;
                }
            }
            Err(e) => {
                // A client that reset before it was accepted, and the like.
                tracing::debug!(worker = ctx.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    take_waiting(&ctx, &listener, kind);
}

/// Starts serving an accepted connection in its own task, or refuses it when the
/// worker is at `max_connections_per_worker`.
fn start_connection(ctx: &Rc<WorkerCtx>, stream: TcpStream, peer: SocketAddr, kind: ListenerKind) {
    if ctx.active_connections.get() >= ctx.max_connections() {
        Counters::bump(&ctx.counters.connections_rejected);
        if let ListenerKind::Plain = kind {
            monoio::spawn(refuse(stream));
        }
        return;
    }
    Counters::bump(&ctx.counters.connections_accepted);
    ctx.active_connections.set(ctx.active_connections.get() + 1);
    let conn_ctx = ctx.clone();
    monoio::spawn(async move {
        match kind {
            ListenerKind::Plain => serve(conn_ctx.clone(), stream, peer, ConnMeta::plain()).await,
            ListenerKind::Tls(index) => serve_tls(&conn_ctx, stream, peer, index).await,
        }
        conn_ctx
            .active_connections
            .set(conn_ctx.active_connections.get() - 1);
    });
}

/// Out of descriptors: until one is free again, waits for clients (a poll needs no
/// descriptor, whereas with io_uring an accept fails at once whether or not a client
/// waits) and takes each at once, serving it if a descriptor is free and refusing
/// it with the spare otherwise. True when descriptors are back, false on drain.
async fn serve_while_short(
    ctx: &Rc<WorkerCtx>,
    listener: &TcpListener,
    kind: ListenerKind,
    shortage: &mut FdShortage,
) -> bool {
    let answer = matches!(kind, ListenerKind::Plain).then_some(OVERLOADED_NO_FD);
    loop {
        let waiting = monoio::select! {
            r = listener.readable(false) => r.is_ok(),
            _ = ctx.drain.raised() => return false,
        };
        if !waiting {
            // The poll failed: do not spin on it.
            monoio::time::sleep(shortage.next_backoff()).await;
            continue;
        }
        match shortage.take_one(|| accept_now(listener), answer) {
            Taken::Served(stream, peer) => {
                start_std_connection(ctx, stream, peer, kind);
                return true;
            }
            Taken::Refused(e) => {
                Counters::bump(&ctx.counters.accept_fd_exhausted);
                Counters::bump(&ctx.counters.connections_rejected);
                shortage.note_failure(ctx.id, &e);
            }
            Taken::NoSpare(e) => {
                Counters::bump(&ctx.counters.accept_fd_exhausted);
                shortage.note_failure(ctx.id, &e);
                let wait = shortage.next_backoff();
                monoio::select! {
                    _ = monoio::time::sleep(wait) => {},
                    _ = ctx.drain.raised() => return false,
                }
            }
            Taken::Nobody => {}
        }
    }
}

/// The drain began: takes the connections already waiting in the listener's queue
/// and serves their first request, so that closing the listener resets none of them.
fn take_waiting(ctx: &Rc<WorkerCtx>, listener: &TcpListener, kind: ListenerKind) {
    for _ in 0..DRAIN_SWEEP_MAX {
        let Ok((stream, peer)) = accept_now(listener) else {
            return; // empty (WouldBlock), or out of descriptors: nothing more to take
        };
        start_std_connection(ctx, stream, peer, kind);
    }
}

/// [`start_connection`] for a connection accepted with [`accept_now`].
fn start_std_connection(
    ctx: &Rc<WorkerCtx>,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
) {
    let _ = stream.set_nodelay(true);
    if let Ok(stream) = stream
        .set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(stream))
    {
        start_connection(ctx, stream, peer, kind);
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
async fn serve_tls(ctx: &Rc<WorkerCtx>, stream: TcpStream, peer: SocketAddr, index: usize) {
    let snapshot = ctx.snapshot();
    let Some(listener) = snapshot.server.tls.get(index) else {
        return;
    };
    let Some(config) = ctx.tls_config(index) else {
        return;
    };
    let timeout = listener.settings.handshake_timeout;
    match monoio::time::timeout(timeout, tls::accept(stream, config)).await {
        Ok(Ok(stream)) => {
            Counters::bump(&ctx.counters.tls_handshakes);
            if stream.session().handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                Counters::bump(&ctx.counters.tls_resumed);
            }
            let subject = listener
                .settings
                .client_subject_header
                .as_ref()
                .and_then(|h| {
                    tls::client_subject(stream.session().peer_certificates())
                        .map(|s| format!("{h}: {s}\r\n").into_bytes())
                });
            serve(
                ctx.clone(),
                stream,
                peer,
                ConnMeta {
                    secure: true,
                    client_subject: subject,
                },
            )
            .await;
        }
        Ok(Err(e)) => {
            Counters::bump(&ctx.counters.tls_handshake_failures);
            tracing::debug!(worker = ctx.id, %peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            Counters::bump(&ctx.counters.tls_handshake_failures);
            tracing::debug!(worker = ctx.id, %peer, "TLS handshake timed out");
        }
    }
}

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 61\r\nconnection: close\r\nretry-after: 1\r\n\r\n{\"error\": \"too many connections on this worker, retry later\"}";

/// The same refusal when the process is out of file descriptors.
const OVERLOADED_NO_FD: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 57\r\nconnection: close\r\nretry-after: 1\r\n\r\n{\"error\": \"gateway out of file descriptors, retry later\"}";

async fn refuse(mut stream: TcpStream) {
    let _ = monoio::time::timeout(Duration::from_secs(1), stream.write_all(OVERLOADED)).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn overloaded_responses_lengths_match_their_bodies() {
        for answer in [super::OVERLOADED, super::OVERLOADED_NO_FD] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("content-length: {}", body.len())));
        }
    }
}
