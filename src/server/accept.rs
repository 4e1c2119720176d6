//! The accept loop of one listener on one worker, with the per-worker connection cap.
//!
//! Past `max_connections_per_worker`, a new plaintext connection is answered at once
//! with `503` and `Connection: close` (and counted), rather than left waiting in the
//! backlog: clients and load balancers see a clear, fast refusal. A TLS connection
//! past the cap is closed without a handshake (answering it would cost a handshake).
//!
//! On a TLS listener each accepted connection runs its handshake in its own task,
//! bounded by the listener's `handshake_timeout_ms`, before it is served.

use std::rc::Rc;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};

use crate::observe::Counters;
use crate::tls;

use super::connection::{serve, ConnMeta};
use super::worker::WorkerCtx;

/// What a listener speaks.
#[derive(Clone, Copy)]
pub enum ListenerKind {
    Plain,
    /// Index into the snapshot's TLS listeners (and the worker's TLS configs).
    Tls(usize),
}

pub async fn accept_loop(ctx: Rc<WorkerCtx>, listener: TcpListener, kind: ListenerKind) {
    loop {
        let accepted = monoio::select! {
            a = listener.accept() => a,
            _ = ctx.drain.raised() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(worker = ctx.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let limit = ctx.max_connections();
        if ctx.active_connections.get() >= limit {
            ctx.counters
                .connections_rejected
                .set(ctx.counters.connections_rejected.get() + 1);
            if let ListenerKind::Plain = kind {
                monoio::spawn(refuse(stream));
            }
            continue;
        }
        ctx.counters
            .connections_accepted
            .set(ctx.counters.connections_accepted.get() + 1);
        ctx.active_connections.set(ctx.active_connections.get() + 1);
        let conn_ctx = ctx.clone();
        monoio::spawn(async move {
            match kind {
                ListenerKind::Plain => {
                    serve(conn_ctx.clone(), stream, peer, ConnMeta::plain()).await
                }
                ListenerKind::Tls(index) => serve_tls(&conn_ctx, stream, peer, index).await,
            }
            conn_ctx
                .active_connections
                .set(conn_ctx.active_connections.get() - 1);
        });
    }
}

/// Handshakes, then serves; failures and timeouts are counted and logged at debug.
async fn serve_tls(
    ctx: &Rc<WorkerCtx>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    index: usize,
) {
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

async fn refuse(mut stream: TcpStream) {
    let _ = monoio::time::timeout(Duration::from_secs(1), stream.write_all(OVERLOADED)).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn overloaded_response_length_matches_body() {
        let text = std::str::from_utf8(super::OVERLOADED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
