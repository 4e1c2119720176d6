//! An HTTP/1.1 client connection's stream and buffers, reused for every request on
//! it: reading request heads, reading body bytes, writing what was built in the
//! write buffer.

use std::io;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::AsyncWriteRentExt;

use crate::config::Limits;
use crate::http::{parse_request, HeadLimits, HttpError, Parsed, RequestHead};

use super::super::{ConnInfo, DrainSignal, Duplex};

/// A byte stream a client connection runs on (plain TCP or TLS), whose reads and
/// writes may be in flight at once (an upgraded connection's tunnel needs that).
pub trait Io: Duplex {}
impl<T: Duplex> Io for T {}

/// Read-buffer sizes: start small (most heads are a few hundred bytes), grow for
/// large heads up to the configured limit, and use a larger window for bodies.
const INITIAL_READ_BUFFER: usize = 4 * 1024;
const BODY_READ_BUFFER: usize = 64 * 1024;
const MIN_READ_SPACE: usize = 1024;

/// How waiting for a request head ended.
pub enum HeadRead {
    Ready,
    /// The client closed, went idle too long, or the worker is draining.
    Closed,
    Rejected(HttpError),
}

/// A client connection's stream and buffers.
pub struct ClientConn<S> {
    pub io: S,
    pub info: ConnInfo,
    /// Bytes read from the client; `rbuf[pos..]` are not yet consumed.
    pub rbuf: Vec<u8>,
    pub pos: usize,
    /// Where outgoing heads are built.
    pub wbuf: Vec<u8>,
    /// The current request's head; its ranges index `rbuf[pos..]` until consumed.
    pub head: RequestHead,
    /// The head has been consumed from `rbuf` (only body bytes follow at `pos`).
    pub head_consumed: bool,
}

impl<S: Io> ClientConn<S> {
    pub fn new(io: S, info: ConnInfo) -> Self {
        ClientConn::with_read(io, info, Vec::with_capacity(INITIAL_READ_BUFFER))
    }

    /// A connection whose first bytes (`read`) were already read from `io`.
    pub fn with_read(io: S, info: ConnInfo, read: Vec<u8>) -> Self {
        ClientConn {
            io,
            info,
            rbuf: read,
            pos: 0,
            wbuf: Vec::with_capacity(INITIAL_READ_BUFFER),
            head: RequestHead::default(),
            head_consumed: false,
        }
    }

    /// Unconsumed bytes.
    pub fn unread(&self) -> &[u8] {
        self.rbuf.get(self.pos..).unwrap_or(&[])
    }

    /// The current request head's bytes (empty once the head is consumed).
    pub fn head_bytes(&self) -> &[u8] {
        if self.head_consumed {
            return &[];
        }
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

    /// Ends the current request: the next head starts after it.
    pub fn finish_request(&mut self) {
        self.consume_head();
        self.head_consumed = false;
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

    /// Writes `buf[range]` to the client without copying it; the buffer comes back.
    pub async fn write_range(
        &mut self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
    ) -> (io::Result<usize>, Vec<u8>) {
        let (res, slice) = self.io.write_all(buf.slice(range)).await;
        (res, slice.into_inner())
    }

    /// Reads until a whole request head is buffered (or the connection ends).
    pub async fn read_head(
        &mut self,
        limits: &Limits,
        drain: &DrainSignal,
        first: bool,
    ) -> HeadRead {
        let head_limits = HeadLimits {
            max_header_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
            max_uri_bytes: limits.max_uri_bytes,
        };
        // Waiting for the first byte: the header timeout on a new connection, the
        // keep-alive idle timeout between requests. An idle keep-alive connection
        // closes when the drain begins; a new one gets its first request read and
        // answered (its client already sent it, or is about to: closing would reset
        // it), within the header timeout and the drain deadline.
        if self.unread().is_empty() {
            let wait = if first {
                limits.header_read_timeout
            } else {
                limits.idle_timeout
            };
            let close_on_drain = !first;
            let read = monoio::time::timeout(wait, self.fill());
            monoio::select! {
                r = read => match r {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return HeadRead::Closed,
                },
                _ = drain.raised(), if close_on_drain => return HeadRead::Closed,
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
