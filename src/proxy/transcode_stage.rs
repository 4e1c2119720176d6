//! The transcode action: a REST request on a route with `transcode` answered by a
//! unary or server-streaming gRPC call to the route's HTTP/2 upstream.
//!
//! find the binding (404 / 405 when none) → read the JSON body (within
//! `max_json_body_bytes`) → make the request message (400 / 413 before any upstream
//! call) → admit under the breakers, choose an endpoint, exchange the call (POST
//! `/pkg.Service/Method`, `content-type: application/grpc`, `te: trailers`,
//! `grpc-timeout` from the route's timeout) → read the one message and the
//! trailers → answer JSON (200), or the gRPC error as JSON with the mapped status;
//! a server stream's messages are relayed as newline-delimited JSON as they come.
//!
//! The gateway's own errors on such a route speak the same JSON
//! (`{"code","message","details"}`). Calls are not retried, but a call an
//! endpoint never processed (a stale pooled connection, REFUSED_STREAM) is sent
//! once more, as the forwarder does.

use std::borrow::Cow;

use crate::config::{Route, TranscodeRoute};
use crate::downstream::{BodyError, Downstream, Piece};
use crate::http::{
    write_upstream_request, BodyFraming, ChunkedScanner, FieldList, HeaderEdit, HeaderLookup,
    LocalReply, ResponseParts, TraceFields, UpstreamRequest,
};
use crate::observe::Counters;
use crate::transform::transcode::{self, Binding, Lookup};
use crate::upstream::{
    record_outcome, ExchangeError, FailureSource, OutboundRequest, Outcome, UpstreamResponse,
};

use super::auth_stage;
use super::context::RequestCtx;
use super::exit::reply;
use super::forward::{choose, hash_key};
use super::generation::Generation;
use super::retry::Tried;
use super::worker::Worker;

/// Answers the request in `d` through the route's gRPC upstream.
pub async fn transcode<D: Downstream>(
    worker: &Worker,
    generation: &Generation,
    route: &Route,
    plan: &TranscodeRoute,
    ctx: &mut RequestCtx,
    d: &mut D,
) {
    let (path, query) = match &ctx.target {
        Some(t) => (t.path.clone(), t.query.clone()),
        None => ("/".to_string(), None),
    };
    let (binding, captures) = match plan.transcoder.find(d.method(), &path) {
        Lookup::Found(b, values) => (b, values),
        Lookup::WrongMethod(allow) => {
            let refused = error(405, "method not allowed for this path")
                .with_field(b"allow", allow.as_bytes());
            return reply(ctx, d, &refused).await;
        }
        Lookup::NotFound => {
            let message = format!("no gRPC method is bound to this path ({path})");
            return reply(ctx, d, &error(404, &message)).await;
        }
    };
    let call = Call {
        binding,
        captures: &captures,
        query: query.as_deref(),
    };
    let local = exchange(worker, generation, route, plan, &call, ctx, d).await;
    if let Some(local) = local {
        reply(ctx, d, &local).await;
    }
}

/// The binding a request found, and what of the request it reads.
struct Call<'a> {
    binding: &'a Binding,
    captures: &'a [String],
    query: Option<&'a str>,
}

/// Admits the call under the upstream's breakers, writes its head (while the
/// client's head is at hand), reads the body and makes the message, exchanges it
/// and makes the answer. `None`: the client went away, nothing is answered.
async fn exchange<D: Downstream>(
    worker: &Worker,
    generation: &Generation,
    route: &Route,
    plan: &TranscodeRoute,
    call: &Call<'_>,
    ctx: &mut RequestCtx,
    d: &mut D,
) -> Option<LocalReply<'static>> {
    let index = plan.upstream;
    let (Some(upstream), Some(breaker)) = (
        generation.snapshot.upstreams.get(index),
        generation.breakers.get(index),
    ) else {
        return Some(error(500, "route names a missing upstream"));
    };
    let _in_flight = match breaker.admit_request() {
        Ok(admitted) => admitted,
        Err(limit) => {
            Counters::bump(limit.counter(&worker.counters));
            return Some(overflow(limit.name()));
        }
    };
    let hash = hash_key(upstream, d);
    let endpoint = choose(worker, generation, index, upstream, hash, &Tried::default());
    let deadline = monoio::time::Instant::now() + route.timeout;
    let mut head = worker.head_buffer();
    // Written before the body is read: reading it reuses the buffer the client's
    // head is in. Its content-length goes in once the message is made.
    write_call_head(
        &mut head,
        generation,
        route,
        call.binding,
        endpoint.authority.as_bytes(),
        ctx,
        d,
    );
    let message = match request_message(plan, call, d).await {
        Ok(message) => message,
        Err(local) => {
            worker.give_head_buffer(head);
            if local.is_none() {
                ctx.status = BodyError::Closed.status();
                d.abort();
            }
            return local;
        }
    };
    head.truncate(head.len().saturating_sub(2));
    head.extend_from_slice(format!("content-length: {}\r\n\r\n", message.len()).as_bytes());
    head.extend_from_slice(&message);
    let mut replayed = false;
    let result = loop {
        ctx.attempts += 1;
        ctx.upstream = Some(endpoint.text);
        let request = OutboundRequest {
            head: &mut head,
            is_head: false,
            idempotent: false,
            deadline,
            upgrade: false,
            breaker: Some(breaker),
            started: monoio::time::Instant::now(),
        };
        generation.balancer.started(endpoint.id);
        let result = worker
            .exchanger()
            .exchange(upstream, endpoint, request, d)
            .await;
        generation.balancer.finished(endpoint.id);
        let outcome = match &result {
            Ok(response) => Outcome::of_status(response.status()),
            Err(e) => Outcome::of_failure(&e.source, e.is_stale_connection()),
        };
        record_outcome(
            &generation.balancer,
            upstream,
            endpoint,
            outcome,
            &worker.counters,
        );
        match &result {
            // Never processed by the endpoint: once more, on a fresh stream.
            Err(e) if e.is_stale_connection() && e.replayable && !replayed => replayed = true,
            _ => break result,
        }
    };
    worker.give_head_buffer(head);
    match result {
        Ok(mut response) => {
            response.set_read_timeout(route.timeout);
            let max = plan.transcoder.max_message_bytes;
            let answer = if call.binding.server_streaming {
                stream(worker, call.binding, &mut response, max, ctx, d).await
            } else {
                Some(answer(worker, call.binding, &mut response, max).await)
            };
            response.finish(&worker.pools);
            answer
        }
        Err(e) => Some(failed(worker, ctx, e)),
    }
}

/// Reads the body and makes the call's message; `Err(None)` when the client
/// went away, else the refusal (400, 408, 413) before any upstream call.
async fn request_message<D: Downstream>(
    plan: &TranscodeRoute,
    call: &Call<'_>,
    d: &mut D,
) -> Result<Vec<u8>, Option<LocalReply<'static>>> {
    let transcoder = &plan.transcoder;
    let body = match read_body(d, transcoder.max_json_body_bytes).await {
        Ok(body) => body,
        Err(BodyError::Closed) => return Err(None),
        Err(BodyError::TooLarge) => {
            let message = format!(
                "request body over max_json_body_bytes ({})",
                transcoder.max_json_body_bytes
            );
            return Err(Some(error(413, &message).closing()));
        }
        Err(e) => return Err(Some(error(e.status(), e.message()).closing())),
    };
    call.binding
        .request_message(
            call.captures,
            call.query,
            &body,
            transcoder.max_message_bytes,
        )
        .map_err(|bad| Some(error(bad.status, &bad.message)))
}

/// A circuit breaker refused the call (`limit`: its key): 503, named in
/// `x-portico-overflow`.
fn overflow(limit: &str) -> LocalReply<'static> {
    error(503, &format!("upstream overflow: {limit}"))
        .with_field(b"x-portico-overflow", limit.as_bytes())
}

/// The call's head (HTTP/1.1 text; the HTTP/2 exchange reads it back): POST to
/// the method's path, the client's fields as metadata (but its body's, `accept*`,
/// `expect` and any `grpc-*`), the gateway's forwarding and identity fields,
/// `content-type: application/grpc` and the `grpc-timeout` of the route; no
/// framing yet (the caller adds `content-length` before the last empty line).
#[allow(clippy::too_many_arguments)]
fn write_call_head<D: Downstream>(
    out: &mut Vec<u8>,
    generation: &Generation,
    route: &Route,
    binding: &Binding,
    authority: &[u8],
    ctx: &RequestCtx,
    d: &D,
) {
    let outbound = auth_stage::outbound(&generation.snapshot, route, ctx.caller.as_deref());
    let mut grpc = FieldList::new();
    grpc.push(b"content-type", b"application/grpc");
    let timeout = format!("{}m", route.timeout.as_millis().clamp(1, 99_999_999));
    grpc.push(b"grpc-timeout", timeout.as_bytes());
    let none = FieldList::new();
    let added = [
        outbound.identity_headers().unwrap_or(&none),
        d.conn().client_subject.as_ref().unwrap_or(&none),
        &grpc,
    ];
    // With trace context the call carries the gateway's span as its parent, as a
    // forwarded request does.
    let traceparent = ctx.trace.as_ref().map(|t| t.traceparent(&t.span_id));
    let request = UpstreamRequest {
        method: b"POST",
        path: &binding.rpc_path,
        query: None,
        host: authority,
        client_host: ctx.authority.as_deref(),
        client_ip: &d.conn().peer_ip,
        secure: d.conn().secure,
        http10: false,
        body: BodyFraming::None,
        upgrade: None,
        added: &added,
        request_id: ctx.id.as_bytes(),
        trace: match (&ctx.trace, &traceparent) {
            (Some(trace), Some(value)) => TraceFields::Replace {
                traceparent: value,
                tracestate: trace.tracestate.as_deref(),
            },
            _ => TraceFields::PassThrough,
        },
    };
    write_upstream_request(out, d, &request, |name, value| {
        if is_rest_only(name) {
            HeaderEdit::Drop
        } else {
            outbound.header_fate(name, value)
        }
    });
}

/// Client fields that describe the REST exchange, not the call.
fn is_rest_only(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 5] = [
        b"content-type",
        b"content-length",
        b"accept",
        b"accept-encoding",
        b"expect",
    ];
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
        || (name.len() >= 5 && name[..5].eq_ignore_ascii_case(b"grpc-"))
}

/// The whole request body (de-chunked), at most `max` bytes (else 413).
async fn read_body<D: Downstream>(d: &mut D, max: u64) -> Result<Vec<u8>, BodyError> {
    let framing = d.body_framing();
    if matches!(framing, BodyFraming::Length(n) if n > max) {
        return Err(BodyError::TooLarge);
    }
    let mut scanner = (framing == BodyFraming::Chunked).then(ChunkedScanner::new);
    let mut body = Vec::new();
    let mut push = |bytes: &[u8], body: &mut Vec<u8>| -> Result<(), BodyError> {
        match scanner.as_mut() {
            Some(s) => {
                s.scan_with(bytes, |data| body.extend_from_slice(data))
                    .map_err(|_| BodyError::Malformed("malformed chunked body"))?;
            }
            None => body.extend_from_slice(bytes),
        }
        if body.len() as u64 > max {
            return Err(BodyError::TooLarge);
        }
        Ok(())
    };
    let mut buffered = Vec::new();
    d.take_buffered(&mut buffered)?;
    push(&buffered, &mut body)?;
    while let Some(piece) = d.next_piece().await? {
        let pushed = push(&piece.buf[piece.range.clone()], &mut body);
        d.give_back(piece);
        pushed?;
    }
    Ok(body)
}

/// The REST answer for a gRPC response: its one message as JSON (200), or its
/// error status as JSON; a response that is not a unary gRPC answer is a 502.
async fn answer(
    worker: &Worker,
    binding: &Binding,
    response: &mut UpstreamResponse,
    max_message: usize,
) -> LocalReply<'static> {
    if let Some(refused) = not_grpc(response) {
        return refused;
    }
    // Trailers-only: the status came in the head.
    if let Some(status) = grpc_status(&response.fields()) {
        return status.into_reply(binding, &[]);
    }
    let mut frames = Vec::new();
    loop {
        match response.next_piece().await {
            Ok(Some(piece)) => {
                frames.extend_from_slice(&piece.buf[piece.range.clone()]);
                response.give_back(piece);
                if frames.len() > max_message + 5 {
                    return error(502, "upstream message is over max_message_bytes");
                }
            }
            Ok(None) => break,
            Err(_) => {
                Counters::bump(&worker.counters.upstream_truncated);
                return error(502, "upstream response cut short");
            }
        }
    }
    let trailers = match response.trailers().await {
        Ok(t) => t,
        Err(_) => {
            Counters::bump(&worker.counters.upstream_truncated);
            return error(502, "upstream response cut short");
        }
    };
    match trailers.as_ref().and_then(|t| grpc_status(t)) {
        Some(status) => status.into_reply(binding, &frames),
        None => error(502, "upstream ended the call without a grpc-status"),
    }
}

/// A reply when the answer's head is not a gRPC response's (502).
fn not_grpc(response: &UpstreamResponse) -> Option<LocalReply<'static>> {
    if response.status() != 200 {
        let message = format!(
            "upstream answered HTTP {} instead of gRPC",
            response.status()
        );
        return Some(error(502, &message));
    }
    let fields = response.fields();
    let grpc_type = crate::http::grpc::is_grpc(fields.get(b"content-type"));
    (!grpc_type).then(|| error(502, "upstream answer is not application/grpc"))
}

/// Relays a server stream as newline-delimited JSON (`application/x-ndjson`): a
/// line `{"result": MESSAGE}` per message as it arrives, and `{"error": STATUS}`
/// last when the call fails after its first message. The head waits for the first
/// message (or the end), so a call that fails before any gets its mapped status
/// and JSON error like a unary one (returned). `None` once the stream was answered
/// (or the client went away).
async fn stream<D: Downstream>(
    worker: &Worker,
    binding: &Binding,
    response: &mut UpstreamResponse,
    max_message: usize,
    ctx: &mut RequestCtx,
    d: &mut D,
) -> Option<LocalReply<'static>> {
    if let Some(refused) = not_grpc(response) {
        return Some(refused);
    }
    let mut ended = grpc_status(&response.fields()).map(Ok);
    let mut frames = Vec::new();
    let mut line = Vec::new();
    let mut started = false;
    while ended.is_none() {
        match transcode::next_frame(&frames, max_message) {
            Err(bad) => ended = Some(Err(error(502, &bad.0))),
            Ok(Some((payload, next))) => {
                line.clear();
                if let Err(bad) = binding.stream_line(&frames[payload], &mut line) {
                    ended = Some(Err(error(502, &bad.0)));
                    continue;
                }
                frames.drain(..next);
                let sent = match started {
                    true => Ok(()),
                    false => start_stream(ctx, d).await,
                };
                started = true;
                let sent = match sent {
                    Ok(()) => send_line(d, &mut line).await,
                    Err(e) => Err(e),
                };
                if sent.is_err() {
                    d.abort();
                    return None;
                }
            }
            Ok(None) => match response.next_piece().await {
                Ok(Some(piece)) => {
                    frames.extend_from_slice(&piece.buf[piece.range.clone()]);
                    response.give_back(piece);
                }
                Ok(None) if !frames.is_empty() => {
                    ended = Some(Err(error(502, "upstream message cut short")));
                }
                Ok(None) => {
                    ended = Some(match response.trailers().await {
                        Ok(t) => t.as_ref().and_then(|t| grpc_status(t)).ok_or_else(|| {
                            error(502, "upstream ended the call without a grpc-status")
                        }),
                        Err(_) => Err(error(502, "upstream response cut short")),
                    });
                }
                Err(_) => {
                    Counters::bump(&worker.counters.upstream_truncated);
                    ended = Some(Err(error(502, "upstream response cut short")));
                }
            },
        }
    }
    let failure = match ended {
        Some(Ok(status)) if status.code == 0 => None,
        Some(Ok(status)) if !started => return Some(status.into_reply(binding, &[])),
        Some(Ok(status)) => {
            let message = transcode::decode_grpc_message(&status.message);
            Some(transcode::stream_error_line(status.code, &message))
        }
        Some(Err(local)) if !started => return Some(local),
        Some(Err(local)) => Some(transcode::stream_error_line(
            transcode::grpc_code_for(local.status),
            &local.message,
        )),
        None => None,
    };
    let mut sent = match started {
        true => Ok(()),
        false => start_stream(ctx, d).await,
    };
    if let (Ok(()), Some(mut last)) = (&sent, failure) {
        sent = send_line(d, &mut last).await;
    }
    if sent.is_err() || d.finish_response(None).await.is_err() {
        d.abort();
        return None;
    }
    None
}

/// Sends the head of a streamed answer: `200`, `content-type:
/// application/x-ndjson`, the body framed as the client's protocol frames a body
/// of unknown length.
async fn start_stream<D: Downstream>(ctx: &mut RequestCtx, d: &mut D) -> std::io::Result<()> {
    let mut fields = FieldList::new();
    fields.push(b"content-type", b"application/x-ndjson");
    let head = ResponseParts {
        status: 200,
        reason: b"",
        fields: &fields,
        body: BodyFraming::EndStream,
    };
    ctx.status = 200;
    d.send_response_head(&head, &[], &ctx.response_fields, ctx.id.as_str())
        .await
}

/// Sends one line of a streamed answer; `line` gets its buffer back.
async fn send_line<D: Downstream>(d: &mut D, line: &mut Vec<u8>) -> std::io::Result<()> {
    let buf = std::mem::take(line);
    let range = 0..buf.len();
    let (sent, piece) = d.send_piece(Piece { buf, range }).await;
    *line = piece.buf;
    sent
}

/// A call's end: `grpc-status` and `grpc-message`.
struct CallStatus {
    code: u32,
    message: Vec<u8>,
}

fn grpc_status(fields: &dyn HeaderLookup) -> Option<CallStatus> {
    let code = std::str::from_utf8(fields.get(b"grpc-status")?)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let message = fields.get(b"grpc-message").unwrap_or(b"").to_vec();
    Some(CallStatus { code, message })
}

impl CallStatus {
    /// OK: the message in `frames` as JSON; else the error as JSON with its status.
    fn into_reply(self, binding: &Binding, frames: &[u8]) -> LocalReply<'static> {
        if self.code != 0 {
            let status = transcode::http_status(self.code);
            let message = transcode::decode_grpc_message(&self.message);
            let body = transcode::error_json(self.code, &message);
            let mut local = LocalReply::new(status, "application/json", body);
            local.message = Cow::Owned(message);
            return local;
        }
        match binding.response_json(frames) {
            Ok(json) => LocalReply::new(200, "application/json", json),
            Err(bad) => error(502, &bad.0),
        }
    }
}

/// A failed exchange, as the forwarder counts it, answered in the route's JSON.
fn failed(worker: &Worker, ctx: &mut RequestCtx, e: ExchangeError) -> LocalReply<'static> {
    ctx.failure = Some(e.source.clone());
    if let FailureSource::Overflow(limit) = e.source {
        Counters::bump(limit.counter(&worker.counters));
        return overflow(limit.name());
    }
    let status = e.status();
    if status == 504 {
        Counters::bump(&worker.counters.upstream_timeouts);
    }
    error(status, &e.message)
}

/// The gateway's own answer on a transcode route: `status` with the gRPC-style
/// JSON body (`{"code","message","details"}`, the code from
/// [`transcode::grpc_code_for`]).
fn error(status: u16, message: &str) -> LocalReply<'static> {
    let body = transcode::error_json(transcode::grpc_code_for(status), message);
    let mut local = LocalReply::new(status, "application/json", body);
    local.message = Cow::Owned(message.to_string());
    local
}
