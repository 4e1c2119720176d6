//! A finished request's spans (a server span, and a client span per upstream try),
//! encoded by the worker straight into OTLP protobuf (`opentelemetry.proto.trace.v1.Span`,
//! each as an entry of `ScopeSpans.spans`): the exporter thread only wraps a batch of
//! them in one export request (`otlp.rs`). No strings are built; only sampled
//! requests write any.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use crate::observe::TraceContext;
use crate::text;

use super::wire::{self, field_key, key_value, I32, I64, LEN, VARINT};

/// A string attribute of key `$key` (a literal): the entry's head, key included,
/// is an array built at compile time, and only its three lengths are filled in
/// per request (see [`attr_str`]).
macro_rules! attr_str {
    ($o:expr, $key:literal, $value:expr) => {{
        const HEAD: [u8; $key.len() + 8] = attribute_head($key, ANY_STRING);
        attr_str($o, &HEAD, $value)
    }};
}

/// An integer attribute of key `$key` (a literal); see [`attr_int`].
macro_rules! attr_int {
    ($o:expr, $key:literal, $value:expr) => {{
        const HEAD: [u8; $key.len() + 7] = attribute_head($key, ANY_INT);
        attr_int($o, &HEAD, $value)
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
    /// From `received` to the request's end (the server span's length; the end
    /// of a try that recorded none).
    pub took: Duration,
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
    attr_str!(&mut out, "server.address", &utf8(ip));
    attr_int!(&mut out, "server.port", i64::from(port));
    attr_str!(&mut out, "portico.upstream", upstream.as_bytes());
    out
}

/// The `portico.route` attribute of a route named `name`, encoded once per
/// configuration and copied into both spans of each of its requests.
pub fn route_attribute(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + name.len());
    attr_str!(&mut out, "portico.route", name.as_bytes());
    out
}

/// Appends the spans of one finished request to `out` (each an entry of
/// `ScopeSpans.spans`): the server span, then one client span per upstream try.
/// Returns how many it wrote (`1 + trace.tries.len()`). `labels` names the
/// upstreams and endpoints the tries went to.
///
/// Every span starts with its fixed-width fields (IDs, flags, kind, times) as one
/// array filled in on the stack ([`fixed_fields`]); attribute heads, keys
/// included, are arrays made at compile time: a span is a dozen copies rather
/// than a hundred small writes.
pub fn write_request_spans(
    out: &mut Vec<u8>,
    trace: &TraceContext,
    facts: &RequestFacts<'_>,
    labels: &impl SpanLabels,
) -> usize {
    let method = utf8(facts.method);
    let at = |i: Instant| trace.unix_nanos(facts.received, i);
    let path = facts.target.split(|&b| b == b'?').next().unwrap_or(b"");
    let remote = if trace.parent_id.is_some() {
        span::CONTEXT_IS_REMOTE
    } else {
        0
    };
    wire::long_message(out, SCOPE_SPANS_SPAN, |o| {
        fixed_fields(
            o,
            trace,
            &trace.span_id,
            remote,
            span::KIND_SERVER,
            (
                trace.unix_nanos_after(Duration::ZERO),
                trace.unix_nanos_after(facts.took),
            ),
        );
        if let Some(parent) = &trace.parent_id {
            parent_field(o, parent);
        }
        trace_state(o, trace);
        name_field(o, &method, facts.route.as_bytes());
        attr_str!(o, "http.request.method", &method);
        attr_str!(o, "url.path", &utf8(path));
        attr_int!(o, "http.response.status_code", i64::from(facts.status));
        attr_str!(o, "client.address", facts.client);
        attr_str!(o, "portico.request_id", facts.request_id);
        attr_int!(o, "portico.attempts", i64::from(facts.attempts));
        o.extend_from_slice(facts.route_attribute);
        if let Some(authority) = facts.authority {
            attr_str!(o, "server.address", &utf8(authority));
        }
        if facts.status >= 500 {
            error_status(o, None, Some(facts.status));
        }
    });
    for t in &trace.tries {
        let upstream = labels.upstream(t.upstream);
        let try_method = t.part.as_ref().map_or(&*method, |(_, m)| m.as_bytes());
        wire::long_message(out, SCOPE_SPANS_SPAN, |o| {
            let ended = match t.ended {
                Some(ended) => at(ended),
                None => trace.unix_nanos_after(facts.took),
            };
            fixed_fields(
                o,
                trace,
                &t.span_id,
                0,
                span::KIND_CLIENT,
                (at(t.started), ended),
            );
            parent_field(o, &trace.span_id);
            trace_state(o, trace);
            name_field(o, try_method, upstream.as_bytes());
            attr_str!(o, "http.request.method", try_method);
            o.extend_from_slice(labels.endpoint(t.endpoint));
            attr_int!(o, "portico.attempt", i64::from(t.attempt));
            // Set on retries only (OpenTelemetry semantic conventions: "if and only
            // if request was retried").
            if t.attempt > 1 {
                attr_int!(o, "http.request.resend_count", i64::from(t.attempt - 1));
            }
            o.extend_from_slice(facts.route_attribute);
            if let Some((part, _)) = &t.part {
                attr_str!(o, "portico.part", part.as_bytes());
            }
            if let Some(status) = t.status {
                attr_int!(o, "http.response.status_code", i64::from(status));
            }
            if let Some(failure) = t.failure {
                attr_str!(o, "error.type", failure.as_bytes());
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

/// Offsets in [`FIXED`] of the values [`fixed_fields`] fills in; each value's
/// key (and a length's byte) comes just before it.
const FIXED_TRACE_ID: usize = 2;
const FIXED_SPAN_ID: usize = FIXED_TRACE_ID + 16 + 2;
const FIXED_FLAGS: usize = FIXED_SPAN_ID + 8 + 2;
const FIXED_KIND: usize = FIXED_FLAGS + 4 + 1;
const FIXED_START: usize = FIXED_KIND + 1 + 1;
const FIXED_END: usize = FIXED_START + 8 + 1;
const FIXED_LEN: usize = FIXED_END + 8;

/// The fields every span has and whose width never changes, in the order
/// `trace_id` (bytes, 16), `span_id` (bytes, 8), `flags` (fixed32, a two-byte
/// key: field 16), `kind` (a varint under 128), `start_time_unix_nano`,
/// `end_time_unix_nano` (fixed64), with zeros where [`fixed_fields`] puts each
/// span's values.
const FIXED: [u8; FIXED_LEN] = {
    let mut a = [0u8; FIXED_LEN];
    a[FIXED_TRACE_ID - 2] = field_key(span::TRACE_ID, LEN);
    a[FIXED_TRACE_ID - 1] = 16;
    a[FIXED_SPAN_ID - 2] = field_key(span::SPAN_ID, LEN);
    a[FIXED_SPAN_ID - 1] = 8;
    let flags_key = key_value(span::FLAGS, I32);
    a[FIXED_FLAGS - 2] = (flags_key as u8) | 0x80;
    a[FIXED_FLAGS - 1] = (flags_key >> 7) as u8;
    a[FIXED_KIND - 1] = field_key(span::KIND, VARINT);
    a[FIXED_START - 1] = field_key(span::START, I64);
    a[FIXED_END - 1] = field_key(span::END, I64);
    a
};

/// Writes a span's fixed-width fields ([`FIXED`]): the trace's ID, `span_id`,
/// the trace flags with `remote` (`CONTEXT_IS_REMOTE` or 0) and
/// `CONTEXT_HAS_IS_REMOTE`, `kind`, and the start and end (Unix nanoseconds).
#[inline(always)]
fn fixed_fields(
    o: &mut Vec<u8>,
    trace: &TraceContext,
    span_id: &[u8; 8],
    remote: u32,
    kind: u64,
    (start, end): (u64, u64),
) {
    let mut f = FIXED;
    f[FIXED_TRACE_ID..FIXED_TRACE_ID + 16].copy_from_slice(&trace.trace_id);
    f[FIXED_SPAN_ID..FIXED_SPAN_ID + 8].copy_from_slice(span_id);
    let flags = u32::from(trace.flags) | span::CONTEXT_HAS_IS_REMOTE | remote;
    f[FIXED_FLAGS..FIXED_FLAGS + 4].copy_from_slice(&flags.to_le_bytes());
    f[FIXED_KIND] = kind as u8;
    f[FIXED_START..FIXED_START + 8].copy_from_slice(&start.to_le_bytes());
    f[FIXED_END..FIXED_END + 8].copy_from_slice(&end.to_le_bytes());
    o.extend_from_slice(&f);
}

/// `parent_span_id` (bytes, 8).
#[inline(always)]
fn parent_field(o: &mut Vec<u8>, parent: &[u8; 8]) {
    let mut f = [0u8; 10];
    f[0] = field_key(span::PARENT_SPAN_ID, LEN);
    f[1] = 8;
    f[2..].copy_from_slice(parent);
    o.extend_from_slice(&f);
}

/// `trace_state`, when the request brought one.
#[inline(always)]
fn trace_state(o: &mut Vec<u8>, trace: &TraceContext) {
    if let Some(state) = &trace.tracestate {
        wire::bytes(o, span::TRACE_STATE, &utf8(state));
    }
}

/// `name`: `method`, then a space and `what` when there is one (the route for a
/// server span, the upstream for a client span).
#[inline(always)]
fn name_field(o: &mut Vec<u8>, method: &[u8], what: &[u8]) {
    let len = method.len() + if what.is_empty() { 0 } else { 1 + what.len() };
    wire::len_prefix(o, span::NAME, len);
    o.extend_from_slice(method);
    if !what.is_empty() {
        o.push(b' ');
        o.extend_from_slice(what);
    }
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

/// `AnyValue.string_value` and `AnyValue.int_value`: the last byte of an
/// attribute's head.
const ANY_STRING: u8 = field_key(1, LEN);
const ANY_INT: u8 = field_key(3, VARINT);

/// An attribute's head for a key of under 100 bytes, made at compile time by
/// [`attr_str!`] and [`attr_int!`]: `Span.attributes` (its key; its length at 1),
/// `KeyValue.key` (key and length, then the key), `KeyValue.value` (its key, then
/// its length), and the key of `AnyValue`'s field (`value_key`); for a string
/// (`N` = key length + 8) one byte more for the value's length, so that only the
/// value's bytes follow; for an integer (`N` = key length + 7) its varint follows.
const fn attribute_head<const N: usize>(key: &str, value_key: u8) -> [u8; N] {
    let k = key.as_bytes();
    assert!(k.len() < 100 && (k.len() + 7 == N || k.len() + 8 == N));
    let mut out = [0u8; N];
    out[0] = field_key(span::ATTRIBUTES, LEN);
    out[2] = field_key(1, LEN);
    out[3] = k.len() as u8;
    let mut i = 0;
    while i < k.len() {
        out[4 + i] = k[i];
        i += 1;
    }
    out[4 + k.len()] = field_key(2, LEN);
    out[6 + k.len()] = value_key;
    out
}

/// A string attribute: `KeyValue { key = 1, value = 2: AnyValue { string_value = 1 } }`
/// after `head` (see [`attribute_head`]). Lengths under 128, the usual case, fill
/// in three bytes of the head; longer ones take the varint path.
#[inline(always)]
fn attr_str<const N: usize>(o: &mut Vec<u8>, head: &[u8; N], value: &[u8]) {
    // KeyValue: the key field (N - 6 bytes), the value field's key and length,
    // AnyValue: its key, the value's length and bytes.
    let kv = N - 6 + 2 + 2 + value.len();
    if kv < 128 {
        let mut h = *head;
        h[1] = kv as u8;
        h[N - 3] = (2 + value.len()) as u8;
        h[N - 1] = value.len() as u8;
        o.extend_from_slice(&h);
        o.extend_from_slice(value);
    } else {
        long_attr_str(o, &head[2..N - 4], value);
    }
}

/// [`attr_str`] for a value of more than about 100 bytes: its lengths as varints.
#[cold]
fn long_attr_str(o: &mut Vec<u8>, key_field: &[u8], value: &[u8]) {
    let any = wire::len_field_size(1, value.len());
    wire::len_prefix(
        o,
        span::ATTRIBUTES,
        key_field.len() + wire::len_field_size(2, any),
    );
    o.extend_from_slice(key_field);
    wire::len_prefix(o, 2, any);
    wire::bytes(o, 1, value);
}

/// An integer attribute: `KeyValue { key = 1, value = 2: AnyValue { int_value = 3 } }`
/// after `head` (see [`attribute_head`]); keys are under 100 bytes, so every
/// length takes one byte.
#[inline(always)]
fn attr_int<const N: usize>(o: &mut Vec<u8>, head: &[u8; N], value: i64) {
    let any = 1 + wire::varint_len(value as u64);
    let mut h = *head;
    h[1] = (N - 5 + 2 + any) as u8;
    h[N - 2] = any as u8;
    o.extend_from_slice(&h);
    wire::varint(o, value as u64);
}

/// `bytes` as UTF-8 (protobuf strings must be), invalid sequences replaced; the
/// usual case, ASCII, is only checked (`from_utf8_lossy` walks text in chunks,
/// `from_utf8` costs more than a word-at-a-time ASCII test on a short string;
/// std's `is_ascii` goes byte by byte below 16 bytes, ours reads a short string as
/// one word; std's took 149 instructions for a proxied request's three strings).
#[inline(always)]
fn utf8(bytes: &[u8]) -> Cow<'_, [u8]> {
    if text::is_ascii(bytes) {
        Cow::Borrowed(bytes)
    } else {
        lossy(bytes)
    }
}

#[cold]
fn lossy(bytes: &[u8]) -> Cow<'_, [u8]> {
    Cow::Owned(String::from_utf8_lossy(bytes).into_owned().into_bytes())
}
