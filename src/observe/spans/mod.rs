//! Spans: what a sampled request becomes for the trace (`record.rs`: a server
//! span and a client span per upstream try, encoded as OTLP protobuf by the worker
//! with `wire.rs`), a worker's buffer of them (`buffer.rs`), and the exporter thread that POSTs them to an OTLP/HTTP
//! collector (`exporter.rs`, `otlp.rs`, over the blocking client of
//! `collector.rs`).

mod buffer;
mod collector;
mod exporter;
mod otlp;
mod record;
mod wire;

pub use buffer::SpanBuffer;
pub use exporter::SpanExporter;
pub use record::{
    endpoint_attributes, route_attribute, write_request_spans, RequestFacts, SpanLabels,
};
