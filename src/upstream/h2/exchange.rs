//! The exchange over HTTP/2: the request head (built as HTTP/1.1 text) read back
//! and encoded as the HEADERS of a stream on a pooled connection, its body sent as
//! DATA within the endpoint's windows (de-chunked when it came chunked) while the
//! response head is awaited, all before the deadline.
//!
//! Failures say what HTTP/2 tells for certain: a request that never left (the
//! connection was going away), a stream the endpoint refused (REFUSED_STREAM) and
//! one above a GOAWAY's last stream were not processed (RFC 9113 §8.7), so they
//! may be sent again whatever the method; a stream cut by a closed connection may
//! have been, so only an idempotent request whose body is whole is.

use std::future::poll_fn;

use monoio::time::Instant;

use crate::config::{Endpoint, Upstream, UpstreamProtocol};
use crate::downstream::BodySource;
use crate::http::BodyFraming;
use crate::observe::Counters;

use super::super::failure::{ExchangeError, FailureSource};
use super::super::outbound::OutboundRequest;
use super::super::response::UpstreamResponse;
use super::conn::{Connection, StreamError};
use super::pool::H2Pools;
use super::ready::ready_by;
use super::request::{field_room, RequestHead};
use super::response::H2Response;
use super::stream::StreamRef;
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
    let scheme: &[u8] = match upstream.protocol {
        UpstreamProtocol::H2 => b"https",
        _ => b"http",
    };
    let deadline = request.deadline;
    let (conn, slot, fresh) = pools
        .stream(upstream, endpoint, request.breaker, deadline, counters)
        .await?;
    let connected = fresh.then(Instant::now);
    // The request leaves only once the endpoint's limit of streams allows it.
    match ready_by(|| deadline, |cx| conn.poll_room(cx)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            slot.retire_connection();
            return Err(unprocessed(going_away(), body.is_complete()));
        }
        Err(_) => return Err(timeout()),
    }
    let (id, head_len, framing) = match open(&conn, request.head, scheme, request.is_head) {
        Ok(Ok(opened)) => opened,
        Ok(Err(_)) => {
            slot.retire_connection();
            return Err(unprocessed(going_away(), body.is_complete()));
        }
        Err(e) => return Err(e),
    };
    let has_body = framing != BodyFraming::None;
    let stream = StreamRef::new(conn, id, slot);
    let mut streamed = false;
    let rest = request.head.get(head_len..).unwrap_or(&[]);
    let mut upload = if has_body {
        Some(Upload::new(
            stream.clone(),
            rest,
            framing,
            body.body_framing(),
        )?)
    } else {
        None
    };
    let answered = async {
        let conn = &stream.conn;
        let mut answer = std::pin::pin!(poll_fn(|cx| conn.poll_head(id, cx)));
        let Some(up) = upload.as_mut() else {
            return answer.await.map_err(Failure::Stream);
        };
        // The endpoint may answer before the body is all sent (an error, or a
        // stream that answers as it reads: gRPC): the rest goes on with the relay
        // when the body can be read apart from the response, else it is dropped.
        let first = monoio::select! {
            sent = up.pump(body, &mut streamed) => Err(sent),
            head = answer.as_mut() => Ok(head),
        };
        match first {
            Ok(head) => head.map_err(Failure::Stream),
            Err(Ok(())) => answer.await.map_err(Failure::Stream),
            Err(Err(e)) => Err(Failure::Exchange(e)),
        }
    };
    let answer = match monoio::time::timeout_at(deadline, answered).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(Failure::Exchange(e))) => return Err(e),
        Ok(Err(Failure::Stream(e))) => {
            if e == StreamError::Refused {
                Counters::bump(&counters.upstream_h2_refused);
                return Err(unprocessed(
                    refused_stream(),
                    body.is_complete() && !streamed,
                ));
            }
            let mut failed = stream_failure(e);
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
    let upload = upload.filter(|u| !u.is_done());
    let response = H2Response::new(
        answer,
        stream,
        request.is_head,
        upstream.request_timeout,
        upload,
    );
    Ok(UpstreamResponse::from_h2(response, connected, first_byte))
}

/// Reads the forwarded `head` back and opens a stream on `conn` with it: the
/// stream's ID, where the body starts in `head`, and how it is framed. (Not async:
/// the fields' room stays on the stack, out of the exchange's future.) The outer
/// error: the head does not translate; the inner: the connection took no stream.
#[allow(clippy::type_complexity)]
fn open(
    conn: &Connection,
    head: &[u8],
    scheme: &[u8],
    is_head: bool,
) -> Result<Result<(u32, usize, BodyFraming), StreamError>, ExchangeError> {
    let mut room = field_room();
    let parsed = RequestHead::parse(head, &mut room)?;
    let end_stream = parsed.framing == BodyFraming::None;
    Ok(conn
        .open_stream(end_stream, is_head, |encoder, out| {
            parsed.encode(scheme, encoder, out)
        })
        .map(|id| (id, parsed.head_len, parsed.framing)))
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
    Stream(StreamError),
}

/// How a failed stream counts: closed (the connection went away) or a protocol
/// failure (the endpoint reset the stream, or broke HTTP/2).
fn stream_failure(e: StreamError) -> ExchangeError {
    match e {
        StreamError::Closed | StreamError::Refused => ExchangeError::new(
            FailureSource::Closed,
            "upstream closed the connection before responding",
        ),
        StreamError::Reset(_) => {
            ExchangeError::new(FailureSource::Protocol, "upstream reset the stream")
        }
        StreamError::Malformed => {
            ExchangeError::new(FailureSource::Protocol, "upstream HTTP/2 error")
        }
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
