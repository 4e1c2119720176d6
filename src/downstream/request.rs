//! The protocol-neutral request the pipeline works on: [`Downstream`] (head,
//! response sink), [`BodySource`] (the request body, pulled piece by piece), and the
//! [`Handler`] a connection hands each request to.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;

use crate::http::{BodyFraming, FieldList, HeaderLookup, HttpError, LocalReply, ResponseHead};

/// What the transport says about a client connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The connection came over TLS.
    pub secure: bool,
    /// The verified client certificate's subject, as the field to send upstream
    /// (`[[server.tls]] client_subject_header`), rendered once per connection.
    pub client_subject: Option<FieldList>,
}

impl ConnInfo {
    /// A plaintext connection from `peer`.
    pub fn plain(peer: SocketAddr) -> Self {
        ConnInfo {
            peer,
            secure: false,
            client_subject: None,
        }
    }
}

/// One request on its way through the gateway, whatever protocol carried it: the
/// head to read (valid until the body is pulled), the body to pull, and the sink
/// the response goes to.
///
/// Futures are `!Send` by design: a request lives and dies on one worker thread.
#[allow(async_fn_in_trait)]
pub trait Downstream: HeaderLookup + BodySource {
    fn conn(&self) -> &ConnInfo;
    /// The method, as sent.
    fn method(&self) -> &[u8];
    /// The request-target, as sent (origin-form or absolute-form): for the access
    /// log. What is routed and forwarded is [`path_and_query`](Downstream::path_and_query).
    fn target(&self) -> &[u8];
    /// The `Host` field as sent (HTTP/2: `:authority`). Nothing decides on it:
    /// read [`authority`](Downstream::authority).
    fn host(&self) -> Option<&[u8]>;
    /// The request's one authority (`host[:port]`), validated by the codec with
    /// [`crate::http::check_authority`] when the head was read (an invalid one was
    /// refused with 400): an absolute-form target's, else `Host` (RFC 9112 §3.2.2;
    /// HTTP/2: `:authority`, else `Host`, RFC 9113 §8.3.1). Routing, the `Host`
    /// sent upstream with `preserve_host`, `X-Forwarded-Host`, `Forwarded`,
    /// redirect `Location`s and every `header:host` key read this value, and
    /// [`HeaderLookup::get`]`(b"host")` must return it too. `None` only for an
    /// HTTP/1.0 request with neither.
    fn authority(&self) -> Option<&[u8]>;
    /// The target's path and query, as sent: all of an origin-form target, what
    /// follows the authority of an absolute-form one (possibly empty; HTTP/2:
    /// `:path`). What is normalized, routed and forwarded.
    fn path_and_query(&self) -> &[u8];
    /// A `HEAD` request: responses carry no body.
    fn is_head(&self) -> bool;
    /// The client speaks HTTP/1.0.
    fn http10(&self) -> bool;
    /// How the request body is framed, as declared in the head.
    fn body_framing(&self) -> BodyFraming;
    /// Removes the fields whose name `drop` selects (any case); returns how many.
    /// Later reads of the head no longer see them.
    fn remove_fields(&mut self, drop: &mut dyn FnMut(&[u8]) -> bool) -> usize;

    /// Sends a reply the gateway made. Keep-alive is decided here, once: the
    /// connection closes if the reply requires it, the client or the drain asks, or
    /// the request body was not (and cannot cheaply be) read. Errors mean the
    /// client is gone.
    async fn send_reply(
        &mut self,
        reply: &LocalReply<'_>,
        extra: &FieldList,
        request_id: &str,
    ) -> io::Result<()>;

    /// Sends the head of an upstream response (`head`, parsed from `src`) with
    /// `body_prefix`, the first body bytes, in one write. Keep-alive is decided here
    /// as for [`send_reply`](Downstream::send_reply), and also by the response's
    /// framing.
    async fn send_response_head(
        &mut self,
        head: &ResponseHead,
        src: &[u8],
        body_prefix: &[u8],
        extra: &FieldList,
        request_id: &str,
    ) -> io::Result<()>;

    /// Sends response body bytes; the piece comes back for reuse.
    async fn send_piece(&mut self, piece: Piece) -> (io::Result<()>, Piece);

    /// The response cannot be completed (the upstream cut it short, or the client
    /// went away): the connection closes after this request.
    fn abort(&mut self);

    /// Bytes written to the client for this request, heads included.
    fn bytes_sent(&self) -> u64;

    /// Bytes of this request read so far: its head and its body's payload (chunk
    /// framing not counted).
    fn bytes_received(&self) -> u64;
}

/// A request body, pulled in the framing its head declared (a chunked body stays
/// chunked), so it can be forwarded byte for byte.
#[allow(async_fn_in_trait)]
pub trait BodySource {
    /// The whole body has been taken (or there is none): a request whose body is
    /// complete before it is sent can be sent again on another connection.
    fn is_complete(&self) -> bool;

    /// Appends the body bytes already received (up to the end of the body) to `out`,
    /// so they go out in the same write as the head.
    fn take_buffered(&mut self, out: &mut Vec<u8>) -> Result<(), BodyError>;

    /// Reads the next body bytes from the client: an owned buffer and the range of
    /// it that belongs to the body. `Ok(None)` once the body is complete. Hand the
    /// buffer back with [`give_back`](BodySource::give_back) before the next call.
    async fn next_piece(&mut self) -> Result<Option<Piece>, BodyError>;

    /// Returns a buffer taken by [`next_piece`](BodySource::next_piece), its range
    /// consumed.
    fn give_back(&mut self, piece: Piece);
}

/// Bytes on their way from one side to the other without a copy: an owned buffer
/// (monoio's I/O takes buffers by value) and the range of it to send.
pub struct Piece {
    pub buf: Vec<u8>,
    pub range: Range<usize>,
}

impl Piece {
    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// Why a request body could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The client closed the connection mid-body (logged as 499; no answer).
    Closed,
    /// No body bytes within `body_read_timeout_ms`: 408.
    TimedOut,
    /// Broken chunk framing: 400 with the reason.
    Malformed(&'static str),
    /// The body grew past `max_body_bytes`: 413.
    TooLarge,
}

impl BodyError {
    /// The status to answer with (499 = nothing is answered, the connection closes).
    pub fn status(self) -> u16 {
        match self {
            BodyError::Closed => 499,
            BodyError::TimedOut => 408,
            BodyError::Malformed(_) => 400,
            BodyError::TooLarge => 413,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            BodyError::Closed => "client closed the connection",
            BodyError::TimedOut => "request body not received in time",
            BodyError::Malformed(reason) => reason,
            BodyError::TooLarge => "request body too large",
        }
    }
}

/// What a connection hands each request to (the pipeline).
#[allow(async_fn_in_trait)]
pub trait Handler {
    /// Handles one request whose head was read, to the end of its response.
    async fn handle<D: Downstream>(&self, request: &mut D);

    /// Answers a request the codec refused; the connection closes after it. The
    /// request's head accessors return empty values.
    async fn refuse<D: Downstream>(&self, request: &mut D, error: HttpError);
}
