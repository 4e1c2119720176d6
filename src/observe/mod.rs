//! Observation of what the gateway does: per-worker counters and metrics
//! (`metrics/`, rendered on `/metrics`), the access log, the trace context a
//! request carries, and the export of its spans.
//!
//! Workers only ever touch their own counters and log buffer (no atomics, no locks
//! per request); the control thread reads published copies.

mod access_log;
mod counters;
mod handoff;
pub mod metrics;
mod settings;
mod spans;
mod trace;
mod wall_clock;

pub use access_log::{
    utc_timestamp, AccessLogBuffer, AccessLogTarget, AccessLogWriter, AccessRecord,
};
pub use counters::{Counters, PublishedCounters};
pub use settings::{AccessLogFormat, OtlpEndpoint, TracingSettings};
pub use spans::{
    endpoint_attributes, route_attribute, write_request_spans, RequestFacts, SpanBuffer,
    SpanExporter, SpanLabels,
};
pub use trace::{
    parse_traceparent, parse_tracestate, set_parent_id, TraceContext, TraceIds, Traceparent,
    TrySpan, TRACEPARENT_LEN,
};
pub use wall_clock::WallClock;
