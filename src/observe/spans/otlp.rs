//! Spans as OTLP: an `ExportTraceServiceRequest` (opentelemetry-proto) with one
//! resource (`service.name`, `service.version`) and one instrumentation scope,
//! around the spans the workers encoded (`record.rs`), protobuf for OTLP/HTTP
//! (`Content-Type: application/x-protobuf`). The tests decode it with the official
//! messages (`portico-otlp-proto`, prost).

use portico_otlp_proto::{ExportTraceServiceResponse, Message};

use super::buffer::SpanBatch;
use super::wire;

/// The media type of OTLP/HTTP's binary protobuf encoding.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// The encoded export request for the spans of `batches`, of service
/// `service_name`, in one buffer (the tests' view: the exporter sends
/// [`encode_head`] and the batches as they are).
#[cfg(test)]
pub fn encode(batches: &[SpanBatch], service_name: &str) -> Vec<u8> {
    let mut out = encode_head(batches, service_name);
    for batch in batches {
        out.extend_from_slice(&batch.bytes);
    }
    out
}

/// The start of the export request for the spans of `batches`: everything before
/// the spans, whose lengths it counts in. The request is this followed by each
/// batch's bytes, so the spans are never copied into one body (an export of 512
/// spans is about 120 KB).
pub fn encode_head(batches: &[SpanBatch], service_name: &str) -> Vec<u8> {
    let spans: usize = batches.iter().map(|b| b.bytes.len()).sum();
    // ResourceSpans.resource: Resource.attributes
    let mut resource = Vec::with_capacity(64 + service_name.len());
    text_attribute(&mut resource, "service.name", service_name);
    text_attribute(&mut resource, "service.version", env!("CARGO_PKG_VERSION"));
    // ScopeSpans.scope: InstrumentationScope { name, version }
    let mut scope = Vec::with_capacity(32);
    wire::bytes(&mut scope, 1, b"portico");
    wire::bytes(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
    let scope_spans = wire::len_field_size(1, scope.len()) + spans;
    let resource_spans =
        wire::len_field_size(1, resource.len()) + wire::len_field_size(2, scope_spans);
    let mut out = Vec::with_capacity(resource_spans - spans + 16);
    // ExportTraceServiceRequest.resource_spans
    wire::len_prefix(&mut out, 1, resource_spans);
    wire::len_prefix(&mut out, 1, resource.len());
    out.extend_from_slice(&resource);
    // ResourceSpans.scope_spans, then ScopeSpans.scope; the spans follow.
    wire::len_prefix(&mut out, 2, scope_spans);
    wire::len_prefix(&mut out, 1, scope.len());
    out.extend_from_slice(&scope);
    out
}

/// Spans a collector said it rejected (OTLP partial success), from its answer's
/// body; 0 when the body is empty or not an `ExportTraceServiceResponse`.
pub fn rejected_spans(answer: &[u8]) -> u64 {
    ExportTraceServiceResponse::decode(answer)
        .ok()
        .and_then(|r| r.partial_success)
        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
}

/// A `KeyValue` with a string value, as a `Resource.attributes` entry.
fn text_attribute(o: &mut Vec<u8>, key: &str, value: &str) {
    wire::message(o, 1, |o| {
        wire::bytes(o, 1, key.as_bytes());
        wire::message(o, 2, |o| wire::bytes(o, 1, value.as_bytes()));
    });
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use portico_otlp_proto::{any_value, span, status, ExportTraceServiceRequest, KeyValue};

    use super::*;
    use crate::observe::spans::record::{
        endpoint_attributes, route_attribute, write_request_spans, RequestFacts, SpanLabels,
    };
    use crate::observe::trace::{hex_of, TrySpan};
    use crate::observe::TraceContext;

    fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn text(s: &str) -> Option<any_value::Value> {
        Some(any_value::Value::StringValue(s.into()))
    }

    /// One upstream, "app", with endpoints 0 (127.0.0.1:9001) and 1 ([::1]:9002).
    #[derive(Default)]
    struct Labels {
        upstream: &'static str,
        endpoints: Vec<Vec<u8>>,
    }

    impl Labels {
        fn app() -> Self {
            Labels {
                upstream: "app",
                endpoints: vec![
                    endpoint_attributes(b"127.0.0.1", 9001, "app"),
                    endpoint_attributes(b"::1", 9002, "app"),
                ],
            }
        }
    }

    impl SpanLabels for Labels {
        fn upstream(&self, _: usize) -> &str {
            self.upstream
        }

        fn endpoint(&self, id: usize) -> &[u8] {
            self.endpoints.get(id).map_or(&[], Vec::as_slice)
        }
    }

    #[test]
    fn spans_decode_with_the_official_messages() {
        let received = Instant::now();
        let trace = TraceContext {
            trace_id: [1; 16],
            trace_hex: hex_of(&[1; 16]),
            parent_id: Some([3; 8]),
            span_id: [2; 8],
            flags: 1,
            tracestate: Some(b"a=1".to_vec()),
            started_at: Some(1_800_000_000 * 1_000_000_000),
            tries: smallvec::smallvec![
                TrySpan {
                    span_id: [4; 8],
                    started: received + Duration::from_micros(10),
                    ended: Some(received + Duration::from_micros(30)),
                    upstream: 0,
                    endpoint: 0,
                    attempt: 1,
                    status: None,
                    failure: Some("connect"),
                    part: None,
                },
                TrySpan {
                    span_id: [5; 8],
                    started: received + Duration::from_micros(40),
                    ended: None,
                    upstream: 0,
                    endpoint: 1,
                    attempt: 2,
                    status: Some(502),
                    failure: None,
                    part: Some(("users".into(), "POST".into())),
                },
            ],
        };
        let facts = RequestFacts {
            method: b"GET",
            target: b"/api/x?q=1",
            route: "api",
            route_attribute: &route_attribute("api"),
            status: 502,
            client: b"10.1.2.3",
            authority: Some(b"api.example.com"),
            request_id: b"r1",
            attempts: 2,
            received,
            took: Duration::from_micros(200),
        };
        let mut batch = SpanBatch::default();
        batch.spans = write_request_spans(&mut batch.bytes, &trace, &facts, &Labels::app());
        assert_eq!(batch.spans, 3);
        let bytes = encode(&[batch], "gw");
        let back = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let rs = &back.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        assert_eq!(
            attr(&resource.attributes, "service.name").cloned(),
            text("gw")
        );
        let scope = &rs.scope_spans[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "portico");
        let [server, first, second] = &scope.spans[..] else {
            panic!("{:?}", scope.spans);
        };

        let start = 1_800_000_000 * 1_000_000_000u64;
        assert_eq!(server.trace_id, vec![1; 16]);
        assert_eq!(server.span_id, vec![2; 8]);
        assert_eq!(server.parent_span_id, vec![3; 8]);
        assert_eq!(server.trace_state, "a=1");
        assert_eq!(server.flags, 0x301);
        assert_eq!(server.name, "GET api");
        assert_eq!(server.kind, span::SpanKind::Server as i32);
        assert_eq!(
            (server.start_time_unix_nano, server.end_time_unix_nano),
            (start, start + 200_000)
        );
        let a = &server.attributes;
        assert_eq!(attr(a, "http.request.method").cloned(), text("GET"));
        assert_eq!(attr(a, "url.path").cloned(), text("/api/x"));
        assert_eq!(
            attr(a, "http.response.status_code").cloned(),
            Some(any_value::Value::IntValue(502))
        );
        assert_eq!(attr(a, "client.address").cloned(), text("10.1.2.3"));
        assert_eq!(attr(a, "portico.request_id").cloned(), text("r1"));
        assert_eq!(attr(a, "portico.route").cloned(), text("api"));
        assert_eq!(attr(a, "server.address").cloned(), text("api.example.com"));
        let s = server.status.as_ref().unwrap();
        assert_eq!(
            (s.code, s.message.as_str()),
            (status::StatusCode::Error as i32, "status 502")
        );

        assert_eq!(first.parent_span_id, vec![2; 8]);
        assert_eq!(first.span_id, vec![4; 8]);
        assert_eq!(first.flags, 0x101, "a local parent");
        assert_eq!(first.name, "GET app");
        assert_eq!(first.kind, span::SpanKind::Client as i32);
        assert_eq!(
            (first.start_time_unix_nano, first.end_time_unix_nano),
            (start + 10_000, start + 30_000)
        );
        assert_eq!(
            attr(&first.attributes, "server.address").cloned(),
            text("127.0.0.1")
        );
        assert_eq!(
            attr(&first.attributes, "server.port").cloned(),
            Some(any_value::Value::IntValue(9001))
        );
        assert_eq!(
            attr(&first.attributes, "portico.upstream").cloned(),
            text("app")
        );
        assert_eq!(
            attr(&first.attributes, "portico.route").cloned(),
            text("api")
        );
        assert_eq!(
            attr(&first.attributes, "error.type").cloned(),
            text("connect")
        );
        assert_eq!(first.status.as_ref().unwrap().message, "connect");

        assert_eq!(second.name, "POST app");
        assert_eq!(
            second.end_time_unix_nano,
            start + 200_000,
            "ends with the request"
        );
        assert_eq!(
            attr(&second.attributes, "server.address").cloned(),
            text("::1")
        );
        assert_eq!(
            attr(&second.attributes, "portico.part").cloned(),
            text("users")
        );
        assert_eq!(
            attr(&second.attributes, "http.request.resend_count").cloned(),
            Some(any_value::Value::IntValue(1))
        );
        assert_eq!(
            attr(&first.attributes, "http.request.resend_count"),
            None,
            "set on retries only"
        );
        assert_eq!(second.status.as_ref().unwrap().message, "status 502");
        assert_eq!(rejected_spans(b""), 0);
    }

    #[test]
    fn a_long_name_and_many_batches_keep_their_lengths() {
        let received = Instant::now();
        let trace = TraceContext {
            trace_id: [9; 16],
            trace_hex: hex_of(&[9; 16]),
            parent_id: None,
            span_id: [8; 8],
            flags: 1,
            tracestate: None,
            started_at: Some(0),
            tries: Default::default(),
        };
        let route = "r".repeat(300);
        let facts = RequestFacts {
            method: b"GET",
            // Not UTF-8: protobuf strings must be, so it is replaced.
            target: b"/a\xff",
            route: &route,
            route_attribute: &route_attribute(&route),
            status: 200,
            client: b"127.0.0.1",
            authority: None,
            // Over 127 bytes: the attribute's lengths take two bytes each.
            request_id: &[b'r'; 200],
            attempts: 0,
            received,
            took: Duration::ZERO,
        };
        let batches: Vec<SpanBatch> = (0..40)
            .map(|_| {
                let mut b = SpanBatch::default();
                b.spans = write_request_spans(&mut b.bytes, &trace, &facts, &Labels::default());
                b
            })
            .collect();
        let back = ExportTraceServiceRequest::decode(encode(&batches, "gw").as_slice()).unwrap();
        let spans = &back.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 40);
        assert!(spans.iter().all(|s| s.name == format!("GET {route}")));
        assert_eq!(spans[0].flags, 0x101, "no parent: not remote");
        assert!(spans[0].parent_span_id.is_empty() && spans[0].status.is_none());
        assert_eq!(
            attr(&spans[0].attributes, "url.path").cloned(),
            text("/a\u{fffd}")
        );
        assert_eq!(
            attr(&spans[0].attributes, "portico.request_id").cloned(),
            text(&"r".repeat(200))
        );
        assert_eq!(
            attr(&spans[0].attributes, "portico.route").cloned(),
            text(&route)
        );
    }
}
