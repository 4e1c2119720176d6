//! An upstream response being received, whichever protocol carried it: its head as
//! parts ([`ResponseParts`]), then its body as pieces (HTTP/1.1: read from the
//! connection in the framing the head declared; HTTP/2: the stream's DATA), then
//! the trailers, and at the end the connection back to its pool when the exchange
//! left it clean.

use std::ops::Range;
use std::time::Duration;

use monoio::io::AsyncReadRent;
use monoio::time::Instant;

use crate::config::{Endpoint, EndpointKey, Upstream};
use crate::downstream::Piece;
use crate::http::{
    BodyFraming, BodyProgress, FieldList, FieldRanges, HeaderLookup, ResponseHead, ResponseParts,
};

use super::failure::{ExchangeError, FailureSource};
use super::h2::{H2Response, Upload};
use super::pool::{PooledConn, UpstreamPools};

const UPSTREAM_READ_BUFFER: usize = 16 * 1024;

/// The answer of an exchange: head first, body after.
pub struct UpstreamResponse {
    inner: Inner,
    /// When a new connection was established (`None`: taken from the pool).
    pub connected: Option<Instant>,
    /// When the response head was complete.
    pub first_byte: Instant,
}

enum Inner {
    H1(H1Response),
    H2(H2Response),
}

/// The fields of a response head, whichever protocol carried them (see
/// [`UpstreamResponse::fields`]).
pub enum ResponseFields<'a> {
    H1(FieldRanges<'a>),
    H2(&'a FieldList),
}

impl HeaderLookup for ResponseFields<'_> {
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]> {
        match self {
            ResponseFields::H1(f) => f.get(lowercase_name),
            ResponseFields::H2(fields) => fields.get(lowercase_name),
        }
    }

    fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
        match self {
            ResponseFields::H1(fields) => fields.each(f),
            ResponseFields::H2(fields) => HeaderLookup::each(*fields, f),
        }
    }
}

impl UpstreamResponse {
    pub(super) fn new(
        conn: PooledConn,
        head: ResponseHead,
        upstream: &Upstream,
        endpoint: &Endpoint,
        connected: Option<Instant>,
        first_byte: Instant,
    ) -> Result<Self, ExchangeError> {
        Ok(UpstreamResponse {
            inner: Inner::H1(H1Response::new(conn, head, upstream, endpoint)?),
            connected,
            first_byte,
        })
    }

    /// An HTTP/2 exchange's answer.
    pub(super) fn from_h2(
        response: H2Response,
        connected: Option<Instant>,
        first_byte: Instant,
    ) -> Self {
        UpstreamResponse {
            inner: Inner::H2(response),
            connected,
            first_byte,
        }
    }

    /// The rest of the request body when the answer came first and the body is
    /// still being sent (HTTP/2): the relay pumps it beside the answer.
    pub fn take_upload(&mut self) -> Option<Upload> {
        match &mut self.inner {
            Inner::H1(_) => None,
            Inner::H2(r) => r.take_upload(),
        }
    }

    /// The response status.
    pub fn status(&self) -> u16 {
        match &self.inner {
            Inner::H1(r) => r.head.status,
            Inner::H2(r) => r.status,
        }
    }

    /// How the body is framed, and so how its pieces are encoded.
    pub fn body_framing(&self) -> BodyFraming {
        match &self.inner {
            Inner::H1(r) => r.head.body,
            Inner::H2(r) => r.framing,
        }
    }

    /// The head's fields, for [`parts`](Self::parts).
    pub fn fields(&self) -> ResponseFields<'_> {
        match &self.inner {
            Inner::H1(r) => ResponseFields::H1(FieldRanges {
                src: &r.conn.buf,
                fields: &r.head.headers,
            }),
            Inner::H2(r) => ResponseFields::H2(&r.fields),
        }
    }

    /// The head as parts, over `fields` (from [`fields`](Self::fields)).
    pub fn parts<'a>(&'a self, fields: &'a dyn HeaderLookup) -> ResponseParts<'a> {
        match &self.inner {
            Inner::H1(r) => ResponseParts {
                status: r.head.status,
                reason: r.conn.buf.get(r.head.reason.clone()).unwrap_or(b""),
                fields,
                body: r.head.body,
            },
            Inner::H2(r) => ResponseParts {
                status: r.status,
                reason: b"",
                fields,
                body: r.framing,
            },
        }
    }

    /// Sets how long one body read may wait for bytes (default: the upstream's
    /// `request_timeout_ms`; the forwarder passes the route's timeout).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        match &mut self.inner {
            Inner::H1(r) => r.read_timeout = timeout,
            Inner::H2(r) => r.read_timeout = timeout,
        }
    }

    /// Removes the head's fields whose name `drop` selects (any case), so they are
    /// not relayed (a route's response rules); returns how many. The body's framing
    /// was read from the head already and does not change.
    pub fn remove_fields(&mut self, drop: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        match &mut self.inner {
            Inner::H1(r) => {
                let src = &r.conn.buf;
                let before = r.head.headers.len();
                r.head
                    .headers
                    .retain(|h| !drop(src.get(h.name.clone()).unwrap_or(b"")));
                before - r.head.headers.len()
            }
            Inner::H2(r) => r.fields.remove(drop),
        }
    }

    /// The bytes the head was read into (HTTP/1.1: the head, then the first body
    /// bytes; empty for HTTP/2); `early_body` indexes them.
    pub fn head_bytes(&self) -> &[u8] {
        match &self.inner {
            Inner::H1(r) => &r.conn.buf,
            Inner::H2(_) => &[],
        }
    }

    /// The body bytes that arrived with the head, as a range of `head_bytes()`.
    pub fn early_body(&self) -> Result<Range<usize>, ExchangeError> {
        match &self.inner {
            Inner::H1(r) => r.early_body(),
            Inner::H2(_) => Ok(0..0),
        }
    }

    /// An HTTP/2 answer's DATA that has arrived already, without waiting (`None`
    /// for HTTP/1.1, whose early bytes are [`early_body`](Self::early_body)). Hand
    /// the piece back with [`give_back`](Self::give_back).
    pub fn ready_piece(&mut self) -> Option<Piece> {
        match &mut self.inner {
            Inner::H1(_) => None,
            Inner::H2(r) => r.ready_piece(),
        }
    }

    /// Lends the read buffer as a piece covering `range` (e.g. a large early body).
    pub fn piece(&mut self, range: Range<usize>) -> Piece {
        match &mut self.inner {
            Inner::H1(r) => r.piece(range),
            Inner::H2(_) => Piece {
                buf: Vec::new(),
                range: 0..0,
            },
        }
    }

    /// Reads the next body bytes. `Ok(None)` once the body is complete; an error
    /// when the upstream ends it early, breaks its framing, or sends nothing for the
    /// read timeout. Hand the piece back with [`give_back`](Self::give_back).
    pub async fn next_piece(&mut self) -> Result<Option<Piece>, ExchangeError> {
        match &mut self.inner {
            Inner::H1(r) => r.next_piece().await,
            Inner::H2(r) => r.next_piece().await,
        }
    }

    /// Returns a buffer lent by [`piece`](Self::piece) or [`next_piece`](Self::next_piece).
    pub fn give_back(&mut self, piece: Piece) {
        match &mut self.inner {
            Inner::H1(r) => r.conn.buf = piece.buf,
            Inner::H2(r) => r.give_back(piece),
        }
    }

    /// The trailers that followed the body (HTTP/2); an HTTP/1.1 upstream's travel
    /// inside its chunked pieces, so this is `None` for it.
    pub async fn trailers(&mut self) -> Result<Option<::http::HeaderMap>, ExchangeError> {
        match &mut self.inner {
            Inner::H1(_) => Ok(None),
            Inner::H2(r) => r.trailers().await,
        }
    }

    /// The connection of a `101` (an upgrade), for a tunnel: its stream and the
    /// bytes that came after the head (already the new protocol's). `None` for
    /// HTTP/2. The connection is never pooled again; its place under
    /// `max_connections` is held while the returned value lives.
    pub fn into_upgraded(self) -> Option<Upgraded> {
        match self.inner {
            Inner::H1(r) => {
                let early = r.head.head_len..r.conn.buf.len();
                Some(Upgraded {
                    conn: r.conn,
                    early,
                })
            }
            Inner::H2(_) => None,
        }
    }

    /// Ends the exchange: an HTTP/1.1 connection goes back to its pool when the
    /// exchange left it clean (see [`H1Response::finish`]); an HTTP/2 stream frees
    /// its place on its connection.
    pub fn finish(self, pools: &UpstreamPools) {
        match self.inner {
            Inner::H1(r) => r.finish(pools),
            Inner::H2(_) => {}
        }
    }
}

/// An upgraded upstream connection (see [`UpstreamResponse::into_upgraded`]).
pub struct Upgraded {
    conn: PooledConn,
    early: Range<usize>,
}

impl Upgraded {
    /// The stream, and the bytes the upstream sent after its `101`.
    pub fn parts(&mut self) -> (&mut super::stream::UpstreamStream, &[u8]) {
        let early = self.conn.buf.get(self.early.clone()).unwrap_or(&[]);
        (&mut self.conn.stream, early)
    }
}

/// An HTTP/1.1 response: the parsed head over the connection's read buffer, and
/// the body read from the connection.
struct H1Response {
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
}

impl H1Response {
    /// The response over `conn`, with the framing of the body bytes that came with
    /// the head checked now: broken framing there is a protocol failure of the
    /// exchange (502, counted against the endpoint), before anything is relayed.
    fn new(
        conn: PooledConn,
        head: ResponseHead,
        upstream: &Upstream,
        endpoint: &Endpoint,
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
        Ok(H1Response {
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
        })
    }

    /// The body bytes that arrived with the head (their framing was checked when
    /// the head was read).
    fn early_body(&self) -> Result<Range<usize>, ExchangeError> {
        Ok(self.early.clone())
    }

    fn piece(&mut self, range: Range<usize>) -> Piece {
        Piece {
            buf: std::mem::take(&mut self.conn.buf),
            range,
        }
    }

    async fn next_piece(&mut self) -> Result<Option<Piece>, ExchangeError> {
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

    /// The connection goes back to `pools` when the body was read to its end,
    /// nothing followed it, the upstream keeps it open, and it has served fewer
    /// than `max_requests_per_connection` requests. Otherwise it closes.
    fn finish(self, pools: &UpstreamPools) {
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
