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

use ::h2::Reason;
use monoio::time::Instant;

use crate::config::{Endpoint, Upstream, UpstreamProtocol};
use crate::downstream::BodySource;
use crate::http::BodyFraming;
use crate::observe::Counters;

use super::super::failure::{ExchangeError, FailureSource};
use super::super::outbound::OutboundRequest;
use super::super::response::UpstreamResponse;
use super::pool::H2Pools;
use super::request::from_head;
use super::response::H2Response;
use super::upload::Upload;

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
    let rest = request.head.get(head_len..).unwrap_or(&[]);
    let mut upload = Upload::new(stream, rest, head_framing, body.body_framing())?;
    let mut response = pin!(response);
    let answered = async {
        if !has_body {
            return response.as_mut().await.map_err(Failure::H2);
        }
        // The endpoint may answer before the body is all sent (an error, or a
        // stream that answers as it reads: gRPC): the rest goes on with the relay
        // when the body can be read apart from the response, else it is dropped.
        let first = monoio::select! {
            sent = upload.pump(body, &mut streamed) => Err(sent),
            answer = response.as_mut() => Ok(answer),
        };
        match first {
            Ok(answer) => answer.map_err(Failure::H2),
            Err(Ok(())) => response.as_mut().await.map_err(Failure::H2),
            Err(Err(e)) => Err(Failure::Exchange(e)),
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
    let upload = (has_body && !upload.is_done()).then_some(upload);
    let response = H2Response::new(
        answer,
        request.is_head,
        upstream.request_timeout,
        slot,
        upload,
    );
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
