//! Spans as OTLP: an `ExportTraceServiceRequest` (official opentelemetry-proto
//! messages, `portico-otlp-proto`) with one resource (`service.name`,
//! `service.version`) and one instrumentation scope, protobuf-encoded for
//! OTLP/HTTP (`Content-Type: application/x-protobuf`).

use portico_otlp_proto::{
    any_value, span, status, AnyValue, ExportTraceServiceRequest, ExportTraceServiceResponse,
    InstrumentationScope, KeyValue, Message, Resource, ResourceSpans, ScopeSpans, Span, Status,
};

use super::record::{AttrValue, SpanKind, SpanRecord};

/// The media type of OTLP/HTTP's binary protobuf encoding.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// `Span.flags`: the lower 8 bits are the W3C trace flags; bit 8 says whether the
/// parent's remoteness is known, bit 9 that it is remote (opentelemetry-proto
/// `SpanFlags`).
const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
const CONTEXT_IS_REMOTE: u32 = 0x200;

/// The encoded export request for `spans` of service `service_name`.
pub fn encode(spans: &[SpanRecord], service_name: &str) -> Vec<u8> {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", service_name),
                    text("service.version", env!("CARGO_PKG_VERSION")),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "portico".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..InstrumentationScope::default()
                }),
                spans: spans.iter().map(span).collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    request.encode_to_vec()
}

/// Spans a collector said it rejected (OTLP partial success), from its answer's
/// body; 0 when the body is empty or not an `ExportTraceServiceResponse`.
pub fn rejected_spans(answer: &[u8]) -> u64 {
    ExportTraceServiceResponse::decode(answer)
        .ok()
        .and_then(|r| r.partial_success)
        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
}

fn span(r: &SpanRecord) -> Span {
    let remote = if r.parent_is_remote {
        CONTEXT_IS_REMOTE
    } else {
        0
    };
    Span {
        trace_id: r.trace_id.to_vec(),
        span_id: r.span_id.to_vec(),
        trace_state: r.trace_state.clone().unwrap_or_default(),
        parent_span_id: r.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: u32::from(r.flags) | CONTEXT_HAS_IS_REMOTE | remote,
        name: r.name.clone(),
        kind: match r.kind {
            SpanKind::Server => span::SpanKind::Server,
            SpanKind::Client => span::SpanKind::Client,
        } as i32,
        start_time_unix_nano: r.start_unix_nanos,
        end_time_unix_nano: r.end_unix_nanos,
        attributes: r
            .attributes
            .iter()
            .map(|(k, v)| KeyValue {
                key: (*k).to_string(),
                value: Some(AnyValue {
                    value: Some(match v {
                        AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
                        AttrValue::Int(i) => any_value::Value::IntValue(*i),
                    }),
                }),
                ..KeyValue::default()
            })
            .collect(),
        status: r.error.as_ref().map(|message| Status {
            message: message.clone(),
            code: status::StatusCode::Error as i32,
        }),
        ..Span::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_round_trip_through_the_official_messages() {
        let record = SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            parent_is_remote: true,
            trace_state: Some("a=1".into()),
            flags: 1,
            name: "GET echo".into(),
            kind: SpanKind::Server,
            start_unix_nanos: 10,
            end_unix_nanos: 20,
            attributes: vec![
                ("http.request.method", AttrValue::Str("GET".into())),
                ("http.response.status_code", AttrValue::Int(502)),
            ],
            error: Some("status 502".into()),
        };
        let bytes = encode(&[record], "gw");
        let back = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let rs = &back.resource_spans[0];
        let service = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let s = &rs.scope_spans[0].spans[0];
        assert_eq!(
            (s.trace_id.as_slice(), s.span_id.as_slice()),
            (&[1u8; 16][..], &[2u8; 8][..])
        );
        assert_eq!(s.parent_span_id, vec![3; 8]);
        assert_eq!(s.flags, 0x301);
        assert_eq!(s.kind, span::SpanKind::Server as i32);
        assert_eq!(s.trace_state, "a=1");
        assert_eq!(
            s.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        assert_eq!(rejected_spans(b""), 0);
    }
}
