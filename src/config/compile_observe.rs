//! Validation and compilation of `[tracing]` and `[log] access_log_format`. Each
//! problem is recorded at its key; defaults are here.

use std::time::Duration;

use toml::Spanned;

use super::error::Problems;
use super::schema_observe::TracingSection;
use crate::observe::{AccessLogFormat, OtlpEndpoint, TracingSettings};

/// Share of new traces sampled when `sample_ratio` is not given.
const DEFAULT_SAMPLE_RATIO: f64 = 0.01;

/// `[log] access_log_format`: `"text"` (default) or `"json"`.
pub(crate) fn access_log_format(f: &Spanned<String>, p: &mut Problems<'_>) -> AccessLogFormat {
    match f.get_ref().as_str() {
        "text" => AccessLogFormat::Text,
        "json" => AccessLogFormat::Json,
        other => {
            p.at(
                f.span(),
                format!("access_log_format must be \"text\" or \"json\", not \"{other}\""),
            );
            AccessLogFormat::Text
        }
    }
}

/// `[tracing]`, when the section is there.
pub(crate) fn tracing(t: TracingSection, p: &mut Problems<'_>) -> TracingSettings {
    let sample_ratio = match &t.sample_ratio {
        Some(r) if (0.0..=1.0).contains(r.get_ref()) => *r.get_ref(),
        Some(r) => {
            p.at(
                r.span(),
                format!("sample_ratio must be from 0.0 to 1.0, not {}", r.get_ref()),
            );
            DEFAULT_SAMPLE_RATIO
        }
        None => DEFAULT_SAMPLE_RATIO,
    };
    let otlp = t
        .otlp_endpoint
        .as_ref()
        .and_then(|e| match OtlpEndpoint::parse(e.get_ref()) {
            Ok(endpoint) => Some(endpoint),
            Err(reason) => {
                p.at(e.span(), reason);
                None
            }
        });
    let service_name = match &t.service_name {
        Some(n) if n.get_ref().trim().is_empty() => {
            p.at(n.span(), "service_name must not be empty");
            "portico".to_string()
        }
        Some(n) => n.get_ref().clone(),
        None => "portico".to_string(),
    };
    let number = |v: &Option<Spanned<u64>>, default: u64, max: u64, p: &mut Problems<'_>| match v {
        Some(v) if (1..=max).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            p.at(
                v.span(),
                format!("{} is out of range: must be from 1 to {max}", v.get_ref()),
            );
            default
        }
        None => default,
    };
    // 2,048 spans an export rather than the OpenTelemetry SDKs' 512: the exporter
    // thread's share of a fully traced request's CPU samples was 1.64–1.72% with
    // 512 and 1.22–1.26% with 2,048 (docs/benchmarks.md §10); an export is then
    // about 650 KB, well under collectors' request limits. The queue holds eight
    // such batches; a smaller configured queue caps the default batch.
    let queue_spans = number(&t.export_queue_spans, 16_384, 1_000_000, p) as usize;
    let batch_spans = number(&t.export_batch_spans, 2048, 100_000, p) as usize;
    let batch_spans = match &t.export_batch_spans {
        Some(_) => batch_spans,
        None => batch_spans.min(queue_spans),
    };
    if let Some(b) = &t.export_batch_spans {
        if *b.get_ref() as usize > queue_spans {
            p.at(
                b.span(),
                "export_batch_spans must not exceed export_queue_spans",
            );
        }
    }
    TracingSettings {
        sample_ratio,
        otlp,
        service_name,
        queue_spans,
        batch_spans,
        export_interval: Duration::from_millis(number(&t.export_interval_ms, 1000, 60_000, p)),
        export_timeout: Duration::from_millis(number(&t.export_timeout_ms, 5000, 60_000, p)),
    }
}
