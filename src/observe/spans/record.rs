//! A finished span as plain data: what a worker hands the exporter thread, which
//! turns it into OTLP (`otlp.rs`). Building one costs a few small allocations, and
//! only sampled requests build any.

use std::net::IpAddr;
use std::time::Instant;

use crate::observe::TraceContext;

/// The span's role (OTLP `SpanKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// The gateway serving a client's request.
    Server,
    /// The gateway as a client of an upstream (one per try).
    Client,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

/// One finished span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The parent span: the caller's (server span of a continued trace) or the
    /// gateway's server span (client spans); `None` for a trace's root.
    pub parent_span_id: Option<[u8; 8]>,
    /// The parent is in another process (the caller).
    pub parent_is_remote: bool,
    pub trace_state: Option<String>,
    /// W3C trace flags.
    pub flags: u8,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// OpenTelemetry semantic-convention names where one fits, `portico.*` else.
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// `Some(description)` marks the span as failed (OTLP status ERROR).
    pub error: Option<String>,
}

/// What the server span of a request says, besides its trace context.
pub struct RequestFacts<'a> {
    pub method: &'a [u8],
    /// The request target as received.
    pub target: &'a [u8],
    /// The route taken (empty: none).
    pub route: &'a str,
    pub status: u16,
    pub client: IpAddr,
    pub authority: Option<&'a [u8]>,
    pub request_id: &'a str,
    /// Upstream tries made.
    pub attempts: u32,
    /// When the request's head was complete (the context's `received`).
    pub received: Instant,
    /// When it ended.
    pub ended: Instant,
}

/// The spans of one sampled request: its server span, then a client span per
/// upstream try; `upstream_name` names an upstream by its index.
pub fn request_spans<'n>(
    trace: &TraceContext,
    facts: &RequestFacts<'_>,
    upstream_name: impl Fn(usize) -> &'n str,
) -> Vec<SpanRecord> {
    let method = String::from_utf8_lossy(facts.method).into_owned();
    let trace_state = trace
        .tracestate
        .as_ref()
        .map(|s| String::from_utf8_lossy(s).into_owned());
    let at = |i: Instant| trace.unix_nanos(facts.received, i);
    let path = facts.target.split(|&b| b == b'?').next().unwrap_or(b"");
    let mut server = SpanRecord {
        trace_id: trace.trace_id,
        span_id: trace.span_id,
        parent_span_id: trace.parent_id,
        parent_is_remote: trace.parent_id.is_some(),
        trace_state: trace_state.clone(),
        flags: trace.flags,
        name: if facts.route.is_empty() {
            method.clone()
        } else {
            format!("{method} {}", facts.route)
        },
        kind: SpanKind::Server,
        start_unix_nanos: at(facts.received),
        end_unix_nanos: at(facts.ended),
        attributes: vec![
            ("http.request.method", AttrValue::Str(method.clone())),
            (
                "url.path",
                AttrValue::Str(String::from_utf8_lossy(path).into_owned()),
            ),
            (
                "http.response.status_code",
                AttrValue::Int(i64::from(facts.status)),
            ),
            ("client.address", AttrValue::Str(facts.client.to_string())),
            (
                "portico.request_id",
                AttrValue::Str(facts.request_id.to_string()),
            ),
            (
                "portico.attempts",
                AttrValue::Int(i64::from(facts.attempts)),
            ),
        ],
        error: (facts.status >= 500).then(|| format!("status {}", facts.status)),
    };
    if !facts.route.is_empty() {
        server
            .attributes
            .push(("portico.route", AttrValue::Str(facts.route.to_string())));
    }
    if let Some(authority) = facts.authority {
        server.attributes.push((
            "server.address",
            AttrValue::Str(String::from_utf8_lossy(authority).into_owned()),
        ));
    }
    let mut out = Vec::with_capacity(1 + trace.tries.len());
    out.push(server);
    for t in &trace.tries {
        let upstream = upstream_name(t.upstream);
        let try_method = t.part.as_ref().map_or(&method, |(_, m)| m);
        let mut attributes = vec![
            ("http.request.method", AttrValue::Str(try_method.clone())),
            (
                "server.address",
                AttrValue::Str(t.endpoint.ip().to_string()),
            ),
            ("server.port", AttrValue::Int(i64::from(t.endpoint.port()))),
            ("portico.upstream", AttrValue::Str(upstream.to_string())),
            ("portico.attempt", AttrValue::Int(i64::from(t.attempt))),
            (
                "http.request.resend_count",
                AttrValue::Int(i64::from(t.attempt.saturating_sub(1))),
            ),
        ];
        if !facts.route.is_empty() {
            attributes.push(("portico.route", AttrValue::Str(facts.route.to_string())));
        }
        if let Some((part, _)) = &t.part {
            attributes.push(("portico.part", AttrValue::Str(part.clone())));
        }
        if let Some(status) = t.status {
            attributes.push((
                "http.response.status_code",
                AttrValue::Int(i64::from(status)),
            ));
        }
        if let Some(failure) = t.failure {
            attributes.push(("error.type", AttrValue::Str(failure.to_string())));
        }
        let error = match (t.failure, t.status) {
            (Some(f), _) => Some(f.to_string()),
            (None, Some(s)) if s >= 500 => Some(format!("status {s}")),
            _ => None,
        };
        out.push(SpanRecord {
            trace_id: trace.trace_id,
            span_id: t.span_id,
            parent_span_id: Some(trace.span_id),
            parent_is_remote: false,
            trace_state: trace_state.clone(),
            flags: trace.flags,
            name: format!("{try_method} {upstream}"),
            kind: SpanKind::Client,
            start_unix_nanos: at(t.started),
            end_unix_nanos: at(t.ended.unwrap_or(facts.ended)),
            attributes,
            error,
        });
    }
    out
}
