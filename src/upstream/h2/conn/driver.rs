//! The connection's task: a reader that hands what the endpoint sends to the
//! connection's state, and a writer that sends what gathered in its output, one
//! write per wake-up.

use std::cell::UnsafeCell;
use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

use crate::deadline::{write_all_within, WriteDeadline};
use crate::http::http2::frame::{self, code, DEFAULT_MAX_FRAME};

use super::super::super::stream::UpstreamStream;
use super::{Connection, READ_BUFFER};

/// Runs `conn` over `io` until it ends: the endpoint closed it, I/O failed, a
/// write moved no byte for `send_timeout` (the upstream's `send_timeout_ms`), a
/// connection error was sent, or it was retired and its last stream finished.
/// Every stream still open then fails.
pub async fn drive(conn: Rc<Connection>, mut io: UpstreamStream, send_timeout: Duration) {
    let cell = UnsafeCell::from_mut(&mut io);
    // SAFETY: one read and one write at a time, each by its own loop (`Duplex`:
    // TCP, and the TLS stream's reads never write while a write is in flight);
    // both borrows end with this function.
    let (reader, writer) = unsafe { (&mut *cell.get(), &mut *cell.get()) };
    let mut reading = pin!(read_loop(&conn, reader));
    let mut writing = pin!(write_loop(&conn, writer, WriteDeadline::idle(send_timeout)));
    monoio::select! {
        _ = &mut reading => {}
        _ = &mut writing => {}
    }
    conn.state.borrow_mut().end();
}

/// Reads frames and hands them to the connection's state, until the endpoint
/// closes or reading fails; after a connection error it waits for the writer.
async fn read_loop(conn: &Connection, io: &mut UpstreamStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER);
    loop {
        if buf.capacity() - buf.len() < DEFAULT_MAX_FRAME {
            buf.reserve(READ_BUFFER);
        }
        let len = buf.len();
        let (read, slice) = io.read(buf.slice_mut(len..)).await;
        buf = slice.into_inner();
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let received = conn.state.borrow_mut().receive(&buf);
        let taken = match received {
            Ok(n) => n,
            Err(error) => {
                conn.state.borrow_mut().fail(error);
                std::future::pending::<()>().await;
                return;
            }
        };
        buf.drain(..taken);
    }
}

/// Writes what gathers in the connection's output, one write per wake-up, until
/// writing fails or the connection is closing and everything was written.
async fn write_loop(conn: &Connection, io: &mut UpstreamStream, limit: WriteDeadline) {
    let mut spare: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        let ready = poll_fn(|cx| {
            let mut s = conn.state.borrow_mut();
            if !s.out.is_empty() {
                return Poll::Ready(true);
            }
            if s.closing {
                return Poll::Ready(false);
            }
            if s.going_away && s.streams.is_empty() {
                frame::put_goaway(&mut s.out, 0, code::NO_ERROR);
                s.closing = true;
                return Poll::Ready(true);
            }
            s.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !ready {
            return;
        }
        let mut out = {
            let mut s = conn.state.borrow_mut();
            std::mem::replace(&mut s.out, std::mem::take(&mut spare))
        };
        let len = out.len();
        if write_all_within(io, &mut out, 0..len, limit).await.is_err() {
            return;
        }
        out.clear();
        spare = out;
        conn.state.borrow_mut().wake_waiting();
    }
}
