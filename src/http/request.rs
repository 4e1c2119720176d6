//! Request heads: parse, enforce the size limits, find the one authority of the
//! request, and decide the body framing with the RFC 9112 §6 rules that keep a
//! proxy safe from request smuggling.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::authority::check_authority;
use super::headers::{screen_field_name, UnderscoreHeaders};
use super::target::split_target;
use super::{range_in, BodyFraming, HeaderLookup, HeaderRange, HttpError};

/// What a request head may be: size limits that apply while it is read, and the
/// rule for header names spelled with `_`.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub underscores: UnderscoreHeaders,
}

/// A parsed request head, as offsets into the buffer it was parsed from.
#[derive(Debug, Default)]
pub struct RequestHead {
    pub method: Range<usize>,
    /// The request-target as received (what the access log shows).
    pub target: Range<usize>,
    /// Its path and query: all of an origin-form target; what follows the
    /// authority of an absolute-form one (possibly empty). What is normalized,
    /// routed and forwarded.
    pub path_and_query: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<HeaderRange>,
    /// Bytes of the head, including the empty line.
    pub head_len: usize,
    pub body: BodyFraming,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// The request's authority (`host[:port]`, validated, see `authority.rs`): an
    /// absolute-form target's, else the `Host` header's. `None` only for an
    /// HTTP/1.0 request without either.
    pub authority: Option<Range<usize>>,
    pub is_head: bool,
}

impl RequestHead {
    /// The value of the first header named `name` (any case), from `src`, the bytes
    /// the head was parsed from. `host` is the request's authority, whichever
    /// of the target or the `Host` header gave it, so every reader of "the
    /// host" reads one value.
    pub fn header<'b>(&self, src: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        if name.len() == 4 && name.eq_ignore_ascii_case(b"host") {
            return self.authority(src);
        }
        find_header(src, &self.headers, name)
    }

    /// The request's authority (see the field), from `src`.
    pub fn authority<'b>(&self, src: &'b [u8]) -> Option<&'b [u8]> {
        self.authority.clone().and_then(|r| src.get(r))
    }

    /// The target's path and query (see the field), from `src`.
    pub fn path_and_query<'b>(&self, src: &'b [u8]) -> &'b [u8] {
        src.get(self.path_and_query.clone()).unwrap_or(b"")
    }

    /// The head's fields, read from `src`, as the stages read fields.
    pub fn fields<'a>(&'a self, src: &'a [u8]) -> HeadFields<'a> {
        HeadFields { head: self, src }
    }
}

/// A parsed head's fields over the bytes it was parsed from ([`HeaderLookup`]):
/// `get(b"host")` is the request's authority ([`RequestHead::header`]); `each`
/// shows the fields the codec kept, in order, as the client spelled them.
#[derive(Clone, Copy)]
pub struct HeadFields<'a> {
    head: &'a RequestHead,
    src: &'a [u8],
}

impl<'a> HeadFields<'a> {
    /// The fields as `(name, value)`, in order.
    pub fn iter(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let src = self.src;
        self.head
            .headers
            .iter()
            .filter_map(move |h| Some((src.get(h.name.clone())?, src.get(h.value.clone())?)))
    }
}

impl HeaderLookup for HeadFields<'_> {
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]> {
        self.head.header(self.src, lowercase_name)
    }

    fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
        for (name, value) in self.iter() {
            f(name, value);
        }
    }
}

/// The value of the first of `headers` (offsets into `src`) named `name`, any case.
pub fn find_header<'b>(src: &'b [u8], headers: &[HeaderRange], name: &[u8]) -> Option<&'b [u8]> {
    headers.iter().find_map(|h| {
        if src.get(h.name.clone())?.eq_ignore_ascii_case(name) {
            src.get(h.value.clone())
        } else {
            None
        }
    })
}

/// The outcome of one parse attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is complete and `RequestHead` is filled in.
    Complete,
    /// More bytes are needed.
    Partial,
}

const MAX_HEADERS_ARRAY: usize = 1000;

/// Parses the request head at the start of `buf` into `head`.
pub fn parse_request(
    buf: &[u8],
    limits: &HeadLimits,
    head: &mut RequestHead,
) -> Result<Parsed, HttpError> {
    let mut slots: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS_ARRAY] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS_ARRAY];
    let max = limits.max_headers.min(MAX_HEADERS_ARRAY);
    let mut req = httparse::Request::new(&mut []);
    let status = match req.parse_with_uninit_headers(buf, &mut slots[..max]) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(431, "too many header fields"))
        }
        Err(httparse::Error::Version) => {
            return Err(HttpError::new(
                505,
                "only HTTP/1.0 and HTTP/1.1 are served here",
            ))
        }
        Err(httparse::Error::HeaderName) => {
            return Err(HttpError::bad_request("malformed header name"))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(HttpError::bad_request("malformed header value"))
        }
        Err(httparse::Error::Token) => return Err(HttpError::bad_request("malformed method")),
        Err(_) => return Err(HttpError::bad_request("malformed request")),
    };
    let head_len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            return partial_limits(buf, limits).map(|()| Parsed::Partial);
        }
    };
    if head_len > limits.max_header_bytes {
        return Err(HttpError::new(431, "request header section too large"));
    }
    let offset = |s: &[u8]| range_in(buf, s);
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::bad_request("malformed request line"));
    };
    if target.len() > limits.max_uri_bytes {
        return Err(HttpError::new(414, "request target too long"));
    }
    let parts = split_target(target.as_bytes())?;
    let target_range = offset(target.as_bytes());
    let base = target_range.start;
    let at = move |r: Range<usize>| base + r.start..base + r.end;
    head.method = offset(method.as_bytes());
    head.path_and_query = at(parts.path_and_query);
    head.target = target_range;
    head.minor_version = minor;
    head.head_len = head_len;
    head.is_head = method == "HEAD";
    head.expect_continue = false;
    head.headers.clear();

    let mut host = None;
    let mut framing = Framing::default();
    let mut close = false;
    let mut keep_alive_token = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        // `headers_with_underscores`, and other spellings of reserved names.
        if !screen_field_name(name, limits.underscores)? {
            continue;
        }
        head.headers.push(HeaderRange {
            name: offset(name),
            value: offset(h.value),
        });
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                if host.is_some() {
                    return Err(HttpError::bad_request("more than one Host header"));
                }
                check_authority(h.value)?;
                host = Some(offset(h.value));
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    head.expect_continue = true;
                } else {
                    return Err(HttpError::new(
                        417,
                        "only Expect: 100-continue is supported",
                    ));
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in h.value.split(|&b| b == b',') {
                    let t = token.trim_ascii();
                    close |= t.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                framing.content_length(h.value)?
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                framing.transfer_encoding(h.value)?
            }
            _ => {}
        }
    }
    if minor == 1 && host.is_none() {
        return Err(HttpError::bad_request("HTTP/1.1 request without Host"));
    }
    // An absolute-form target's authority replaces Host (RFC 9112 §3.2.2).
    head.authority = parts.authority.map(at).or(host);
    head.body = framing.finish(minor)?;
    head.keep_alive = if minor == 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    Ok(Parsed::Complete)
}

/// Limits checked while the head is still incomplete, so a client cannot make the
/// gateway buffer more than it allows.
fn partial_limits(buf: &[u8], limits: &HeadLimits) -> Result<(), HttpError> {
    // The request line is `METHOD SP target SP HTTP/1.1`: allow for method and version.
    let line_allowance = limits.max_uri_bytes + 32;
    if buf.len() > line_allowance && !buf[..line_allowance].contains(&b'\n') {
        return Err(HttpError::new(414, "request target too long"));
    }
    if buf.len() >= limits.max_header_bytes {
        return Err(HttpError::new(431, "request header section too large"));
    }
    Ok(())
}

/// Collects Content-Length and Transfer-Encoding across all header lines.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    /// Transfer codings seen, in order; only whether the last is chunked matters.
    codings: u32,
    last_is_chunked: bool,
    chunked_seen: bool,
}

impl Framing {
    fn content_length(&mut self, value: &[u8]) -> Result<(), HttpError> {
        // A list of identical values is allowed (RFC 9110 §8.6); anything else is not.
        for item in value.split(|&b| b == b',') {
            let n = parse_length(item.trim_ascii())
                .ok_or(HttpError::bad_request("malformed Content-Length"))?;
            match self.length {
                Some(prev) if prev != n => {
                    return Err(HttpError::bad_request("conflicting Content-Length values"))
                }
                _ => self.length = Some(n),
            }
        }
        Ok(())
    }

    fn transfer_encoding(&mut self, value: &[u8]) -> Result<(), HttpError> {
        for item in value.split(|&b| b == b',') {
            let coding = item.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            if self.chunked_seen {
                // Nothing may follow chunked (RFC 9112 §6.1); chunked twice is also wrong.
                return Err(HttpError::bad_request(
                    "chunked must be the last transfer coding",
                ));
            }
            self.codings += 1;
            self.last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.chunked_seen |= self.last_is_chunked;
        }
        Ok(())
    }

    fn finish(self, minor: u8) -> Result<BodyFraming, HttpError> {
        if self.codings > 0 {
            if self.length.is_some() {
                return Err(HttpError::bad_request(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            if minor == 0 {
                return Err(HttpError::bad_request(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            if !self.last_is_chunked {
                return Err(HttpError::bad_request(
                    "chunked must be the last transfer coding",
                ));
            }
            if self.codings > 1 {
                return Err(HttpError::new(501, "transfer codings other than chunked"));
            }
            return Ok(BodyFraming::Chunked);
        }
        Ok(match self.length {
            Some(0) | None => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        })
    }
}

/// Strict decimal: 1 to 18 digits, nothing else (no sign, no spaces inside).
pub(crate) fn parse_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_header_bytes: 16384,
        max_headers: 100,
        max_uri_bytes: 8192,
        underscores: UnderscoreHeaders::Drop,
    };

    fn parse(raw: &str) -> Result<(Parsed, RequestHead), HttpError> {
        let mut head = RequestHead::default();
        parse_request(raw.as_bytes(), &LIMITS, &mut head).map(|p| (p, head))
    }

    fn status_of(raw: &str) -> u16 {
        match parse(raw) {
            Ok(_) => 0,
            Err(e) => e.status,
        }
    }

    #[test]
    fn simple_get() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n";
        let (p, h) = parse(raw).unwrap();
        assert_eq!(p, Parsed::Complete);
        assert_eq!(&raw[h.target.clone()], "/a?b=1");
        assert_eq!(h.body, BodyFraming::None);
        assert!(h.keep_alive);
        assert_eq!(h.head_len, raw.len());
    }

    #[test]
    fn partial_then_complete() {
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().0,
            Parsed::Partial
        );
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ];
        for c in cases {
            assert_eq!(status_of(c), 400, "{c:?}");
        }
    }

    fn authority_of(raw: &str) -> Option<String> {
        let (_, h) = parse(raw).unwrap();
        h.authority.map(|r| raw[r].to_string())
    }

    #[test]
    fn one_authority_per_request() {
        // RFC 9112 §3.2.2: an absolute-form target's authority replaces Host.
        let raw =
            "GET http://public.example.com/account HTTP/1.1\r\nHost: admin.example.com\r\n\r\n";
        assert_eq!(authority_of(raw).as_deref(), Some("public.example.com"));
        let (_, h) = parse(raw).unwrap();
        assert_eq!(&raw[h.path_and_query.clone()], "/account");
        assert_eq!(
            h.header(raw.as_bytes(), b"HOST"),
            Some(&b"public.example.com"[..])
        );
        let raw = "GET /a?b HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n";
        assert_eq!(authority_of(raw).as_deref(), Some("[::1]:8443"));
        assert_eq!(authority_of("GET / HTTP/1.0\r\n\r\n"), None);
        assert_eq!(
            authority_of("GET http://h:1 HTTP/1.0\r\n\r\n").as_deref(),
            Some("h:1")
        );
    }

    #[test]
    fn invalid_hosts_are_refused_even_when_the_target_has_the_authority() {
        for host in [
            "public.example.com:@admin.example.com",
            "a b",
            "a,b",
            "",
            "user@h",
            "h:x",
            "[::1",
            "2130706433",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(status_of(&raw), 400, "Host: {host}");
            let raw = format!("GET http://h/ HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(status_of(&raw), 400, "absolute-form with Host: {host}");
        }
        for target in ["*", "h:443", "ftp://h/", "http://u@h/", "http:///x", "x"] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(status_of(&raw), 400, "{target}");
        }
    }

    fn with_underscores(rule: UnderscoreHeaders, raw: &str) -> Result<Vec<String>, u16> {
        let limits = HeadLimits {
            underscores: rule,
            ..LIMITS
        };
        let mut head = RequestHead::default();
        match parse_request(raw.as_bytes(), &limits, &mut head) {
            Ok(_) => Ok(head
                .headers
                .iter()
                .map(|h| raw[h.name.clone()].to_string())
                .collect()),
            Err(e) => Err(e.status),
        }
    }

    #[test]
    fn header_names_with_underscores() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nX_User_Id: admin\r\nX_Api_Key: k\r\n\
                   Transfer_Encoding: chunked\r\nX_Forwarded_Host: evil\r\nX-Ok: 1\r\n\r\n";
        assert_eq!(
            with_underscores(UnderscoreHeaders::Drop, raw),
            Ok(vec!["Host".to_string(), "X-Ok".to_string()])
        );
        assert_eq!(with_underscores(UnderscoreHeaders::Reject, raw), Err(400));
        // Allowed, except the spellings of names the gateway owns or that stop at
        // this hop; `X_User_Id` is an identity name, which the auth stage strips.
        assert_eq!(
            with_underscores(UnderscoreHeaders::Allow, raw),
            Ok(vec![
                "Host".to_string(),
                "X_User_Id".to_string(),
                "X_Api_Key".to_string(),
                "X-Ok".to_string()
            ])
        );
        // A dropped underscore Host is no second Host.
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nHo_st: x\r\n\r\n";
        assert!(with_underscores(UnderscoreHeaders::Drop, raw).is_ok());
        // Other characters old CGI gateways read as `_` fold the same way, in
        // every mode; harmless names with them pass.
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nX.Forwarded.For: 1\r\nTransfer.Encoding: chunked\r\nX.Ok: 1\r\n\r\n";
        for rule in [
            UnderscoreHeaders::Drop,
            UnderscoreHeaders::Reject,
            UnderscoreHeaders::Allow,
        ] {
            assert_eq!(
                with_underscores(rule, raw),
                Ok(vec!["Host".to_string(), "X.Ok".to_string()])
            );
        }
    }

    #[test]
    fn identical_content_lengths_are_one() {
        let (_, h) =
            parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert_eq!(h.body, BodyFraming::Length(5));
    }

    #[test]
    fn other_codings_before_chunked_are_not_implemented() {
        assert_eq!(
            status_of("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
    }

    #[test]
    fn limits() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
        assert_eq!(status_of(&long), 414);
        let partial_long = format!("GET /{}", "a".repeat(9000));
        assert_eq!(status_of(&partial_long), 414);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(17000)
        );
        assert_eq!(status_of(&big), 431);
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            status_of(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")),
            431
        );
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap()
                .1
                .keep_alive
        );
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().1.keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .1
                .keep_alive
        );
    }

    #[test]
    fn expect() {
        assert!(
            parse(
                "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
            )
            .unwrap()
            .1
            .expect_continue
        );
        assert_eq!(
            status_of("POST / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n"),
            417
        );
    }
}
