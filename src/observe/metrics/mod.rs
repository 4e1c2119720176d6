//! Prometheus metrics: what each worker records per request into plain per-worker
//! series (`series.rs`, fixed-bucket histograms in `histogram.rs`), keyed by the
//! identity of what they count (`registry.rs`), published on the worker tick
//! (`snapshot.rs`) and merged and rendered by the admin thread at scrape time
//! (`exposition.rs`, with `prometheus-client`). Nothing on the request path is
//! shared with another thread.

mod exposition;
mod histogram;
mod registry;
mod series;
mod snapshot;

pub use exposition::{render, EndpointHealth, Format, Scrape};
pub use histogram::{DurationHistogram, HistogramSnapshot, BUCKET_BOUNDS};
pub use registry::{GenerationMetrics, SeriesNames, WorkerMetrics};
pub use series::{
    AuthResult, AuthSeries, EndpointSeries, MethodClass, OverflowLimit, PolicyResult, PolicySeries,
    RouteSeries, TryOutcome, UpstreamSeries,
};
pub use snapshot::{MetricsSnapshot, PublishedMetrics, WorkerGauges};
