//! The HTTP/1.1 heads of a proxied exchange: the request head sent upstream and the
//! response head relayed to the client. The stages before decide *what* goes out
//! (path, host, identity headers, what to drop); this file decides how it is written
//! on the wire, so the rest of the gateway never spells HTTP/1.1 itself.

use std::io::Write as _;
use std::net::IpAddr;

use super::{
    is_gateway_owned, is_hop_by_hop, BodyFraming, ConnectionTokens, RequestHead, ResponseHead,
};

/// What becomes of one client header line on its way upstream.
pub enum HeaderEdit {
    Keep,
    Drop,
    /// Sent with this value instead.
    Replace(Vec<u8>),
}

/// What the stages decided about the request that goes upstream.
pub struct UpstreamRequest<'a> {
    /// The path after normalization and prefix rewriting.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The `Host` to send.
    pub host: &'a [u8],
    pub client_ip: IpAddr,
    /// The client came over TLS (`X-Forwarded-Proto: https`).
    pub secure: bool,
    /// Header lines the gateway adds, already rendered as `name: value\r\n`
    /// (identity headers from verified claims, the client certificate subject).
    pub added: [&'a [u8]; 2],
    pub request_id: &'a str,
}

/// Writes the upstream request head for the client request `head` (whose bytes are
/// `src`) into `w`. `edit` has the last word on each client header that survives the
/// hop-by-hop rules.
pub fn write_upstream_request(
    w: &mut Vec<u8>,
    head: &RequestHead,
    src: &[u8],
    req: &UpstreamRequest<'_>,
    mut edit: impl FnMut(&[u8], &[u8]) -> HeaderEdit,
) {
    w.clear();
    w.extend_from_slice(src.get(head.method.clone()).unwrap_or(b"GET"));
    w.push(b' ');
    w.extend_from_slice(req.path.as_bytes());
    if let Some(q) = req.query {
        w.push(b'?');
        w.extend_from_slice(q.as_bytes());
    }
    // HTTP/1.0 clients are forwarded as HTTP/1.0 so the upstream never answers
    // them with chunked framing they cannot read.
    w.extend_from_slice(if head.minor_version == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });

    let connection = connection_tokens(src, &head.headers);
    let client_host = head.authority(src);
    let mut has_forwarded_for = false;
    let mut has_forwarded = false;
    let mut has_real_ip = false;
    for h in &head.headers {
        let (Some(name), Some(value)) = (src.get(h.name.clone()), src.get(h.value.clone())) else {
            continue;
        };
        if is_hop_by_hop(name) || (!connection.is_empty() && connection.contains(name)) {
            continue;
        }
        // Names the gateway owns are written below, from what it knows itself.
        if is_gateway_owned(name) {
            has_forwarded_for |= name.eq_ignore_ascii_case(b"x-forwarded-for");
            has_forwarded |= name.eq_ignore_ascii_case(b"forwarded");
            has_real_ip |= name.eq_ignore_ascii_case(b"x-real-ip");
            continue;
        }
        let replaced;
        let value = match edit(name, value) {
            HeaderEdit::Keep => value,
            HeaderEdit::Drop => continue,
            HeaderEdit::Replace(v) => {
                replaced = v;
                &replaced[..]
            }
        };
        header(w, name, value);
    }
    for lines in req.added {
        w.extend_from_slice(lines);
    }
    header(w, b"host", req.host);
    // The client's X-Forwarded-For lines joined into one, in order, then the client.
    w.extend_from_slice(b"x-forwarded-for: ");
    if has_forwarded_for {
        for h in &head.headers {
            if src
                .get(h.name.clone())
                .is_some_and(|n| n.eq_ignore_ascii_case(b"x-forwarded-for"))
            {
                w.extend_from_slice(src.get(h.value.clone()).unwrap_or(b""));
                w.extend_from_slice(b", ");
            }
        }
    }
    let _ = write!(w, "{}\r\n", req.client_ip);
    let proto: &[u8] = if req.secure { b"https" } else { b"http" };
    header(w, b"x-forwarded-proto", proto);
    if let Some(h) = client_host {
        header(w, b"x-forwarded-host", h);
    }
    // A client's Forwarded (RFC 7239) and X-Real-IP are replaced, not appended
    // to: a framework that reads the first Forwarded element would otherwise
    // believe the client about its own address, scheme and host.
    if has_forwarded {
        forwarded_element(w, req.client_ip, proto, client_host);
    }
    if has_real_ip {
        let _ = write!(w, "x-real-ip: {}\r\n", req.client_ip);
    }
    header(w, b"x-request-id", req.request_id.as_bytes());
    framing(w, head.body);
    w.extend_from_slice(b"\r\n");
}

/// Writes the client response head for the upstream response `resp` (whose bytes
/// are `src`) into `w`; `extra` are header lines the pipeline adds (e.g. `RateLimit`).
pub fn write_client_response(
    w: &mut Vec<u8>,
    resp: &ResponseHead,
    src: &[u8],
    extra: &[u8],
    request_id: &str,
    keep_alive: bool,
    client_minor: u8,
) {
    w.clear();
    let _ = write!(w, "HTTP/1.1 {} ", resp.status);
    w.extend_from_slice(src.get(resp.reason.clone()).unwrap_or(b""));
    w.extend_from_slice(b"\r\n");
    let connection = connection_tokens(src, &resp.headers);
    for h in &resp.headers {
        let (Some(name), Some(value)) = (src.get(h.name.clone()), src.get(h.value.clone())) else {
            continue;
        };
        // Without a body to frame (HEAD, 304), Content-Length describes the
        // representation and passes through unchanged.
        let keep_length =
            resp.body == BodyFraming::None && name.eq_ignore_ascii_case(b"content-length");
        if !keep_length
            && (is_hop_by_hop(name) || (!connection.is_empty() && connection.contains(name)))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-request-id") {
            continue;
        }
        header(w, name, value);
    }
    framing(w, resp.body);
    finish_head(w, extra, request_id, keep_alive, client_minor);
}

/// The lines every response to a client ends with: those the pipeline added for
/// this request (`extra`, whole header lines, e.g. `RateLimit`), the request ID,
/// the connection's fate, and the empty line.
pub fn finish_head(
    w: &mut Vec<u8>,
    extra: &[u8],
    request_id: &str,
    keep_alive: bool,
    client_minor: u8,
) {
    w.extend_from_slice(extra);
    header(w, b"x-request-id", request_id.as_bytes());
    if !keep_alive {
        w.extend_from_slice(b"connection: close\r\n");
    } else if client_minor == 0 {
        w.extend_from_slice(b"connection: keep-alive\r\n");
    }
    w.extend_from_slice(b"\r\n");
}

/// `forwarded: for=...;proto=...;host="..."` for this hop (RFC 7239 §4; an IPv6
/// address and the host are quoted-strings, which need no escapes here: the
/// authority was validated by the codec).
fn forwarded_element(w: &mut Vec<u8>, client: IpAddr, proto: &[u8], host: Option<&[u8]>) {
    let _ = match client {
        IpAddr::V4(v4) => write!(w, "forwarded: for={v4};proto="),
        IpAddr::V6(v6) => write!(w, "forwarded: for=\"[{v6}]\";proto="),
    };
    w.extend_from_slice(proto);
    if let Some(host) = host {
        w.extend_from_slice(b";host=\"");
        w.extend_from_slice(host);
        w.push(b'"');
    }
    w.extend_from_slice(b"\r\n");
}

fn header(w: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    w.extend_from_slice(name);
    w.extend_from_slice(b": ");
    w.extend_from_slice(value);
    w.extend_from_slice(b"\r\n");
}

fn framing(w: &mut Vec<u8>, body: BodyFraming) {
    match body {
        BodyFraming::Length(n) => {
            let _ = write!(w, "content-length: {n}\r\n");
        }
        BodyFraming::Chunked => w.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
}

/// The header names listed in `Connection` lines.
fn connection_tokens<'a>(src: &'a [u8], headers: &[super::HeaderRange]) -> ConnectionTokens<'a> {
    let mut tokens = ConnectionTokens::default();
    for h in headers {
        if src
            .get(h.name.clone())
            .is_some_and(|n| n.eq_ignore_ascii_case(b"connection"))
        {
            tokens.add(src.get(h.value.clone()).unwrap_or(b""));
        }
    }
    tokens
}
