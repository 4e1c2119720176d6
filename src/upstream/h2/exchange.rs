//! The exchange over HTTP/2: the request head (built as HTTP/1.1 text) read back
//! as an HTTP/2 request, sent on a stream of a pooled connection, its body sent as
//! DATA within the endpoint's window (de-chunked when it came chunked) while the
//! response head is awaited, all before the deadline.
//!
//! Failures say what HTTP/2 tells for certain: a request that never left (the
//! connection was going away) and a stream the endpoint refused (REFUSED_STREAM,
//! RFC 9113 §8.7) were not processed, so they may be sent again whatever the
//! method; a stream cut by a GOAWAY or a closed connection may have been, so only
//! an idempotent request whose body is whole is.

use std::pin::pin;

use ::h2::{Reason, SendStream};
use bytes::Bytes;
use monoio::time::Instant;

use crate::config::{Endpoint, Upstream, UpstreamProtocol};
use crate::downstream::h2::send_data;
use crate::downstream::BodySource;
use crate::http::{BodyFraming, ChunkedScanner};
use crate::observe::Counters;

use super::super::failure::{ExchangeError, FailureSource};
use super::super::outbound::OutboundRequest;
use super::super::response::UpstreamResponse;
use super::pool::H2Pools;
use super::request::from_head;
use super::response::H2Response;

/// How long a request body may wait for the endpoint's flow-control window
/// before the exchange fails (the route's deadline bounds it too).
const SEND_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Exchanges `request` with `endpoint` of an HTTP/2 `upstream`.
pub async fn exchange<B: BodySource>(
    pools: &H2Pools,
    counters: &Counters,
    upstream: &Upstream,
    endpoint: &Endpoint,
    request: OutboundRequest<'_>,
    body: &mut B,
) -> Result<UpstreamResponse, ExchangeError> {
    let scheme = match upstream.protocol {
        UpstreamProtocol::H2 => "https",
        _ => "http",
    };
    let (head, head_len, head_framing) = from_head(request.head, scheme)?;
    let deadline = request.deadline;
    let (mut send, slot, fresh) = pools
        .stream(upstream, endpoint, request.breaker, deadline, counters)
        .await?;
    let connected = fresh.then(Instant::now);
    let mut streamed = false;
    // The request leaves only once h2 has a stream for it (the endpoint's limit).
    let ready = std::future::poll_fn(|cx| send.poll_ready(cx));
    match monoio::time::timeout_at(deadline, ready).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            slot.retire_connection();
            return Err(unprocessed(going_away(), body.is_complete()));
        }
        Err(_) => return Err(timeout()),
    }
    let has_body = head_framing != BodyFraming::None;
    let (response, stream) = match send.send_request(head, !has_body) {
        Ok(pair) => pair,
        Err(_) => {
            slot.retire_connection();
            return Err(unprocessed(going_away(), body.is_complete()));
        }
    };
    drop(send);
    let stream = std::cell::RefCell::new(Some(stream));
    let mut response = pin!(response);
    let answered = async {
        if has_body {
            let rest = request.head.get(head_len..).unwrap_or(&[]);
            let pump = send_body(&stream, rest, head_framing, body, &mut streamed);
            // The endpoint may answer before the body is all sent (an error, or a
            // stream that answers as it reads): then the rest is not sent.
            let first = monoio::select! {
                sent = pump => Err(sent),
                answer = response.as_mut() => Ok(answer),
            };
            match first {
                Ok(answer) => answer.map_err(Failure::H2),
                Err(Ok(())) => response.as_mut().await.map_err(Failure::H2),
                Err(Err(e)) => Err(Failure::Exchange(e)),
            }
        } else {
            response.as_mut().await.map_err(Failure::H2)
        }
    };
    let answer = match monoio::time::timeout_at(deadline, answered).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(Failure::Exchange(e))) => return Err(e),
        Ok(Err(Failure::H2(e))) => {
            let refused = e.reason() == Some(Reason::REFUSED_STREAM) && e.is_remote();
            if refused {
                Counters::bump(&counters.upstream_h2_refused);
                return Err(unprocessed(
                    refused_stream(),
                    body.is_complete() && !streamed,
                ));
            }
            let mut failed = stream_failure(&e);
            if failed.source == FailureSource::Closed {
                slot.retire_connection();
            }
            failed.reused = !fresh;
            failed.replayable = failed.source == FailureSource::Closed
                && request.idempotent
                && !streamed
                && body.is_complete();
            return Err(failed);
        }
        Err(_) => return Err(timeout()),
    };
    let first_byte = Instant::now();
    let response = H2Response::new(answer, request.is_head, upstream.request_timeout, slot);
    Ok(UpstreamResponse::from_h2(response, connected, first_byte))
}

/// A request the endpoint did not process (RFC 9113 §8.7): it may be sent again,
/// on a fresh connection, when its body is whole in the gateway's hands. (Marked
/// like a stale pooled connection, which the forwarder replays once.)
fn unprocessed(e: ExchangeError, body_whole: bool) -> ExchangeError {
    ExchangeError {
        reused: true,
        replayable: body_whole,
        ..e
    }
}

/// Why waiting for the answer failed.
enum Failure {
    Exchange(ExchangeError),
    H2(::h2::Error),
}

/// Sends the body: the bytes that came after the head (in the head's framing),
/// then the source's pieces, as DATA; then ends the stream. Chunked bytes are
/// de-chunked on the way (the source's pieces continue the head's chunked body).
async fn send_body<B: BodySource>(
    stream: &std::cell::RefCell<Option<SendStream<Bytes>>>,
    head_rest: &[u8],
    head_framing: BodyFraming,
    body: &mut B,
    streamed: &mut bool,
) -> Result<(), ExchangeError> {
    let mut scanner = (head_framing == BodyFraming::Chunked).then(ChunkedScanner::new);
    let write_failed = |_| {
        ExchangeError::new(
            FailureSource::Write,
            "upstream stream closed while receiving the body",
        )
    };
    let rest = payload(&mut scanner, head_rest)?;
    if !rest.is_empty() {
        send_data(stream, rest, false, SEND_STALL)
            .await
            .map_err(write_failed)?;
    }
    let chunked_pieces = body.body_framing() == BodyFraming::Chunked;
    loop {
        let piece = match body.next_piece().await {
            Ok(Some(piece)) => piece,
            Ok(None) => break,
            Err(e) => return Err(ExchangeError::new(FailureSource::Client(e), e.message())),
        };
        *streamed = true;
        let bytes = &piece.buf[piece.range.clone()];
        let data = if chunked_pieces {
            payload(&mut scanner, bytes)
        } else {
            Ok(Bytes::copy_from_slice(bytes))
        };
        body.give_back(piece);
        let data = data?;
        if !data.is_empty() {
            send_data(stream, data, false, SEND_STALL)
                .await
                .map_err(write_failed)?;
        }
    }
    send_data(stream, Bytes::new(), true, SEND_STALL)
        .await
        .map_err(write_failed)
}

/// The payload in `bytes`: de-chunked when a scanner is given.
fn payload(scanner: &mut Option<ChunkedScanner>, bytes: &[u8]) -> Result<Bytes, ExchangeError> {
    match scanner {
        None => Ok(Bytes::copy_from_slice(bytes)),
        Some(scanner) => {
            let mut out = Vec::with_capacity(bytes.len());
            scanner
                .scan_with(bytes, |data| out.extend_from_slice(data))
                .map_err(|e| ExchangeError::new(FailureSource::Protocol, e.reason()))?;
            Ok(Bytes::from(out))
        }
    }
}

/// How a failed stream counts: closed (the connection went away: GOAWAY, I/O) or
/// a protocol failure (the endpoint reset the stream, or broke HTTP/2).
fn stream_failure(e: &::h2::Error) -> ExchangeError {
    if e.is_io() || e.is_go_away() {
        ExchangeError::new(
            FailureSource::Closed,
            "upstream closed the connection before responding",
        )
    } else if e.is_reset() && e.is_remote() {
        ExchangeError::new(FailureSource::Protocol, "upstream reset the stream")
    } else {
        ExchangeError::new(FailureSource::Protocol, "upstream HTTP/2 error")
    }
}

fn going_away() -> ExchangeError {
    ExchangeError::new(
        FailureSource::Closed,
        "upstream HTTP/2 connection is going away",
    )
}

fn refused_stream() -> ExchangeError {
    ExchangeError::new(FailureSource::Closed, "upstream refused the stream")
}

fn timeout() -> ExchangeError {
    ExchangeError::new(FailureSource::Timeout, "upstream timed out")
}
