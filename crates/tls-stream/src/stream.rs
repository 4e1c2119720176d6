//! The TLS stream: a rustls unbuffered connection (server or client) over a monoio
//! `TcpStream`, with every buffer ours. Ciphertext read from the socket goes into
//! `incoming`, where rustls decrypts it in place; the records rustls encodes or
//! encrypts go into `outgoing`, which one writer at a time sends ([`FlushState`]);
//! plaintext is copied straight into the caller's buffer, and what does not fit
//! waits for the next read (records.rs).
//!
//! Both sides use the unbuffered API. rustls implements `process_tls_records` for
//! each side apart; [`UnbufferedConnection`], a trait with those two impls, is all
//! the generic code needed, so one driver serves the gateway's listeners, its TLS
//! upstreams and the load tool alike (the same cancelable reads, the same
//! one-writer rule, the same memory while idle). The session reads as rustls'
//! `CommonState`; the unbuffered server connection keeps no SNI name after the
//! handshake (the name chooses the certificate during it, and nothing later needs
//! it).
//!
//! A read and a write may be in flight at once (monoio-compat's `StreamWrapper`
//! under HTTP/2, a tunnel relaying both ways), and both call rustls. rustls needs,
//! at each call, the ciphertext it keeps (a handshake message split over records,
//! still being joined), so `incoming` is lent to a socket read only when rustls
//! keeps none of it (the usual case: it is empty, or holds the start of a record);
//! otherwise the read lands in a second buffer and is appended.
//!
//! While a connection idles, [`TlsStream::release_buffers`] frees every buffer that
//! holds nothing and [`TlsStream::readable`] waits for the peer without holding
//! any: what stays is rustls' session state (keys, and no buffer of received
//! records, which rustls' buffered API kept at 4 KiB).

use std::io;
use std::mem::MaybeUninit;
use std::rc::Rc;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent,
};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::flush::{FlushState, Flushing, Side};
use crate::records::{Pumped, Records, UnbufferedConnection, Want};

/// Ciphertext read window: one full TLS record (16 KiB and its overhead) plus
/// headroom.
const CIPHERTEXT_BUFFER: usize = 18 * 1024;

/// The least room a socket read gets after the start of a record already in
/// `incoming`.
const MIN_READ: usize = 4096;

/// Plaintext encrypted per flush: rustls makes records of up to 16 KiB from it, and
/// the write path sends them before it encrypts more (what rustls' buffered API
/// held at most).
const WRITE_BATCH: usize = 64 * 1024;

/// A TLS connection (`C` is `rustls::server::UnbufferedServerConnection` or
/// `rustls::client::UnbufferedClientConnection`).
pub struct TlsStream<C> {
    io: TcpStream,
    records: Records<C>,
    /// Where a socket read lands while rustls keeps a part of `incoming`;
    /// appended to it after.
    landing: Vec<u8>,
    /// The socket reached end of stream.
    eof: bool,
    /// Whether some future is writing records to the socket now.
    flush: Rc<FlushState>,
}

impl<C: UnbufferedConnection> TlsStream<C> {
    /// A stream over `io`, before the handshake (see [`TlsStream::handshake`]).
    pub fn new(io: TcpStream, conn: C) -> Self {
        TlsStream {
            io,
            records: Records::new(conn),
            landing: Vec::new(),
            eof: false,
            flush: Rc::default(),
        }
    }

    /// The rustls connection; it reads as rustls' `CommonState`: protocol version,
    /// ALPN, peer certificates, handshake kind (full or resumed).
    pub fn session(&self) -> &C {
        &self.records.conn
    }

    /// The TCP connection underneath (e.g. to peek at it without reading).
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// Input is waiting that no read has taken yet: ciphertext not yet processed,
    /// plaintext decrypted and not yet read, the peer's close_notify or the
    /// socket's end, or a failure to report.
    pub fn has_unread_input(&self) -> bool {
        self.records.has_unread_input() || self.eof
    }

    /// Reads plaintext like `read`, but gives up with `ECANCELED` (and the buffer back,
    /// no byte lost) when `cancel` fires while it waits on the socket: the hot wait of
    /// an idle connection, which then releases its buffers.
    pub async fn cancelable_read<T: IoBufMut>(
        &mut self,
        buf: T,
        cancel: CancelHandle,
    ) -> BufResult<usize, T> {
        self.read_plaintext(buf, Some(cancel)).await
    }

    /// Waits until the peer has sent something (or closed), holding no buffer: at
    /// once when a read would find something already received (plaintext, the
    /// peer's close, a failure) or a record waits to be sent, else a readiness wait
    /// on the socket (io_uring: one poll operation).
    pub async fn readable(&mut self) -> io::Result<()> {
        if self.eof || self.records.ready() {
            return Ok(());
        }
        self.io.readable(false).await
    }

    /// Frees the buffers that hold nothing between messages (an idle connection
    /// keeps only rustls' session state); the next read or write allocates them
    /// again. Bytes not yet processed, read or sent are kept.
    pub fn release_buffers(&mut self) {
        self.records.release_buffers();
        self.landing = Vec::new();
    }

    /// Runs the handshake to completion (the caller bounds it with a timeout), and
    /// sends what follows it at once (a server's TLS 1.3 session tickets). Plaintext
    /// that arrived with the peer's last flight (a client's first request in the
    /// same read as its Finished) waits for the first read. A rustls error (a
    /// certificate not accepted, no common version) comes back as `InvalidData`
    /// wrapping the `rustls::Error`, after the alert rustls chose is sent.
    pub async fn handshake(&mut self) -> io::Result<()> {
        loop {
            if let Err(e) = self.records.pump(Want::Progress) {
                let _ = self.flush_tls(Side::Write).await;
                return Err(invalid(e));
            }
            if !self.records.conn.is_handshaking() {
                break;
            }
            self.flush_tls(Side::Write).await?;
            if self.fill(None).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ));
            }
        }
        self.flush_tls(Side::Write).await
    }

    /// Reads plaintext into `buf`'s free space (`bytes_total` from `write_ptr`, as
    /// monoio's sockets do): at least one byte, or 0 at the end of the stream — a
    /// close_notify, or the socket closing without one (the HTTP framing above
    /// notices a message cut short).
    async fn read_plaintext<T: IoBufMut>(
        &mut self,
        mut buf: T,
        cancel: Option<CancelHandle>,
    ) -> BufResult<usize, T> {
        let total = buf.bytes_total();
        if total == 0 {
            return (Ok(0), buf);
        }
        loop {
            // SAFETY: an `IoBufMut` owns `bytes_total()` writable bytes at
            // `write_ptr()`, and this call owns the buffer until it returns; the slice
            // is of `MaybeUninit`, so nothing reads what was not written, and it is
            // made again after each await. `set_init` covers exactly the bytes copied.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(buf.write_ptr().cast::<MaybeUninit<u8>>(), total)
            };
            match self.records.read(dst) {
                Ok(0) => {}
                Ok(n) => {
                    unsafe { buf.set_init(n) };
                    return (Ok(n), buf);
                }
                Err(e) => {
                    // The alert rustls queued for the peer (best effort).
                    let _ = self.flush_tls(Side::Read).await;
                    return (Err(invalid(e)), buf);
                }
            }
            if self.records.peer_closed() || self.eof {
                return (Ok(0), buf);
            }
            // A post-handshake message may want an answer (e.g. a TLS 1.2
            // renegotiation's refusal).
            if let Err(e) = self.flush_tls(Side::Read).await {
                return (Err(e), buf);
            }
            if let Err(e) = self.fill(cancel.clone()).await {
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
            let batch = &src[done..src.len().min(done + WRITE_BATCH)];
            let refused = match self.records.pump(Want::Encrypt(batch)) {
                Ok(Pumped::Done) => None,
                Ok(Pumped::Closed) => Some(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the TLS connection is closed",
                )),
                Ok(_) => Some(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the TLS handshake is not complete",
                )),
                Err(e) => Some(invalid(e)),
            };
            if let Some(e) = refused {
                // An alert rustls queued, if any (best effort).
                let _ = self.flush_tls(Side::Write).await;
                return (Err(e), buf);
            }
            done += batch.len();
            if let Err(e) = self.flush_tls(Side::Write).await {
                return (Err(e), buf);
            }
        }
        (Ok(done), buf)
    }

    /// Sends close_notify (once the handshake is done and the connection has not
    /// failed) and shuts the socket's write side.
    async fn close(&mut self) -> io::Result<()> {
        if self.records.error().is_none() {
            let _ = self.records.pump(Want::CloseNotify);
        }
        let _ = self.flush_tls(Side::Write).await;
        self.io.shutdown().await
    }

    /// One socket read (which `cancel`, when given, can stop) appended to
    /// `incoming`. Returns the bytes read; 0 at the end of the stream (and `eof`
    /// set).
    async fn fill(&mut self, cancel: Option<CancelHandle>) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        self.records.compact();
        let n = if self.records.incoming_unclaimed() {
            self.read_into_incoming(cancel).await?
        } else {
            self.read_beside_incoming(cancel).await?
        };
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// The usual read: `incoming` (empty, or the start of a record rustls has not
    /// looked into) goes to the socket, which appends to it. A write in flight
    /// meanwhile hands rustls an empty `incoming`, which is all rustls needs then.
    async fn read_into_incoming(&mut self, cancel: Option<CancelHandle>) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.records.incoming);
        // A no-op once the window is there; else (released while idle, or kept by
        // a read a timeout dropped) it comes back, with room after a record's start.
        buf.reserve(CIPHERTEXT_BUFFER.saturating_sub(buf.len()).max(MIN_READ));
        let (begin, end) = (buf.len(), buf.capacity());
        let window = buf.slice_mut(begin..end);
        let (res, window) = match cancel {
            Some(c) => self.io.cancelable_read(window, c).await,
            None => self.io.read(window).await,
        };
        let buf = window.into_inner();
        let incoming = &mut self.records.incoming;
        if incoming.is_empty() {
            *incoming = buf;
        } else {
            // Not reached: nothing else adds to `incoming` while it is lent.
            incoming.splice(0..0, buf);
        }
        res
    }

    /// The rare read: rustls keeps a part of `incoming` (a handshake message
    /// split over records, still being joined), so `incoming` stays where rustls
    /// sees it, the read lands in a second buffer and is appended.
    async fn read_beside_incoming(&mut self, cancel: Option<CancelHandle>) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.landing);
        buf.clear();
        buf.reserve(CIPHERTEXT_BUFFER);
        let (res, mut buf) = match cancel {
            Some(c) => self.io.cancelable_read(buf, c).await,
            None => self.io.read(buf).await,
        };
        self.records.incoming.extend_from_slice(&buf);
        buf.clear();
        self.landing = buf;
        res
    }

    /// Writes every record waiting in `outgoing`, one writer at a time (see
    /// flush.rs): from the read path, a flush in progress takes the records; from
    /// the write path, it is waited for first.
    async fn flush_tls(&mut self, side: Side) -> io::Result<()> {
        if self.flush.active() {
            if side == Side::Read {
                return Ok(());
            }
            let state = self.flush.clone();
            state.idle().await;
        }
        let _flushing = Flushing::begin(&self.flush);
        while !self.records.outgoing.is_empty() {
            // Records added while this write runs go in a new buffer, sent next.
            let buf = std::mem::take(&mut self.records.outgoing);
            let (res, mut buf) = self.io.write_all(buf).await;
            if self.records.outgoing.is_empty() {
                buf.clear();
                self.records.outgoing = buf;
            }
            res?;
        }
        Ok(())
    }
}

/// A rustls error as an I/O error (`InvalidData` wrapping it).
fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<C: UnbufferedConnection> AsyncReadRent for TlsStream<C> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read_plaintext(buf, None).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer views the first iovec of `buf`, which this call owns
        // until it returns.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read_plaintext(raw, None).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl<C: UnbufferedConnection> AsyncWriteRent for TlsStream<C> {
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
