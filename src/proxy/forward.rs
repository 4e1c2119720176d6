//! The forward stage: admit the request under its upstream's circuit breakers,
//! choose an endpoint, build the request that goes upstream, exchange it — again
//! on a fresh connection when a pooled one turns out closed, and again as the
//! route's `retry` says (`retry.rs`), to another endpoint when there is one — then
//! relay the answer, streaming its body. Failures become the gateway's own replies
//! (502, 503, 504, or the client's 408/400/413).

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::config::{Endpoint, Route, Upstream, UpstreamProtocol};
use crate::downstream::h2::DuplexBody;
use crate::downstream::{BodyError, Downstream};
use crate::http::{
    grpc, write_chunk_head, write_last_chunk, write_upstream_request, BodyFraming, FieldList,
    HeaderEdit, HeaderLookup, TraceFields, UpstreamHeadMarks, UpstreamRequest, CHUNK_END,
};
use crate::observe::metrics::{OverflowLimit, TryOutcome, UpstreamSeries};
use crate::observe::{set_parent_id, Counters, TrySpan};
use crate::route;
use crate::upstream::{
    record_outcome, Breaker, BreakerLimit, ExchangeError, FailureSource, HashKey, InFlight,
    OutboundRequest, Outcome, UpstreamResponse,
};

use super::auth_stage;
use super::context::RequestCtx;
use super::exit::reply;
use super::generation::Generation;
use super::replies;
use super::retry::{self, Tried};
use super::transform_stage;
use super::websocket;
use super::worker::Worker;

/// Response body bytes that arrived with the head are sent in the same write when
/// there are at most this many; more are written straight from the read buffer.
const COALESCE_BODY_BYTES: usize = 16 * 1024;

/// Forwards the request through `route` to upstream `index` of the generation's
/// snapshot, and relays the answer.
pub async fn forward<D: Downstream>(
    worker: &Worker,
    generation: &Generation,
    route: &Route,
    index: usize,
    ctx: &mut RequestCtx,
    d: &mut D,
) {
    let (Some(upstream), Some(breaker), Some(series)) = (
        generation.snapshot.upstreams.get(index),
        generation.breakers.get(index),
        generation.metrics.upstream(index),
    ) else {
        let missing = replies::internal("route names a missing upstream", &ctx.id);
        return reply(ctx, d, &missing).await;
    };
    ctx.upstream_index = Some(index);
    let _in_flight = match breaker.admit_request() {
        Ok(admitted) => admitted,
        Err(limit) => return overflow(worker, series, ctx, d, limit).await,
    };
    // Read from the head now: pulling the body (below) consumes it.
    let hash = hash_key(upstream, d);
    let idempotent = is_idempotent(d.method());
    let is_head = d.is_head();
    let upgrade = websocket::upgrade_of(route, d);
    let mut endpoint = choose(worker, generation, index, upstream, hash, &Tried::default());
    let mut head = worker.head_buffer();
    let marks = write_request_head(&mut head, generation, route, endpoint, upgrade, ctx, d);
    let mut host = marks.host;
    let head_len = head.len();
    // The route's timeout (or a gRPC call's shorter deadline) covers the whole
    // exchange, reading a body to buffer included.
    let now = Instant::now();
    let deadline = call_deadline(route, ctx, d, now);
    // With the body whole already, nothing below waits before the first try: it
    // starts at `now` (one clock reading fewer per request).
    let mut first_try_at = d.is_complete().then_some(now);
    // Body bytes that came with the head go out in the same write; with retries, a
    // small body is read whole first, so it can be sent again.
    if let Err(e) = take_body(route, d, &mut head, head_len, deadline).await {
        worker.give_head_buffer(head);
        return body_failed(ctx, d, e).await;
    }
    let mut tries = Tries {
        idempotent,
        body_whole: d.is_complete(),
        deadline,
        retries: 0,
        tried: Tried::default(),
    };
    // HTTP/2 to HTTP/2: the body is read apart from the request, so it can go on
    // flowing while the answer is relayed (gRPC client and bidirectional streams).
    let mut duplex = if upstream.protocol != UpstreamProtocol::Http1 && !d.is_complete() {
        d.detach_body()
    } else {
        None
    };
    let mut stale_replayed = false;
    let mut retrying: Option<InFlight<'_>> = None;
    let exchanged = loop {
        ctx.attempts += 1;
        ctx.upstream = Some(endpoint.text);
        let started = first_try_at.take().unwrap_or_else(Instant::now);
        ctx.timings.upstream_started = Some(started);
        start_try_span(
            worker,
            ctx,
            &mut head,
            marks.traceparent.as_ref(),
            index,
            endpoint,
            started,
        );
        let try_started = monoio::time::Instant::from_std(started);
        let try_deadline = route
            .retry
            .as_ref()
            .and_then(|p| p.per_try_timeout)
            .map_or(tries.deadline, |t| tries.deadline.min(try_started + t));
        let request = OutboundRequest {
            upgrade: upgrade.is_some(),
            head: &mut head,
            is_head,
            idempotent,
            deadline: try_deadline,
            breaker: Some(breaker),
            started: try_started,
        };
        generation.balancer.started(endpoint.id);
        let exchanger = worker.exchanger();
        let result = match duplex.as_mut() {
            Some(body) => exchanger.exchange(upstream, endpoint, request, body).await,
            None => exchanger.exchange(upstream, endpoint, request, d).await,
        };
        generation.balancer.finished(endpoint.id);
        observe_try(generation, series, endpoint, started, &result, ctx);
        // A retry is in flight from its decision to the end of its try.
        drop(retrying.take());
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
        if let Err(e) = &result {
            // An idle connection the upstream had already closed: once more, fresh.
            if e.is_stale_connection() && e.replayable && !stale_replayed {
                stale_replayed = true;
                continue;
            }
        }
        let Some((wait, admitted)) = next_try(
            worker, generation, breaker, series, route, ctx, &result, &tries,
        ) else {
            break result;
        };
        retrying = Some(admitted);
        // The failed answer (if any) is dropped unread: its connection closes.
        drop(result);
        monoio::time::sleep(wait).await;
        tries.retries += 1;
        Counters::bump(&worker.counters.upstream_retries);
        series.record_retry();
        tries.tried.push(endpoint.id);
        let next = choose(worker, generation, index, upstream, hash, &tries.tried);
        if next.authority != endpoint.authority && !(route.preserve_host && ctx.authority.is_some())
        {
            host = retarget(&mut head, host, next.authority.as_bytes());
        }
        endpoint = next;
    };
    if ctx.attempts > 1 {
        let attempts = ctx.attempts.to_string();
        ctx.response_fields
            .push(b"x-portico-attempts", attempts.as_bytes());
    }
    match exchanged {
        Ok(mut response) if upgrade.is_some() && response.status() == 101 => {
            transform_stage::response_head(route, ctx, d, &mut response);
            let idle = route.websocket.unwrap_or_default();
            websocket::tunnel(worker, ctx, d, response, idle).await;
        }
        Ok(mut response) => {
            // The kept try's span lasts until the answer is relayed.
            if let Some(kept) = ctx.trace.as_mut().and_then(|t| t.tries.last_mut()) {
                kept.ended = None;
            }
            response.set_read_timeout(route.timeout);
            transform_stage::response_head(route, ctx, d, &mut response);
            relay(worker, ctx, d, response, duplex.as_mut()).await;
        }
        Err(e) => fail(worker, series, ctx, d, e).await,
    }
    worker.give_head_buffer(head);
}

/// When the exchange must be done: the route's timeout, or a gRPC call's own
/// deadline (`grpc-timeout`) when that comes first (then noted in the context, so
/// running out of it is answered DEADLINE_EXCEEDED).
/// `now` is the caller's reading of the clock.
fn call_deadline<D: Downstream>(
    route: &Route,
    ctx: &mut RequestCtx,
    d: &D,
    now: Instant,
) -> monoio::time::Instant {
    let route_deadline = now + route.timeout;
    let call = ctx
        .grpc
        .then(|| d.get(b"grpc-timeout").and_then(grpc::timeout))
        .flatten();
    let deadline = match call {
        Some(left) if now + left < route_deadline => {
            ctx.grpc_deadline = Some(now + left);
            now + left
        }
        _ => route_deadline,
    };
    monoio::time::Instant::from_std(deadline)
}

/// What the tries of one request share.
struct Tries {
    /// The method is idempotent (RFC 9110 §9.2.2).
    idempotent: bool,
    /// The body was whole in the head buffer before the first try.
    body_whole: bool,
    /// The route's timeout, over all tries and backoffs.
    deadline: monoio::time::Instant,
    /// Retries made so far (the stale-connection replay aside).
    retries: u32,
    /// Endpoints tried, so a retry goes elsewhere when it can.
    tried: Tried,
}

/// With trace context: gives the try its own span ID, which goes upstream as the
/// parent in `traceparent` (rewritten in place in `head`), and, when sampled,
/// opens its client span.
fn start_try_span(
    worker: &Worker,
    ctx: &mut RequestCtx,
    head: &mut [u8],
    traceparent: Option<&Range<usize>>,
    upstream: usize,
    endpoint: &Endpoint,
    started: Instant,
) {
    let (Some(trace), Some(at)) = (ctx.trace.as_mut(), traceparent) else {
        return;
    };
    let span_id = worker.trace_ids.span_id();
    if let Some(value) = head.get_mut(at.clone()) {
        set_parent_id(value, &span_id);
    }
    if trace.sampled() {
        trace.tries.push(TrySpan {
            span_id,
            started,
            ended: None,
            upstream,
            endpoint: endpoint.id,
            attempt: ctx.attempts,
            status: None,
            failure: None,
            part: None,
        });
    }
}

/// Records how a try ended: its endpoint's and upstream's series, and its span.
fn observe_try(
    generation: &Generation,
    series: &UpstreamSeries,
    endpoint: &Endpoint,
    started: Instant,
    result: &retry::TryResult,
    ctx: &mut RequestCtx,
) {
    let outcome = match result {
        Ok(_) => TryOutcome::Response,
        // Refused before anything was sent: counted as an overflow, not a try.
        Err(e) => match e.source.try_outcome() {
            Some(outcome) => outcome,
            None => return,
        },
    };
    // An answered try ended when its head was complete (the exchange read the
    // clock then, and nothing waited since).
    let now = match result {
        Ok(response) => response.first_byte.into_std(),
        Err(_) => Instant::now(),
    };
    series.record_try(now.saturating_duration_since(started));
    if let Some(e) = generation.metrics.endpoint(endpoint.id) {
        e.record(outcome);
    }
    if let Some(span) = ctx.trace.as_mut().and_then(|t| t.tries.last_mut()) {
        span.ended = Some(now);
        match result {
            Ok(response) => span.status = Some(response.status()),
            Err(e) => span.failure = Some(e.source.name()),
        }
    }
}

/// Whether the try that ended as `result` is sent again, and after what wait: the
/// route's policy (`retry.rs`), the deadline, then the upstream's `max_retries` and
/// retry budget — a refusal by those is counted and named in `x-portico-overflow`.
/// The retry is in flight while the returned guard lives.
#[allow(clippy::too_many_arguments)]
fn next_try<'b>(
    worker: &Worker,
    generation: &Generation,
    breaker: &'b Breaker,
    series: &UpstreamSeries,
    route: &Route,
    ctx: &mut RequestCtx,
    result: &retry::TryResult,
    tries: &Tries,
) -> Option<(Duration, InFlight<'b>)> {
    let policy = route.retry.as_ref()?;
    let n = tries.retries + 1;
    if n >= policy.attempts || !retry::may_retry(policy, result, tries.idempotent, tries.body_whole)
    {
        return None;
    }
    let wait = retry::backoff(policy, n, generation.balancer.random());
    if monoio::time::Instant::now() + wait >= tries.deadline {
        return None;
    }
    match breaker.admit_retry() {
        Ok(admitted) => Some((wait, admitted)),
        Err(limit) => {
            Counters::bump(match limit {
                BreakerLimit::RetryBudget => &worker.counters.upstream_retry_budget_exhausted,
                _ => &worker.counters.upstream_overflow_retries,
            });
            series.record_overflow(overflow_limit(limit));
            ctx.response_fields
                .push(b"x-portico-overflow", limit.name().as_bytes());
            None
        }
    }
}

/// Methods whose effect is the same sent once or twice (RFC 9110 §9.2.2).
fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// What `balance = "hash"` hashes on (the configured header, or the client
/// address), as the balancer's fingerprint; 0 for the other policies.
pub(super) fn hash_key<D: Downstream>(upstream: &Upstream, d: &D) -> u64 {
    HashKey::request_hash(&upstream.balance, d.conn().peer.ip(), |name| d.get(name))
}

/// Picks the endpoint for a try (skipping unavailable and `tried` ones when it
/// can); a pick while none is available is counted as panic mode.
pub(super) fn choose<'u>(
    worker: &Worker,
    generation: &Generation,
    index: usize,
    upstream: &'u Upstream,
    hash: u64,
    tried: &Tried,
) -> &'u Endpoint {
    let endpoint = generation
        .balancer
        .pick(index, upstream, hash, tried.as_slice());
    if !generation.balancer.available(endpoint.id) {
        Counters::bump(&worker.counters.upstream_panic);
    }
    endpoint
}

/// Appends the body bytes that came with the head to `head`; with a `retry`
/// policy of more than one try, also reads a body of at most `buffer_body_bytes`
/// whole (a larger one streams during the exchange), before `deadline` (the
/// route's; else 408 as for any slow body). `head` holds HTTP/1.1 wire bytes, so a
/// body of unknown length from an HTTP/2 client goes in as chunks.
async fn take_body<D: Downstream>(
    route: &Route,
    d: &mut D,
    head: &mut Vec<u8>,
    head_len: usize,
    deadline: monoio::time::Instant,
) -> Result<(), BodyError> {
    let framing = d.body_framing();
    d.take_buffered(head)?;
    let Some(policy) = route.retry.as_ref().filter(|p| p.attempts > 1) else {
        return Ok(());
    };
    let cap = policy.buffer_body_bytes;
    if matches!(framing, BodyFraming::Length(n) if n > cap) {
        return Ok(());
    }
    let chunks = framing == BodyFraming::EndStream;
    while !d.is_complete() && ((head.len() - head_len) as u64) < cap {
        let next = monoio::time::timeout_at(deadline, d.next_piece()).await;
        match next.unwrap_or(Err(BodyError::TimedOut))? {
            Some(piece) => {
                let bytes = &piece.buf[piece.range.clone()];
                if chunks && !bytes.is_empty() {
                    write_chunk_head(head, bytes.len());
                    head.extend_from_slice(bytes);
                    head.extend_from_slice(CHUNK_END);
                } else if !chunks {
                    head.extend_from_slice(bytes);
                }
                d.give_back(piece);
            }
            None => break,
        }
    }
    if chunks && d.is_complete() {
        write_last_chunk(head, None);
    }
    Ok(())
}

/// Puts `authority` where the `Host` value is (`host`) in an upstream head;
/// returns the new range of the value.
fn retarget(head: &mut Vec<u8>, host: Range<usize>, authority: &[u8]) -> Range<usize> {
    if head.get(host.clone()).is_none() {
        return host;
    }
    head.splice(host.clone(), authority.iter().copied());
    host.start..host.start + authority.len()
}

/// The request head that goes upstream: hop-by-hop fields dropped (but an
/// `upgrade` the route lets through), `X-Forwarded-*` and `X-Request-Id` set, the
/// verified caller's identity fields added, the token dropped if the provider says
/// so, the route's request header rules applied (`transform_stage.rs`), the path
/// rewritten as the route says, and with trace context the gateway's `traceparent`
/// (its span ID set per try) and the `tracestate` it continues. Returns where the
/// `Host` and `traceparent` values are.
fn write_request_head<D: Downstream>(
    out: &mut Vec<u8>,
    generation: &Generation,
    route: &Route,
    endpoint: &Endpoint,
    upgrade: Option<&[u8]>,
    ctx: &RequestCtx,
    d: &D,
) -> UpstreamHeadMarks {
    let outbound = auth_stage::outbound(&generation.snapshot, route, ctx.caller.as_deref());
    let (path, query) = match &ctx.target {
        Some(t) => (t.path.as_str(), t.query.as_deref()),
        None => ("/", None),
    };
    let path = route::upstream_path(
        route.path_prefix.as_deref(),
        route.strip_prefix,
        route.rewrite_prefix.as_deref(),
        path,
    );
    let query = query.map(|q| outbound.query(q));
    let client_host = ctx.authority.as_deref();
    let host = match (route.preserve_host, client_host) {
        (true, Some(h)) => h,
        _ => endpoint.authority.as_bytes(),
    };
    let traceparent = ctx.trace.as_ref().map(|t| t.traceparent(&t.span_id));
    let none = FieldList::new();
    let rules = transform_stage::request_rules(route);
    let mut rendered = FieldList::new();
    let ruled = match rules {
        Some(r) => r.fields(&transform_stage::values(ctx, d), &mut rendered),
        None => &none,
    };
    let added = [
        outbound.identity_headers().unwrap_or(&none),
        d.conn().client_subject.as_ref().unwrap_or(&none),
        ruled,
    ];
    let request = UpstreamRequest {
        method: d.method(),
        path: &path,
        query: query.as_deref(),
        host,
        client_host,
        client_ip: &d.conn().peer_ip,
        secure: d.conn().secure,
        http10: d.http10(),
        body: d.body_framing(),
        upgrade,
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
        if rules.is_some_and(|r| r.drops(name)) {
            return HeaderEdit::Drop;
        }
        outbound.header_fate(name, value)
    })
}

/// Writes the response head, then streams the body, then ends it (with the
/// upstream's trailers, if any); a body cut short by the upstream, or a client that
/// goes away, closes the client connection (or resets its HTTP/2 stream). When the
/// answer came before the whole request body was sent and that body can be read
/// apart from the request (`duplex`), the rest of it goes on flowing meanwhile.
async fn relay<D: Downstream>(
    worker: &Worker,
    ctx: &mut RequestCtx,
    d: &mut D,
    mut response: UpstreamResponse,
    mut duplex: Option<&mut DuplexBody>,
) {
    ctx.status = response.status();
    ctx.timings.upstream_connected = response.connected.map(Instant::from);
    ctx.timings.upstream_first_byte = Some(Instant::from(response.first_byte));
    let mut upload = response.take_upload().filter(|_| duplex.is_some());
    let Ok(early) = response.early_body() else {
        Counters::bump(&worker.counters.upstream_truncated);
        d.abort();
        return;
    };
    let coalesce = early.len() <= COALESCE_BODY_BYTES;
    let prefix = if coalesce {
        early.clone()
    } else {
        early.start..early.start
    };
    // An HTTP/2 answer's DATA that came with its head: the same write, when small
    // (an answer whole in one upstream read is one write to the client).
    let ready = response.ready_piece();
    let ready_with_head = ready
        .as_ref()
        .is_some_and(|p| p.range.len() <= COALESCE_BODY_BYTES);
    let sent = {
        let fields = response.fields();
        let head = response.parts(&fields);
        let with_head = match &ready {
            Some(piece) if ready_with_head => &piece.buf[piece.range.clone()],
            _ => &response.head_bytes()[prefix],
        };
        d.send_response_head(&head, with_head, &ctx.response_fields, ctx.id.as_str())
            .await
    };
    if sent.is_err() {
        if let Some(piece) = ready {
            response.give_back(piece);
        }
        d.abort();
        return;
    }
    // What did not go with the head: a large early body, a large first DATA.
    let rest = match ready {
        Some(piece) if ready_with_head => {
            response.give_back(piece);
            None
        }
        Some(piece) => Some(piece),
        None => (!coalesce).then(|| response.piece(early)),
    };
    if let Some(piece) = rest {
        let (sent, piece) = d.send_piece(piece).await;
        response.give_back(piece);
        if sent.is_err() {
            d.abort();
            return;
        }
    }
    loop {
        let next = match (upload.as_mut(), duplex.as_deref_mut()) {
            (Some(up), Some(body)) => {
                let mut streamed = false;
                monoio::select! {
                    piece = response.next_piece() => piece,
                    uploaded = up.pump(body, &mut streamed) => {
                        // Sent whole, or the upstream stopped taking it (it may
                        // still answer in full): the answer goes on alone.
                        if let Err(e) = uploaded {
                            tracing::debug!(error = %e.message, "request body stopped");
                        }
                        upload = None;
                        continue;
                    }
                }
            }
            _ => response.next_piece().await,
        };
        match next {
            Ok(Some(piece)) => {
                let (sent, piece) = d.send_piece(piece).await;
                response.give_back(piece);
                if sent.is_err() {
                    d.abort();
                    return;
                }
            }
            Ok(None) => break,
            Err(_) => {
                Counters::bump(&worker.counters.upstream_truncated);
                d.abort();
                return;
            }
        }
    }
    let trailers = match response.trailers().await {
        Ok(t) => t,
        Err(_) => {
            Counters::bump(&worker.counters.upstream_truncated);
            d.abort();
            return;
        }
    };
    let ended = d
        .finish_response(trailers.as_ref().map(|t| t as &dyn HeaderLookup))
        .await;
    if ended.is_err() {
        d.abort();
        return;
    }
    response.finish(&worker.pools);
}

/// Answers a failed exchange (the client's own failures included); a client that
/// went away gets nothing, and its connection closes.
async fn fail<D: Downstream>(
    worker: &Worker,
    series: &UpstreamSeries,
    ctx: &mut RequestCtx,
    d: &mut D,
    e: ExchangeError,
) {
    if let FailureSource::Overflow(limit) = e.source {
        ctx.failure = Some(e.source.clone());
        return overflow(worker, series, ctx, d, limit).await;
    }
    let status = e.status();
    ctx.failure = Some(e.source.clone());
    if status == 504 {
        Counters::bump(&worker.counters.upstream_timeouts);
        // The gRPC call's own deadline ran out, not the route's.
        ctx.deadline_exceeded = ctx.grpc_deadline.is_some_and(|t| Instant::now() >= t);
    }
    if let FailureSource::Client(crate::downstream::BodyError::Closed) = e.source {
        ctx.status = status;
        d.abort();
        return;
    }
    reply(
        ctx,
        d,
        &replies::upstream_failure(status, &e.message, &ctx.id),
    )
    .await;
}

/// A circuit breaker refused the request: 503 at once, naming the limit in
/// `x-portico-overflow`, counted.
async fn overflow<D: Downstream>(
    worker: &Worker,
    series: &UpstreamSeries,
    ctx: &mut RequestCtx,
    d: &mut D,
    limit: BreakerLimit,
) {
    series.record_overflow(overflow_limit(limit));
    Counters::bump(limit.counter(&worker.counters));
    reply(ctx, d, &replies::overflow(limit.name(), &ctx.id)).await;
}

/// The `limit` label of a breaker's refusal.
fn overflow_limit(limit: BreakerLimit) -> OverflowLimit {
    match limit {
        BreakerLimit::MaxConnections => OverflowLimit::MaxConnections,
        BreakerLimit::MaxPending => OverflowLimit::MaxPending,
        BreakerLimit::MaxRequests => OverflowLimit::MaxRequests,
        BreakerLimit::MaxRetries => OverflowLimit::MaxRetries,
        BreakerLimit::RetryBudget => OverflowLimit::RetryBudget,
    }
}

/// The request body could not be read before forwarding: the client's error (408,
/// 400, 413; the connection closes), or nothing when the client went away.
async fn body_failed<D: Downstream>(ctx: &mut RequestCtx, d: &mut D, e: BodyError) {
    if e == BodyError::Closed {
        ctx.status = e.status();
        d.abort();
        return;
    }
    let failed = replies::upstream_failure(e.status(), e.message(), &ctx.id);
    reply(ctx, d, &failed.closing()).await;
}
