//! A connection that is plain TCP or TLS, for code that serves both. It is a monoio
//! stream like its two kinds (`AsyncReadRent`, `AsyncWriteRent`), so the HTTP/1.1
//! loops read and write it directly and `run --http2` hands it to
//! `monoio_compat::StreamWrapper`, which gives it the tokio traits the `h2` crate wants.

use std::io;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use portico_tls_stream::{TlsStream, UnbufferedConnection};

pub enum Transport<C> {
    Plain(TcpStream),
    /// Boxed: a rustls connection is large, a plain one is not.
    Tls(Box<TlsStream<C>>),
}

impl<C: UnbufferedConnection> AsyncReadRent for Transport<C> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.readv(buf).await,
            Transport::Tls(s) => s.readv(buf).await,
        }
    }
}

impl<C: UnbufferedConnection> AsyncWriteRent for Transport<C> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.write(buf).await,
            Transport::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.writev(buf).await,
            Transport::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush().await,
            Transport::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown().await,
            Transport::Tls(s) => s.shutdown().await,
        }
    }
}
