//! One HTTP/2 stream as a [`Downstream`]: the decoded head (`h2`'s `http` parts),
//! the body pulled from the stream's DATA (its flow-control window given back once
//! a piece was forwarded), and the response sent as HEADERS, DATA and trailers. A
//! chunked body from an HTTP/1.1 upstream is de-chunked here; a gRPC caller's
//! errors arrive already shaped as gRPC (`proxy/exit.rs`).

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use ::h2::server::SendResponse;
use ::h2::RecvStream;

use super::body::DuplexBody;
use ::http::request::Parts;
use ::http::{HeaderMap, HeaderValue, Response, StatusCode};
use bytes::Bytes;

use crate::http::{
    BodyFraming, ChunkedScanner, FieldList, HeaderLookup, HttpError, LocalReply, ResponseParts,
};

use super::super::{
    BodyError, BodySource, ClientReset, ConnInfo, Downstream, Piece, ResponseHandles,
};
use super::send::{add_closing_fields, add_field, connection_tokens, send_data};
use super::StreamLimits;

/// The request of one stream, with its body and response state.
pub struct H2Request<'c> {
    info: &'c ConnInfo,
    limits: &'c StreamLimits,
    head: Parts,
    /// The request body (`None` once detached: [`Downstream::detach_body`]).
    body: Option<DuplexBody>,
    framing: BodyFraming,
    /// The response's head and body handles (shared with the reset watch).
    respond: Rc<ResponseHandles>,
    /// The head went out without ending the stream: the body follows.
    streaming: bool,
    /// A chunked body from an HTTP/1.1 upstream: de-chunked into DATA.
    dechunk: Option<ChunkedScanner>,
    bytes_sent: u64,
}

impl<'c> H2Request<'c> {
    /// The request of a stream just accepted.
    pub fn new(
        request: ::http::Request<RecvStream>,
        respond: SendResponse<Bytes>,
        info: &'c ConnInfo,
        limits: &'c StreamLimits,
    ) -> Self {
        let (mut head, body) = request.into_parts();
        join_cookies(&mut head.headers);
        let framing = match head.headers.get(::http::header::CONTENT_LENGTH) {
            // h2 checks the DATA against it and resets the stream on a mismatch.
            Some(v) => match std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|v| v.parse().ok())
            {
                Some(0) => BodyFraming::None,
                Some(n) => BodyFraming::Length(n),
                None => BodyFraming::EndStream,
            },
            None if body.is_end_stream() => BodyFraming::None,
            None => BodyFraming::EndStream,
        };
        let body = DuplexBody::new(
            body,
            framing,
            limits.max_body_bytes,
            limits.body_read_timeout,
        );
        H2Request {
            info,
            limits,
            head,
            body: Some(body),
            framing,
            respond: Rc::new(ResponseHandles {
                head: RefCell::new(respond),
                body: RefCell::new(None),
            }),
            streaming: false,
            dechunk: None,
            bytes_sent: 0,
        }
    }

    /// Why the request is refused before the pipeline sees it, if it is: a header
    /// list over `http2_max_header_list_bytes` (431; sized as SETTINGS_MAX_HEADER_
    /// LIST_SIZE counts, RFC 9113 §6.5.2: names, values and 32 bytes per field,
    /// pseudo-fields included), a `:path` over `max_uri_bytes` (414).
    pub fn refusal(&self) -> Option<HttpError> {
        let uri = &self.head.uri;
        // (name length, value length) of :method, :scheme, :authority, :path.
        let pseudo = [
            (7, self.head.method.as_str().len()),
            (7, uri.scheme_str().map_or(0, str::len)),
            (10, uri.authority().map_or(0, |a| a.as_str().len())),
            (5, self.target().len()),
        ];
        let list: usize = pseudo.iter().map(|(n, v)| n + v + 32).sum::<usize>()
            + self
                .head
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum::<usize>();
        if list > self.limits.max_header_list_bytes {
            return Some(HttpError::new(431, "request header list too large"));
        }
        if self.target().len() > self.limits.max_uri_bytes {
            return Some(HttpError::new(414, "request target too long"));
        }
        None
    }

    /// Resets the stream (the response cannot be completed).
    fn reset(&mut self, reason: ::h2::Reason) {
        match self.respond.body.borrow_mut().as_mut() {
            Some(body) => body.send_reset(reason),
            None => self.respond.head.borrow_mut().send_reset(reason),
        }
    }

    /// Sends the head; unless it ends the stream, the body's handle is kept.
    fn send_head(&mut self, response: Response<()>, end: bool) -> io::Result<()> {
        let sent = self.respond.head.borrow_mut().send_response(response, end);
        let body = sent.map_err(io::Error::other)?;
        if !end {
            *self.respond.body.borrow_mut() = Some(body);
            self.streaming = true;
        }
        Ok(())
    }

    /// Sends `bytes` of the response body (de-chunked first if it came chunked).
    async fn send_body(&mut self, bytes: &[u8]) -> io::Result<()> {
        let payload = match &mut self.dechunk {
            None => Bytes::copy_from_slice(bytes),
            Some(scanner) => {
                let mut out = Vec::with_capacity(bytes.len());
                scanner
                    .scan_with(bytes, |data| out.extend_from_slice(data))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.reason()))?;
                Bytes::from(out)
            }
        };
        if payload.is_empty() || !self.streaming {
            return Ok(()); // a HEAD response, or one already ended: nothing to send
        }
        let n = payload.len() as u64;
        let mut payload = payload;
        send_data(
            &self.respond.body,
            &mut payload,
            false,
            self.limits.send_stall,
        )
        .await?;
        self.bytes_sent += n;
        Ok(())
    }
}

/// RFC 9113 §8.2.3: a client may split `cookie` into several fields; joined with
/// "; " so HTTP/1.1 upstreams see one (RFC 6265 §5.4).
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(::http::header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(::http::header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(::http::header::COOKIE, v);
    }
}

impl HeaderLookup for H2Request<'_> {
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]> {
        HeaderLookup::get(&self.head.headers, lowercase_name)
    }

    fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
        self.head.headers.each(f)
    }
}

impl Downstream for H2Request<'_> {
    fn conn(&self) -> &ConnInfo {
        self.info
    }

    fn method(&self) -> &[u8] {
        self.head.method.as_str().as_bytes()
    }

    fn target(&self) -> &[u8] {
        self.head
            .uri
            .path_and_query()
            .map_or(b"", |p| p.as_str().as_bytes())
    }

    fn host(&self) -> Option<&[u8]> {
        match self.head.uri.authority() {
            Some(a) => Some(a.as_str().as_bytes()),
            None => self
                .head
                .headers
                .get(::http::header::HOST)
                .map(HeaderValue::as_bytes),
        }
    }

    fn is_head(&self) -> bool {
        self.head.method == ::http::Method::HEAD
    }

    fn http10(&self) -> bool {
        false
    }

    fn protocol(&self) -> &'static str {
        "HTTP/2.0"
    }

    fn remove_fields(&mut self, drop: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        crate::http::remove_from_map(&mut self.head.headers, drop)
    }

    async fn send_reply(
        &mut self,
        reply: &LocalReply<'_>,
        extra: &FieldList,
        request_id: &str,
    ) -> io::Result<()> {
        let mut response = Response::new(());
        *response.status_mut() =
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let map = response.headers_mut();
        let none = Default::default();
        for (name, value) in reply.fields.iter() {
            add_field(map, &none, name, value);
        }
        if !reply.body.is_empty() {
            map.insert(::http::header::CONTENT_LENGTH, reply.body.len().into());
        }
        add_closing_fields(map, extra, request_id);
        // No body: the head ends the stream (a gRPC error is "trailers-only").
        let end = reply.body.is_empty() || self.is_head();
        self.send_head(response, end)?;
        if !end {
            self.streaming = false;
            let mut body = Bytes::copy_from_slice(&reply.body);
            send_data(&self.respond.body, &mut body, true, self.limits.send_stall).await?;
            self.bytes_sent += reply.body.len() as u64;
        }
        Ok(())
    }

    async fn send_response_head(
        &mut self,
        head: &ResponseParts<'_>,
        body_prefix: &[u8],
        extra: &FieldList,
        request_id: &str,
    ) -> io::Result<()> {
        let mut response = Response::new(());
        *response.status_mut() =
            StatusCode::from_u16(head.status).map_err(|_| io::ErrorKind::InvalidData)?;
        let map = response.headers_mut();
        let connection = connection_tokens(head.fields);
        head.fields.each(&mut |name, value| {
            // Without a body (HEAD, 304) the length describes the representation.
            let length_kept =
                head.body == BodyFraming::None && name.eq_ignore_ascii_case(b"content-length");
            if length_kept {
                if let Ok(v) = HeaderValue::from_bytes(value) {
                    map.append(::http::header::CONTENT_LENGTH, v);
                }
            } else if !name.eq_ignore_ascii_case(b"x-request-id") {
                add_field(map, &connection, name, value);
            }
        });
        if let BodyFraming::Length(n) = head.body {
            map.insert(::http::header::CONTENT_LENGTH, n.into());
        }
        add_closing_fields(map, extra, request_id);
        let end = head.body == BodyFraming::None || self.is_head();
        self.send_head(response, end)?;
        if !end {
            if head.body == BodyFraming::Chunked {
                self.dechunk = Some(ChunkedScanner::new());
            }
            self.send_body(body_prefix).await?;
        }
        Ok(())
    }

    async fn send_piece(&mut self, piece: Piece) -> (io::Result<()>, Piece) {
        let sent = self.send_body(&piece.buf[piece.range.clone()]).await;
        (sent, piece)
    }

    async fn finish_response(&mut self, trailers: Option<&dyn HeaderLookup>) -> io::Result<()> {
        if !std::mem::take(&mut self.streaming) {
            return Ok(());
        }
        let mut body = self.respond.body.borrow_mut();
        let Some(send) = body.as_mut() else {
            return Ok(());
        };
        match trailers {
            Some(fields) => {
                let mut map = HeaderMap::new();
                let none = Default::default();
                fields.each(&mut |name, value| add_field(&mut map, &none, name, value));
                send.send_trailers(map).map_err(io::Error::other)
            }
            None => send.send_data(Bytes::new(), true).map_err(io::Error::other),
        }
    }

    fn abort(&mut self) {
        self.reset(::h2::Reason::INTERNAL_ERROR);
    }

    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    fn client_reset(&self) -> Option<ClientReset> {
        Some(ClientReset(self.respond.clone()))
    }

    fn detach_body(&mut self) -> Option<DuplexBody> {
        self.body.take()
    }
}

impl BodySource for H2Request<'_> {
    fn body_framing(&self) -> BodyFraming {
        self.framing
    }

    fn is_complete(&self) -> bool {
        self.body.as_ref().is_none_or(BodySource::is_complete)
    }

    fn take_buffered(&mut self, _out: &mut Vec<u8>) -> Result<(), BodyError> {
        // DATA frames come through `next_piece`; none are taken with the head.
        Ok(())
    }

    async fn next_piece(&mut self) -> Result<Option<Piece>, BodyError> {
        match &mut self.body {
            Some(body) => body.next_piece().await,
            None => Ok(None),
        }
    }

    fn give_back(&mut self, piece: Piece) {
        if let Some(body) = &mut self.body {
            body.give_back(piece);
        }
    }
}
