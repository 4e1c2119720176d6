//! What observing one proxied request costs the worker, part by part: its two
//! spans encoded as OTLP protobuf (`spans`), its JSON access-log line (`log`), its
//! text line (`text-log`), the `traceparent` sent upstream and the trace ID the log
//! carries (`traceparent`). Std only.
//!
//!     cargo bench --bench observe_encode            # ns/op of each, best of 15 runs
//!     # user-space instructions per op, unmoved by the machine's load:
//!     B=$(ls target/release/deps/observe_encode-* | grep -v '\.d$' | head -1)
//!     valgrind --tool=cachegrind --cache-sim=no $B spans 0        # the fixed cost
//!     valgrind --tool=cachegrind --cache-sim=no $B spans 100000   # (Ir - fixed) / 100000
//!
//! The request is the one `loadtest/bench/observe-instructions` sends: `GET /small`
//! from 127.0.0.1, a new trace, one try to 127.0.0.1:19431 answered 200.

use std::hint::black_box;
use std::time::{Duration, Instant};

use portico::observe::{
    endpoint_attributes, route_attribute, write_request_spans, AccessLogFormat, AccessLogTarget,
    AccessLogWriter, AccessRecord, RequestFacts, SpanLabels, TraceContext, TraceIds, TrySpan,
};
use portico::text::AddrText;

const OPS: u32 = 200_000;
const ROUNDS: usize = 15;

struct Labels(Vec<u8>);

impl SpanLabels for Labels {
    fn upstream(&self, _: usize) -> &str {
        "app"
    }

    fn endpoint(&self, _: usize) -> &[u8] {
        &self.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let received = Instant::now();
    let ids = TraceIds::new(0);
    let mut trace = TraceContext::for_request(&[], &[], 1.0, &ids, || 1_800_000_000_000_000_000);
    trace.tries.push(TrySpan {
        span_id: ids.span_id(),
        started: received + Duration::from_micros(20),
        ended: Some(received + Duration::from_micros(90)),
        upstream: 0,
        endpoint: 0,
        attempt: 1,
        status: Some(200),
        failure: None,
        part: None,
    });
    let route_attr = route_attribute("app");
    let labels = Labels(endpoint_attributes(b"127.0.0.1", 19431, "app"));
    let facts = RequestFacts {
        method: b"GET",
        target: b"/small",
        route: "app",
        route_attribute: &route_attr,
        status: 200,
        client: b"127.0.0.1",
        authority: Some(b"127.0.0.1:18530"),
        request_id: b"0b7e3c1f9a2d4e5f8a6b7c8d9e0f1a2b",
        attempts: 1,
        received,
        took: Duration::from_micros(110),
    };
    let endpoint = AddrText::new("127.0.0.1:19431".parse().expect("an address"));
    let trace_hex = trace.trace_id_hex();
    let record = AccessRecord {
        client: b"127.0.0.1",
        method: b"GET",
        target: b"/small",
        protocol: "HTTP/1.1",
        authority: Some(b"127.0.0.1:18530"),
        status: 200,
        bytes_received: 78,
        bytes_sent: 205,
        duration: Duration::from_micros(110),
        route: "app",
        upstream_name: Some("app"),
        upstream: Some(endpoint),
        upstream_connect: Some(Duration::ZERO),
        upstream_first_byte: Some(Duration::from_micros(60)),
        request_id: b"0b7e3c1f9a2d4e5f8a6b7c8d9e0f1a2b",
        trace_id: Some(trace_hex),
        auth_subject: None,
        ratelimit: None,
        attempts: 1,
        failure: None,
    };
    let devnull = AccessLogTarget::File("/dev/null".into());
    let json = AccessLogWriter::start(&devnull, AccessLogFormat::Json)
        .expect("/dev/null opens")
        .expect("a writer");
    let text = AccessLogWriter::start(&devnull, AccessLogFormat::Text)
        .expect("/dev/null opens")
        .expect("a writer");
    let (json_log, text_log) = (json.buffer(), text.buffer());
    let now = Duration::from_secs(1_800_000_000);

    let mut spans = Vec::with_capacity(1 << 20);
    let mut run = |part: &str, ops: u32| {
        for _ in 0..ops {
            match part {
                "spans" => {
                    if spans.len() > (1 << 20) - 4096 {
                        spans.clear();
                    }
                    black_box(write_request_spans(&mut spans, &trace, &facts, &labels));
                }
                "log" => json_log.record(black_box(&record), now),
                "text-log" => text_log.record(black_box(&record), now),
                "traceparent" => {
                    black_box(trace.traceparent(black_box(&trace.span_id)));
                    black_box(trace.trace_id_hex());
                }
                _ => {}
            }
        }
    };
    let parts = ["spans", "log", "text-log", "traceparent"];
    if let [part, ops] = &args[..] {
        let ops = ops.parse().expect("a count of operations");
        assert!(parts.contains(&part.as_str()), "one of {parts:?}");
        run(part, ops);
        return;
    }
    for part in parts {
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            run(part, OPS);
            best = best.min(start.elapsed().as_nanos() as f64 / f64::from(OPS));
        }
        println!("observe_{}: {best:.1} ns/op", part.replace('-', "_"));
    }
}
