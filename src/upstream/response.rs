//! An upstream response being received: its parsed head, then its body as pieces
//! read from the connection, and at the end the connection back to the pool when
//! the exchange left it clean.

use std::ops::Range;
use std::time::Duration;

use monoio::io::AsyncReadRent;
use monoio::time::Instant;

use crate::config::{Endpoint, EndpointKey, Upstream};
use crate::downstream::Piece;
use crate::http::{BodyFraming, BodyProgress, ResponseHead};

use super::failure::{ExchangeError, FailureSource};
use super::pool::{PooledConn, UpstreamPools};

const UPSTREAM_READ_BUFFER: usize = 16 * 1024;

/// The answer of an exchange: head first, body after.
pub struct UpstreamResponse {
    conn: PooledConn,
    head: ResponseHead,
    body: BodyProgress,
    /// The body bytes that arrived with the head, as a range of the buffer.
    early: Range<usize>,
    /// Bytes after the body's end were seen: the connection cannot be reused.
    extra: bool,
    /// How long one body read may wait (the route timeout, as an idle bound).
    read_timeout: Duration,
    key: EndpointKey,
    max_idle: usize,
    pool_idle_timeout: Duration,
    max_requests: u64,
    /// When a new connection was established (`None`: taken from the pool).
    pub connected: Option<Instant>,
    /// When the response head was complete.
    pub first_byte: Instant,
}

impl UpstreamResponse {
    /// The response whose head is at the start of `conn.buf`. The body bytes that
    /// came with the head are checked at once: broken chunk framing there is a
    /// failed exchange (502, nothing has reached the client yet); returned with
    /// the connection, which then closes.
    pub(super) fn new(
        conn: PooledConn,
        head: ResponseHead,
        upstream: &Upstream,
        endpoint: &Endpoint,
        connected: Option<Instant>,
        first_byte: Instant,
    ) -> Result<Self, ExchangeError> {
        // Responses keep their trailers: every consumed byte is forwarded.
        let mut body = BodyProgress::new(head.body);
        let after_head = head.head_len.min(conn.buf.len());
        let early = &conn.buf[after_head..];
        let take = body
            .advance(early)
            .map_err(|e| {
                ExchangeError::new(
                    FailureSource::Protocol,
                    format!(
                        "malformed response body framing from upstream: {}",
                        e.reason()
                    ),
                )
            })?
            .consumed;
        let extra = early.len() > take;
        Ok(UpstreamResponse {
            conn,
            head,
            body,
            early: after_head..after_head + take,
            extra,
            read_timeout: upstream.request_timeout,
            key: endpoint.key.clone(),
            max_idle: upstream.max_idle_per_endpoint,
            pool_idle_timeout: upstream.pool_idle_timeout,
            max_requests: upstream.max_requests_per_connection,
            connected,
            first_byte,
        })
    }

    /// Sets how long one body read may wait for bytes (default: the upstream's
    /// `request_timeout_ms`; the forwarder passes the route's timeout).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.read_timeout = timeout;
    }

    pub fn head(&self) -> &ResponseHead {
        &self.head
    }

    /// Removes the head's fields whose name `drop` selects (any case), so they are
    /// not relayed (a route's response rules); returns how many. The body's framing
    /// was read from the head already and does not change.
    pub fn remove_fields(&mut self, drop: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        let src = &self.conn.buf;
        let before = self.head.headers.len();
        self.head
            .headers
            .retain(|h| !drop(src.get(h.name.clone()).unwrap_or(b"")));
        before - self.head.headers.len()
    }

    /// The bytes `head`'s ranges index (the head, then the first body bytes).
    pub fn head_bytes(&self) -> &[u8] {
        &self.conn.buf
    }

    /// The body bytes that arrived with the head, as a range of `head_bytes()`
    /// (their framing was checked when the head was read).
    pub fn early_body(&self) -> Range<usize> {
        self.early.clone()
    }

    /// Lends the read buffer as a piece covering `range` (e.g. a large early body).
    pub fn piece(&mut self, range: Range<usize>) -> Piece {
        Piece {
            buf: std::mem::take(&mut self.conn.buf),
            range,
        }
    }

    /// Reads the next body bytes. `Ok(None)` once the body is complete; an error
    /// when the upstream ends it early, breaks its framing, or sends nothing for the
    /// read timeout. Hand the piece back with [`give_back`](Self::give_back).
    pub async fn next_piece(&mut self) -> Result<Option<Piece>, ExchangeError> {
        if self.body.is_complete() {
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.conn.buf);
        buf.clear();
        if buf.capacity() < UPSTREAM_READ_BUFFER {
            buf.reserve(UPSTREAM_READ_BUFFER);
        }
        let read = monoio::time::timeout(self.read_timeout, self.conn.stream.read(buf)).await;
        let n = match read {
            Ok((Ok(n), buf)) => {
                self.conn.buf = buf;
                n
            }
            Ok((Err(_), buf)) => {
                self.conn.buf = buf;
                0
            }
            Err(_) => return Err(truncated()),
        };
        if n == 0 {
            if self.body.ends_at_close() {
                self.body.close();
                return Ok(None);
            }
            return Err(truncated());
        }
        let take = self
            .body
            .advance(&self.conn.buf)
            .map_err(|_| truncated())?
            .consumed;
        self.extra |= n > take;
        Ok(Some(self.piece(0..take)))
    }

    /// Returns a buffer lent by [`piece`](Self::piece) or [`next_piece`](Self::next_piece).
    pub fn give_back(&mut self, piece: Piece) {
        self.conn.buf = piece.buf;
    }

    /// Ends the exchange: the connection goes back to `pools` when the body was read
    /// to its end, nothing followed it, the upstream keeps it open, and it has served
    /// fewer than `max_requests_per_connection` requests. Otherwise it closes.
    pub fn finish(self, pools: &UpstreamPools) {
        let reusable = self.body.is_complete()
            && !self.extra
            && self.head.body != BodyFraming::UntilClose
            && self.head.keep_alive
            && self.conn.requests < self.max_requests;
        if reusable {
            pools.put(&self.key, self.conn, self.max_idle, self.pool_idle_timeout);
        }
    }
}

fn truncated() -> ExchangeError {
    ExchangeError::new(
        FailureSource::Protocol,
        "upstream response cut short or malformed",
    )
}
