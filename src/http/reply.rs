//! Replies the gateway makes itself (errors, static `respond` routes, redirects,
//! 405s, 429s, the overload 503), as protocol-neutral parts, and their HTTP/1.1
//! wire form. Stages build a [`LocalReply`]; only this file spells it.

use std::borrow::Cow;
use std::io::Write as _;

use super::forwarded::finish_head;
use super::{reason_phrase, FieldList};

/// A response the gateway answers itself, as parts: status, fields, body, and
/// whether the connection must close after it.
#[derive(Clone, Debug)]
pub struct LocalReply<'a> {
    pub status: u16,
    /// Fields in order, `content-type` included (framing fields are the writer's).
    pub fields: Cow<'a, FieldList>,
    pub body: Cow<'a, [u8]>,
    /// The reason in words, for protocols that carry it apart from the body (gRPC's
    /// `grpc-message`); empty: the status's standard phrase.
    pub message: Cow<'a, str>,
    /// The connection must close after this reply (e.g. the rest of the request
    /// cannot be trusted or was not read). `false` leaves the choice to the
    /// connection (keep-alive is decided once, there).
    pub close: bool,
}

impl<'a> LocalReply<'a> {
    /// A reply with a body of `content_type`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Cow<'a, [u8]>>) -> Self {
        let mut fields = FieldList::new();
        fields.push(b"content-type", content_type.as_bytes());
        LocalReply {
            status,
            fields: Cow::Owned(fields),
            body: body.into(),
            message: Cow::Borrowed(""),
            close: false,
        }
    }

    /// The gateway's JSON error: `{"error": MESSAGE, "request_id": ID}`.
    pub fn error(status: u16, message: &str, request_id: &str) -> Self {
        let body = format!(
            "{{\"error\": \"{}\", \"request_id\": \"{}\"}}\n",
            message.escape_default(),
            request_id
        );
        let mut reply = LocalReply::new(status, "application/json", body.into_bytes());
        reply.message = Cow::Owned(message.to_string());
        reply
    }

    /// Adds a field (e.g. `allow`, `location`, `www-authenticate`).
    pub fn with_field(mut self, name: &[u8], value: &[u8]) -> Self {
        self.fields.to_mut().push(name, value);
        self
    }

    /// Marks the reply as ending the connection.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }
}

/// Writes `reply` as an HTTP/1.1 response into `w` (cleared first): status line,
/// the reply's fields, `content-length`, then [`finish_head`]'s closing lines
/// (`extra`, request ID, connection) and, unless `is_head`, the body.
pub fn write_local_reply(
    w: &mut Vec<u8>,
    reply: &LocalReply<'_>,
    extra: &FieldList,
    request_id: &str,
    keep_alive: bool,
    client_minor: u8,
    is_head: bool,
) {
    w.clear();
    let _ = write!(
        w,
        "HTTP/1.1 {} {}\r\n",
        reply.status,
        reason_phrase(reply.status)
    );
    for (name, value) in reply.fields.iter() {
        super::forwarded::header(w, name, value);
    }
    let _ = write!(w, "content-length: {}\r\n", reply.body.len());
    finish_head(w, extra, request_id, keep_alive, client_minor);
    if !is_head {
        w.extend_from_slice(&reply.body);
    }
}

/// The interim response sent before reading a body the client holds back with
/// `Expect: 100-continue` (RFC 9110 §10.1.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The answer to a connection past `max_connections_per_worker`, written whole
/// before any request is read.
pub const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 61\r\nconnection: close\r\nretry-after: 1\r\n\r\n{\"error\": \"too many connections on this worker, retry later\"}";

/// The answer to a connection refused because the process is out of file
/// descriptors (accepted with the spare one), written whole before any request is read.
pub const OVERLOADED_NO_FD: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 57\r\nconnection: close\r\nretry-after: 1\r\n\r\n{\"error\": \"gateway out of file descriptors, retry later\"}";

/// A whole `connection: close` response for listeners outside the data plane (the
/// admin listener): status line, content type, length, body.
pub fn write_simple_response(w: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8]) {
    w.clear();
    let _ = write!(
        w,
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    );
    w.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(w: &[u8]) -> &str {
        std::str::from_utf8(w).unwrap()
    }

    #[test]
    fn overloaded_responses_lengths_match_their_bodies() {
        for answer in [OVERLOADED, OVERLOADED_NO_FD] {
            let text = text(answer);
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("content-length: {}", body.len())));
        }
    }

    #[test]
    fn error_reply_is_json_with_length_and_request_id() {
        let mut w = Vec::new();
        let reply = LocalReply::error(404, "no \"route\"", "abc").with_field(b"x-a", b"1");
        let mut extra = FieldList::new();
        extra.push(b"ratelimit", b"r=1");
        write_local_reply(&mut w, &reply, &extra, "abc", true, 1, false);
        let t = text(&w);
        let (head, body) = t.split_once("\r\n\r\n").unwrap();
        assert!(head
            .starts_with("HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nx-a: 1\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("ratelimit: r=1\r\nx-request-id: abc"));
        assert!(!head.contains("connection:"));
        assert_eq!(
            body,
            "{\"error\": \"no \\\"route\\\"\", \"request_id\": \"abc\"}\n"
        );
    }

    #[test]
    fn head_requests_get_no_body_and_closing_replies_say_so() {
        let mut w = Vec::new();
        let reply = LocalReply::new(200, "text/plain", &b"hello"[..]);
        write_local_reply(&mut w, &reply, &FieldList::new(), "x", false, 1, true);
        let t = text(&w);
        assert!(t.ends_with("connection: close\r\n\r\n"));
        assert!(t.contains("content-length: 5"));
    }

    #[test]
    fn simple_responses_close() {
        let mut w = Vec::new();
        write_simple_response(&mut w, 503, "text/plain", b"draining\n");
        assert_eq!(
            text(&w),
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 9\r\nconnection: close\r\n\r\ndraining\n"
        );
    }
}
