//! The request head the forwarder built (HTTP/1.1 text: the retry loop re-sends
//! and re-targets it) read back as an HTTP/2 request: `Host` becomes `:authority`,
//! the fields that stop at this hop go (RFC 9113 §8.2.2), `te: trailers` is sent
//! (gRPC servers require it; the gateway relays trailers), and the framing the
//! head declared says how the body bytes after it are encoded.

use ::http::header::{HeaderName, HeaderValue};
use ::http::{Method, Request, Uri};

use crate::http::{is_hop_by_hop, BodyFraming};

use super::super::failure::{ExchangeError, FailureSource};

/// Header lines read on the stack; a head with more (up to [`MAX_FIELDS`]) is
/// read again with room for them.
const STACK_FIELDS: usize = 128;
/// More header lines than this in a head the gateway built cannot happen
/// (`max_headers` is at most 1000, plus the gateway's own).
const MAX_FIELDS: usize = 1100;

/// The HTTP/2 request for `head` (whose body bytes start at `.1`, framed as `.2`).
pub fn from_head(
    head: &[u8],
    scheme: &str,
) -> Result<(Request<()>, usize, BodyFraming), ExchangeError> {
    let mut fields = [httparse::EMPTY_HEADER; STACK_FIELDS];
    match translate(head, scheme, &mut fields) {
        Err(Some(httparse::Error::TooManyHeaders)) => {
            translate(head, scheme, &mut vec![httparse::EMPTY_HEADER; MAX_FIELDS])
        }
        other => other,
    }
    .map_err(|_| {
        ExchangeError::new(
            FailureSource::Protocol,
            "request head not translatable to HTTP/2",
        )
    })
}

/// [`from_head`] with `fields` to parse into; the parser's error, if that is why.
fn translate<'h>(
    head: &'h [u8],
    scheme: &str,
    fields: &mut [httparse::Header<'h>],
) -> Result<(Request<()>, usize, BodyFraming), Option<httparse::Error>> {
    let bad = || None;
    let mut parsed = httparse::Request::new(fields);
    let head_len = match parsed.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(None),
        Err(e) => return Err(Some(e)),
    };
    let method =
        Method::from_bytes(parsed.method.unwrap_or("GET").as_bytes()).map_err(|_| bad())?;
    let path = parsed.path.unwrap_or("/");
    let mut authority = None;
    let mut framing = BodyFraming::None;
    let mut request = Request::new(());
    let map = request.headers_mut();
    for h in parsed.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            authority = Some(h.value);
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.parse().ok());
            framing = match n {
                Some(0) | None => BodyFraming::None,
                Some(n) => BodyFraming::Length(n),
            };
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            framing = BodyFraming::Chunked;
            continue;
        } else if is_hop_by_hop(name) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(h.value),
        ) {
            map.append(n, v);
        }
    }
    map.insert(::http::header::TE, HeaderValue::from_static("trailers"));
    let authority = std::str::from_utf8(authority.ok_or_else(bad)?).map_err(|_| bad())?;
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| bad())?;
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    Ok((request, head_len, framing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http1_head_becomes_an_http2_request() {
        let head = b"POST /a?b=1 HTTP/1.1\r\nuser-agent: t\r\nconnection: x-hop\r\nx-hop: 1\r\nhost: svc:8080\r\ncookie: a=1; b=2\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let (req, len, framing) = from_head(head, "http").unwrap();
        assert_eq!(framing, BodyFraming::Chunked);
        assert_eq!(&head[len..len + 3], b"5\r\n");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().to_string(), "http://svc:8080/a?b=1");
        let h = req.headers();
        assert_eq!(h["user-agent"], "t");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["cookie"], "a=1; b=2");
        assert!(h.get("connection").is_none() && h.get("transfer-encoding").is_none());
        assert!(h.get("host").is_none());
        let (req, _, framing) = from_head(
            b"PUT / HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\nabc",
            "https",
        )
        .unwrap();
        assert_eq!(framing, BodyFraming::Length(3));
        assert_eq!(req.headers()["content-length"], "3");
    }
}
