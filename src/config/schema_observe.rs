//! The TOML shape of `[tracing]`, as `docs/configuration.md` documents it.
//! Defaults are applied and values checked in `compile_observe.rs`.

use serde::Deserialize;
use toml::Spanned;

/// `[tracing]`: W3C trace context and OTLP export of spans.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    pub sample_ratio: Option<Spanned<f64>>,
    pub otlp_endpoint: Option<Spanned<String>>,
    pub service_name: Option<Spanned<String>>,
    pub export_queue_spans: Option<Spanned<u64>>,
    pub export_batch_spans: Option<Spanned<u64>>,
    pub export_interval_ms: Option<Spanned<u64>>,
    pub export_timeout_ms: Option<Spanned<u64>>,
}
