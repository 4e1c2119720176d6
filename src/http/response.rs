//! Upstream response heads: parse and decide the body framing (RFC 9112 §6.3).

use std::ops::Range;

use super::request::{find_header, parse_length};
use super::{range_in, BodyFraming, HeaderLookup, HeaderRange};

/// More header lines than this in one upstream response is treated as malformed.
const MAX_RESPONSE_HEADERS: usize = 128;

/// A parsed upstream response head, as offsets into the buffer it came from.
#[derive(Debug, Default)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Range<usize>,
    pub minor_version: u8,
    pub headers: Vec<HeaderRange>,
    pub head_len: usize,
    pub body: BodyFraming,
    /// The upstream will keep the connection open after this response.
    pub keep_alive: bool,
}

/// Parses the response head at the start of `buf`. `Ok(None)` means more bytes are
/// needed. `request_was_head` tells whether a body can follow. An error names why
/// the response is unusable (answered with 502).
pub fn parse_response(
    buf: &[u8],
    request_was_head: bool,
    head: &mut ResponseHead,
) -> Result<Option<()>, &'static str> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed response head from upstream"),
    };
    let (Some(code), Some(minor)) = (res.code, res.version) else {
        return Err("malformed status line from upstream");
    };
    let offset = |s: &[u8]| range_in(buf, s);
    head.status = code;
    head.minor_version = minor;
    head.reason = res.reason.map(|r| offset(r.as_bytes())).unwrap_or(0..0);
    head.head_len = head_len;
    head.headers.clear();
    let mut length: Option<u64> = None;
    let mut chunked_last = false;
    let mut has_te = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        head.headers.push(HeaderRange {
            name: offset(name),
            value: offset(h.value),
        });
        if name.eq_ignore_ascii_case(b"content-length") {
            for item in h.value.split(|&b| b == b',') {
                let n = parse_length(item.trim_ascii())
                    .ok_or("malformed Content-Length from upstream")?;
                if length.is_some_and(|prev| prev != n) {
                    return Err("conflicting Content-Length from upstream");
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
            if let Some(last) = h
                .value
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .rfind(|t| !t.is_empty())
            {
                chunked_last = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',') {
                let t = token.trim_ascii();
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive_token |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let no_body = request_was_head || code < 200 || code == 204 || code == 304;
    head.body = if no_body {
        BodyFraming::None
    } else if has_te {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3, rule 3).
        if chunked_last {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        }
    } else {
        match length {
            Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilClose,
        }
    };
    // A response with both framings may be a smuggling attempt: never reuse its connection.
    let framed = !(matches!(head.body, BodyFraming::UntilClose) || (has_te && length.is_some()));
    head.keep_alive = framed
        && if minor == 1 {
            !close
        } else {
            keep_alive_token && !close
        };
    Ok(Some(()))
}

/// Fields as offsets into the bytes they were parsed from (an HTTP/1.1 head).
#[derive(Clone, Copy)]
pub struct FieldRanges<'a> {
    pub src: &'a [u8],
    pub fields: &'a [HeaderRange],
}

impl HeaderLookup for FieldRanges<'_> {
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]> {
        find_header(self.src, self.fields, lowercase_name)
    }

    fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
        for h in self.fields {
            if let (Some(name), Some(value)) =
                (self.src.get(h.name.clone()), self.src.get(h.value.clone()))
            {
                f(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, was_head: bool) -> ResponseHead {
        let mut h = ResponseHead::default();
        assert_eq!(
            parse_response(raw.as_bytes(), was_head, &mut h),
            Ok(Some(()))
        );
        h
    }

    #[test]
    fn framing() {
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).body,
            BodyFraming::Length(5)
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).body,
            BodyFraming::None
        );
        assert_eq!(
            parse("HTTP/1.1 204 No Content\r\n\r\n", false).body,
            BodyFraming::None
        );
        assert_eq!(
            parse(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .body,
            BodyFraming::Chunked
        );
        let h = parse("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(h.body, BodyFraming::UntilClose);
        assert!(!h.keep_alive);
        assert!(
            !parse(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                false
            )
            .keep_alive
        );
    }

    /// Found by `fuzz/fuzz_targets/response_head.rs`: a status line without a
    /// reason phrase gave a range outside the buffer (an overflow in debug builds).
    #[test]
    fn status_line_without_a_reason_phrase() {
        let raw = "HTTP/1.1 200\r\nconnection: close\r\n\r\n5 Z\r\n";
        let h = parse(raw, false);
        assert_eq!(h.status, 200);
        assert_eq!(raw.get(h.reason.clone()), Some(""));
        assert_eq!(h.head_len, raw.len() - 5);
    }

    #[test]
    fn bad_lengths() {
        let mut h = ResponseHead::default();
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            false,
            &mut h
        )
        .is_err());
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false,
            &mut h
        )
        .is_err());
    }
}
