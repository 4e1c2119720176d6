//! Parsing one request head (httparse) into the few facts the serve loop needs.
//!
//! Nothing here allocates; the echo prefix is written into a caller's reused buffer
//! while the header slices are still borrowed from the read buffer.

use std::mem::MaybeUninit;

use super::echo;

/// Most headers accepted in one request; more is answered with 431.
pub const MAX_HEADERS: usize = 128;

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Per-request overrides taken from the query string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `?bytes=N`: body size of this response.
    pub bytes: Option<u64>,
    /// `?chunked=1`: answer with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `?status=NNN`: response status (200..=599).
    pub status: Option<u16>,
    /// `?delay_ms=N`: extra delay before answering.
    pub delay_ms: u64,
}

/// What the serve loop needs from a complete request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, including the blank line.
    pub len: usize,
    pub is_head_method: bool,
    pub http10: bool,
    pub keep_alive: bool,
    pub framing: Framing,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// The path is `/__hits`.
    pub hits_endpoint: bool,
    pub overrides: Overrides,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Complete(Head),
    /// More bytes are needed.
    Partial,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Answer 400 and close.
    Malformed,
    /// Answer 431 and close.
    TooManyHeaders,
}

/// Parses the request head at the start of `buf`. With `echo`, also writes the echo
/// JSON prefix (method, target, headers) into it.
pub fn parse(buf: &[u8], echo: Option<&mut Vec<u8>>) -> Result<Parsed, HeadError> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed);
    };
    let http10 = version == 0;

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for header in req.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_decimal(trim(header.value)).ok_or(HeadError::Malformed)?;
            if content_length.is_some_and(|seen| seen != n) {
                return Err(HeadError::Malformed);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            for coding in tokens(header.value) {
                // `chunked` must be the last coding and appear once.
                if chunked {
                    return Err(HeadError::Malformed);
                }
                chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in tokens(header.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive_token |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue |= trim(header.value).eq_ignore_ascii_case(b"100-continue");
        }
    }

    let framing = match (transfer_encoding, content_length) {
        (false, None) | (false, Some(0)) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
        // Both framings at once is a smuggling vector; HTTP/1.0 has no chunked.
        (true, Some(_)) => return Err(HeadError::Malformed),
        (true, None) if !chunked || http10 => return Err(HeadError::Malformed),
        (true, None) => Framing::Chunked,
    };

    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let overrides = match query {
        Some(q) => parse_overrides(q).ok_or(HeadError::Malformed)?,
        None => Overrides::default(),
    };

    if let Some(out) = echo {
        echo::write_prefix(out, method, target, req.headers);
    }

    Ok(Parsed::Complete(Head {
        len,
        is_head_method: method == "HEAD",
        http10,
        keep_alive: !close && (!http10 || keep_alive_token),
        framing,
        expect_continue: expect_continue && !http10,
        hits_endpoint: path == "/__hits",
        overrides,
    }))
}

/// Parses `bytes=N&chunked=1&status=NNN&delay_ms=N`; unknown keys are ignored, a bad
/// value of a known key is an error.
fn parse_overrides(query: &str) -> Option<Overrides> {
    let mut o = Overrides::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "bytes" => o.bytes = Some(parse_decimal(value.as_bytes())?),
            "chunked" => {
                o.chunked = match value {
                    "1" | "true" | "" => true,
                    "0" | "false" => false,
                    _ => return None,
                }
            }
            "status" => {
                let status = u16::try_from(parse_decimal(value.as_bytes())?).ok()?;
                if !(200..=599).contains(&status) {
                    return None;
                }
                o.status = Some(status);
            }
            "delay_ms" => o.delay_ms = parse_decimal(value.as_bytes())?,
            _ => {}
        }
    }
    Some(o)
}

/// Strict unsigned decimal: digits only, no sign, no overflow.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// Comma-separated list elements, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        match parse(raw.as_bytes(), None) {
            Ok(Parsed::Complete(h)) => h,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn simple_get_keeps_alive() {
        let h = head("GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT");
        assert_eq!(h.len, "GET / HTTP/1.1\r\nHost: a\r\n\r\n".len());
        assert!(h.keep_alive && !h.http10 && !h.is_head_method && !h.hits_endpoint);
        assert_eq!(h.framing, Framing::Empty);
        assert_eq!(h.overrides, Overrides::default());
    }

    #[test]
    fn connection_rules() {
        assert!(!head("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn framing_rules() {
        let h = head("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(12));
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /?bytes=x HTTP/1.1\r\n\r\n",
            "GET /?status=99 HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert_eq!(
                parse(bad.as_bytes(), None),
                Err(HeadError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn overrides_and_hits() {
        let h = head("GET /x?bytes=5&chunked=1&status=404&delay_ms=7&other=q HTTP/1.1\r\n\r\n");
        assert_eq!(
            h.overrides,
            Overrides {
                bytes: Some(5),
                chunked: true,
                status: Some(404),
                delay_ms: 7
            }
        );
        assert!(head("GET /__hits HTTP/1.1\r\n\r\n").hits_endpoint);
        assert!(head("GET /__hits?x=1 HTTP/1.1\r\n\r\n").hits_endpoint);
        assert!(!head("GET /__hits/x HTTP/1.1\r\n\r\n").hits_endpoint);
    }

    #[test]
    fn partial_and_too_many_headers() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost", None), Ok(Parsed::Partial));
        assert_eq!(parse(b"", None), Ok(Parsed::Partial));
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("x-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(parse(many.as_bytes(), None), Err(HeadError::TooManyHeaders));
    }

    #[test]
    fn expect_continue_only_on_http11() {
        assert!(
            head("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
        assert!(
            !head("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
    }
}
