//! The byte stream a client connection runs on (plain TCP or TLS): reading and
//! writing, plus what a connection needs to wait for its next request without
//! holding buffers (a read a timer can cancel with no byte lost, a readiness wait,
//! the stream's own buffers to release). Used by the HTTP/1.1 connection's idle wait
//! (`h1/mod.rs`); any downstream protocol can use it the same way.

use std::future::Future;
use std::io;

use monoio::buf::IoBufMut;
use monoio::io::{CancelHandle, CancelableAsyncReadRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::server::UnbufferedServerConnection;

use crate::tls::TlsStream;

/// A byte stream a client connection runs on: `TcpStream` or
/// `TlsStream<UnbufferedServerConnection>`. Its reads and writes may be in flight at once
/// ([`Duplex`](super::tunnel::Duplex)): an upgraded connection's tunnel needs that.
pub trait Io: super::tunnel::Duplex {
    /// Reads like `read`; when `cancel` fires first, ends with `ECANCELED`
    /// ([`cancelled`]) and the buffer back, with no byte lost (a read that raced
    /// the cancel returns its bytes).
    fn read_or_cancel<T: IoBufMut>(
        &mut self,
        buf: T,
        cancel: CancelHandle,
    ) -> impl Future<Output = BufResult<usize, T>>;

    /// Waits until the peer sent something or closed, holding no buffer (io_uring:
    /// one poll operation; epoll: the readiness the driver already tracks).
    fn readable(&mut self) -> impl Future<Output = io::Result<()>>;

    /// Frees what the stream keeps between messages (TLS: its ciphertext and
    /// plaintext buffers, allocated again at the next read or write).
    fn release_buffers(&mut self);
}

impl Io for TcpStream {
    fn read_or_cancel<T: IoBufMut>(
        &mut self,
        buf: T,
        cancel: CancelHandle,
    ) -> impl Future<Output = BufResult<usize, T>> {
        self.cancelable_read(buf, cancel)
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        TcpStream::readable(self, false)
    }

    fn release_buffers(&mut self) {}
}

impl Io for TlsStream<UnbufferedServerConnection> {
    fn read_or_cancel<T: IoBufMut>(
        &mut self,
        buf: T,
        cancel: CancelHandle,
    ) -> impl Future<Output = BufResult<usize, T>> {
        self.cancelable_read(buf, cancel)
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> {
        TlsStream::readable(self)
    }

    fn release_buffers(&mut self) {
        TlsStream::release_buffers(self);
    }
}

/// The error a cancelled read ends with (`ECANCELED`).
pub fn cancelled(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECANCELED)
}
