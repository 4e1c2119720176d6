//! The HTTP/1.1 heads of a proxied exchange: the request head sent upstream and the
//! response head relayed to the client. The stages before decide *what* goes out
//! (path, host, identity headers, what to drop); this file decides how it is written
//! on the wire, so the rest of the gateway never spells HTTP/1.1 itself.

use std::io::Write as _;
use std::net::IpAddr;
use std::ops::Range;

use super::{
    is_gateway_owned, is_hop_by_hop, BodyFraming, ConnectionTokens, FieldList, HeaderLookup,
    ResponseHead,
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
    pub method: &'a [u8],
    /// The path after normalization and prefix rewriting.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The `Host` to send.
    pub host: &'a [u8],
    /// The request's authority as the client gave it, for `X-Forwarded-Host`.
    pub client_host: Option<&'a [u8]>,
    pub client_ip: IpAddr,
    /// The client came over TLS (`X-Forwarded-Proto: https`).
    pub secure: bool,
    /// Send as HTTP/1.0 (an HTTP/1.0 client), so the upstream never answers with
    /// chunked framing the client cannot read.
    pub http10: bool,
    /// The request body's framing, re-stated upstream.
    pub body: BodyFraming,
    /// Fields the gateway adds (identity headers from verified claims, the client
    /// certificate subject), in order.
    pub added: &'a [&'a FieldList],
    pub request_id: &'a str,
    /// The trace-context fields: the client's passed on, or the gateway's own.
    pub trace: TraceFields<'a>,
}

/// The W3C trace-context fields (`traceparent`, `tracestate`) of an upstream
/// request. Their values are built by `crate::observe`; this says only where
/// they go.
#[derive(Clone, Copy, Debug, Default)]
pub enum TraceFields<'a> {
    /// The client's fields go upstream untouched (tracing is not configured).
    #[default]
    PassThrough,
    /// The client's fields are dropped and these sent instead: the gateway takes
    /// part in the trace.
    Replace {
        traceparent: &'a [u8],
        tracestate: Option<&'a [u8]>,
    },
}

/// Where things were written in an upstream request head, so a retry can change
/// them in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamHeadMarks {
    /// The `Host` value.
    pub host: Range<usize>,
    /// The `traceparent` value, when the gateway wrote one.
    pub traceparent: Option<Range<usize>>,
}

/// Writes the upstream request head for a client request whose fields are `fields`
/// into `w` (cleared first). `edit` has the last word on each client field that
/// survives the hop-by-hop rules. Returns where the `Host` and `traceparent`
/// values were written, so a retry to another endpoint can put that endpoint's
/// host and its own span there.
pub fn write_upstream_request(
    w: &mut Vec<u8>,
    fields: &dyn HeaderLookup,
    req: &UpstreamRequest<'_>,
    mut edit: impl FnMut(&[u8], &[u8]) -> HeaderEdit,
) -> UpstreamHeadMarks {
    w.clear();
    w.extend_from_slice(if req.method.is_empty() {
        b"GET"
    } else {
        req.method
    });
    w.push(b' ');
    w.extend_from_slice(req.path.as_bytes());
    if let Some(q) = req.query {
        w.push(b'?');
        w.extend_from_slice(q.as_bytes());
    }
    w.extend_from_slice(if req.http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });

    let connection = connection_tokens(fields);
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let replace_trace = matches!(req.trace, TraceFields::Replace { .. });
    let mut has_forwarded = false;
    let mut has_real_ip = false;
    fields.each(&mut |name, value| {
        if is_hop_by_hop(name) || (!connection.is_empty() && connection.contains(name)) {
            return;
        }
        if replace_trace
            && (name.eq_ignore_ascii_case(b"traceparent")
                || name.eq_ignore_ascii_case(b"tracestate"))
        {
            return;
        }
        // Names the gateway owns are written below, from what it knows itself.
        if is_gateway_owned(name) {
            if name.eq_ignore_ascii_case(b"x-forwarded-for") {
                forwarded_for.push(value);
            }
            has_forwarded |= name.eq_ignore_ascii_case(b"forwarded");
            has_real_ip |= name.eq_ignore_ascii_case(b"x-real-ip");
            return;
        }
        match edit(name, value) {
            HeaderEdit::Keep => header(w, name, value),
            HeaderEdit::Drop => {}
            HeaderEdit::Replace(v) => header(w, name, &v),
        }
    });
    for list in req.added {
        for (name, value) in list.iter() {
            header(w, name, value);
        }
    }
    let host_at = w.len() + b"host: ".len();
    header(w, b"host", req.host);
    let host = host_at..host_at + req.host.len();
    // The client's X-Forwarded-For lines joined into one, in order, then the client.
    w.extend_from_slice(b"x-forwarded-for: ");
    for value in forwarded_for {
        w.extend_from_slice(value);
        w.extend_from_slice(b", ");
    }
    let _ = write!(w, "{}\r\n", req.client_ip);
    let proto: &[u8] = if req.secure { b"https" } else { b"http" };
    header(w, b"x-forwarded-proto", proto);
    if let Some(h) = req.client_host {
        header(w, b"x-forwarded-host", h);
    }
    // A client's Forwarded (RFC 7239) and X-Real-IP are replaced, not appended
    // to: a framework that reads the first Forwarded element would otherwise
    // believe the client about its own address, scheme and host.
    if has_forwarded {
        forwarded_element(w, req.client_ip, proto, req.client_host);
    }
    if has_real_ip {
        let _ = write!(w, "x-real-ip: {}\r\n", req.client_ip);
    }
    header(w, b"x-request-id", req.request_id.as_bytes());
    let mut traceparent = None;
    if let TraceFields::Replace {
        traceparent: value,
        tracestate,
    } = req.trace
    {
        let at = w.len() + b"traceparent: ".len();
        header(w, b"traceparent", value);
        traceparent = Some(at..at + value.len());
        if let Some(state) = tracestate {
            header(w, b"tracestate", state);
        }
    }
    framing(w, req.body);
    w.extend_from_slice(b"\r\n");
    UpstreamHeadMarks { host, traceparent }
}

/// Writes the client response head for the upstream response `resp` (whose bytes
/// are `src`) into `w`; `extra` are the fields the pipeline adds (e.g. `RateLimit`).
/// For an HTTP/1.0 client a chunked response is announced close-delimited: the
/// caller de-chunks the body and closes the connection after it.
pub fn write_client_response(
    w: &mut Vec<u8>,
    resp: &ResponseHead,
    src: &[u8],
    extra: &FieldList,
    request_id: &str,
    keep_alive: bool,
    client_minor: u8,
) {
    w.clear();
    let _ = write!(w, "HTTP/1.1 {} ", resp.status);
    w.extend_from_slice(src.get(resp.reason.clone()).unwrap_or(b""));
    w.extend_from_slice(b"\r\n");
    let connection = response_connection_tokens(src, &resp.headers);
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
    // An HTTP/1.0 client cannot read chunked framing (RFC 9112 §6.1): it gets the
    // payload de-chunked, delimited by the connection's close.
    if !(client_minor == 0 && resp.body == BodyFraming::Chunked) {
        framing(w, resp.body);
    }
    finish_head(w, extra, request_id, keep_alive, client_minor);
}

/// The lines every response to a client ends with: those the pipeline added for
/// this request (`extra`, e.g. `RateLimit`), the request ID, the connection's
/// fate, and the empty line.
pub fn finish_head(
    w: &mut Vec<u8>,
    extra: &FieldList,
    request_id: &str,
    keep_alive: bool,
    client_minor: u8,
) {
    for (name, value) in extra.iter() {
        header(w, name, value);
    }
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

pub(super) fn header(w: &mut Vec<u8>, name: &[u8], value: &[u8]) {
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

/// The field names listed in a request's `Connection` fields.
fn connection_tokens<'a>(fields: &'a dyn HeaderLookup) -> ConnectionTokens<'a> {
    let mut tokens = ConnectionTokens::default();
    fields.each(&mut |name, value| {
        if name.eq_ignore_ascii_case(b"connection") {
            tokens.add(value);
        }
    });
    tokens
}

/// The field names listed in a response head's `Connection` lines.
fn response_connection_tokens<'a>(
    src: &'a [u8],
    headers: &[super::HeaderRange],
) -> ConnectionTokens<'a> {
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
