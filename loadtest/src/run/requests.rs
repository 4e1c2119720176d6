//! The requests a run sends: request `n` goes to URL `n % urls` and carries header-file
//! line `n % lines`, so one run can cycle through many API keys or tokens.
//!
//! Everything that does not change per request is pre-built. For HTTP/1.1
//! (`RequestSet`): a head prefix per URL (request line, `Host`, `Connection: close` with
//! `--new-connection`, the `-H` headers) and a suffix (`Content-Length` and the body);
//! writing request `n` is three copies into the connection's reused buffer. For
//! HTTP/2 (`Http2Requests`): per URL the URI (whose scheme and authority become
//! `:scheme` and `:authority`) and the header map; request `n` is a clone of those
//! plus its header-file line, and the body is shared, never copied.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, HOST};
use http::uri::{Authority, Scheme, Uri};
use http::{HeaderMap, Method, Request, Version};

use super::target::Target;

/// One `Name: value` header, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl Header {
    /// Parses `Name: value`: the name an RFC 9110 token, the value free of CR, LF and
    /// NUL, surrounding blanks trimmed.
    pub fn parse(text: &str) -> Result<Header, String> {
        let Some((name, value)) = text.split_once(':') else {
            return Err(format!("bad header {text:?}: want \"Name: value\""));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(format!("bad header name {name:?} in {text:?}"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(format!("bad header value in {text:?}: CR, LF or NUL"));
        }
        Ok(Header {
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(self.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// RFC 9110 `tchar`.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What varies and what does not between the requests of a run.
#[derive(Debug, Clone)]
pub struct RequestSet {
    /// Per URL: request line, Host (unless `-H Host` is given), `Connection: close`
    /// (with `--new-connection`, unless `-H Connection` is given) and the `-H` headers.
    prefixes: Vec<Vec<u8>>,
    /// Header-file lines, each `Name: value\r\n`; may be empty.
    cycled: Vec<Vec<u8>>,
    /// `Content-Length` when there is a body, the empty line, the body.
    suffix: Vec<u8>,
    head_method: bool,
}

impl RequestSet {
    pub fn new(
        method: &str,
        targets: &[Target],
        headers: &[Header],
        cycled: &[Header],
        body: Option<&[u8]>,
        close: bool,
    ) -> RequestSet {
        let given = |name: &str| {
            let named = |h: &Header| h.name.eq_ignore_ascii_case(name);
            headers.iter().any(named) || cycled.iter().any(named)
        };
        let own_host = given("host");
        let close = close && !given("connection");
        let prefixes = targets
            .iter()
            .map(|target| {
                let mut p = Vec::new();
                p.extend_from_slice(method.as_bytes());
                p.push(b' ');
                p.extend_from_slice(target.path.as_bytes());
                p.extend_from_slice(b" HTTP/1.1\r\n");
                if !own_host {
                    p.extend_from_slice(b"Host: ");
                    p.extend_from_slice(target.authority.as_bytes());
                    p.extend_from_slice(b"\r\n");
                }
                if close {
                    p.extend_from_slice(b"Connection: close\r\n");
                }
                for h in headers {
                    h.write(&mut p);
                }
                p
            })
            .collect();
        let cycled = cycled
            .iter()
            .map(|h| {
                let mut line = Vec::new();
                h.write(&mut line);
                line
            })
            .collect();
        let mut suffix = Vec::new();
        if let Some(body) = body {
            suffix.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        suffix.extend_from_slice(b"\r\n");
        suffix.extend_from_slice(body.unwrap_or_default());
        RequestSet {
            prefixes,
            cycled,
            suffix,
            head_method: method == "HEAD",
        }
    }

    /// Replaces `out` with request number `n`.
    pub fn write(&self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(pick::<Vec<u8>>(&self.prefixes, n));
        if !self.cycled.is_empty() {
            out.extend_from_slice(pick::<Vec<u8>>(&self.cycled, n));
        }
        out.extend_from_slice(&self.suffix);
    }

    /// HEAD responses carry no body whatever their length headers say.
    pub fn is_head(&self) -> bool {
        self.head_method
    }
}

/// Connection-specific header fields, which HTTP/2 forbids (RFC 9113 §8.2.2); `te`
/// is allowed with the value `trailers` only.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// The requests of an HTTP/2 run (`--http2`), with the same round robin as
/// `RequestSet`: request `n` goes to URL `n % urls` with header-file line
/// `n % lines`. A `Host` header (from `-H` or the header file) becomes the
/// `:authority`, as curl does; `Content-Length` is sent with a body.
#[derive(Debug, Clone)]
pub struct Http2Requests {
    method: Method,
    /// Per URL: the absolute URI and the `-H` headers (Host excepted).
    heads: Vec<(Uri, HeaderMap)>,
    /// Header-file lines; `host` lines replace the URI's authority.
    cycled: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
}

impl Http2Requests {
    /// Checks and converts the run's requests. `Err` is one line for the user: a
    /// header HTTP/2 does not allow, or a value the `http` crate refuses.
    pub fn new(
        method: &str,
        targets: &[Target],
        headers: &[Header],
        cycled: &[Header],
        body: Option<&[u8]>,
    ) -> Result<Http2Requests, String> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("not an HTTP method: {method:?}"))?;
        let fixed = headers
            .iter()
            .map(Header::to_http2)
            .collect::<Result<Vec<_>, _>>()?;
        let cycled = cycled
            .iter()
            .map(Header::to_http2)
            .collect::<Result<Vec<_>, _>>()?;
        let own_host = fixed.iter().rev().find(|(name, _)| name == HOST);
        let heads = targets
            .iter()
            .map(|target| {
                let authority = match own_host {
                    Some((_, value)) => value.as_bytes(),
                    None => target.authority.as_bytes(),
                };
                let uri = absolute_uri(target.tls, authority, &target.path)?;
                let mut map = HeaderMap::new();
                for (name, value) in fixed.iter().filter(|(name, _)| name != HOST) {
                    map.append(name.clone(), value.clone());
                }
                if let Some(body) = body {
                    if !map.contains_key(CONTENT_LENGTH) {
                        map.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                    }
                }
                Ok((uri, map))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Http2Requests {
            method,
            heads,
            cycled,
            body: body.map(Bytes::copy_from_slice),
        })
    }

    /// Request number `n` (its head: the body, if any, is `body()`).
    pub fn request(&self, n: u64) -> Request<()> {
        let (uri, headers) = pick(&self.heads, n);
        let mut request = Request::new(());
        *request.method_mut() = self.method.clone();
        *request.version_mut() = Version::HTTP_2;
        *request.headers_mut() = headers.clone();
        *request.uri_mut() = uri.clone();
        if !self.cycled.is_empty() {
            let (name, value) = pick(&self.cycled, n);
            if name == HOST {
                if let Ok(authority) = Authority::from_maybe_shared(value.clone()) {
                    let mut parts = uri.clone().into_parts();
                    parts.authority = Some(authority);
                    if let Ok(uri) = Uri::from_parts(parts) {
                        *request.uri_mut() = uri;
                    }
                }
            } else {
                request.headers_mut().append(name.clone(), value.clone());
            }
        }
        request
    }

    /// Every request's body (`--body-file`): a shared buffer, cloned without copying.
    pub fn body(&self) -> Option<&Bytes> {
        self.body.as_ref()
    }
}

impl Header {
    /// The header as HTTP/2 sends it (the name in lower case), or why it cannot be.
    fn to_http2(&self) -> Result<(HeaderName, HeaderValue), String> {
        let name = HeaderName::from_bytes(self.name.as_bytes())
            .map_err(|_| format!("bad header name {:?}", self.name))?;
        if CONNECTION_SPECIFIC.contains(&name.as_str())
            || (name == http::header::TE && !self.value.eq_ignore_ascii_case("trailers"))
        {
            return Err(format!(
                "header {:?} is connection-specific: HTTP/2 does not allow it (RFC 9113 §8.2.2)",
                self.name
            ));
        }
        let value = HeaderValue::from_str(&self.value)
            .map_err(|_| format!("bad header value for {:?}: control bytes", self.name))?;
        if name == HOST {
            absolute_uri(false, value.as_bytes(), "/")?;
        }
        Ok((name, value))
    }
}

/// `http[s]://AUTHORITY/PATH` as a URI, or why `authority` is not one.
fn absolute_uri(tls: bool, authority: &[u8], path: &str) -> Result<Uri, String> {
    let scheme = if tls { Scheme::HTTPS } else { Scheme::HTTP };
    let authority = Authority::try_from(authority).map_err(|_| {
        format!(
            "bad authority {:?} for HTTP/2",
            String::from_utf8_lossy(authority)
        )
    })?;
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| format!("bad path {path:?} for HTTP/2: {e}"))
}

fn pick<T>(list: &[T], n: u64) -> &T {
    // `list` is never empty here and `n % len < len`, so the index is in range.
    let len = list.len() as u64;
    &list[(n % len) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn headers() {
        assert_eq!(
            Header::parse("X-Api-Key:  k1 "),
            Ok(Header {
                name: "X-Api-Key".into(),
                value: "k1".into()
            })
        );
        assert!(Header::parse("Authorization: Bearer a.b.c").is_ok());
        assert!(Header::parse("no colon").is_err());
        assert!(Header::parse("Bad Name: v").is_err());
        assert!(Header::parse(": v").is_err());
        assert!(Header::parse("X: a\r\nInjected: b").is_err());
    }

    /// Two URLs, an `Accept` header and three header-file lines `X-Key: k0…k2`.
    fn urls_and_keys() -> ([Target; 2], [Header; 1], Vec<Header>) {
        let targets = [
            target("http://127.0.0.1:1/a"),
            target("http://127.0.0.1:1/b?x"),
        ];
        let fixed = [Header::parse("Accept: */*").unwrap()];
        let keys = (0..3)
            .map(|i| Header::parse(&format!("X-Key: k{i}")).unwrap())
            .collect();
        (targets, fixed, keys)
    }

    #[test]
    fn cycles_urls_and_header_lines() {
        let (targets, fixed, keys) = urls_and_keys();
        let set = RequestSet::new("GET", &targets, &fixed, &keys, None, false);
        let mut out = Vec::new();
        set.write(0, &mut out);
        assert_eq!(
            out,
            b"GET /a HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAccept: */*\r\nX-Key: k0\r\n\r\n"
        );
        set.write(5, &mut out);
        assert_eq!(
            out,
            b"GET /b?x HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAccept: */*\r\nX-Key: k2\r\n\r\n"
        );
    }

    #[test]
    fn body_and_own_host() {
        let host = [Header::parse("host: example.test").unwrap()];
        let set = RequestSet::new(
            "POST",
            &[target("http://127.0.0.1:1/")],
            &host,
            &[],
            Some(b"hello"),
            false,
        );
        let mut out = Vec::new();
        set.write(7, &mut out);
        assert_eq!(
            out,
            b"POST / HTTP/1.1\r\nhost: example.test\r\nContent-Length: 5\r\n\r\nhello"
        );
        assert!(!set.is_head());
    }

    #[test]
    fn new_connection_asks_the_server_to_close() {
        let targets = [target("http://127.0.0.1:1/")];
        let set = RequestSet::new("GET", &targets, &[], &[], None, true);
        let mut out = Vec::new();
        set.write(0, &mut out);
        assert_eq!(
            out,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n"
        );
        let own = [Header::parse("Connection: keep-alive").unwrap()];
        let set = RequestSet::new("GET", &targets, &own, &[], None, true);
        set.write(0, &mut out);
        assert_eq!(
            out,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn http2_requests_cycle_and_map_host_to_authority() {
        let (targets, fixed, keys) = urls_and_keys();
        let set = Http2Requests::new("GET", &targets, &fixed, &keys, None).unwrap();
        let r = set.request(5);
        assert_eq!(r.uri(), "http://127.0.0.1:1/b?x");
        assert_eq!(r.version(), Version::HTTP_2);
        assert_eq!(r.headers()["accept"], "*/*");
        assert_eq!(r.headers()["x-key"], "k2");
        assert!(!r.headers().contains_key(HOST));
        assert!(set.body().is_none());

        let host = [Header::parse("Host: api.example.test").unwrap()];
        let tls = [target("https://127.0.0.1:1/")];
        let set = Http2Requests::new("POST", &tls, &host, &[], Some(b"hello")).unwrap();
        let r = set.request(0);
        assert_eq!(r.uri(), "https://api.example.test/");
        assert_eq!(r.method(), Method::POST);
        assert!(!r.headers().contains_key(HOST), "it is the :authority");
        assert_eq!(r.headers()[CONTENT_LENGTH], "5");
        assert_eq!(set.body().map(|b| &b[..]), Some(&b"hello"[..]));

        let cycled: Vec<Header> = ["Host: a.test", "Host: b.test"]
            .iter()
            .map(|h| Header::parse(h).unwrap())
            .collect();
        let set = Http2Requests::new("GET", &targets, &[], &cycled, None).unwrap();
        assert_eq!(set.request(0).uri(), "http://a.test/a");
        assert_eq!(set.request(1).uri(), "http://b.test/b?x");
    }

    #[test]
    fn http2_refuses_connection_specific_headers() {
        let targets = [target("http://127.0.0.1:1/")];
        for bad in [
            "Connection: close",
            "Keep-Alive: 5",
            "Transfer-Encoding: chunked",
            "Upgrade: websocket",
            "TE: gzip",
        ] {
            let h = [Header::parse(bad).unwrap()];
            let e = Http2Requests::new("GET", &targets, &h, &[], None).unwrap_err();
            assert!(e.contains("RFC 9113"), "{bad}: {e}");
            let e = Http2Requests::new("GET", &targets, &[], &h, None).unwrap_err();
            assert!(e.contains("connection-specific"), "{bad}: {e}");
        }
        let te = [Header::parse("TE: trailers").unwrap()];
        assert!(Http2Requests::new("GET", &targets, &te, &[], None).is_ok());
        let host = [Header::parse("Host: bad host").unwrap()];
        assert!(Http2Requests::new("GET", &targets, &host, &[], None).is_err());
    }
}
