//! A byte tunnel between a client connection and an upstream connection, both
//! ways at once: what an upgraded connection (WebSocket, after the upstream's
//! `101`) becomes. Bytes pass as they come, whatever their framing; a side that
//! closes its sending half (FIN) has that passed on, and the other direction goes
//! on until it closes too. The tunnel ends early when no byte moved either way for
//! its idle timeout, and, once the worker drains, after a quiet second (so a
//! message in flight still arrives) or when the drain ends.

use std::cell::{Cell, UnsafeCell};
use std::pin::pin;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::time::Instant;

use super::drain::DrainSignal;

/// Read buffer of each direction.
const TUNNEL_BUFFER: usize = 16 * 1024;
/// Once the worker drains, a tunnel quiet for this long closes.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// How a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both sides closed (the usual end of a WebSocket: close frames, then FIN).
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// The worker drained.
    Drained,
    /// A side failed (reset, broken write).
    Failed,
}

/// What a tunnel moved, for the access log.
#[derive(Clone, Copy, Debug, Default)]
pub struct TunnelBytes {
    pub to_upstream: u64,
    pub to_client: u64,
}

/// A stream whose reads and writes can be in flight at the same time: independent
/// operations (TCP), or made safe for one read and one write at once (TLS:
/// crates/tls-stream's one-writer-of-records rule).
///
/// # Safety
///
/// The implementor promises that one `read` and one `write`/`shutdown` future may be
/// alive and polled alternately on the same stream without corrupting it.
pub unsafe trait Duplex: AsyncReadRent + AsyncWriteRent {}

// SAFETY: a TCP socket's reads and writes are independent operations.
unsafe impl Duplex for monoio::net::TcpStream {}
// SAFETY: the TLS stream's read path never writes records while a write is in
// flight, and a write waits for a read-side flush (crates/tls-stream FlushState).
unsafe impl<C: portico_tls_stream::UnbufferedConnection> Duplex
    for portico_tls_stream::TlsStream<C>
{
}

/// Relays `client` ⇄ `upstream` until the tunnel ends: first `client_early` (bytes
/// the client sent after its upgrade request) to the upstream and `upstream_early`
/// (bytes after the upstream's `101`) to the client, then whatever each side sends.
pub async fn relay<C: Duplex, U: Duplex>(
    client: &mut C,
    client_early: &[u8],
    upstream: &mut U,
    upstream_early: &[u8],
    idle: Duration,
    drain: &DrainSignal,
) -> (TunnelEnd, TunnelBytes) {
    let last = Cell::new(Instant::now());
    let bytes = Cell::new(TunnelBytes::default());
    // SAFETY: each stream is read by one direction and written by the other, one
    // operation of each kind at a time (`Duplex`); both borrows end with this call.
    let client = UnsafeCell::from_mut(client);
    let upstream = UnsafeCell::from_mut(upstream);
    let (client_r, client_w) = unsafe { (&mut *client.get(), &mut *client.get()) };
    let (upstream_r, upstream_w) = unsafe { (&mut *upstream.get(), &mut *upstream.get()) };
    let mut up = pin!(pipe(
        client_r,
        upstream_w,
        client_early,
        &last,
        |b, n| b.to_upstream += n,
        &bytes
    ));
    let mut down = pin!(pipe(
        upstream_r,
        client_w,
        upstream_early,
        &last,
        |b, n| b.to_client += n,
        &bytes
    ));
    let mut watch = pin!(watch(&last, idle, drain));
    let (mut up_done, mut down_done) = (false, false);
    let end = loop {
        let step = monoio::select! {
            ok = &mut up, if !up_done => { up_done = true; ok }
            ok = &mut down, if !down_done => { down_done = true; ok }
            end = &mut watch => break end,
        };
        if !step {
            break TunnelEnd::Failed;
        }
        if up_done && down_done {
            break TunnelEnd::Closed;
        }
    };
    (end, bytes.get())
}

/// Copies `from` to `to` (after `early`) until `from` closes, then closes `to`'s
/// sending half. False when a read or write failed.
async fn pipe<R: AsyncReadRent, W: AsyncWriteRent>(
    from: &mut R,
    to: &mut W,
    early: &[u8],
    last: &Cell<Instant>,
    count: impl Fn(&mut TunnelBytes, u64),
    bytes: &Cell<TunnelBytes>,
) -> bool {
    let add = |n: usize| {
        let mut b = bytes.get();
        count(&mut b, n as u64);
        bytes.set(b);
        last.set(Instant::now());
    };
    if !early.is_empty() {
        if to.write_all(early.to_vec()).await.0.is_err() {
            return false;
        }
        add(early.len());
    }
    let mut buf = Vec::with_capacity(TUNNEL_BUFFER);
    loop {
        buf.clear();
        let (read, back) = from.read(buf).await;
        buf = back;
        match read {
            Ok(0) => return to.shutdown().await.is_ok(),
            Ok(n) => {
                last.set(Instant::now());
                let (written, back) = to.write_all(buf).await;
                buf = back;
                if written.is_err() {
                    return false;
                }
                add(n);
            }
            Err(_) => return false,
        }
    }
}

/// Resolves when the tunnel should end: nothing moved for `idle`, or the worker
/// drains and nothing moved for [`DRAIN_QUIET`].
async fn watch(last: &Cell<Instant>, idle: Duration, drain: &DrainSignal) -> TunnelEnd {
    loop {
        let draining = drain.is_raised();
        let quiet = if draining {
            DRAIN_QUIET.min(idle)
        } else {
            idle
        };
        let until = last.get() + quiet;
        if Instant::now() >= until {
            return if draining {
                TunnelEnd::Drained
            } else {
                TunnelEnd::Idle
            };
        }
        if draining {
            monoio::time::sleep_until(until).await;
        } else {
            monoio::select! {
                _ = monoio::time::sleep_until(until) => {}
                _ = drain.raised() => {}
            }
        }
    }
}
