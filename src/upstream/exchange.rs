//! The exchange: one request with one endpoint, knowing nothing of the client.
//!
//! Endpoint + request head + body source → response head + body stream
//! ([`UpstreamResponse`]), or an [`ExchangeError`] that says where it failed and
//! whether the request may be sent again. Choosing the endpoint happens before (the
//! balancer); replaying, rendering the failure and relaying the answer happen after
//! (the caller), so retries, composition parts, health probes and the forwarder all
//! use the same exchange.
//!
//! 1. take an idle pooled connection to the endpoint, or connect (within the
//!    upstream's `max_connections`, waiting for one within `max_pending`);
//! 2. send the head (with whatever body bytes were already known), then stream the
//!    rest of the body from the source, each write within the upstream's
//!    `send_timeout_ms` without progress;
//! 3. read until a final response head (1xx skipped); the body bytes that came
//!    with it must be well framed (else a protocol failure, 502).
//!
//! The deadline covers the three steps together: connecting, sending (waiting for
//! the client's body bytes included) and waiting for the answer.

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::time::Instant;

use crate::config::{Endpoint, Upstream, UpstreamProtocol};
use crate::deadline::{timed_out, write_all_within, WriteDeadline};
use crate::downstream::{BodyError, BodySource};
use crate::http::{
    parse_response, write_chunk_head, write_last_chunk, BodyFraming, ResponseHead, CHUNK_END,
};
use crate::observe::Counters;

use super::breaker::Breaker;
use super::connect::connect;
use super::failure::{ExchangeError, FailureSource};
use super::h2::{self, H2Pools};
use super::outbound::OutboundRequest;
use super::pool::{PooledConn, UpstreamPools};
use super::response::UpstreamResponse;

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const UPSTREAM_READ_BUFFER: usize = 16 * 1024;

/// What an exchange uses of its worker: the keep-alive pools (HTTP/1.1), the
/// multiplexed connections (HTTP/2) and the counters.
#[derive(Clone, Copy)]
pub struct Exchanger<'w> {
    pub pools: &'w UpstreamPools,
    pub h2: &'w H2Pools,
    pub counters: &'w Counters,
}

impl Exchanger<'_> {
    /// Exchanges `request` (its body pulled from `body`) with `endpoint` of
    /// `upstream`, in the upstream's protocol.
    pub async fn exchange<B: BodySource>(
        &self,
        upstream: &Upstream,
        endpoint: &Endpoint,
        request: OutboundRequest<'_>,
        body: &mut B,
    ) -> Result<UpstreamResponse, ExchangeError> {
        if upstream.protocol != UpstreamProtocol::Http1 {
            return h2::exchange(self.h2, self.counters, upstream, endpoint, request, body).await;
        }
        let taken = self
            .pools
            .take(&endpoint.key, request.started.into_std(), self.counters);
        let (mut up, reused) = match taken {
            Some(c) => {
                Counters::bump(&self.counters.upstream_reused);
                (c, true)
            }
            None => match request.breaker {
                None => (
                    connect(upstream, endpoint, request.deadline, self.counters).await?,
                    false,
                ),
                Some(breaker) => {
                    self.open_within(breaker, upstream, endpoint, request.deadline)
                        .await?
                }
            },
        };
        // When a new connection was ready (a pooled one's is of no interest).
        let connected = (!reused).then(Instant::now);
        up.requests += 1;
        let mut streamed = false;
        let limit = WriteDeadline::until(upstream.send_timeout, request.deadline, request.started);
        let result = match send(&mut up, request.head, body, limit, &mut streamed).await {
            Ok(()) => read_response_head(&mut up, &request, request.deadline)
                .await
                .map(|head| (head, Instant::now())),
            Err(e) => Err(e),
        };
        match result {
            Ok((head, first_byte)) => {
                UpstreamResponse::new(up, head, upstream, endpoint, connected, first_byte)
            }
            Err(mut e) => {
                e.reused = reused;
                // The endpoint closed before answering; it may or may not have acted
                // on the request, so only an idempotent one is sent again, and only
                // when its body is whole in `head` (none streamed from the client).
                e.replayable = e.source == FailureSource::Closed
                    && request.idempotent
                    && !streamed
                    && body.is_complete();
                Err(e)
            }
        }
    }
}

impl Exchanger<'_> {
    /// A connection to `endpoint` within the upstream's `max_connections`: a new
    /// one while there is room; else an idle one to another endpoint of the upstream
    /// is closed to make room; else the request waits (within `max_pending`) for a
    /// connection to close or go idle, until `deadline`. Returns it and whether it
    /// came from the pool.
    async fn open_within(
        &self,
        breaker: &Breaker,
        upstream: &Upstream,
        endpoint: &Endpoint,
        deadline: Instant,
    ) -> Result<(PooledConn, bool), ExchangeError> {
        let overflow = |limit: super::breaker::BreakerLimit| {
            ExchangeError::new(
                FailureSource::Overflow(limit),
                format!("upstream overflow: {}", limit.name()),
            )
        };
        loop {
            if let Some(slot) = breaker.connection_slot() {
                let mut conn = connect(upstream, endpoint, deadline, self.counters).await?;
                conn.slot = Some(slot);
                return Ok((conn, false));
            }
            let freed = upstream
                .endpoints
                .iter()
                .any(|e| e.key != endpoint.key && self.pools.evict_one(&e.key));
            if freed {
                continue;
            }
            breaker
                .wait_for_connection(deadline)
                .await
                .map_err(overflow)?;
            let now = std::time::Instant::now();
            if let Some(conn) = self.pools.take(&endpoint.key, now, self.counters) {
                Counters::bump(&self.counters.upstream_reused);
                return Ok((conn, true));
            }
        }
    }
}

/// Sends the head, then the rest of the body piece by piece: as it comes, or framed
/// as chunks when it is payload of unknown length from an HTTP/2 client (whose
/// head announced it chunked; a body already whole in `head` is framed there).
/// Every write is within `limit` and every wait for the client's body bytes before
/// `limit.until`. That wait running out is the client's failure (408,
/// `BodyError::TimedOut`), not the endpoint's. `streamed` is set once body bytes
/// beyond `head` were taken from the source (the request can no longer be sent
/// again). `head` is left intact, unless a write of it timed out (the connection is
/// not used again either way).
async fn send<B: BodySource>(
    up: &mut PooledConn,
    head: &mut Vec<u8>,
    body: &mut B,
    limit: WriteDeadline,
    streamed: &mut bool,
) -> Result<(), ExchangeError> {
    let frame_chunks = body.body_framing() == BodyFraming::EndStream && !body.is_complete();
    let mut framed = Vec::new();
    let len = head.len();
    match write_all_within(&mut up.stream, head, 0..len, limit).await {
        Ok(()) => {}
        Err(e) if timed_out(&e) => return Err(send_timed_out(limit)),
        Err(_) => return Err(closed()),
    }
    // Most requests are whole in `head`: no timer for them.
    while !body.is_complete() {
        let next = body.next_piece();
        let next = match limit.until {
            Some(until) => monoio::time::timeout_at(until, next)
                .await
                .unwrap_or(Err(BodyError::TimedOut)),
            None => next.await,
        };
        let mut piece = match next {
            Ok(Some(p)) => p,
            Ok(None) if frame_chunks => {
                framed.clear();
                write_last_chunk(&mut framed, None);
                let len = framed.len();
                let res = write_all_within(&mut up.stream, &mut framed, 0..len, limit).await;
                return body_written(res, limit);
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(ExchangeError::new(FailureSource::Client(e), e.message())),
        };
        *streamed = true;
        if frame_chunks {
            framed.clear();
            let bytes = &piece.buf[piece.range.clone()];
            if !bytes.is_empty() {
                write_chunk_head(&mut framed, bytes.len());
                framed.extend_from_slice(bytes);
                framed.extend_from_slice(CHUNK_END);
            }
            body.give_back(piece);
            let len = framed.len();
            let res = write_all_within(&mut up.stream, &mut framed, 0..len, limit).await;
            body_written(res, limit)?;
            continue;
        }
        let range = piece.range.clone();
        let res = write_all_within(&mut up.stream, &mut piece.buf, range, limit).await;
        body.give_back(piece);
        body_written(res, limit)?;
    }
    Ok(())
}

/// A write to the endpoint ran out of time: the exchange's deadline passed, or the
/// endpoint took no byte for its `send_timeout_ms`. Both are timeouts (504), told
/// apart in the message.
fn send_timed_out(limit: WriteDeadline) -> ExchangeError {
    let message = match limit.until {
        Some(until) if Instant::now() >= until => "upstream timed out",
        _ => "upstream did not take the request in time",
    };
    ExchangeError::new(FailureSource::Timeout, message)
}

/// The outcome of writing body bytes to the endpoint, as the exchange's.
fn body_written(res: std::io::Result<()>, limit: WriteDeadline) -> Result<(), ExchangeError> {
    match res {
        Ok(()) => Ok(()),
        Err(e) if timed_out(&e) => Err(send_timed_out(limit)),
        Err(_) => Err(ExchangeError::new(
            FailureSource::Write,
            "upstream closed the connection while receiving the body",
        )),
    }
}

fn closed() -> ExchangeError {
    ExchangeError::new(
        FailureSource::Closed,
        "upstream closed the connection before responding",
    )
}

/// Reads from the upstream until a final response head is at the start of `up.buf`
/// (not 1xx, except a `101` to an upgrade request).
async fn read_response_head(
    up: &mut PooledConn,
    request: &OutboundRequest<'_>,
    deadline: Instant,
) -> Result<ResponseHead, ExchangeError> {
    let request_was_head = request.is_head;
    let protocol = |m: &'static str| ExchangeError::new(FailureSource::Protocol, m);
    let mut head = ResponseHead::default();
    up.buf.clear();
    let mut start = 0;
    loop {
        if up.buf.len() > start {
            match parse_response(&up.buf[start..], request_was_head, &mut head) {
                Ok(Some(())) if head.status >= 200 || head.status == 101 => {
                    // Leave the head at the start of the buffer.
                    if start > 0 {
                        up.buf.drain(..start);
                    }
                    return if head.status == 101 && !request.upgrade {
                        Err(protocol(
                            "upstream switched protocols, which is not supported",
                        ))
                    } else {
                        Ok(head)
                    };
                }
                Ok(Some(())) => {
                    // 1xx informational: skip it and read on.
                    start += head.head_len;
                    continue;
                }
                Ok(None) => {}
                Err(m) => return Err(protocol(m)),
            }
        }
        if up.buf.len() - start >= MAX_RESPONSE_HEAD {
            return Err(protocol("upstream response head too large"));
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
                        closed()
                    } else {
                        protocol("upstream closed the connection mid-response")
                    });
                }
            }
            Ok((Err(_), slice)) => {
                up.buf = slice.into_inner();
                return Err(if up.buf.is_empty() {
                    closed()
                } else {
                    protocol("upstream reset the connection")
                });
            }
            Err(_) => {
                return Err(ExchangeError::new(
                    FailureSource::Timeout,
                    "upstream timed out",
                ))
            }
        }
    }
}
