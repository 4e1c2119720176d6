//! Forwarding one request to an upstream and relaying the answer, streaming bodies
//! in both directions without buffering them whole.
//!
//! 1. choose an endpoint and build the upstream request head (hop-by-hop headers
//!    dropped, `X-Forwarded-*` and `X-Request-Id` set, identity headers of the
//!    verified caller added, the token dropped if the provider says so);
//! 2. take an idle pooled connection or connect (connect timeout);
//! 3. send the head with whatever body bytes already arrived, then stream the rest;
//! 4. wait for the response head (the route's timeout); a pooled connection that
//!    turns out closed is retried once on a fresh one when the request can be replayed;
//! 5. relay the response head and body; a body cut short closes the client connection;
//! 6. return the connection to the pool when the exchange left it reusable.

use std::borrow::Cow;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::Instant;

use crate::auth::Outbound;
use crate::config::{BalancePolicy, Endpoint, HashOn, Route, Snapshot, Upstream};
use crate::http::{
    parse_response, write_client_response, write_upstream_request, BodyFraming, BodyProgress,
    BodyStep, ResponseHead, UpstreamRequest,
};
use crate::observe::Counters;
use crate::proxy::{send_error, Outcome, RequestId};
use crate::route::{self, NormalizedTarget};
use crate::server::{ClientConn, Io, WorkerCtx};
use crate::upstream::UpstreamStream;

use super::balance::HashKey;
use super::pool::PooledConn;

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Response body bytes that arrived with the head are sent in the same write when
/// there are at most this many; more are written straight from the read buffer.
const COALESCE_BODY_BYTES: usize = 16 * 1024;
const UPSTREAM_READ_BUFFER: usize = 16 * 1024;

/// Forwards the request in `conn` through `route` to upstream `index`.
#[allow(clippy::too_many_arguments)]
pub async fn forward<S: Io>(
    ctx: &WorkerCtx,
    snap: &Snapshot,
    route: &Route,
    index: usize,
    conn: &mut ClientConn<S>,
    target: &NormalizedTarget,
    outbound: &Outbound<'_>,
    request_id: RequestId,
) -> Outcome {
    let Some(upstream) = snap.upstreams.get(index) else {
        return send_error(
            conn,
            500,
            "route names a missing upstream",
            request_id,
            false,
            &[],
        )
        .await;
    };
    let endpoint = pick_endpoint(ctx, index, upstream, conn);
    build_request_head(conn, route, endpoint, target, outbound, request_id);
    let client_keep_alive = conn.head.keep_alive;
    conn.consume_head();

    // Body bytes that came with the head go out in the same write.
    let mut body = BodyProgress::request(conn.head.body);
    if let Err(e) = take_buffered_body(&mut body, conn, snap.server.limits.max_body_bytes) {
        return send_error(conn, e.0, e.1, request_id, false, &[]).await;
    }
    let replayable = body.is_complete();

    ctx.balancer.started(endpoint.id);
    let result = exchange(
        ctx,
        snap,
        route,
        upstream,
        endpoint,
        conn,
        &mut body,
        replayable,
        request_id,
        client_keep_alive,
    )
    .await;
    ctx.balancer.finished(endpoint.id);
    match result {
        Ok(outcome) => outcome,
        Err(Failure::Reply(status, message)) => {
            if status == 504 {
                Counters::bump(&ctx.counters.upstream_timeouts);
            }
            // The client may still be sending a body we did not read: close after.
            let keep = body.is_complete() && client_keep_alive && !ctx.drain.is_raised();
            let mut out = send_error(conn, status, &message, request_id, keep, &[]).await;
            out.upstream = Some(endpoint.addr);
            out
        }
        Err(Failure::Abort(status)) => Outcome {
            status,
            bytes_sent: 0,
            keep_alive: false,
            upstream: Some(endpoint.addr),
            request_id,
        },
    }
}

/// Why an exchange did not complete normally.
enum Failure {
    /// Nothing has been sent to the client yet: answer with this status.
    Reply(u16, Cow<'static, str>),
    /// The client connection must be closed without a (further) response, e.g. the
    /// client went away or the upstream cut a response short. The status is logged.
    Abort(u16),
}

#[allow(clippy::too_many_arguments)]
async fn exchange<S: Io>(
    ctx: &WorkerCtx,
    snap: &Snapshot,
    route: &Route,
    upstream: &Upstream,
    endpoint: &Endpoint,
    conn: &mut ClientConn<S>,
    body: &mut BodyProgress,
    replayable: bool,
    request_id: RequestId,
    client_keep_alive: bool,
) -> Result<Outcome, Failure> {
    let deadline = Instant::now() + route.timeout;
    let mut retried = false;
    let mut response = ResponseHead::default();
    let mut up = loop {
        let (mut up, reused) = acquire(ctx, upstream, endpoint, deadline).await?;
        up.requests += 1;
        let sent = send_request(snap, conn, &mut up, body).await;
        let got_head = match sent {
            Ok(()) => read_response_head(&mut up, conn.head.is_head, &mut response, deadline).await,
            Err(f) => Err(f),
        };
        match got_head {
            Ok(()) => break up,
            // An idle connection the upstream had already closed: try a fresh one.
            Err(HeadFailure::Closed) if reused && replayable && !retried => {
                retried = true;
                continue;
            }
            Err(HeadFailure::Closed) => {
                return Err(Failure::Reply(
                    502,
                    "upstream closed the connection before responding".into(),
                ))
            }
            Err(HeadFailure::Timeout) => {
                return Err(Failure::Reply(504, "upstream timed out".into()))
            }
            Err(HeadFailure::Bad(m)) => return Err(Failure::Reply(502, m.into())),
            Err(HeadFailure::Client(f)) => return Err(f),
        }
    };
    let keep_client = client_keep_alive
        && !ctx.drain.is_raised()
        && response.body != BodyFraming::UntilClose
        && !(response.body == BodyFraming::Chunked && conn.head.minor_version == 0);
    let relayed = relay_response(
        conn,
        &mut up,
        &response,
        route.timeout,
        request_id,
        keep_client,
    )
    .await;
    match relayed {
        Ok(r) => {
            if r.upstream_reusable
                && response.keep_alive
                && up.requests < upstream.max_requests_per_connection
                && !ctx.drain.is_raised()
            {
                ctx.pools.put(
                    endpoint.id,
                    up,
                    upstream.max_idle_per_endpoint,
                    upstream.pool_idle_timeout,
                );
            }
            Ok(Outcome {
                status: response.status,
                bytes_sent: r.bytes_sent,
                keep_alive: keep_client,
                upstream: Some(endpoint.addr),
                request_id,
            })
        }
        Err(RelayFailure::BadFraming) => Err(Failure::Reply(
            502,
            "malformed chunked framing from upstream".into(),
        )),
        Err(RelayFailure::Truncated) => {
            Counters::bump(&ctx.counters.upstream_truncated);
            Err(Failure::Abort(response.status))
        }
        Err(RelayFailure::Client) => Err(Failure::Abort(response.status)),
    }
}

enum HeadFailure {
    Closed,
    Timeout,
    Bad(&'static str),
    /// Sending the request body failed on the client's side.
    Client(Failure),
}

async fn acquire(
    ctx: &WorkerCtx,
    upstream: &Upstream,
    endpoint: &Endpoint,
    deadline: Instant,
) -> Result<(PooledConn, bool), Failure> {
    if let Some(c) = ctx.pools.take(endpoint.id) {
        Counters::bump(&ctx.counters.upstream_reused);
        return Ok((c, true));
    }
    let started = Instant::now();
    let timeout = upstream
        .connect_timeout
        .min(deadline.saturating_duration_since(started));
    let stream = match monoio::time::timeout(timeout, TcpStream::connect_addr(endpoint.addr)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            Counters::bump(&ctx.counters.upstream_connect_failures);
            tracing::debug!(endpoint = %endpoint.addr, error = %e, "upstream connect failed");
            return Err(Failure::Reply(502, "upstream connect failed".into()));
        }
        Err(_) => {
            Counters::bump(&ctx.counters.upstream_connect_failures);
            return Err(Failure::Reply(504, "upstream connect timed out".into()));
        }
    };
    let _ = stream.set_nodelay(true);
    Counters::bump(&ctx.counters.upstream_connects);
    let Some(tls) = &upstream.tls else {
        return Ok((PooledConn::new(UpstreamStream::Plain(stream)), false));
    };
    // Re-encryption: the handshake shares the connect timeout.
    let Some(name) = tls.server_name(&endpoint.authority) else {
        return Err(Failure::Reply(
            502,
            "upstream TLS: the endpoint has no usable server name; set tls.sni".into(),
        ));
    };
    let left = timeout.saturating_sub(started.elapsed());
    match monoio::time::timeout(left, crate::tls::connect(stream, tls, name)).await {
        Ok(Ok(s)) => Ok((PooledConn::new(UpstreamStream::Tls(Box::new(s))), false)),
        Ok(Err(e)) => {
            Counters::bump(&ctx.counters.upstream_tls_failures);
            tracing::warn!(endpoint = %endpoint.addr, error = %e, "upstream TLS handshake failed");
            Err(Failure::Reply(
                502,
                format!("upstream TLS handshake failed: {e}").into(),
            ))
        }
        Err(_) => {
            Counters::bump(&ctx.counters.upstream_tls_failures);
            Err(Failure::Reply(
                504,
                "upstream TLS handshake timed out".into(),
            ))
        }
    }
}

/// Sends the head (in `conn.wbuf`, with any buffered body bytes) and streams the
/// rest of the body. `wbuf` is left intact so a retry can send it again.
async fn send_request<S: Io>(
    snap: &Snapshot,
    conn: &mut ClientConn<S>,
    up: &mut PooledConn,
    body: &mut BodyProgress,
) -> Result<(), HeadFailure> {
    let buf = std::mem::take(&mut conn.wbuf);
    let (res, buf) = up.stream.write_all(buf).await;
    conn.wbuf = buf;
    if res.is_err() {
        return Err(HeadFailure::Closed);
    }
    if body.is_complete() {
        return Ok(());
    }
    if conn.head.expect_continue && conn.unread().is_empty() {
        conn.wbuf.clear();
        conn.wbuf
            .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        if conn.write_wbuf().await.is_err() {
            return Err(HeadFailure::Client(Failure::Abort(499)));
        }
    }
    let limits = &snap.server.limits;
    while !body.is_complete() {
        if conn.unread().is_empty() {
            match monoio::time::timeout(limits.body_read_timeout, conn.fill_for_body()).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Err(HeadFailure::Client(Failure::Abort(499))),
                Err(_) => {
                    return Err(HeadFailure::Client(Failure::Reply(
                        408,
                        "request body not received in time".into(),
                    )))
                }
            }
        }
        let start = conn.pos;
        let step = match advance_request_body(body, conn.unread(), limits.max_body_bytes) {
            Ok(step) => step,
            Err((status, msg)) => {
                return Err(HeadFailure::Client(Failure::Reply(status, msg.into())))
            }
        };
        let sent = step.forward == 0
            || conn
                .write_rbuf_to(&mut up.stream, start, start + step.forward)
                .await
                .is_ok();
        if !sent || (!step.tail.is_empty() && up.stream.write_all(step.tail).await.0.is_err()) {
            return Err(HeadFailure::Bad(
                "upstream closed the connection while receiving the body",
            ));
        }
        conn.consume(step.consumed);
    }
    Ok(())
}

/// Reads from the upstream until a final (non-1xx) response head is in `up.buf`.
async fn read_response_head(
    up: &mut PooledConn,
    request_was_head: bool,
    head: &mut ResponseHead,
    deadline: Instant,
) -> Result<(), HeadFailure> {
    up.buf.clear();
    let mut start = 0;
    loop {
        if up.buf.len() > start {
            match parse_response(&up.buf[start..], request_was_head, head) {
                Ok(Some(())) if head.status >= 200 || head.status == 101 => {
                    // Leave the head at the start of the buffer.
                    if start > 0 {
                        up.buf.drain(..start);
                    }
                    return if head.status == 101 {
                        Err(HeadFailure::Bad(
                            "upstream switched protocols, which is not supported",
                        ))
                    } else {
                        Ok(())
                    };
                }
                Ok(Some(())) => {
                    // 1xx informational: skip it and read on.
                    start += head.head_len;
                    continue;
                }
                Ok(None) => {}
                Err(m) => return Err(HeadFailure::Bad(m)),
            }
        }
        if up.buf.len() - start >= MAX_RESPONSE_HEAD {
            return Err(HeadFailure::Bad("upstream response head too large"));
        }
        if up.buf.capacity() - up.buf.len() < 1024 {
            up.buf.reserve(UPSTREAM_READ_BUFFER);
        }
        let buf = std::mem::take(&mut up.buf);
        let len = buf.len();
        let read = monoio::time::timeout_at(deadline, up.stream.read(buf.slice_mut(len..))).await;
        match read {
            Ok((Ok(n), slice)) => {
                up.buf = slice.into_inner();
                if n == 0 {
                    return Err(if up.buf.is_empty() {
                        HeadFailure::Closed
                    } else {
                        HeadFailure::Bad("upstream closed the connection mid-response")
                    });
                }
            }
            Ok((Err(_), slice)) => {
                up.buf = slice.into_inner();
                return Err(if up.buf.is_empty() {
                    HeadFailure::Closed
                } else {
                    HeadFailure::Bad("upstream reset the connection")
                });
            }
            Err(_) => return Err(HeadFailure::Timeout),
        }
    }
}

struct Relayed {
    bytes_sent: u64,
    upstream_reusable: bool,
}

enum RelayFailure {
    /// The upstream's body framing is broken in the bytes that came with the
    /// head: nothing has been sent to the client yet.
    BadFraming,
    /// The upstream ended the body early or sent broken framing.
    Truncated,
    /// The client went away.
    Client,
}

/// Writes the client response head and streams the body.
async fn relay_response<S: Io>(
    conn: &mut ClientConn<S>,
    up: &mut PooledConn,
    resp: &ResponseHead,
    read_timeout: Duration,
    request_id: RequestId,
    keep_client: bool,
) -> Result<Relayed, RelayFailure> {
    write_client_response(
        &mut conn.wbuf,
        resp,
        &up.buf,
        &conn.response_headers,
        request_id.as_str(),
        keep_client,
        conn.head.minor_version,
    );
    let mut framing = BodyProgress::new(resp.body);
    // Body bytes that arrived with the head.
    let after_head = resp.head_len;
    let avail = up.buf.len() - after_head;
    // Responses keep their trailers: every consumed byte is forwarded. Broken
    // framing here is found before anything was sent to the client: a 502.
    let take = framing
        .advance(&up.buf[after_head..])
        .map_err(|_| RelayFailure::BadFraming)?
        .consumed;
    let mut extra = avail > take;
    let mut sent = 0u64;
    if take <= COALESCE_BODY_BYTES {
        conn.wbuf
            .extend_from_slice(&up.buf[after_head..after_head + take]);
        sent += conn.wbuf.len() as u64;
        conn.write_wbuf().await.map_err(|_| RelayFailure::Client)?;
    } else {
        sent += conn.wbuf.len() as u64;
        conn.write_wbuf().await.map_err(|_| RelayFailure::Client)?;
        let buf = std::mem::take(&mut up.buf);
        let (res, slice) = conn
            .io
            .write_all(buf.slice(after_head..after_head + take))
            .await;
        up.buf = slice.into_inner();
        res.map_err(|_| RelayFailure::Client)?;
        sent += take as u64;
    }
    // The rest of the body, read by read.
    while !framing.is_complete() {
        up.buf.clear();
        if up.buf.capacity() < UPSTREAM_READ_BUFFER {
            up.buf.reserve(UPSTREAM_READ_BUFFER);
        }
        let buf = std::mem::take(&mut up.buf);
        let read = monoio::time::timeout(read_timeout, up.stream.read(buf)).await;
        let n = match read {
            Ok((Ok(n), buf)) => {
                up.buf = buf;
                n
            }
            Ok((Err(_), buf)) => {
                up.buf = buf;
                0
            }
            Err(_) => return Err(RelayFailure::Truncated),
        };
        if n == 0 {
            if framing.ends_at_close() {
                framing.close();
                break;
            }
            return Err(RelayFailure::Truncated);
        }
        let take = framing
            .advance(&up.buf)
            .map_err(|_| RelayFailure::Truncated)?
            .consumed;
        extra |= n > take;
        let buf = std::mem::take(&mut up.buf);
        let (res, slice) = conn.io.write_all(buf.slice(..take)).await;
        up.buf = slice.into_inner();
        res.map_err(|_| RelayFailure::Client)?;
        sent += take as u64;
    }
    Ok(Relayed {
        bytes_sent: sent,
        upstream_reusable: !extra && !framing.ends_at_close(),
    })
}

/// The request head that goes upstream, built in `conn.wbuf`.
fn build_request_head<S: Io>(
    conn: &mut ClientConn<S>,
    route: &Route,
    endpoint: &Endpoint,
    target: &NormalizedTarget,
    outbound: &Outbound<'_>,
    request_id: RequestId,
) {
    let head = &conn.head;
    let src = conn
        .rbuf
        .get(conn.pos..conn.pos + head.head_len)
        .unwrap_or(&[]);
    let path = route::upstream_path(
        route.path_prefix.as_deref(),
        route.strip_prefix,
        route.rewrite_prefix.as_deref(),
        &target.path,
    );
    let query = target.query.as_deref().map(|q| outbound.query(q));
    let host = match (route.preserve_host, head.authority(src)) {
        (true, Some(h)) => h,
        _ => endpoint.authority.as_bytes(),
    };
    let req = UpstreamRequest {
        path: &path,
        query: query.as_deref(),
        host,
        client_ip: conn.peer.ip(),
        secure: conn.meta.secure,
        added: [
            outbound.identity_headers(),
            conn.meta.client_subject.as_deref().unwrap_or(b""),
        ],
        request_id: request_id.as_str(),
    };
    write_upstream_request(&mut conn.wbuf, head, src, &req, |name, value| {
        outbound.header_fate(name, value)
    });
}

fn pick_endpoint<'u, S: Io>(
    ctx: &WorkerCtx,
    index: usize,
    upstream: &'u Upstream,
    conn: &ClientConn<S>,
) -> &'u Endpoint {
    let ip = conn.peer.ip();
    let key = match &upstream.balance {
        BalancePolicy::Hash(HashOn::Header(name)) => conn
            .head
            .header(conn.head_bytes(), name.as_bytes())
            .map_or(HashKey::Ip(ip), HashKey::Bytes),
        _ => HashKey::Ip(ip),
    };
    ctx.balancer.pick(index, upstream, key)
}

/// Moves the request body bytes already buffered behind the head into `conn.wbuf`.
fn take_buffered_body<S: Io>(
    body: &mut BodyProgress,
    conn: &mut ClientConn<S>,
    max_body: u64,
) -> Result<(), (u16, &'static str)> {
    if body.is_complete() || conn.unread().is_empty() {
        return Ok(());
    }
    let step = advance_request_body(body, conn.unread(), max_body)?;
    let start = conn.pos;
    conn.wbuf
        .extend_from_slice(&conn.rbuf[start..start + step.forward]);
    conn.wbuf.extend_from_slice(step.tail);
    conn.consume(step.consumed);
    Ok(())
}

/// `BodyProgress::advance` with the request's rules: broken chunk framing is a 400,
/// a body growing past `max_body_bytes` a 413.
fn advance_request_body(
    body: &mut BodyProgress,
    input: &[u8],
    max_body: u64,
) -> Result<BodyStep, (u16, &'static str)> {
    let step = body.advance(input).map_err(|e| (400, e.reason()))?;
    if body.payload_bytes() > max_body {
        return Err((413, "request body too large"));
    }
    Ok(step)
}
