//! One client connection: read request heads, hand each request to the pipeline,
//! and keep the connection alive between requests until the client, a limit, an
//! error or the drain ends it.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use crate::config::Limits;
use crate::http::{parse_request, HttpError, Parsed, RequestHead};
use crate::proxy;

use super::worker::WorkerCtx;

/// A byte stream a client connection runs on (plain TCP now; TLS later).
pub trait Io: AsyncReadRent + AsyncWriteRent {}
impl<T: AsyncReadRent + AsyncWriteRent> Io for T {}

/// What the transport says about a connection.
#[derive(Clone, Debug, Default)]
pub struct ConnMeta {
    /// The connection came over TLS.
    pub secure: bool,
    /// The verified client certificate's subject as a header line to send
    /// upstream (`x-client-subject: CN=...\r\n`), rendered once per connection.
    pub client_subject: Option<Vec<u8>>,
}

impl ConnMeta {
    pub fn plain() -> Self {
        ConnMeta::default()
    }
}

/// Serves one accepted connection until it ends.
pub async fn serve<S: Io>(ctx: Rc<WorkerCtx>, io: S, peer: SocketAddr, meta: ConnMeta) {
    let snapshot = ctx.snapshot();
    let limits = &snapshot.server.limits;
    let mut conn = ClientConn::new(io, peer, meta);
    let mut first = true;
    loop {
        match conn.read_head(limits, &ctx, first).await {
            HeadRead::Ready => {}
            HeadRead::Closed => break,
            HeadRead::Rejected(err) => {
                ctx.counters
                    .requests_malformed
                    .set(ctx.counters.requests_malformed.get() + 1);
                let started = Instant::now();
                conn.logged_request.clear();
                let outcome = proxy::reject(&ctx, &mut conn, err).await;
                ctx.record(&conn, None, &outcome, started);
                break;
            }
        }
        first = false;
        if ctx.access_log.is_some() {
            conn.capture_for_log();
        }
        let started = Instant::now();
        let (outcome, route) = proxy::handle(&ctx, &snapshot, &mut conn).await;
        ctx.record(&conn, route, &outcome, started);
        conn.finish_request();
        if !outcome.keep_alive || ctx.drain.is_raised() {
            break;
        }
    }
    let _ = conn.io.shutdown().await;
}

pub enum HeadRead {
    Ready,
    /// The client closed, went idle too long, or the worker is draining.
    Closed,
    Rejected(HttpError),
}

/// Read-buffer sizes: start small (most heads are a few hundred bytes), grow for
/// large heads up to the configured limit, and use a larger window for bodies.
const INITIAL_READ_BUFFER: usize = 4 * 1024;
const BODY_READ_BUFFER: usize = 64 * 1024;
const MIN_READ_SPACE: usize = 1024;

/// A client connection's stream and buffers, reused for every request on it.
pub struct ClientConn<S> {
    pub io: S,
    pub peer: SocketAddr,
    pub meta: ConnMeta,
    /// Bytes read from the client; `rbuf[pos..]` are not yet consumed.
    pub rbuf: Vec<u8>,
    pub pos: usize,
    /// Where outgoing heads are built.
    pub wbuf: Vec<u8>,
    /// The current request's head; its ranges index `rbuf[pos..]` until consumed.
    pub head: RequestHead,
    /// The head has been consumed from `rbuf` (only body bytes follow at `pos`).
    pub head_consumed: bool,
    /// Header lines (`name: value\r\n`) the pipeline adds to whatever response the
    /// current request gets, e.g. `RateLimit` on allowed responses.
    pub response_headers: Vec<u8>,
    /// `METHOD target` of the current request, kept for the access log (which is
    /// written after the head's bytes may have been overwritten by the body).
    logged_request: Vec<u8>,
    logged_method_len: usize,
}

/// The request line parts an access-log line shows.
pub struct LoggedRequest<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
}

impl<S: Io> ClientConn<S> {
    fn new(io: S, peer: SocketAddr, meta: ConnMeta) -> Self {
        ClientConn {
            io,
            peer,
            meta,
            rbuf: Vec::with_capacity(INITIAL_READ_BUFFER),
            pos: 0,
            wbuf: Vec::with_capacity(INITIAL_READ_BUFFER),
            head: RequestHead::default(),
            head_consumed: false,
            response_headers: Vec::new(),
            logged_request: Vec::new(),
            logged_method_len: 0,
        }
    }

    fn capture_for_log(&mut self) {
        let head = self.rbuf.get(self.pos..).unwrap_or(&[]);
        let method = head.get(self.head.method.clone()).unwrap_or(b"-");
        let target = head.get(self.head.target.clone()).unwrap_or(b"-");
        self.logged_request.clear();
        self.logged_request.extend_from_slice(method);
        self.logged_request.extend_from_slice(target);
        self.logged_method_len = method.len();
    }

    /// The current request's method and target, for the access log.
    pub fn logged_request(&self) -> LoggedRequest<'_> {
        if self.logged_request.is_empty() {
            return LoggedRequest {
                method: b"-",
                target: b"-",
            };
        }
        let (method, target) = self.logged_request.split_at(self.logged_method_len);
        LoggedRequest { method, target }
    }

    /// Unconsumed bytes.
    pub fn unread(&self) -> &[u8] {
        self.rbuf.get(self.pos..).unwrap_or(&[])
    }

    /// The current request head's bytes (valid until `consume_head`).
    pub fn head_bytes(&self) -> &[u8] {
        self.rbuf
            .get(self.pos..self.pos + self.head.head_len)
            .unwrap_or(&[])
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.rbuf.len());
    }

    /// Marks the head as consumed; what follows in the buffer is body or the next request.
    pub fn consume_head(&mut self) {
        if !self.head_consumed {
            self.consume(self.head.head_len);
            self.head_consumed = true;
        }
    }

    fn finish_request(&mut self) {
        self.consume_head();
        self.head_consumed = false;
        self.response_headers.clear();
    }

    /// Reads more bytes from the client; `Ok(0)` is end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.make_room(INITIAL_READ_BUFFER);
        self.read_more().await
    }

    /// As `fill`, with a buffer sized for streaming a body.
    pub async fn fill_for_body(&mut self) -> io::Result<usize> {
        self.make_room(BODY_READ_BUFFER);
        self.read_more().await
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        let buf = std::mem::take(&mut self.rbuf);
        let len = buf.len();
        let (res, slice) = self.io.read(buf.slice_mut(len..)).await;
        self.rbuf = slice.into_inner();
        res
    }

    fn make_room(&mut self, want: usize) {
        if self.pos == self.rbuf.len() {
            self.rbuf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.rbuf.capacity() - self.rbuf.len() < MIN_READ_SPACE {
            self.rbuf.copy_within(self.pos.., 0);
            self.rbuf.truncate(self.rbuf.len() - self.pos);
            self.pos = 0;
        }
        let space = self.rbuf.capacity() - self.rbuf.len();
        if space < MIN_READ_SPACE || self.rbuf.capacity() < want {
            // At least MIN_READ_SPACE free: a full buffer (len == capacity) must grow,
            // or a head larger than the first buffer is read into zero bytes of space
            // and mistaken for a closed connection.
            let grow = want.max(self.rbuf.capacity()) - self.rbuf.len();
            self.rbuf.reserve(grow.max(MIN_READ_SPACE));
        }
    }

    /// Writes `wbuf` to the client.
    pub async fn write_wbuf(&mut self) -> io::Result<usize> {
        let buf = std::mem::take(&mut self.wbuf);
        let (res, buf) = self.io.write_all(buf).await;
        self.wbuf = buf;
        res
    }

    /// Writes `rbuf[range]` to `to` without copying it.
    pub async fn write_rbuf_to<W: AsyncWriteRent>(
        &mut self,
        to: &mut W,
        start: usize,
        end: usize,
    ) -> io::Result<usize> {
        let buf = std::mem::take(&mut self.rbuf);
        let (res, slice) = to.write_all(buf.slice(start..end)).await;
        self.rbuf = slice.into_inner();
        res
    }

    /// Reads until a whole request head is buffered (or the connection ends).
    async fn read_head(&mut self, limits: &Limits, ctx: &WorkerCtx, first: bool) -> HeadRead {
        let head_limits = limits.head_limits();
        // Waiting for the first byte: the header timeout on a new connection, the
        // keep-alive idle timeout between requests. Either ends early on drain.
        if self.unread().is_empty() {
            let wait = if first {
                limits.header_read_timeout
            } else {
                limits.idle_timeout
            };
            let read = monoio::time::timeout(wait, self.fill());
            monoio::select! {
                r = read => match r {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return HeadRead::Closed,
                },
                _ = ctx.drain.raised() => return HeadRead::Closed,
            }
        }
        let deadline = monoio::time::Instant::now() + limits.header_read_timeout;
        loop {
            let unread = self.rbuf.get(self.pos..).unwrap_or(&[]);
            match parse_request(unread, &head_limits, &mut self.head) {
                Ok(Parsed::Complete) => return HeadRead::Ready,
                Ok(Parsed::Partial) => {}
                Err(e) => return HeadRead::Rejected(e),
            }
            match monoio::time::timeout_at(deadline, self.fill()).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return HeadRead::Closed,
                Err(_) => {
                    return HeadRead::Rejected(HttpError::new(
                        408,
                        "request head not received in time",
                    ))
                }
            }
        }
    }
}
