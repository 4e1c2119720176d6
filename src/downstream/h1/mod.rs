//! HTTP/1.1 client connections: read a request head, hand the request to the
//! [`Handler`], and keep the connection alive between requests until the client, a
//! limit, an error or the drain ends it.
//!
//! A connection alternates between two states (docs/http.md, "Idle connections"):
//!
//! - **Busy**: requests one after another, with the read and write buffers and the
//!   request's state in one boxed future. After each response the next request's
//!   first bytes are read with the buffers in hand, as one read, for the hot window.
//! - **Idle**: when the hot window passes with no byte, that read is cancelled (a
//!   byte that raced the cancel is kept), the box and every buffer are freed, and the
//!   connection waits for readability holding nothing but its stream, under a coarse
//!   deadline checked on the worker's tick ([`IdleDeadlines`]).

mod conn;
mod request;

pub use super::transport::Io;
pub use conn::ClientConn;
pub use request::H1Request;

use std::time::Duration;

use monoio::io::Canceller;
use monoio::time::Instant;

use crate::config::Limits;

use super::{DrainSignal, Handler, IdleDeadlines};
use conn::HeadRead;

/// How long a connection keeps its buffers while it waits for the next request. A
/// request that starts within it costs one read, as it always did; past it the read
/// is cancelled, the buffers are freed and the connection waits without any.
pub const HOT_WINDOW: Duration = Duration::from_secs(1);

/// Serves one accepted connection until it ends: each request goes to `handler`;
/// a head the codec refuses is answered through `handler.refuse` and closes.
/// `idle` holds the deadlines of idle connections (expired on the worker's tick).
///
/// The connection comes in built and boxed: an async fn keeps its by-value
/// arguments in its state beside the locals made from them, so a stream passed by
/// value would be kept twice in every idle connection's task.
pub async fn serve<S: Io, H: Handler>(
    mut conn: Box<ClientConn<S>>,
    limits: &Limits,
    drain: &DrainSignal,
    idle: &IdleDeadlines,
    handler: &H,
) {
    conn.send_timeout = limits.send_timeout;
    // No request yet: the drain lets this connection's first one be read and
    // answered (its client sent it, or is about to: closing would reset it).
    let mut first = true;
    // A new connection sends its first byte within the head timeout.
    let mut now = Instant::now();
    let mut first_byte_by = now + limits.header_read_timeout;
    loop {
        let busy = serve_busy(
            &mut conn,
            limits,
            drain,
            handler,
            now,
            first_byte_by,
            &mut first,
        );
        let Busy::Quiet { until } = Box::pin(busy).await else {
            break;
        };
        conn.release_buffers();
        let woke = monoio::select! {
            r = conn.io.readable() => r.is_ok(),
            _ = idle.wait_until(until.into_std()) => false,
            _ = drain.raised(), if !first => false,
        };
        if !woke {
            break;
        }
        // Bytes are there: the head is due within the head timeout from now.
        now = Instant::now();
        first_byte_by = now + limits.header_read_timeout;
    }
    // Boxed: its timer would otherwise be part of every idle connection's task.
    Box::pin(conn.close()).await;
}

/// How a busy period ended.
enum Busy {
    /// The connection is done.
    Ended,
    /// No request started within the hot window; the next one's first byte is due
    /// by `until`.
    Quiet { until: Instant },
}

/// Requests one after another, while they keep coming within the hot window.
/// `now` is when the caller computed `first_byte_by` (one clock read serves both
/// deadlines); `first` is true until a first request was read.
async fn serve_busy<S: Io, H: Handler>(
    conn: &mut ClientConn<S>,
    limits: &Limits,
    drain: &DrainSignal,
    handler: &H,
    mut now: Instant,
    mut first_byte_by: Instant,
    first: &mut bool,
) -> Busy {
    // One canceller for the whole busy period: the hot reads share it.
    let mut canceller = Canceller::new();
    let write_buffer = conn.write_buffer;
    conn.wbuf.reserve(write_buffer);
    loop {
        // Waiting for the first byte: the header timeout on a new connection, the
        // keep-alive idle timeout between requests (which the drain ends).
        let hot_until = first_byte_by.min(now + HOT_WINDOW);
        let close_on_drain = !*first;
        match conn
            .read_head(limits, drain, hot_until, close_on_drain, &mut canceller)
            .await
        {
            HeadRead::Ready => {}
            HeadRead::Closed => return Busy::Ended,
            HeadRead::Quiet if hot_until >= first_byte_by => return Busy::Ended,
            HeadRead::Quiet => {
                return Busy::Quiet {
                    until: first_byte_by,
                }
            }
            HeadRead::Rejected(err) => {
                let mut request = H1Request::refused(conn, limits, drain);
                handler.refuse(&mut request, err).await;
                return Busy::Ended;
            }
        }
        *first = false;
        let mut request = H1Request::new(conn, limits, drain);
        handler.handle(&mut request).await;
        let keep = request.keep_alive();
        conn.finish_request();
        if !keep || drain.is_raised() {
            return Busy::Ended;
        }
        now = Instant::now();
        first_byte_by = now + limits.idle_timeout;
    }
}

#[cfg(test)]
mod tests;
