//! Waiting on a connection's state within a time limit: what is ready already is
//! taken without a timer (arming one costs a clock reading and a timer-wheel
//! entry, and most of these waits find the state ready: the DATA and trailers
//! of an answer that came in one read, room for a stream, send window).

use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

use monoio::time::error::Elapsed;
use monoio::time::Instant;

/// Looks at `poll` once as things stand (with a waker that does nothing: the
/// state is only read), and, when that is pending, waits for it until the instant
/// `deadline()` gives, then `Err(Elapsed)`. Ready takes precedence over expiry,
/// as in `monoio::time::timeout_at`, which this is when the state is not ready.
pub async fn ready_by<T>(
    deadline: impl FnOnce() -> Instant,
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Result<T, Elapsed> {
    match poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => Ok(value),
        Poll::Pending => monoio::time::timeout_at(deadline(), poll_fn(poll)).await,
    }
}
