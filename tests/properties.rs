//! Properties of the codec and the path rules (proptest), over generated inputs
//! rich in the characters that matter:
//!
//! 1. path normalization is idempotent, in both `path_parameters` modes;
//! 2. a path that the gateway routes to one route reads as under the same route to
//!    the common backends modelled here (Tomcat/Spring: parameters stripped, then
//!    decoded; Apache Shiro: decoded, then stripped; nginx and Go: decoded, `;`
//!    literal), both for the path the gateway forwards and for the raw path the
//!    client wrote;
//! 3. a parsed head written upstream and parsed again gives the same fields;
//! 4. a chunked body round-trips through the scanner, read in any pieces, with its
//!    trailers kept (responses) or left out (requests).

use std::net::{IpAddr, Ipv4Addr};

use portico::http::{
    is_gateway_owned, is_hop_by_hop, parse_request, write_upstream_request, ChunkedScanner,
    FieldList, HeadLimits, HeaderEdit, Parsed, RequestHead, UnderscoreHeaders, UpstreamRequest,
};
use portico::route::{normalize_path, PathParameters};
use proptest::prelude::*;

// ---------------------------------------------------------------- paths

/// Segments an attacker combines: names, dot segments in every spelling, path
/// parameters, encoded separators, case, double encoding, overlong UTF-8.
const PIECES: &[&str] = &[
    "admin",
    "public",
    "x",
    "ADMIN",
    "%61dmin",
    "%2561dmin",
    "admin.",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    ".%2e",
    "..;",
    ".;",
    ";",
    ";x",
    "admin;x",
    ";jsessionid=1",
    "%3b",
    "%3Bx",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "",
    "%00",
    "%09",
    "%20",
    "%c0%ae",
    "%c3%a9",
    "~",
    "%7e",
];

fn raw_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..8).prop_map(|parts| {
        let mut s = String::from("/");
        for (i, p) in parts.iter().enumerate() {
            if i > 0 && (i % 2 == 0 || p.is_empty()) {
                s.push('/');
            }
            s.push_str(p);
        }
        s
    })
}

const MODES: [PathParameters; 2] = [PathParameters::Reject, PathParameters::Strip];

/// The routes of the model: `/admin`, `/public` (segment-aware prefixes), `/`.
fn route(path: &str) -> &'static str {
    for prefix in ["/admin", "/public"] {
        if path == prefix || path.starts_with(&format!("{prefix}/")) {
            return prefix;
        }
    }
    "/"
}

/// Percent-decodes everything; `None` on a malformed escape or a NUL, which
/// every modelled server refuses.
fn decode_all(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v == 0 {
                return None;
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Removes `;...` up to the next `/` in every segment.
fn strip_parameters(s: &str) -> String {
    s.split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

/// Merges slashes and resolves dot segments; `None` when `..` climbs above the
/// root (these servers answer 400).
fn resolve(s: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for seg in s.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            other => out.push(other),
        }
    }
    Some(format!("/{}", out.join("/")))
}

/// Tomcat / Jetty / Spring: parameters stripped from the raw path, then decoded
/// (`%2F` refused, `\` read as `/` as with `ALLOW_BACKSLASH`), then normalized.
fn tomcat(raw: &str) -> Option<String> {
    let stripped = strip_parameters(raw);
    if stripped.to_ascii_lowercase().contains("%2f") {
        return None;
    }
    resolve(&decode_all(&stripped)?.replace('\\', "/"))
}

/// Apache Shiro before CVE-2020-13933: decoded first, then parameters stripped.
fn shiro(raw: &str) -> Option<String> {
    resolve(&strip_parameters(&decode_all(raw)?.replace('\\', "/")))
}

/// nginx and Go's ServeMux: decoded, `;` an ordinary character.
fn nginx(raw: &str) -> Option<String> {
    resolve(&decode_all(raw)?)
}

type Backend = fn(&str) -> Option<String>;
const BACKENDS: [(&str, Backend); 3] = [("tomcat", tomcat), ("shiro", shiro), ("nginx", nginx)];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalization_is_idempotent(raw in raw_path(), query in prop::option::of("[a-z=&;%/.]{0,8}")) {
        let mut target = raw.clone();
        if let Some(q) = &query {
            target.push('?');
            target.push_str(q);
        }
        for mode in MODES {
            let Ok(once) = normalize_path(target.as_bytes(), mode) else { continue };
            prop_assert!(once.path.starts_with('/'));
            for bad in ["//", "/./", "/../", ";"] {
                prop_assert!(!once.path.contains(bad), "{raw} -> {}", once.path);
            }
            for again in MODES {
                let twice = normalize_path(once.path.as_bytes(), again).expect("normal form");
                prop_assert_eq!(&twice.path, &once.path);
            }
            prop_assert_eq!(once.query, query.clone());
        }
    }

    #[test]
    fn no_spelling_reaches_another_route_on_a_common_backend(raw in raw_path()) {
        for mode in MODES {
            let Ok(target) = normalize_path(raw.as_bytes(), mode) else { continue };
            let routed = route(&target.path);
            for (name, backend) in BACKENDS {
                // What the backend makes of the path the gateway forwards.
                if let Some(seen) = backend(&target.path) {
                    prop_assert_eq!(route(&seen), routed, "{} read forwarded {} as {}", name, target.path, seen);
                }
                // What the backend would make of the client's own spelling: the
                // gateway's reading agrees with it wherever the mode keeps `;`
                // meaningless (reject) or reads it as the servlet does (strip).
                let agrees = mode == PathParameters::Reject || name != "nginx";
                if agrees {
                    if let Some(seen) = backend(&raw) {
                        prop_assert_eq!(route(&seen), routed, "{} read {} as {}, the gateway as {}", name, raw, seen, target.path);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- heads

const LIMITS: HeadLimits = HeadLimits {
    max_header_bytes: 1 << 20,
    max_headers: 1000,
    max_uri_bytes: 1 << 20,
    underscores: UnderscoreHeaders::Allow,
};

fn header_line() -> impl Strategy<Value = (String, String)> {
    let names = prop::sample::select(vec![
        "X-A",
        "x_b",
        "Accept",
        "Cookie",
        "X-Forwarded-For",
        "X-Forwarded-Port",
        "Forwarded",
        "X-Real-IP",
        "Connection",
        "Keep-Alive",
        "TE",
        "Proxy-X",
        "X-Request-Id",
        "X-Original-URL",
        "Authorization",
        "X_Forwarded_Host",
        "Transfer_Encoding",
    ]);
    (names, "[ -~]{0,12}").prop_map(|(n, v)| (n.to_string(), v.trim().to_string()))
}

fn host() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a.example",
        "A.Example.COM.:8080",
        "[::1]:8443",
        "127.0.0.1",
        "h:",
        "x_y.internal",
    ])
    .prop_map(str::to_string)
}

#[derive(Debug, Clone)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn a_head_written_upstream_parses_to_the_same_fields(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
        path in "/[a-z0-9/._~-]{0,20}",
        query in prop::option::of("[a-z0-9=&]{0,10}"),
        absolute in prop::option::of(host()),
        host in host(),
        headers in prop::collection::vec(header_line(), 0..8),
        framing in prop_oneof![Just(Framing::None), (1u64..1_000_000).prop_map(Framing::Length), Just(Framing::Chunked)],
        http10 in any::<bool>(),
    ) {
        let target = match (&absolute, &query) {
            (Some(a), Some(q)) => format!("http://{a}{path}?{q}"),
            (Some(a), None) => format!("http://{a}{path}"),
            (None, Some(q)) => format!("{path}?{q}"),
            (None, None) => path.clone(),
        };
        let version = if http10 { "1.0" } else { "1.1" };
        let mut raw = format!("{method} {target} HTTP/{version}\r\nHost: {host}\r\n");
        for (n, v) in &headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        match framing {
            Framing::None => {}
            Framing::Length(n) => raw.push_str(&format!("Content-Length: {n}\r\n")),
            Framing::Chunked if !http10 => raw.push_str("Transfer-Encoding: chunked\r\n"),
            Framing::Chunked => {}
        }
        raw.push_str("\r\n");
        let mut head = RequestHead::default();
        let parsed = parse_request(raw.as_bytes(), &LIMITS, &mut head);
        prop_assume!(parsed == Ok(Parsed::Complete));
        let src = &raw.as_bytes()[..head.head_len];
        let authority = head.authority(src).expect("an authority").to_vec();
        let expected = absolute.clone().unwrap_or(host.clone());
        prop_assert_eq!(&authority, expected.as_bytes());

        let normalized = normalize_path(head.path_and_query(src), PathParameters::Reject).expect("normal");
        let mut identity = FieldList::new();
        identity.push(b"x-user-id", b"alice");
        let req = UpstreamRequest {
            method: &src[head.method.clone()],
            path: &normalized.path,
            query: normalized.query.as_deref(),
            host: &authority,
            client_host: Some(&authority),
            client_ip: &portico::text::ip_text(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
            secure: false,
            http10: head.minor_version == 0,
            body: head.body,
            added: &[&identity],
            request_id: b"id-1",
            trace: Default::default(),
            upgrade: None,
        };
        let mut out = Vec::new();
        let host_at = write_upstream_request(&mut out, &head.fields(src), &req, |_, _| HeaderEdit::Keep);
        prop_assert_eq!(&out[host_at.host], &authority[..]);
        let mut again = RequestHead::default();
        prop_assert_eq!(parse_request(&out, &LIMITS, &mut again), Ok(Parsed::Complete));
        prop_assert_eq!(again.head_len, out.len());
        prop_assert_eq!(&out[again.method.clone()], method.as_bytes());
        prop_assert_eq!(again.authority(&out), Some(&authority[..]));
        prop_assert_eq!(again.minor_version, head.minor_version);
        prop_assert_eq!(again.body, head.body);
        let again_target = normalize_path(again.path_and_query(&out), PathParameters::Reject).expect("normal");
        prop_assert_eq!(again_target, normalized);
        // Each client header that is not hop-by-hop (or named by Connection) nor
        // the gateway's own is forwarded once, in order, unchanged; the rest of
        // what goes upstream is what the gateway writes itself.
        let lines = |h: &RequestHead, b: &[u8]| -> Vec<(String, String)> {
            h.headers
                .iter()
                .map(|r| (
                    String::from_utf8_lossy(&b[r.name.clone()]).to_ascii_lowercase(),
                    String::from_utf8_lossy(&b[r.value.clone()]).into_owned(),
                ))
                .collect()
        };
        let client = lines(&head, src);
        let nominated: Vec<String> = client
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
            .collect();
        let expected: Vec<(String, String)> = client
            .into_iter()
            .filter(|(n, _)| !is_hop_by_hop(n.as_bytes()) && !is_gateway_owned(n.as_bytes()) && !nominated.contains(n))
            .collect();
        let gateways = ["x-user-id", "content-length", "transfer-encoding"];
        let sent: Vec<(String, String)> = lines(&again, &out)
            .into_iter()
            .filter(|(n, _)| !is_gateway_owned(n.as_bytes()) && !gateways.contains(&n.as_str()))
            .collect();
        prop_assert_eq!(sent, expected);
        let xff = again.header(&out, b"x-forwarded-for").map(|v| String::from_utf8_lossy(v).into_owned());
        prop_assert!(xff.as_deref().is_some_and(|v| v.ends_with("192.0.2.7")));
    }
}

// ---------------------------------------------------------------- chunked bodies

fn extension() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        ";a",
        ";a=b",
        " ; a = \"x y\"",
        ";n=\"q\\\"\"",
        "\t;k=v;z",
    ])
    .prop_map(str::to_string)
}

/// Encodes `body` in chunks of `sizes` (cycled), each with an extension, then
/// the last chunk and `trailers`.
fn encode(
    body: &[u8],
    sizes: &[usize],
    exts: &[String],
    trailers: &[(String, String)],
) -> (Vec<u8>, Vec<u8>) {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let n = sizes[i % sizes.len()].min(body.len() - at).max(1);
        out.extend_from_slice(format!("{n:x}{}\r\n", exts[i % exts.len()]).as_bytes());
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
        i += 1;
    }
    out.extend_from_slice(b"0\r\n");
    let without_trailers = [out.clone(), b"\r\n".to_vec()].concat();
    for (n, v) in trailers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    (out, without_trailers)
}

/// An independent decoder for the test: the payload of a chunked body.
fn decode(mut input: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = input
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("size line");
        let line = std::str::from_utf8(&input[..line_end]).expect("ascii");
        let size =
            usize::from_str_radix(line.split([';', ' ', '\t']).next().unwrap(), 16).expect("hex");
        input = &input[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&input[..size]);
        input = &input[size + 2..];
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn a_chunked_body_round_trips(
        body in prop::collection::vec(any::<u8>(), 0..3000),
        sizes in prop::collection::vec(1usize..700, 1..6),
        exts in prop::collection::vec(extension(), 1..4),
        trailers in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,8}", "[ -~]{0,10}"), 0..3),
        pieces in prop::collection::vec(1usize..200, 1..8),
        next in prop::option::of("GET / HTTP/1.1\r\n"),
    ) {
        let trailers: Vec<(String, String)> = trailers.into_iter().map(|(n, v)| (n, v.trim().to_string())).collect();
        let (encoded, without_trailers) = encode(&body, &sizes, &exts, &trailers);
        let mut input = encoded.clone();
        if let Some(n) = &next {
            input.extend_from_slice(n.as_bytes());
        }
        for request in [false, true] {
            let mut s = if request { ChunkedScanner::dropping_trailers() } else { ChunkedScanner::new() };
            let mut forwarded = Vec::new();
            let mut consumed = 0;
            let mut at = 0;
            let mut i = 0;
            while at < input.len() && !s.is_done() {
                let end = (at + pieces[i % pieces.len()]).min(input.len());
                let piece = &input[at..end];
                let scan = s.scan(piece).expect("valid framing");
                prop_assert!(scan.forward + scan.tail <= scan.consumed);
                if !request {
                    prop_assert_eq!((scan.forward, scan.tail), (scan.consumed, 0));
                }
                forwarded.extend_from_slice(&piece[..scan.forward]);
                forwarded.extend_from_slice(&piece[scan.consumed - scan.tail..scan.consumed]);
                consumed += scan.consumed;
                at = end;
                i += 1;
            }
            prop_assert!(s.is_done());
            prop_assert_eq!(consumed, encoded.len(), "what follows the body is not the body's");
            prop_assert_eq!(s.data_total(), body.len() as u64);
            if request {
                prop_assert_eq!(s.dropped_trailers(), !trailers.is_empty());
                prop_assert_eq!(&forwarded, &without_trailers);
            } else {
                prop_assert_eq!(&forwarded, &encoded);
            }
            prop_assert_eq!(decode(&forwarded), body.clone());
        }
    }
}
