//! The protocol-neutral request the pipeline works on: [`Downstream`] (head,
//! response sink, and the request body as a [`BodySource`]), and the [`Handler`] a
//! connection hands each request to.

use std::io;
use std::net::SocketAddr;

use crate::http::{FieldList, HeaderLookup, HttpError, LocalReply, ResponseParts};
use crate::text::{ip_text, IpText};

use super::body::{BodySource, Piece};
use super::client_reset::ClientReset;
use super::h2::DuplexBody;
use super::tunnel::{Duplex, TunnelBytes, TunnelEnd};

/// What the transport says about a client connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's IP address as text (as `Display` writes it), rendered once per
    /// connection: the forwarded fields, the access log and the server span each
    /// write it for every request.
    pub peer_ip: IpText,
    /// The connection came over TLS.
    pub secure: bool,
    /// The verified client certificate's subject, as the field to send upstream
    /// (`[[server.tls]] client_subject_header`), rendered once per connection.
    pub client_subject: Option<FieldList>,
}

impl ConnInfo {
    /// A plaintext connection from `peer`.
    pub fn plain(peer: SocketAddr) -> Self {
        ConnInfo::new(peer, false, None)
    }

    /// A connection from `peer`, over TLS when `secure`, with the client
    /// certificate's subject field when one was verified and is sent upstream.
    pub fn new(peer: SocketAddr, secure: bool, client_subject: Option<FieldList>) -> Self {
        ConnInfo {
            peer,
            peer_ip: ip_text(peer.ip()),
            secure,
            client_subject,
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
    /// The protocol as the access log names it: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0`.
    fn protocol(&self) -> &'static str {
        if self.http10() {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }
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

    /// Sends the head of an upstream response with `body_prefix`, the first body
    /// pieces' bytes, in one write where the protocol allows. Keep-alive is decided
    /// here as for [`send_reply`](Downstream::send_reply), and also by the
    /// response's framing. The body that follows is encoded as `head.body` says;
    /// the sink converts it to its own protocol's framing.
    async fn send_response_head(
        &mut self,
        head: &ResponseParts<'_>,
        body_prefix: &[u8],
        extra: &FieldList,
        request_id: &str,
    ) -> io::Result<()>;

    /// Sends response body bytes; the piece comes back for reuse.
    async fn send_piece(&mut self, piece: Piece) -> (io::Result<()>, Piece);

    /// Ends the response body once all of it was sent, with the upstream's
    /// `trailers` if it sent any (HTTP/2; an HTTP/1.1 upstream's trailers travel
    /// inside its chunked pieces). HTTP/2 ends the stream (trailers as HEADERS);
    /// HTTP/1.1 writes the last chunk of a body it framed itself, with the trailers
    /// only if the client said `TE: trailers`.
    async fn finish_response(&mut self, trailers: Option<&dyn HeaderLookup>) -> io::Result<()>;

    /// The response cannot be completed (the upstream cut it short, or the client
    /// went away): the connection closes after this request.
    fn abort(&mut self);

    /// Bytes written to the client for this request, heads included.
    fn bytes_sent(&self) -> u64;

    /// Bytes of this request read so far: its head and its body's payload (chunk
    /// framing not counted).
    fn bytes_received(&self) -> u64;

    /// A watch on the client cancelling this request (HTTP/2: the stream reset);
    /// `None` where the protocol has no way to say so apart from closing.
    fn client_reset(&self) -> Option<ClientReset> {
        None
    }

    /// The request body as a source of its own, read while the response is being
    /// written (HTTP/2 streams are full duplex: a gRPC bidirectional call); the
    /// request then has no body left to read. `None` where reading the body and
    /// writing the response share one byte stream in turn (HTTP/1.1).
    fn detach_body(&mut self) -> Option<DuplexBody> {
        None
    }

    /// After a `101` was sent (`send_response_head`), the connection becomes a byte
    /// tunnel to `upstream` (whose bytes after its `101` are `upstream_early`) until
    /// both sides close, nothing moves for `idle`, or the worker drains; the client
    /// connection closes after it. Protocols without upgrades (HTTP/2) answer
    /// `Failed` at once.
    async fn tunnel<U: Duplex>(
        &mut self,
        upstream: &mut U,
        upstream_early: &[u8],
        idle: std::time::Duration,
    ) -> (TunnelEnd, TunnelBytes) {
        let _ = (upstream, upstream_early, idle);
        (TunnelEnd::Failed, TunnelBytes::default())
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
