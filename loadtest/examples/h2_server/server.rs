//! An HTTP/2 server on monoio: the `h2` crate's server over `monoio_compat::StreamWrapper`,
//! on a plain `monoio::net::TcpStream` (h2c with prior knowledge) or on Portico's
//! `TlsStream` (crates/tls-stream, ALPN h2). A spike for the gateway (docs/http2.md):
//! it shows that h2 runs on a monoio thread with no tokio runtime, that each stream can
//! be handled by its own `monoio::spawn`ed task, and what the I/O costs (every read and
//! write the compat layer makes on the stream is counted in `Stats`).
//!
//! Shared by the example program (`main.rs`, for measurements) and by
//! loadtest/tests/h2_on_monoio.rs (curl as the client).
//!
//! Every request gets `200 OK`, body `conn C stream S active A\n` (the connection's
//! number, the stream id, the handlers running at that moment); `?delay_ms=N` makes
//! the handler wait `N` ms first; `/__stats` answers the counters as JSON.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{Request, Response, StatusCode};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpListener;
use monoio::BufResult;
use monoio_compat::StreamWrapper;
use portico_tls_stream::TlsStream;
use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

/// What one server thread counted.
#[derive(Default, Debug)]
pub struct Stats {
    pub connections: Cell<u64>,
    pub streams: Cell<u64>,
    /// Stream handlers running now, and the most at once.
    pub active: Cell<u64>,
    pub most_active: Cell<u64>,
    /// Calls the compat layer made on the stream (plain TCP: one syscall or io_uring
    /// operation each), and their bytes.
    pub reads: Cell<u64>,
    pub read_bytes: Cell<u64>,
    pub writes: Cell<u64>,
    pub written_bytes: Cell<u64>,
}

impl Stats {
    pub fn json(&self) -> String {
        format!(
            "{{\"connections\":{},\"streams\":{},\"most_active\":{},\"reads\":{},\"read_bytes\":{},\"writes\":{},\"written_bytes\":{}}}\n",
            self.connections.get(),
            self.streams.get(),
            self.most_active.get(),
            self.reads.get(),
            self.read_bytes.get(),
            self.writes.get(),
            self.written_bytes.get()
        )
    }
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get() + n);
}

/// Accepts h2c connections (prior knowledge) on `listener` forever.
pub async fn serve_h2c(listener: TcpListener, stats: Rc<Stats>) {
    while let Ok((socket, _)) = listener.accept().await {
        let _ = socket.set_nodelay(true);
        monoio::spawn(connection(socket, Rc::clone(&stats)));
    }
}

/// Accepts TLS connections on `listener` forever; `config` must offer ALPN h2.
pub async fn serve_tls(listener: TcpListener, config: Arc<ServerConfig>, stats: Rc<Stats>) {
    while let Ok((socket, _)) = listener.accept().await {
        let _ = socket.set_nodelay(true);
        let config = Arc::clone(&config);
        let stats = Rc::clone(&stats);
        monoio::spawn(async move {
            let Ok(conn) = UnbufferedServerConnection::new(config) else {
                return;
            };
            let mut stream = TlsStream::new(socket, conn);
            let handshake = monoio::time::timeout(Duration::from_secs(5), stream.handshake());
            if let Ok(Ok(())) = handshake.await {
                if stream.session().alpn_protocol() == Some(b"h2") {
                    connection(stream, stats).await;
                }
            }
        });
    }
}

/// Serves one connection: the h2 handshake (preface and SETTINGS), then one task per
/// stream, until the client closes it.
async fn connection<S>(stream: S, stats: Rc<Stats>)
where
    S: AsyncReadRent + AsyncWriteRent + Unpin + 'static,
{
    add(&stats.connections, 1);
    let id = stats.connections.get();
    let io = StreamWrapper::new(Counted {
        inner: stream,
        stats: Rc::clone(&stats),
    });
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    // `accept` also drives the connection: it reads frames and writes what the
    // stream tasks queued.
    while let Some(Ok((request, respond))) = conn.accept().await {
        monoio::spawn(handle(request, respond, id, Rc::clone(&stats)));
    }
}

/// One stream, in its own task.
async fn handle(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    conn: u64,
    stats: Rc<Stats>,
) {
    add(&stats.streams, 1);
    add(&stats.active, 1);
    stats
        .most_active
        .set(stats.most_active.get().max(stats.active.get()));
    let stream = respond.stream_id().as_u32();
    let delay_ms = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("delay_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stats_page = request.uri().path() == "/__stats";
    let mut body = request.into_body();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    if delay_ms > 0 {
        monoio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let text = if stats_page {
        stats.json()
    } else {
        format!(
            "conn {conn} stream {stream} active {}\n",
            stats.active.get()
        )
    };
    stats.active.set(stats.active.get() - 1);
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(())
        .unwrap_or_default();
    if let Ok(mut send) = respond.send_response(response, false) {
        let _ = send.send_data(Bytes::from(text), true);
    }
}

/// A monoio stream that counts the reads and writes made on it into `stats`.
pub struct Counted<S> {
    pub inner: S,
    pub stats: Rc<Stats>,
}

impl<S: AsyncReadRent> AsyncReadRent for Counted<S> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let (result, buf) = self.inner.read(buf).await;
        add(&self.stats.reads, 1);
        add(
            &self.stats.read_bytes,
            *result.as_ref().unwrap_or(&0) as u64,
        );
        (result, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let (result, buf) = self.inner.readv(buf).await;
        add(&self.stats.reads, 1);
        add(
            &self.stats.read_bytes,
            *result.as_ref().unwrap_or(&0) as u64,
        );
        (result, buf)
    }
}

impl<S: AsyncWriteRent> AsyncWriteRent for Counted<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let (result, buf) = self.inner.write(buf).await;
        add(&self.stats.writes, 1);
        add(
            &self.stats.written_bytes,
            *result.as_ref().unwrap_or(&0) as u64,
        );
        (result, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let (result, buf) = self.inner.writev(buf).await;
        add(&self.stats.writes, 1);
        add(
            &self.stats.written_bytes,
            *result.as_ref().unwrap_or(&0) as u64,
        );
        (result, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.inner.shutdown().await
    }
}
