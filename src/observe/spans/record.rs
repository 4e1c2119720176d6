//! A finished request's spans (a server span, and a client span per upstream try),
//! encoded by the worker straight into OTLP protobuf (`opentelemetry.proto.trace.v1.Span`,
//! each as an entry of `ScopeSpans.spans`): the exporter thread only wraps a batch of
//! them in one export request (`otlp.rs`). No strings are built; only sampled
//! requests write any.

use std::borrow::Cow;
use std::time::Instant;

use crate::observe::TraceContext;
use crate::text;

use super::wire;

/// An attribute key's `KeyValue.key` field, built at compile time.
macro_rules! key {
    ($key:literal) => {{
        const FIELD: [u8; $key.len() + 2] = key_field($key);
        &FIELD
    }};
}

/// What the server span says about the request.
pub struct RequestFacts<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    /// The route's name (empty: none).
    pub route: &'a str,
    /// The `portico.route` attribute of the route, as [`route_attribute`] encoded
    /// it once per configuration (empty: no route).
    pub route_attribute: &'a [u8],
    pub status: u16,
    /// The client's IP address as text.
    pub client: &'a [u8],
    pub authority: Option<&'a [u8]>,
    pub request_id: &'a [u8],
    pub attempts: u32,
    pub received: Instant,
    pub ended: Instant,
}

/// `ScopeSpans.spans` (opentelemetry-proto `trace.proto`).
const SCOPE_SPANS_SPAN: u32 = 2;

/// `Span` fields (opentelemetry-proto `trace.proto`).
mod span {
    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const TRACE_STATE: u32 = 3;
    pub const PARENT_SPAN_ID: u32 = 4;
    pub const NAME: u32 = 5;
    pub const KIND: u32 = 6;
    pub const START: u32 = 7;
    pub const END: u32 = 8;
    pub const ATTRIBUTES: u32 = 9;
    pub const STATUS: u32 = 15;
    pub const FLAGS: u32 = 16;
    /// `Span.SpanKind`.
    pub const KIND_SERVER: u64 = 2;
    pub const KIND_CLIENT: u64 = 3;
    /// `Status.message`, `Status.code` and `STATUS_CODE_ERROR`.
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;
    pub const STATUS_ERROR: u64 = 2;
    /// `Span.flags`: the lower 8 bits are the W3C trace flags; bit 8 says whether
    /// the parent's remoteness is known, bit 9 that it is remote (`SpanFlags`).
    pub const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
    pub const CONTEXT_IS_REMOTE: u32 = 0x200;
}

/// What spans name by position in the configuration (a worker's generation of it
/// knows): upstreams by index, endpoints by number.
pub trait SpanLabels {
    /// The name of upstream `index` (empty when there is none).
    fn upstream(&self, index: usize) -> &str;
    /// Endpoint `id`'s client-span attributes, as [`endpoint_attributes`] encoded
    /// them (empty when there is none).
    fn endpoint(&self, id: usize) -> &[u8];
}

/// The client-span attributes that depend only on the endpoint (`server.address`:
/// its IP as text, `server.port`, `portico.upstream`: its upstream's name),
/// encoded once per configuration rather than per try: entries of
/// `Span.attributes`, ready to be copied into a span.
pub fn endpoint_attributes(ip: &[u8], port: u16, upstream: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + ip.len() + upstream.len());
    attr_str(&mut out, key!("server.address"), &utf8(ip));
    attr_int(&mut out, key!("server.port"), i64::from(port));
    attr_str(&mut out, key!("portico.upstream"), upstream.as_bytes());
    out
}

/// The `portico.route` attribute of a route named `name`, encoded once per
/// configuration and copied into both spans of each of its requests.
pub fn route_attribute(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + name.len());
    attr_str(&mut out, key!("portico.route"), name.as_bytes());
    out
}

/// Appends the spans of one finished request to `out` (each an entry of
/// `ScopeSpans.spans`): the server span, then one client span per upstream try.
/// Returns how many it wrote (`1 + trace.tries.len()`). `labels` names the
/// upstreams and endpoints the tries went to.
pub fn write_request_spans(
    out: &mut Vec<u8>,
    trace: &TraceContext,
    facts: &RequestFacts<'_>,
    labels: &impl SpanLabels,
) -> usize {
    let method = utf8(facts.method);
    let at = |i: Instant| trace.unix_nanos(facts.received, i);
    let path = facts.target.split(|&b| b == b'?').next().unwrap_or(b"");
    wire::long_message(out, SCOPE_SPANS_SPAN, |o| {
        head(o, trace, &trace.span_id, trace.parent_id.as_ref(), true);
        // A string field has a nested message's wire shape (a length, then the
        // bytes): `message` fills in the length of the name written in parts.
        wire::message(o, span::NAME, |o| {
            o.extend_from_slice(&method);
            if !facts.route.is_empty() {
                o.push(b' ');
                o.extend_from_slice(facts.route.as_bytes());
            }
        });
        wire::uint(o, span::KIND, span::KIND_SERVER);
        wire::fixed64(o, span::START, at(facts.received));
        wire::fixed64(o, span::END, at(facts.ended));
        attr_str(o, key!("http.request.method"), &method);
        attr_str(o, key!("url.path"), &utf8(path));
        attr_int(
            o,
            key!("http.response.status_code"),
            i64::from(facts.status),
        );
        attr_str(o, key!("client.address"), facts.client);
        attr_str(o, key!("portico.request_id"), facts.request_id);
        attr_int(o, key!("portico.attempts"), i64::from(facts.attempts));
        o.extend_from_slice(facts.route_attribute);
        if let Some(authority) = facts.authority {
            attr_str(o, key!("server.address"), &utf8(authority));
        }
        if facts.status >= 500 {
            error_status(o, None, Some(facts.status));
        }
    });
    for t in &trace.tries {
        let upstream = labels.upstream(t.upstream);
        let try_method = t.part.as_ref().map_or(&*method, |(_, m)| m.as_bytes());
        wire::long_message(out, SCOPE_SPANS_SPAN, |o| {
            head(o, trace, &t.span_id, Some(&trace.span_id), false);
            wire::message(o, span::NAME, |o| {
                o.extend_from_slice(try_method);
                o.push(b' ');
                o.extend_from_slice(upstream.as_bytes());
            });
            wire::uint(o, span::KIND, span::KIND_CLIENT);
            wire::fixed64(o, span::START, at(t.started));
            wire::fixed64(o, span::END, at(t.ended.unwrap_or(facts.ended)));
            attr_str(o, key!("http.request.method"), try_method);
            o.extend_from_slice(labels.endpoint(t.endpoint));
            attr_int(o, key!("portico.attempt"), i64::from(t.attempt));
            // Set on retries only (OpenTelemetry semantic conventions: "if and only
            // if request was retried").
            if t.attempt > 1 {
                attr_int(
                    o,
                    key!("http.request.resend_count"),
                    i64::from(t.attempt - 1),
                );
            }
            o.extend_from_slice(facts.route_attribute);
            if let Some((part, _)) = &t.part {
                attr_str(o, key!("portico.part"), part.as_bytes());
            }
            if let Some(status) = t.status {
                attr_int(o, key!("http.response.status_code"), i64::from(status));
            }
            if let Some(failure) = t.failure {
                attr_str(o, key!("error.type"), failure.as_bytes());
            }
            match (t.failure, t.status) {
                (Some(f), _) => error_status(o, Some(f), None),
                (None, Some(s)) if s >= 500 => error_status(o, None, Some(s)),
                _ => {}
            }
        });
    }
    1 + trace.tries.len()
}

/// The identity fields every span starts with: trace and span IDs, the
/// tracestate, the parent and the flags.
fn head(
    o: &mut Vec<u8>,
    trace: &TraceContext,
    span_id: &[u8; 8],
    parent: Option<&[u8; 8]>,
    parent_may_be_remote: bool,
) {
    wire::bytes(o, span::TRACE_ID, &trace.trace_id);
    wire::bytes(o, span::SPAN_ID, span_id);
    if let Some(state) = &trace.tracestate {
        wire::bytes(o, span::TRACE_STATE, &utf8(state));
    }
    if let Some(parent) = parent {
        wire::bytes(o, span::PARENT_SPAN_ID, parent);
    }
    let remote = if parent_may_be_remote && trace.parent_id.is_some() {
        span::CONTEXT_IS_REMOTE
    } else {
        0
    };
    wire::fixed32(
        o,
        span::FLAGS,
        u32::from(trace.flags) | span::CONTEXT_HAS_IS_REMOTE | remote,
    );
}

/// `Status { code: ERROR, message }`: the failure's name, or `status NNN`.
fn error_status(o: &mut Vec<u8>, failure: Option<&str>, status: Option<u16>) {
    wire::message(o, span::STATUS, |o| {
        wire::message(o, span::STATUS_MESSAGE, |o| match (failure, status) {
            (Some(f), _) => o.extend_from_slice(f.as_bytes()),
            (None, Some(s)) => {
                o.extend_from_slice(b"status ");
                text::push_u64(o, u64::from(s));
            }
            (None, None) => {}
        });
        wire::uint(o, span::STATUS_CODE, span::STATUS_ERROR);
    });
}

/// A string attribute: `KeyValue { key = 1, value = 2: AnyValue { string_value = 1 } }`,
/// its lengths computed rather than filled in after (a request writes about 15);
/// `key` is the `KeyValue.key` field as [`key!`] wrote it at compile time.
#[inline(always)]
fn attr_str(o: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let any = wire::len_field_size(1, value.len());
    wire::len_prefix(
        o,
        span::ATTRIBUTES,
        key.len() + wire::len_field_size(2, any),
    );
    o.extend_from_slice(key);
    wire::len_prefix(o, 2, any);
    wire::bytes(o, 1, value);
}

/// An integer attribute: `KeyValue { key = 1, value = 2: AnyValue { int_value = 3 } }`.
#[inline(always)]
fn attr_int(o: &mut Vec<u8>, key: &[u8], value: i64) {
    let any = 1 + wire::varint_len(value as u64);
    wire::len_prefix(
        o,
        span::ATTRIBUTES,
        key.len() + wire::len_field_size(2, any),
    );
    o.extend_from_slice(key);
    wire::len_prefix(o, 2, any);
    wire::uint(o, 3, value as u64);
}

/// `KeyValue.key` (field 1) as written, for an attribute key of under 128 bytes.
const fn key_field<const N: usize>(key: &str) -> [u8; N] {
    let k = key.as_bytes();
    assert!(k.len() < 128 && k.len() + 2 == N);
    let mut out = [0u8; N];
    out[0] = 0x0a;
    out[1] = k.len() as u8;
    let mut i = 0;
    while i < k.len() {
        out[i + 2] = k[i];
        i += 1;
    }
    out
}

/// `bytes` as UTF-8 (protobuf strings must be), invalid sequences replaced; the
/// usual case, ASCII, is only checked (`from_utf8_lossy` walks text in chunks,
/// `from_utf8` costs more than a word-at-a-time ASCII test on a short string).
fn utf8(bytes: &[u8]) -> Cow<'_, [u8]> {
    if bytes.is_ascii() {
        Cow::Borrowed(bytes)
    } else {
        Cow::Owned(String::from_utf8_lossy(bytes).into_owned().into_bytes())
    }
}
