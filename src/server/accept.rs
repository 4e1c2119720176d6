//! The accept loop of one listener on one worker, with the per-worker connection cap.
//!
//! Past `max_connections_per_worker`, a new connection is answered at once with
//! `503` and `Connection: close` (and counted), rather than left waiting in the
//! backlog: clients and load balancers see a clear, fast refusal.

use std::rc::Rc;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};

use super::connection::serve;
use super::worker::WorkerCtx;

pub async fn accept_loop(ctx: Rc<WorkerCtx>, listener: TcpListener) {
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
            monoio::spawn(refuse(stream));
            continue;
        }
        ctx.counters
            .connections_accepted
            .set(ctx.counters.connections_accepted.get() + 1);
        ctx.active_connections.set(ctx.active_connections.get() + 1);
        let conn_ctx = ctx.clone();
        monoio::spawn(async move {
            serve(conn_ctx.clone(), stream, peer).await;
            conn_ctx
                .active_connections
                .set(conn_ctx.active_connections.get() - 1);
        });
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
