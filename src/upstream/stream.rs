//! The byte stream to an upstream endpoint: plain TCP, or TLS when the upstream
//! re-encrypts.

use std::os::fd::AsRawFd;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::client::UnbufferedClientConnection;

use crate::downstream::Duplex;
use crate::tls::TlsStream;

pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<UnbufferedClientConnection>>),
}

impl UpstreamStream {
    /// Nothing unread is waiting and the endpoint has not closed: the connection
    /// can carry a new request without mistaking stale bytes for its answer. A
    /// non-blocking peek at the socket (one `recv(MSG_PEEK | MSG_DONTWAIT)`), plus
    /// whatever the TLS layer holds unread.
    pub fn is_clean(&self) -> bool {
        let fd = match self {
            UpstreamStream::Plain(s) => s.as_raw_fd(),
            UpstreamStream::Tls(s) => {
                if s.has_unread_input() {
                    return false;
                }
                s.tcp().as_raw_fd()
            }
        };
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into a local; the fd is owned by this stream.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
}

// SAFETY: both variants are `Duplex` (TCP; TLS with one writer of records).
unsafe impl Duplex for UpstreamStream {}

impl AsyncReadRent for UpstreamStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.read(buf).await,
            UpstreamStream::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.readv(buf).await,
            UpstreamStream::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for UpstreamStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.write(buf).await,
            UpstreamStream::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.writev(buf).await,
            UpstreamStream::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.flush().await,
            UpstreamStream::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.shutdown().await,
            UpstreamStream::Tls(s) => s.shutdown().await,
        }
    }
}
