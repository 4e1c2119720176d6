//! The TLS stream: ciphertext is read from the socket into one reused buffer and
//! handed to rustls, the records rustls produces are written from another, and
//! plaintext passes through rustls' reader and writer. A read hands rustls only as
//! much of the caller's buffer as rustls has plaintext for, zeroed first, so no
//! uninitialized memory is ever seen as a slice.
//!
//! A read and a write may be in flight at once (monoio-compat's `StreamWrapper`
//! under HTTP/2 does that, and so does a tunnel relaying both ways). The read path
//! can have records to send too (an alert, the refusal of a TLS 1.2 renegotiation),
//! so only one future writes records to the socket at a time ([`FlushState`]): a
//! read that finds a flush in progress leaves its records to it (the flush loops
//! while rustls has records), and a write waits for a flush in progress to end, so
//! two writes never interleave their bytes on the socket.

use std::cell::Cell;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::task::{Poll, Waker};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::{ConnectionCommon, IoState, SideData};

/// Ciphertext read window: one full TLS record plus headroom.
const CIPHERTEXT_BUFFER: usize = 18 * 1024;

/// A TLS connection (`C` is `rustls::ClientConnection` or `ServerConnection`).
pub struct TlsStream<C> {
    io: TcpStream,
    conn: C,
    /// Ciphertext read from the socket; `incoming[in_pos..]` not yet given to rustls.
    incoming: Vec<u8>,
    in_pos: usize,
    /// Ciphertext rustls produced, about to be written.
    outgoing: Vec<u8>,
    /// The socket reached end of stream.
    eof: bool,
    /// Whether some future is writing records to the socket now.
    flush: Rc<FlushState>,
}

/// Which path asks for a flush: the read path only sends what it must (an alert, a
/// renegotiation refusal) and may leave it to a flush in progress; the write path
/// must see its own records written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Read,
    Write,
}

/// One writer of records at a time. Shared with [`Flushing`], the guard that ends
/// a flush even when its future is dropped (a read or a write cancelled by a
/// timeout), so a cancelled flush never leaves the stream locked.
#[derive(Default)]
struct FlushState {
    active: Cell<bool>,
    /// Writes waiting for the flush in progress to end.
    waiters: Cell<Vec<Waker>>,
}

impl FlushState {
    /// Resolves once no flush is in progress.
    async fn idle(&self) {
        poll_fn(|cx| {
            if !self.active.get() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.take();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            self.waiters.set(waiters);
            Poll::Pending
        })
        .await
    }
}

/// A flush in progress; dropping it (at the end, or with a cancelled future) ends
/// the flush and wakes the writes that waited.
struct Flushing(Rc<FlushState>);

impl Flushing {
    fn begin(state: &Rc<FlushState>) -> Flushing {
        state.active.set(true);
        Flushing(state.clone())
    }
}

impl Drop for Flushing {
    fn drop(&mut self) {
        self.0.active.set(false);
        for waker in self.0.waiters.take() {
            waker.wake();
        }
    }
}

impl<C, SD> TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    pub fn new(io: TcpStream, conn: C) -> Self {
        TlsStream {
            io,
            conn,
            incoming: Vec::with_capacity(CIPHERTEXT_BUFFER),
            in_pos: 0,
            outgoing: Vec::with_capacity(CIPHERTEXT_BUFFER),
            eof: false,
            flush: Rc::default(),
        }
    }

    /// The rustls session: protocol version, resumption, SNI.
    pub fn session(&self) -> &C {
        &self.conn
    }

    /// The TCP connection underneath (e.g. to peek at it without reading).
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// Input is waiting that no read has taken yet: ciphertext read from the
    /// socket and not yet processed, or the socket's end.
    pub fn has_unread_input(&self) -> bool {
        self.in_pos < self.incoming.len() || self.eof
    }

    /// Runs the handshake to completion (the caller bounds it with a timeout). A
    /// rustls error (a certificate not accepted, no common version) comes back as
    /// `InvalidData` wrapping the `rustls::Error`.
    pub async fn handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.flush_tls(Side::Write).await?;
                continue;
            }
            let handed = self.fill().await?;
            self.process(Side::Write).await?;
            if handed == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ));
            }
        }
        // The last flight (and, on a server, session tickets).
        self.flush_tls(Side::Write).await
    }

    /// Reads plaintext into `buf`'s free space (`bytes_total` from `write_ptr`, as
    /// monoio's sockets do): at least one byte, or 0 at the end of the stream — a
    /// close_notify, or the socket closing without one (the HTTP framing above
    /// notices a message cut short).
    async fn read_plaintext<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        loop {
            let state = match self.process(Side::Read).await {
                Ok(state) => state,
                Err(e) => return (Err(e), buf),
            };
            let ready = state.plaintext_bytes_to_read().min(buf.bytes_total());
            if ready > 0 {
                // SAFETY: an `IoBufMut` owns `bytes_total()` writable bytes at
                // `write_ptr()`, and this call owns the buffer until it returns. The
                // first `ready` of them are zeroed before a slice over them is made;
                // `set_init` covers exactly the bytes rustls wrote.
                let dst = unsafe {
                    std::ptr::write_bytes(buf.write_ptr(), 0, ready);
                    std::slice::from_raw_parts_mut(buf.write_ptr(), ready)
                };
                return match self.conn.reader().read(dst) {
                    Ok(n) => {
                        unsafe { buf.set_init(n) };
                        (Ok(n), buf)
                    }
                    Err(e) => (Err(e), buf),
                };
            }
            if state.peer_has_closed() || self.eof {
                return (Ok(0), buf);
            }
            // A post-handshake message may want an answer (e.g. a TLS 1.2
            // renegotiation's refusal).
            if let Err(e) = self.flush_tls(Side::Read).await {
                return (Err(e), buf);
            }
            if let Err(e) = self.fill().await {
                return (Err(e), buf);
            }
        }
    }

    /// Encrypts and writes all of `buf`'s initialized bytes.
    async fn write_plaintext<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: an `IoBuf` owns `bytes_init()` initialized bytes at `read_ptr()`; the
        // buffer stays with this call (unmoved, unchanged) while the slice is used.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let mut done = 0;
        while done < src.len() {
            // rustls takes up to its plaintext buffer limit; the flush empties it.
            match self.conn.writer().write(&src[done..]) {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => done += n,
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.flush_tls(Side::Write).await {
                return (Err(e), buf);
            }
        }
        (Ok(done), buf)
    }

    /// Sends close_notify and shuts the socket's write side.
    async fn close(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        let _ = self.flush_tls(Side::Write).await;
        self.io.shutdown().await
    }

    /// Gives rustls more ciphertext: what is buffered, else one socket read. Returns
    /// the bytes handed over; 0 at the end of the stream (and `eof` set).
    async fn fill(&mut self) -> io::Result<usize> {
        if self.in_pos == self.incoming.len() {
            if self.eof {
                return Ok(0);
            }
            self.incoming.clear();
            self.in_pos = 0;
            if self.incoming.capacity() == 0 {
                // A cancelled read (a timeout) kept the buffer.
                self.incoming.reserve(CIPHERTEXT_BUFFER);
            }
            let buf = std::mem::take(&mut self.incoming);
            let (res, buf) = self.io.read(buf).await;
            self.incoming = buf;
            if res? == 0 {
                self.eof = true;
                // Tell rustls the transport ended.
                let _ = self.conn.read_tls(&mut io::empty());
                return Ok(0);
            }
        }
        let mut pending = &self.incoming[self.in_pos..];
        let n = self.conn.read_tls(&mut pending)?;
        self.in_pos += n;
        Ok(n)
    }

    /// Lets rustls process what it was given; on an error, sends the alert rustls
    /// queued for the peer (best effort).
    async fn process(&mut self, side: Side) -> io::Result<IoState> {
        match self.conn.process_new_packets() {
            Ok(state) => Ok(state),
            Err(e) => {
                let _ = self.flush_tls(side).await;
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    /// Writes every record rustls has ready, one writer at a time (see the module
    /// comment): from the read path, a flush in progress takes the records; from
    /// the write path, it is waited for first.
    async fn flush_tls(&mut self, side: Side) -> io::Result<()> {
        if self.flush.active.get() {
            if side == Side::Read {
                return Ok(());
            }
            let state = self.flush.clone();
            state.idle().await;
        }
        let _flushing = Flushing::begin(&self.flush);
        while self.conn.wants_write() {
            self.outgoing.clear();
            self.conn.write_tls(&mut self.outgoing)?;
            let buf = std::mem::take(&mut self.outgoing);
            let (res, buf) = self.io.write_all(buf).await;
            self.outgoing = buf;
            res?;
        }
        Ok(())
    }
}

impl<C, SD> AsyncReadRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read_plaintext(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer views the first iovec of `buf`, which this call owns
        // until it returns.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read_plaintext(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl<C, SD> AsyncWriteRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    /// Encrypts and sends all of `buf` (so `write_all` makes one pass).
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.write_plaintext(buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer views the first iovec of `buf`, owned by this call.
        let n = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => self.write_plaintext(raw).await.0,
            None => Ok(0),
        };
        (n, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls(Side::Write).await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.close().await
    }
}
