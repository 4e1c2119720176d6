//! The request head for HTTP/2: the HTTP/1.1 head the forwarder wrote (one writer
//! of heads for both protocols) read back and encoded as a header block: the
//! pseudo-fields from the request line and `host`, the fields with names
//! lowercased, less the connection-specific ones (RFC 9113 §8.2.2), plus
//! `te: trailers` (gRPC needs it; nothing else is allowed in `te`).

use std::mem::MaybeUninit;

use crate::http::http2::hpack::Encoder;
use crate::http::{is_hop_by_hop, parse_length, BodyFraming};

use super::super::failure::{ExchangeError, FailureSource};

/// Most fields a forwarded head carries (as the HTTP/1.1 parser allows, plus the
/// gateway's own).
const MAX_FIELDS: usize = 160;

/// Room for a head's fields, left uninitialised ([`RequestHead::parse`] fills it).
pub type FieldRoom<'h> = [MaybeUninit<httparse::Header<'h>>; MAX_FIELDS];

/// Empty room for [`RequestHead::parse`].
pub fn field_room<'h>() -> FieldRoom<'h> {
    [const { MaybeUninit::uninit() }; MAX_FIELDS]
}

/// A forwarded head read back.
pub struct RequestHead<'h> {
    method: &'h [u8],
    path: &'h [u8],
    authority: &'h [u8],
    fields: &'h [httparse::Header<'h>],
    /// Where the body's first bytes start in the head's buffer.
    pub head_len: usize,
    /// How the body is framed in the head (chunked bodies are de-chunked for DATA).
    pub framing: BodyFraming,
}

impl<'h> RequestHead<'h> {
    /// Reads `head` (an HTTP/1.1 request head, perhaps followed by body bytes),
    /// its fields into `room`.
    pub fn parse(
        head: &'h [u8],
        room: &'h mut FieldRoom<'h>,
    ) -> Result<RequestHead<'h>, ExchangeError> {
        let mut parsed = httparse::Request::new(&mut []);
        let head_len = match parsed.parse_with_uninit_headers(head, room) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => return Err(untranslatable()),
        };
        let method = parsed.method.unwrap_or("GET").as_bytes();
        let path = parsed.path.unwrap_or("/").as_bytes();
        let fields: &'h [httparse::Header<'h>] = parsed.headers;
        let mut authority = None;
        let mut framing = BodyFraming::None;
        for h in fields {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"host") {
                authority = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                framing = match parse_length(h.value) {
                    Some(0) | None => BodyFraming::None,
                    Some(n) => BodyFraming::Length(n),
                };
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                framing = BodyFraming::Chunked;
            }
        }
        Ok(RequestHead {
            method,
            path,
            authority: authority.ok_or_else(untranslatable)?,
            fields,
            head_len,
            framing,
        })
    }

    /// Appends the head's fields to a header block with `encoder`.
    pub fn encode(&self, scheme: &[u8], encoder: &mut Encoder, out: &mut Vec<u8>) {
        encoder.field(b":method", self.method, out);
        encoder.field(b":scheme", scheme, out);
        encoder.field(b":authority", self.authority, out);
        encoder.field(b":path", self.path, out);
        let mut lower = [0u8; 64];
        let mut long = Vec::new();
        for h in self.fields {
            let name = h.name.as_bytes();
            let keep = name.eq_ignore_ascii_case(b"content-length")
                || !(is_hop_by_hop(name) || name.eq_ignore_ascii_case(b"host"));
            if !keep {
                continue;
            }
            let name: &[u8] = if !name.iter().any(u8::is_ascii_uppercase) {
                name
            } else if let Some(buf) = lower.get_mut(..name.len()) {
                buf.copy_from_slice(name);
                buf.make_ascii_lowercase();
                buf
            } else {
                long.clear();
                long.extend(name.iter().map(u8::to_ascii_lowercase));
                &long
            };
            encoder.field(name, h.value, out);
        }
        encoder.field(b"te", b"trailers", out);
    }
}

fn untranslatable() -> ExchangeError {
    ExchangeError::new(
        FailureSource::Protocol,
        "request head could not be translated to HTTP/2",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::http2::hpack::Decoder;

    fn fields_of(head: &[u8], scheme: &[u8]) -> (Vec<(String, String)>, usize, BodyFraming) {
        let mut room = field_room();
        let h = RequestHead::parse(head, &mut room).unwrap();
        let mut block = Vec::new();
        h.encode(scheme, &mut Encoder::new(), &mut block);
        let mut out = Vec::new();
        Decoder::new(4096)
            .decode(&block, &mut |n, v| {
                out.push((
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ))
            })
            .unwrap();
        (out, h.head_len, h.framing)
    }

    #[test]
    fn an_http1_head_becomes_an_http2_header_block() {
        let head = b"POST /a?b=1 HTTP/1.1\r\nUser-Agent: t\r\nconnection: x-hop\r\nhost: svc:8080\r\ncookie: a=1; b=2\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let (fields, len, framing) = fields_of(head, b"http");
        assert_eq!(framing, BodyFraming::Chunked);
        assert_eq!(&head[len..len + 3], b"5\r\n");
        let want = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "svc:8080"),
            (":path", "/a?b=1"),
            ("user-agent", "t"),
            ("cookie", "a=1; b=2"),
            ("te", "trailers"),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(fields, want);
        let (fields, _, framing) = fields_of(
            b"PUT / HTTP/1.1\r\nhost: h\r\nContent-Length: 3\r\n\r\nabc",
            b"https",
        );
        assert_eq!(framing, BodyFraming::Length(3));
        assert!(fields.contains(&("content-length".into(), "3".into())));
        assert!(fields.contains(&(":scheme".into(), "https".into())));
    }
}
