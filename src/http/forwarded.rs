//! The HTTP/1.1 heads of a proxied exchange: the request head sent upstream and the
//! response head relayed to the client. The stages before decide *what* goes out
//! (path, host, identity headers, what to drop); this file decides how it is written
//! on the wire, so the rest of the gateway never spells HTTP/1.1 itself.

use std::ops::Range;

use super::{
    is_gateway_owned, is_hop_by_hop, reason_phrase, BodyFraming, ConnectionTokens, FieldList,
    HeaderLookup, ResponseParts,
};
use crate::text::{self, IpText};

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
    /// The client's address as text (rendered once per connection).
    pub client_ip: &'a IpText,
    /// The client came over TLS (`X-Forwarded-Proto: https`).
    pub secure: bool,
    /// Send as HTTP/1.0 (an HTTP/1.0 client), so the upstream never answers with
    /// chunked framing the client cannot read.
    pub http10: bool,
    /// The request body's framing, re-stated upstream (`EndStream`, a body of
    /// unknown length from an HTTP/2 client, goes chunked).
    pub body: BodyFraming,
    /// The protocol of an upgrade the route lets through (`websocket`): sent with
    /// `Connection: upgrade` (RFC 9110 §7.8); `None` drops the client's `Upgrade`.
    pub upgrade: Option<&'a [u8]>,
    /// Fields the gateway adds (identity headers from verified claims, the client
    /// certificate subject), in order.
    pub added: &'a [&'a FieldList],
    pub request_id: &'a [u8],
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
    w.extend_from_slice(req.client_ip.as_bytes());
    w.extend_from_slice(b"\r\n");
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
        w.extend_from_slice(b"x-real-ip: ");
        w.extend_from_slice(req.client_ip.as_bytes());
        w.extend_from_slice(b"\r\n");
    }
    header(w, b"x-request-id", req.request_id);
    if let Some(protocol) = req.upgrade {
        w.extend_from_slice(b"connection: upgrade\r\n");
        header(w, b"upgrade", protocol);
    }
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

/// Writes the client response head for the upstream response `resp` into `w`;
/// `extra` are the fields the pipeline adds (e.g. `RateLimit`). A body of unknown
/// length from HTTP/2 (`EndStream`) is announced chunked to an HTTP/1.1 client (the
/// caller frames it); to an HTTP/1.0 client a chunked or unknown-length body is
/// announced close-delimited (the caller de-chunks it and closes after it). A `101`
/// keeps the upstream's `Upgrade` and says `Connection: upgrade`.
pub fn write_client_response(
    w: &mut Vec<u8>,
    resp: &ResponseParts<'_>,
    extra: &FieldList,
    request_id: &str,
    keep_alive: bool,
    client_minor: u8,
) {
    w.clear();
    w.extend_from_slice(b"HTTP/1.1 ");
    text::push_u64(w, u64::from(resp.status));
    w.push(b' ');
    w.extend_from_slice(if resp.reason.is_empty() {
        reason_phrase(resp.status).as_bytes()
    } else {
        resp.reason
    });
    w.extend_from_slice(b"\r\n");
    let upgraded = resp.status == 101;
    let connection = connection_tokens(resp.fields);
    resp.fields.each(&mut |name, value| {
        // Without a body to frame (HEAD, 304), Content-Length describes the
        // representation and passes through unchanged.
        let keep_length =
            resp.body == BodyFraming::None && name.eq_ignore_ascii_case(b"content-length");
        let keep_upgrade = upgraded && name.eq_ignore_ascii_case(b"upgrade");
        if !keep_length
            && !keep_upgrade
            && (is_hop_by_hop(name) || (!connection.is_empty() && connection.contains(name)))
        {
            return;
        }
        if name.eq_ignore_ascii_case(b"x-request-id") {
            return;
        }
        header(w, name, value);
    });
    if upgraded {
        for (name, value) in extra.iter() {
            header(w, name, value);
        }
        header(w, b"x-request-id", request_id.as_bytes());
        w.extend_from_slice(b"connection: upgrade\r\n\r\n");
        return;
    }
    match (resp.body, client_minor) {
        // An HTTP/1.0 client cannot read chunked framing (RFC 9112 §6.1): it gets
        // the payload, delimited by the connection's close.
        (BodyFraming::Chunked | BodyFraming::EndStream, 0) => {}
        (BodyFraming::EndStream, _) => framing(w, BodyFraming::Chunked),
        (body, _) => framing(w, body),
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
fn forwarded_element(w: &mut Vec<u8>, client: &IpText, proto: &[u8], host: Option<&[u8]>) {
    w.extend_from_slice(b"forwarded: for=");
    if client.is_v6() {
        w.extend_from_slice(b"\"[");
        w.extend_from_slice(client.as_bytes());
        w.extend_from_slice(b"]\"");
    } else {
        w.extend_from_slice(client.as_bytes());
    }
    w.extend_from_slice(b";proto=");
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
            w.extend_from_slice(b"content-length: ");
            text::push_u64(w, n);
            w.extend_from_slice(b"\r\n");
        }
        // A body of unknown length from an HTTP/2 peer is framed in chunks here.
        BodyFraming::Chunked | BodyFraming::EndStream => {
            w.extend_from_slice(b"transfer-encoding: chunked\r\n")
        }
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
}

/// The field names listed in a message's `Connection` fields.
fn connection_tokens<'a>(fields: &'a dyn HeaderLookup) -> ConnectionTokens<'a> {
    let mut tokens = ConnectionTokens::default();
    fields.each(&mut |name, value| {
        if name.eq_ignore_ascii_case(b"connection") {
            tokens.add(value);
        }
    });
    tokens
}
