//! Which protocol a client connection speaks, and the hand-off to its downstream:
//! on TLS the protocol ALPN chose (`h2` when `[server] http2` is on, else HTTP/1.1);
//! on plaintext, with `[server] h2c` on, HTTP/2 when the first bytes are the
//! HTTP/2 preface (prior knowledge, RFC 9113 §3.3), HTTP/1.1 otherwise. Either way
//! the connection pins the worker's current generation through its [`Gateway`].

use std::rc::Rc;
use std::time::Duration;

use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;
use rustls::ServerConnection;

use crate::downstream::{h1, h2, ConnInfo};
use crate::proxy::{Gateway, Worker};
use crate::tls::TlsStream;

/// The first read's buffer on a plaintext listener that looks for h2c.
const FIRST_READ: usize = 4 * 1024;

/// Serves a plaintext connection.
pub async fn serve_plain(worker: &Rc<Worker>, mut stream: TcpStream, info: ConnInfo) {
    let gateway = Gateway::for_connection(worker.clone());
    let snapshot = gateway.generation.snapshot.clone();
    let server = &snapshot.server;
    if !server.http2.h2c {
        return h1::serve(stream, info, &server.limits, &worker.drain, &gateway).await;
    }
    let Some(first) = first_bytes(&mut stream, server.limits.header_read_timeout).await else {
        return;
    };
    if first.starts_with(h2::PREFACE) {
        h2::serve(
            stream,
            first,
            info,
            server,
            &worker.drain,
            &gateway,
            &worker.counters,
        )
        .await;
    } else {
        h1::serve_after(stream, first, info, &server.limits, &worker.drain, &gateway).await;
    }
}

/// Serves a TLS connection in the protocol its handshake chose.
pub async fn serve_tls(worker: &Rc<Worker>, stream: TlsStream<ServerConnection>, info: ConnInfo) {
    let gateway = Gateway::for_connection(worker.clone());
    let snapshot = gateway.generation.snapshot.clone();
    let server = &snapshot.server;
    if stream.session().alpn_protocol() == Some(b"h2") {
        let (drain, counters) = (&worker.drain, &worker.counters);
        h2::serve(stream, Vec::new(), info, server, drain, &gateway, counters).await;
    } else {
        h1::serve(stream, info, &server.limits, &worker.drain, &gateway).await;
    }
}

/// The connection's first bytes: enough to tell the HTTP/2 preface from an
/// HTTP/1.1 request line, within the header timeout. `None` if the client closed
/// or sent nothing in time.
async fn first_bytes(stream: &mut TcpStream, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = monoio::time::Instant::now() + timeout;
    let mut buf = Vec::with_capacity(FIRST_READ);
    loop {
        let len = buf.len();
        let read = stream.read(monoio::buf::IoBufMut::slice_mut(buf, len..));
        let (res, slice) = monoio::time::timeout_at(deadline, read).await.ok()?;
        buf = slice.into_inner();
        if res.ok()? == 0 {
            return None;
        }
        // Only a beginning of the preface needs more bytes to decide.
        let seen = buf.len().min(h2::PREFACE.len());
        if buf.len() >= h2::PREFACE.len() || buf[..seen] != h2::PREFACE[..seen] {
            return Some(buf);
        }
    }
}
