//! The forward stage: choose an endpoint, build the request that goes upstream,
//! exchange it (sending it once more on a fresh connection when a pooled one turns
//! out closed and nothing was acted on), then relay the answer, streaming its body.
//! Failures become the gateway's own replies (502, 504, or the client's 408/400/413).

use std::time::Instant;

use crate::config::{Endpoint, Route, Upstream};
use crate::downstream::Downstream;
use crate::http::{write_upstream_request, FieldList, UpstreamRequest};
use crate::observe::Counters;
use crate::route;
use crate::upstream::{ExchangeError, FailureSource, HashKey, OutboundRequest, UpstreamResponse};

use super::auth_stage;
use super::context::RequestCtx;
use super::exit::reply;
use super::generation::Generation;
use super::replies;
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
    let Some(upstream) = generation.snapshot.upstreams.get(index) else {
        reply(
            ctx,
            d,
            &replies::internal("route names a missing upstream", &ctx.id),
        )
        .await;
        return;
    };
    let endpoint = choose(generation, index, upstream, d);
    ctx.upstream = Some(endpoint.addr);
    let mut head = worker.head_buffer();
    write_request_head(&mut head, generation, route, endpoint, ctx, d);
    // Read from the head now: pulling the body (below) consumes it.
    let idempotent = is_idempotent(d.method());
    // Body bytes that came with the head go out in the same write.
    if let Err(e) = d.take_buffered(&mut head) {
        let failed = replies::upstream_failure(e.status(), e.message(), &ctx.id);
        reply(ctx, d, &failed.closing()).await;
        worker.give_head_buffer(head);
        return;
    }
    generation.balancer.started(endpoint.id);
    let deadline = monoio::time::Instant::now() + route.timeout;
    let exchanged = loop {
        ctx.attempts += 1;
        let request = OutboundRequest {
            head: &mut head,
            is_head: d.is_head(),
            idempotent,
            deadline,
        };
        match worker
            .exchanger()
            .exchange(upstream, endpoint, request, d)
            .await
        {
            // An idle connection the upstream had already closed: once more, fresh.
            Err(e) if e.is_stale_connection() && e.replayable && ctx.attempts == 1 => continue,
            result => break result,
        }
    };
    match exchanged {
        Ok(mut response) => {
            response.set_read_timeout(route.timeout);
            relay(worker, ctx, d, response).await;
        }
        Err(e) => fail(worker, ctx, d, e).await,
    }
    generation.balancer.finished(endpoint.id);
    worker.give_head_buffer(head);
}

/// Methods whose effect is the same sent once or twice (RFC 9110 §9.2.2).
fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// Picks the endpoint (`balance = "hash"` hashes the configured header, or the
/// client address).
fn choose<'u, D: Downstream>(
    generation: &Generation,
    index: usize,
    upstream: &'u Upstream,
    d: &D,
) -> &'u Endpoint {
    let key = HashKey::for_request(&upstream.balance, d.conn().peer.ip(), |name| d.get(name));
    generation.balancer.pick(index, upstream, key)
}

/// The request head that goes upstream: hop-by-hop fields dropped, `X-Forwarded-*`
/// and `X-Request-Id` set, the verified caller's identity fields added, the token
/// dropped if the provider says so, the path rewritten as the route says.
fn write_request_head<D: Downstream>(
    out: &mut Vec<u8>,
    generation: &Generation,
    route: &Route,
    endpoint: &Endpoint,
    ctx: &RequestCtx,
    d: &D,
) {
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
    let none = FieldList::new();
    let added = [
        outbound.identity_headers().unwrap_or(&none),
        d.conn().client_subject.as_ref().unwrap_or(&none),
    ];
    let request = UpstreamRequest {
        method: d.method(),
        path: &path,
        query: query.as_deref(),
        host,
        client_host,
        client_ip: d.conn().peer.ip(),
        secure: d.conn().secure,
        http10: d.http10(),
        body: d.body_framing(),
        added: &added,
        request_id: ctx.id.as_str(),
    };
    write_upstream_request(out, d, &request, |name, value| {
        outbound.header_fate(name, value)
    });
}

/// Writes the response head, then streams the body; a body cut short by the
/// upstream, or a client that goes away, closes the client connection.
async fn relay<D: Downstream>(
    worker: &Worker,
    ctx: &mut RequestCtx,
    d: &mut D,
    mut response: UpstreamResponse,
) {
    ctx.status = response.head().status;
    ctx.timings.upstream_connected = response.connected.map(Instant::from);
    ctx.timings.upstream_first_byte = Some(Instant::from(response.first_byte));
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
    let sent = d
        .send_response_head(
            response.head(),
            response.head_bytes(),
            &response.head_bytes()[prefix],
            &ctx.response_fields,
            ctx.id.as_str(),
        )
        .await;
    if sent.is_err() {
        d.abort();
        return;
    }
    if !coalesce {
        let piece = response.piece(early);
        let (sent, piece) = d.send_piece(piece).await;
        response.give_back(piece);
        if sent.is_err() {
            d.abort();
            return;
        }
    }
    loop {
        match response.next_piece().await {
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
    ctx.timings.last_byte = Some(Instant::now());
    response.finish(&worker.pools);
}

/// Answers a failed exchange (the client's own failures included); a client that
/// went away gets nothing, and its connection closes.
async fn fail<D: Downstream>(worker: &Worker, ctx: &mut RequestCtx, d: &mut D, e: ExchangeError) {
    let status = e.status();
    ctx.failure = Some(e.source.clone());
    if status == 504 {
        Counters::bump(&worker.counters.upstream_timeouts);
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
