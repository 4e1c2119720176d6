//! Which protocol a client connection speaks, and the hand-off to its downstream:
//! on TLS the protocol ALPN chose (`h2` when `[server] http2` is on, else HTTP/1.1);
//! on plaintext, with `[server] h2c` on, HTTP/2 when the first bytes are the
//! HTTP/2 preface (prior knowledge, RFC 9113 §3.3), HTTP/1.1 otherwise. HTTP/2
//! connections are served here, pinning the worker's current generation through
//! their [`Gateway`]; HTTP/1.1 ones go back to the listener (`listeners.rs`), which
//! serves them as every HTTP/1.1 connection.

use std::rc::Rc;
use std::time::Duration;

use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use crate::downstream::{h1, h2, ConnInfo};
use crate::proxy::{Gateway, Worker};

/// The first read's buffer on a plaintext listener that looks for h2c.
const FIRST_READ: usize = 4 * 1024;

/// A plaintext connection on a listener with `h2c` on: its first bytes, read
/// within `timeout`, decide. The HTTP/2 preface: the connection is served here as
/// HTTP/2, and `None` returned once it ends; anything else: the HTTP/1.1
/// connection with those bytes already read, for the caller to serve. `None` too
/// when the client sent nothing in time or closed.
pub async fn sniff_h2c(
    worker: &Rc<Worker>,
    mut stream: TcpStream,
    info: ConnInfo,
    timeout: Duration,
) -> Option<h1::ClientConn<TcpStream>> {
    let first = first_bytes(&mut stream, timeout).await?;
    if first.starts_with(h2::PREFACE) {
        serve_h2(worker, stream, first, info).await;
        return None;
    }
    Some(h1::ClientConn::with_read(stream, info, first))
}

/// Serves an HTTP/2 connection (`prefix`: bytes already read from it, h2c's
/// preface) with the worker's current generation.
pub async fn serve_h2<S>(worker: &Rc<Worker>, stream: S, prefix: Vec<u8>, info: ConnInfo)
where
    S: monoio::io::AsyncReadRent + monoio::io::AsyncWriteRent + Unpin + 'static,
{
    let gateway = Gateway::for_connection(worker.clone());
    let snapshot = gateway.generation.snapshot.clone();
    let (drain, counters) = (&worker.drain, &worker.counters);
    h2::serve(
        stream,
        prefix,
        info,
        &snapshot.server,
        drain,
        &gateway,
        counters,
    )
    .await;
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
