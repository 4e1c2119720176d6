//! An HTTP/2 client connection's task: the handshake (the preface and SETTINGS
//! with the configured limits), then the loop that drives the connection's I/O,
//! accepts streams and runs each one's request to its end — all in this one task,
//! so a response written by a stream and the frames of others leave in the same
//! write. It also closes the connection: after `idle_timeout_ms` without a stream
//! (GOAWAY `NO_ERROR`), on drain (a graceful GOAWAY: open streams finish), and on a
//! flood (GOAWAY `ENHANCE_YOUR_CALM`).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use ::h2::server::SendResponse;
use ::h2::{Reason, RecvStream};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, Stream};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;
use monoio_compat::StreamWrapper;

use crate::config::ServerSettings;
use crate::observe::Counters;

use super::super::{ConnInfo, DrainSignal, Handler};
use super::guard::{Flood, FrameGuard, GuardState};
use super::request::H2Request;
use super::StreamLimits;

/// monoio-compat's own buffers: reads fill up to this, then h2 copies out; writes
/// copy up to this from h2's encoder (which flushes at 16 KiB).
const READ_BUFFER: usize = 16 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;
/// How long a connection that was told GOAWAY may take to flush it and close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type StreamTask<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// What woke the connection's loop. (On the stack for one turn of the loop:
/// boxing the large variant would allocate for every stream.)
#[allow(clippy::large_enum_variant)]
enum Event {
    Stream(::http::Request<RecvStream>, SendResponse<Bytes>),
    Failed(::h2::Error),
    Closed,
    StreamDone,
    Drain,
    Idle,
    Flood(Flood),
    CloseDeadline,
}

/// Serves one HTTP/2 connection until it closes: `prefix` are bytes already read
/// from `io` (h2c's preface, when the listener looked for it), `info` what the
/// transport says about the client.
pub async fn serve<S, H>(
    io: S,
    prefix: Vec<u8>,
    info: ConnInfo,
    server: &ServerSettings,
    drain: &DrainSignal,
    handler: &H,
    counters: &Counters,
) where
    S: AsyncReadRent + AsyncWriteRent + Unpin + 'static,
    H: Handler,
{
    let settings = &server.http2;
    let limits = &server.limits;
    let guard = Rc::new(GuardState::new(settings.flood));
    let io = StreamWrapper::new_with_buffer_size(
        FrameGuard::new(io, guard.clone(), prefix),
        READ_BUFFER,
        WRITE_BUFFER,
    );
    let mut builder = ::h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.max_concurrent_streams)
        // h2 answers 431 itself past twice the limit; up to that, the limit is
        // checked per stream (`H2Request::refusal`), answered and counted as a
        // malformed request like an HTTP/1.1 head over `max_header_bytes`.
        .max_header_list_size(settings.max_header_list_bytes.saturating_mul(2))
        .initial_window_size(settings.initial_stream_window)
        .initial_connection_window_size(settings.initial_connection_window);
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = match monoio::time::timeout(limits.header_read_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        _ => {
            Counters::bump(&counters.h2_handshake_failures);
            return;
        }
    };
    Counters::bump(&counters.h2_connections);
    let stream_limits = StreamLimits {
        body_read_timeout: limits.body_read_timeout,
        max_body_bytes: limits.max_body_bytes,
        send_stall: limits.idle_timeout,
        max_header_list_bytes: settings.max_header_list_bytes as usize,
        max_uri_bytes: limits.max_uri_bytes,
    };
    let max_streams = settings.max_concurrent_streams as usize;
    let mut streams: FuturesUnordered<StreamTask<'_>> = FuturesUnordered::new();
    // Once the gateway said GOAWAY: whether it was graceful (the drain), and by
    // when the connection must be closed.
    let mut draining = false;
    let mut close_by: Option<Instant> = None;
    let mut flooded = false;
    loop {
        let idle = streams.is_empty() && !draining && close_by.is_none();
        let event = monoio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => Event::Stream(request, respond),
                Some(Err(e)) => Event::Failed(e),
                None => Event::Closed,
            },
            _ = next_done(&mut streams), if !streams.is_empty() => Event::StreamDone,
            _ = drain.raised(), if !draining => Event::Drain,
            _ = monoio::time::sleep(limits.idle_timeout), if idle => Event::Idle,
            flood = guard.flooded(), if !flooded => Event::Flood(flood),
            _ = monoio::time::sleep_until(close_by.unwrap_or_else(Instant::now)), if close_by.is_some() => Event::CloseDeadline,
        };
        count_refused(&guard, counters);
        match event {
            Event::Stream(request, mut respond) => {
                Counters::bump(&counters.h2_streams);
                // Streams the client reset still finish their work here (briefly:
                // a reset ends the request's work at once); more than the limit in
                // progress are refused, unprocessed.
                if streams.len() >= max_streams || flooded {
                    // Counted as it is sent, with those h2 refuses itself.
                    respond.send_reset(Reason::REFUSED_STREAM);
                    continue;
                }
                streams.push(Box::pin(serve_stream(
                    handler,
                    request,
                    respond,
                    &info,
                    &stream_limits,
                )));
            }
            Event::StreamDone => {}
            Event::Failed(e) => {
                // Not when it is the GOAWAY this loop asked for (a flood).
                if !flooded {
                    count_failure(&e, counters);
                }
                break;
            }
            Event::Closed => break,
            Event::Drain => {
                // GOAWAY: no new streams; those in progress finish.
                draining = true;
                conn.graceful_shutdown();
            }
            Event::Idle => {
                Counters::bump(&counters.h2_idle_closed);
                conn.abrupt_shutdown(Reason::NO_ERROR);
                close_by = Some(Instant::now() + CLOSE_GRACE);
            }
            Event::Flood(flood) => {
                flooded = true;
                Counters::bump(match flood {
                    Flood::Resets => &counters.h2_flood_resets,
                    Flood::Pings => &counters.h2_flood_pings,
                    Flood::Settings => &counters.h2_flood_settings,
                    Flood::EmptyData => &counters.h2_flood_empty_data,
                    Flood::Continuation => &counters.h2_flood_continuation,
                });
                tracing::debug!(peer = %info.peer, ?flood, "HTTP/2 flood: GOAWAY ENHANCE_YOUR_CALM");
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                close_by = Some(Instant::now() + CLOSE_GRACE);
            }
            Event::CloseDeadline => break,
        }
    }
    // The connection is gone: requests still in progress are abandoned (their
    // upstream exchanges end with them).
    drop(streams);
    count_refused(&guard, counters);
}

/// Adds the streams refused since the last look (the guard sees the resets leave)
/// to `h2_streams_refused`: at every turn of the connection's loop, so the counter
/// lags by one event at most.
fn count_refused(guard: &GuardState, counters: &Counters) {
    let refused = guard.take_refused();
    if refused > 0 {
        let c = &counters.h2_streams_refused;
        c.set(c.get() + refused);
    }
}

/// One stream's request, to the end of its response.
async fn serve_stream<H: Handler>(
    handler: &H,
    request: ::http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    info: &ConnInfo,
    limits: &StreamLimits,
) {
    let mut request = H2Request::new(request, respond, info, limits);
    match request.refusal() {
        Some(error) => handler.refuse(&mut request, error).await,
        None => handler.handle(&mut request).await,
    }
}

/// Resolves when one of the streams' requests has ended.
async fn next_done(streams: &mut FuturesUnordered<StreamTask<'_>>) {
    poll_fn(|cx| Pin::new(&mut *streams).poll_next(cx).map(|_| ())).await
}

/// Counts a connection that ended in an error: one of h2's own guards
/// (ENHANCE_YOUR_CALM), or another protocol error h2 found in the client's frames.
/// A client that went away or said GOAWAY is not counted.
fn count_failure(e: &::h2::Error, counters: &Counters) {
    if !e.is_library() {
        return;
    }
    match e.reason() {
        Some(Reason::ENHANCE_YOUR_CALM) => Counters::bump(&counters.h2_calm_down),
        Some(Reason::NO_ERROR) | None => {}
        Some(_) => Counters::bump(&counters.h2_protocol_errors),
    }
}
