//! A TLS stream over a monoio `TcpStream`, driving a rustls connection with owned
//! buffers.
//!
//! Ours rather than monoio-rustls' because that crate gives no access to the rustls
//! session after the handshake (SNI, protocol version, the client's certificate for
//! mTLS), and taking the session out of it drops ciphertext it has already read.

use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::{ConnectionCommon, SideData};

/// Ciphertext read window: one full TLS record plus headroom.
const CIPHERTEXT_BUFFER: usize = 18 * 1024;

/// A TLS connection (`C` is `rustls::ServerConnection` or `ClientConnection`).
pub struct TlsStream<C> {
    io: TcpStream,
    conn: C,
    /// Ciphertext read from the socket; `incoming[in_pos..]` not yet given to rustls.
    incoming: Vec<u8>,
    in_pos: usize,
    /// Ciphertext rustls produced, about to be written.
    outgoing: Vec<u8>,
    eof: bool,
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
        }
    }

    /// The rustls session: SNI, protocol version, peer certificates.
    pub fn session(&self) -> &C {
        &self.conn
    }

    /// Runs the handshake to completion (the caller bounds it with a timeout).
    pub async fn handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.flush_tls().await?;
                continue;
            }
            if self.conn.wants_read() && self.fill().await? == 0 && self.eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during the TLS handshake",
                ));
            }
        }
        // Session tickets and the last flight.
        self.flush_tls().await
    }

    /// Gives rustls more ciphertext: what is buffered, else one socket read.
    /// Returns the bytes handed over; 0 with `eof` set at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.in_pos == self.incoming.len() {
            if self.eof {
                return Ok(0);
            }
            self.incoming.clear();
            self.in_pos = 0;
            let buf = std::mem::take(&mut self.incoming);
            let (res, buf) = self.io.read(buf).await;
            self.incoming = buf;
            if res? == 0 {
                self.eof = true;
                // Tell rustls the transport ended (it then reports a clean or an
                // unclean close to the reader).
                let _ = self.conn.read_tls(&mut io::empty());
                return Ok(0);
            }
        }
        let mut pending = &self.incoming[self.in_pos..];
        let n = self.conn.read_tls(&mut pending)?;
        self.in_pos += n;
        if let Err(e) = self.conn.process_new_packets() {
            // rustls queued an alert for the peer: send it, best effort.
            let _ = self.flush_tls().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(n)
    }

    /// Writes every record rustls has ready.
    async fn flush_tls(&mut self) -> io::Result<()> {
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

    async fn read_plaintext(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the transport without close_notify: end of stream
                // for us; body framing catches a cut message.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.conn.wants_write() {
                self.flush_tls().await?;
            }
            if self.fill().await? == 0 && self.eof {
                // One more look: rustls now knows the stream ended.
                return match self.conn.reader().read(dst) {
                    Ok(n) => Ok(n),
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::UnexpectedEof =>
                    {
                        Ok(0)
                    }
                    Err(e) => Err(e),
                };
            }
        }
    }
}

impl<C, SD> AsyncReadRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the pointer and capacity come from the buffer itself, which this
        // call owns until it returns; rustls only writes into the slice, and we mark
        // exactly the bytes it wrote as initialized.
        let dst = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
        match self.read_plaintext(dst).await {
            Ok(n) => {
                unsafe { buf.set_init(n) };
                (Ok(n), buf)
            }
            Err(e) => (Err(e), buf),
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
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
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the buffer owns `bytes_init` initialized bytes at `read_ptr`.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let n = match self.conn.writer().write(src) {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        match self.flush_tls().await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let n = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => self.write(raw).await.0,
            None => Ok(0),
        };
        (n, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        let _ = self.flush_tls().await;
        self.io.shutdown().await
    }
}
