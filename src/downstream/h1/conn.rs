//! An HTTP/1.1 client connection's stream and buffers, reused for every request on
//! it: reading request heads (the first bytes of each with a read a timer can
//! cancel, see `mod.rs`), reading body bytes, writing what was built in the write
//! buffer within the send timeout, and giving the buffers back while idle.

use std::io;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::Canceller;
use monoio::time::Instant;

use crate::config::Limits;
use crate::deadline::{timed_out, write_all_within, WriteDeadline};
use crate::http::{parse_request, HttpError, Parsed, RequestHead};

use super::super::transport::{cancelled, Io};
use super::super::{ConnInfo, DrainSignal};

/// Read-buffer sizes: start small (`[server.runtime] read_buffer_bytes`: most heads
/// are a few hundred bytes), grow for large heads up to the configured limit, and
/// use a larger window for bodies.
const DEFAULT_READ_BUFFER: usize = 4 * 1024;
const BODY_READ_BUFFER: usize = 64 * 1024;
const MIN_READ_SPACE: usize = 1024;
/// The write buffer a busy connection starts with (heads are built in it), until
/// `with_buffers` sets `[server.runtime] write_buffer_bytes`.
const DEFAULT_WRITE_BUFFER: usize = 4 * 1024;

/// `[server] send_timeout_ms`'s default, until `serve` sets the connection's own.
const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How waiting for a request head ended.
pub enum HeadRead {
    Ready,
    /// The client closed, went idle too long, or the worker is draining.
    Closed,
    /// No byte came within the hot window (the wait goes on without buffers).
    Quiet,
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
    /// `[server] send_timeout_ms`: a write that moves no byte for this long fails
    /// (set by `serve` from the connection's limits).
    pub(super) send_timeout: Duration,
    /// Bytes of the first read buffer of a busy period (`read_buffer_bytes`).
    read_buffer: usize,
    /// Bytes reserved for the write buffer of a busy period (`write_buffer_bytes`).
    pub(super) write_buffer: usize,
    /// A write to the client hit the send timeout: the connection closes without
    /// waiting on the client again (no TLS close_notify).
    stalled: bool,
}

impl<S: Io> ClientConn<S> {
    /// A connection with no buffer yet: the first read allocates the read buffer,
    /// a busy period the write buffer.
    pub fn new(io: S, info: ConnInfo) -> Self {
        ClientConn::with_read(io, info, Vec::new())
    }

    /// A connection whose first bytes (`read`) were already read from `io`.
    pub fn with_read(io: S, info: ConnInfo, read: Vec<u8>) -> Self {
        ClientConn {
            io,
            info,
            rbuf: read,
            pos: 0,
            wbuf: Vec::new(),
            head: RequestHead::default(),
            head_consumed: false,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            read_buffer: DEFAULT_READ_BUFFER,
            write_buffer: DEFAULT_WRITE_BUFFER,
            stalled: false,
        }
    }

    /// Sets the sizes its buffers start with when it gets busy, in bytes
    /// (`[server.runtime] read_buffer_bytes` and `write_buffer_bytes`).
    pub fn with_buffers(mut self: Box<Self>, read: usize, write: usize) -> Box<Self> {
        self.read_buffer = read;
        self.write_buffer = write;
        self
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

    /// Frees every buffer the connection holds between requests (the read and
    /// write buffers, the parsed head's field list, the stream's own buffers).
    /// The one place a connection gives memory back: when it goes idle. Unread
    /// bytes (a pipelined request) are kept.
    pub fn release_buffers(&mut self) {
        if self.unread().is_empty() {
            self.rbuf = Vec::new();
            self.pos = 0;
        }
        self.wbuf = Vec::new();
        self.head.headers = Vec::new();
        self.io.release_buffers();
    }

    /// Ends the connection: shuts the write side (TLS: close_notify first), within
    /// the send timeout, unless a write already stalled; the caller drops the stream.
    pub async fn close(&mut self) {
        if !self.stalled {
            let _ = monoio::time::timeout(self.send_timeout, self.io.shutdown()).await;
        }
    }

    /// Reads more bytes from the client; `Ok(0)` is end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.make_room(self.read_buffer);
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

    /// Writes `wbuf` to the client, within the send timeout.
    pub async fn write_wbuf(&mut self) -> io::Result<()> {
        let len = self.wbuf.len();
        let limit = WriteDeadline::idle(self.send_timeout);
        let res = write_all_within(&mut self.io, &mut self.wbuf, 0..len, limit).await;
        self.note_write(res)
    }

    /// Writes `buf[range]` to the client without copying it, within the send
    /// timeout; the buffer comes back (empty after a timeout: the connection closes).
    pub async fn write_range(
        &mut self,
        mut buf: Vec<u8>,
        range: std::ops::Range<usize>,
    ) -> (io::Result<()>, Vec<u8>) {
        let limit = WriteDeadline::idle(self.send_timeout);
        let res = write_all_within(&mut self.io, &mut buf, range, limit).await;
        (self.note_write(res), buf)
    }

    /// A write that timed out marks the connection stalled.
    fn note_write(&mut self, res: io::Result<()>) -> io::Result<()> {
        if let Err(e) = &res {
            self.stalled |= timed_out(e);
        }
        res
    }

    /// Reads until a whole request head is buffered (or the connection ends).
    ///
    /// With nothing buffered, the first byte is awaited with the buffers in hand
    /// until `hot_until`: `Quiet` when none came by then (the caller frees the
    /// buffers and waits on), `Closed` when the client closed, or the drain began
    /// and `close_on_drain`. Once a byte is in, the whole head is due within the
    /// header timeout (else 408).
    pub async fn read_head(
        &mut self,
        limits: &Limits,
        drain: &DrainSignal,
        hot_until: Instant,
        close_on_drain: bool,
        canceller: &mut Canceller,
    ) -> HeadRead {
        let head_limits = limits.head_limits();
        if self.unread().is_empty() {
            match self
                .read_hot(hot_until, drain, close_on_drain, canceller)
                .await
            {
                HotRead::Bytes => {}
                HotRead::Closed => return HeadRead::Closed,
                HotRead::Quiet => return HeadRead::Quiet,
            }
        }
        // The head is due within the header timeout of its first bytes; read the
        // clock only when they did not hold all of it (most heads come in one read).
        let mut deadline = None;
        loop {
            let unread = self.rbuf.get(self.pos..).unwrap_or(&[]);
            match parse_request(unread, &head_limits, &mut self.head) {
                Ok(Parsed::Complete) => return HeadRead::Ready,
                Ok(Parsed::Partial) => {}
                Err(e) => return HeadRead::Rejected(e),
            }
            let deadline =
                *deadline.get_or_insert_with(|| Instant::now() + limits.header_read_timeout);
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

    /// One read for the first bytes of a request, until `until`. On expiry the read
    /// is cancelled and awaited to its end, so bytes that raced the cancel are kept.
    async fn read_hot(
        &mut self,
        until: Instant,
        drain: &DrainSignal,
        close_on_drain: bool,
        canceller: &mut Canceller,
    ) -> HotRead {
        self.make_room(self.read_buffer);
        let buf = std::mem::take(&mut self.rbuf);
        let len = buf.len();
        let read = self
            .io
            .read_or_cancel(buf.slice_mut(len..), canceller.handle());
        let mut read = std::pin::pin!(read);
        let done = monoio::select! {
            r = &mut read => Some(r),
            _ = monoio::time::sleep_until(until) => None,
            _ = drain.raised(), if close_on_drain => None,
        };
        let (res, slice) = match done {
            Some(r) => r,
            None => {
                // `cancel` hands back a fresh canceller for the next hot read.
                *canceller = std::mem::take(canceller).cancel();
                read.await
            }
        };
        self.rbuf = slice.into_inner();
        match res {
            Ok(0) => HotRead::Closed,
            Ok(_) => HotRead::Bytes,
            Err(e) if cancelled(&e) && !(close_on_drain && drain.is_raised()) => HotRead::Quiet,
            Err(_) => HotRead::Closed,
        }
    }
}

/// How a hot read ended.
enum HotRead {
    Bytes,
    /// The window passed with nothing read (or the drain cancelled the read).
    Quiet,
    Closed,
}
