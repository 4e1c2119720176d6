//! `GET /metrics`: the workers' published series and counters, merged, rendered by
//! `prometheus-client` through a collector — in the Prometheus text format
//! (0.0.4), or OpenMetrics 1.0 when the scraper asks for it in `Accept`.
//!
//! Every metric name and label here is documented in docs/observability.md and
//! kept stable. Labels are bounded by the configuration: routes, upstreams,
//! endpoints, providers and policies are configured ones (requests no route took
//! have `route=""`), methods are eight classes, codes are three digits.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::histogram::HistogramSnapshot;
use super::series::{AuthResult, EndpointCounts, OverflowLimit, PolicyResult, UpstreamCounts};
use super::snapshot::MetricsSnapshot;

/// The exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (what `curl` and older scrapers get).
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` field asks for: OpenMetrics when
    /// `application/openmetrics-text` is acceptable with a quality at least that
    /// of `text/plain` (as Prometheus asks), the text format otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut open, mut text) = (0.0f64, 0.0f64);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => open = open.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if open > 0.0 && open >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// An endpoint's health as the workers and the prober see it (from the endpoint
/// board, for the `portico_upstream_endpoint_*` gauges).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointHealth {
    pub upstream: String,
    pub endpoint: SocketAddr,
    pub healthy: bool,
    pub ejected_workers: usize,
}

/// Everything one scrape shows.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    /// Each worker's published series.
    pub workers: Vec<MetricsSnapshot>,
    /// What workers that died and were restarted had counted (counts only, not
    /// workers).
    pub retired: Vec<MetricsSnapshot>,
    /// Counters summed over workers and side threads (`PublishedCounters::totals`).
    pub counters: Vec<(&'static str, u64)>,
    pub endpoints: Vec<EndpointHealth>,
}

/// Renders `scrape` in `format`.
pub fn render(format: Format, scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Merged::of(scrape)));
    let mut out = String::new();
    let result = match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    if result.is_err() {
        // Writing into a String does not fail; an encoder refusal would be a bug.
        tracing::error!("rendering /metrics failed");
    }
    out
}

/// A counter of `Counters` exposed as a metric: the counter's name, the metric's,
/// its help, its type, and a fixed label (several counters can be one metric).
struct Flat {
    counter: &'static str,
    metric: &'static str,
    help: &'static str,
    kind: MetricType,
    label: Option<(&'static str, &'static str)>,
}

const fn flat(counter: &'static str, metric: &'static str, help: &'static str) -> Flat {
    Flat {
        counter,
        metric,
        help,
        kind: MetricType::Counter,
        label: None,
    }
}

const fn labelled(
    counter: &'static str,
    metric: &'static str,
    help: &'static str,
    label: (&'static str, &'static str),
) -> Flat {
    Flat {
        counter,
        metric,
        help,
        kind: MetricType::Counter,
        label: Some(label),
    }
}

/// The process-wide counters on `/metrics` (those of one metric are adjacent).
/// Counters not listed here are on `/stats` only: per status class (the
/// per-code series are `portico_requests_total`; a class and a code never share a
/// name) and those the labelled series already show.
const FLAT: &[Flat] = &[
    flat(
        "connections_accepted",
        "portico_connections_accepted",
        "Client connections accepted.",
    ),
    flat(
        "connections_rejected",
        "portico_connections_rejected",
        "Client connections refused because max_connections_per_worker was reached.",
    ),
    flat(
        "tls_handshakes",
        "portico_tls_handshakes",
        "TLS handshakes completed on the TLS listeners.",
    ),
    flat(
        "tls_resumed",
        "portico_tls_handshakes_resumed",
        "TLS handshakes that resumed an earlier session.",
    ),
    flat(
        "tls_handshake_failures",
        "portico_tls_handshake_failures",
        "TLS handshakes that failed or timed out.",
    ),
    flat(
        "requests_malformed",
        "portico_requests_malformed",
        "Requests refused by the HTTP codec (400, 413, 414, 431, ...).",
    ),
    flat(
        "requests_shed",
        "portico_requests_shed",
        "Requests answered 503 at once by max_in_flight_per_worker.",
    ),
    flat(
        "upstream_connects",
        "portico_upstream_connections_opened",
        "Upstream connections opened.",
    ),
    flat(
        "upstream_reused",
        "portico_upstream_connections_reused",
        "Upstream connections taken from the keep-alive pool.",
    ),
    flat(
        "upstream_pool_discarded",
        "portico_upstream_connections_discarded",
        "Idle pooled connections closed when taken (bytes waiting or closed by the upstream).",
    ),
    flat(
        "upstream_truncated",
        "portico_upstream_responses_truncated",
        "Upstream responses cut short (the client connection was closed).",
    ),
    flat(
        "upstream_panic",
        "portico_upstream_panic",
        "Tries sent while no endpoint of the upstream was available (panic mode).",
    ),
    flat(
        "outlier_ejections",
        "portico_outlier_ejections",
        "Endpoints ejected by outlier detection (each worker counts its own).",
    ),
    flat(
        "outlier_ejections_refused",
        "portico_outlier_ejections_refused",
        "Ejections not made because of max_ejection_percent or min_hosts.",
    ),
    flat(
        "health_checks",
        "portico_health_checks",
        "Health-check probes sent.",
    ),
    flat(
        "health_check_failures",
        "portico_health_check_failures",
        "Health-check probes that failed.",
    ),
    flat(
        "health_marked_unhealthy",
        "portico_health_marked_unhealthy",
        "Endpoints the prober turned unhealthy.",
    ),
    flat(
        "health_marked_healthy",
        "portico_health_marked_healthy",
        "Endpoints the prober turned healthy again.",
    ),
    flat(
        "auth_verified",
        "portico_auth_verifications",
        "Tokens whose signature and claims were checked and passed.",
    ),
    flat(
        "auth_cache_hits",
        "portico_auth_cache_hits",
        "Requests answered from a worker's verified-token cache.",
    ),
    flat(
        "ratelimit_provisional",
        "portico_ratelimit_provisional",
        "Rate-limit checks passed on a provisional allowance.",
    ),
    flat(
        "ratelimit_local",
        "portico_ratelimit_local",
        "Rate-limit checks decided by a worker's local fallback bucket.",
    ),
    flat(
        "ratelimit_channel_full",
        "portico_ratelimit_channel_full",
        "Reports to the limiter thread that found its channel full.",
    ),
    flat(
        "ratelimit_lease_requests",
        "portico_ratelimit_lease_requests",
        "Lease requests sent to the limiter thread.",
    ),
    flat(
        "ratelimit_key_evictions",
        "portico_ratelimit_key_evictions",
        "Keys evicted from the workers' rate-limit tables.",
    ),
    flat(
        "limiter_demands",
        "portico_limiter_demands",
        "Reports the limiter thread handled.",
    ),
    flat(
        "limiter_grants_dropped",
        "portico_limiter_grants_dropped",
        "Grants the limiter thread could not deliver.",
    ),
    flat(
        "limiter_key_evictions",
        "portico_limiter_key_evictions",
        "Keys evicted from the limiter thread's tables.",
    ),
    flat(
        "limiter_recalls",
        "portico_limiter_recalls",
        "Large leases recalled from a worker.",
    ),
    flat(
        "fleet_syncs",
        "portico_fleet_syncs",
        "Successful Redis syncs of fleet rate limits.",
    ),
    flat(
        "fleet_redis_failures",
        "portico_fleet_redis_failures",
        "Failed Redis syncs and reconnects.",
    ),
    Flat {
        counter: "fleet_redis_down",
        metric: "portico_fleet_redis_down",
        help: "1 while Redis is unreachable and on_redis_failure applies.",
        kind: MetricType::Gauge,
        label: None,
    },
    flat(
        "access_log_dropped",
        "portico_access_log_dropped_batches",
        "Access-log batches dropped because the writer was behind.",
    ),
    flat(
        "trace_spans_exported",
        "portico_trace_spans_exported",
        "Spans the OTLP collector accepted.",
    ),
    labelled(
        "trace_spans_dropped",
        "portico_trace_spans_dropped",
        "Spans not exported: the exporter's queue was full, or the export failed.",
        ("reason", "queue_full"),
    ),
    labelled(
        "trace_spans_failed",
        "portico_trace_spans_dropped",
        "Spans not exported: the exporter's queue was full, or the export failed.",
        ("reason", "export_failed"),
    ),
    labelled(
        "trace_exports",
        "portico_trace_export_requests",
        "OTLP export requests, by result.",
        ("result", "ok"),
    ),
    labelled(
        "trace_export_failures",
        "portico_trace_export_requests",
        "OTLP export requests, by result.",
        ("result", "failed"),
    ),
];

/// The scrape merged over workers: what the collector encodes.
#[derive(Debug, Default)]
struct Merged {
    /// `(route, method, code)` → requests.
    requests: BTreeMap<(Arc<str>, &'static str, u16), u64>,
    durations: BTreeMap<Arc<str>, HistogramSnapshot>,
    upstreams: BTreeMap<Arc<str>, UpstreamCounts>,
    endpoints: BTreeMap<(Arc<str>, SocketAddr), EndpointCounts>,
    auth: BTreeMap<Arc<str>, [u64; AuthResult::COUNT]>,
    policies: BTreeMap<Arc<str>, [u64; PolicyResult::COUNT]>,
    health: Vec<EndpointHealth>,
    counters: Vec<(&'static str, u64)>,
    workers: usize,
    connections_open: u64,
    in_flight: u64,
    config_version: u64,
}

impl Merged {
    fn of(scrape: Scrape) -> Merged {
        let mut m = Merged {
            workers: scrape.workers.len(),
            health: scrape.endpoints,
            counters: scrape.counters,
            ..Merged::default()
        };
        for w in scrape.workers.iter().chain(&scrape.retired) {
            for r in &w.routes {
                for &(method, code, n) in &r.codes {
                    *m.requests
                        .entry((r.route.clone(), method.label(), code))
                        .or_default() += n;
                }
                m.durations
                    .entry(r.route.clone())
                    .or_default()
                    .add(&r.duration);
            }
            for (name, c) in &w.upstreams {
                m.upstreams.entry(name.clone()).or_default().add(c);
            }
            for (upstream, addr, c) in &w.endpoints {
                m.endpoints
                    .entry((upstream.clone(), *addr))
                    .or_default()
                    .add(c);
            }
            for (name, counts) in &w.auth {
                add_into(m.auth.entry(name.clone()).or_default(), counts);
            }
            for (name, counts) in &w.policies {
                add_into(m.policies.entry(name.clone()).or_default(), counts);
            }
            m.connections_open += w.gauges.connections_open;
            m.in_flight += w.gauges.requests_in_flight;
            m.config_version = m.config_version.max(w.gauges.config_version);
        }
        m
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }
}

fn add_into<const N: usize>(total: &mut [u64; N], more: &[u64; N]) {
    for (t, m) in total.iter_mut().zip(more) {
        *t += m;
    }
}

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// Reads one count of an endpoint.
type EndpointValue = fn(&EndpointCounts) -> u64;

fn endpoint_labels(upstream: &str, endpoint: SocketAddr) -> Labels<'_> {
    vec![
        ("upstream", Cow::Borrowed(upstream)),
        ("endpoint", Cow::Owned(endpoint.to_string())),
    ]
}

/// One metric family: its descriptor, then each sample from `samples`.
fn family<'s, T>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels<'s>, T)>,
    mut write: impl FnMut(&mut MetricEncoder, &T) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = enc.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in samples {
        let mut sample = metric.encode_family(&labels)?;
        write(&mut sample, &value)?;
    }
    Ok(())
}

fn counter(m: &mut MetricEncoder, v: &u64) -> Result<(), std::fmt::Error> {
    m.encode_counter::<NoLabelSet, u64, u64>(v, None)
}

fn gauge(m: &mut MetricEncoder, v: &u64) -> Result<(), std::fmt::Error> {
    m.encode_gauge(v)
}

fn histogram(m: &mut MetricEncoder, h: &HistogramSnapshot) -> Result<(), std::fmt::Error> {
    m.encode_histogram::<NoLabelSet>(h.sum_seconds(), h.count(), &h.bucket_pairs(), None)
}

/// A single unlabelled sample.
fn single(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => counter(&mut metric, &v),
        _ => gauge(&mut metric, &v),
    }
}

impl Collector for Merged {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut build = enc.encode_descriptor(
            "portico_build",
            "The running build: its version.",
            None,
            MetricType::Info,
        )?;
        build.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        single(
            &mut enc,
            "portico_config_version",
            "Load number of the configuration new connections get (1 at start).",
            MetricType::Gauge,
            self.config_version,
        )?;
        single(
            &mut enc,
            "portico_workers",
            "Worker threads serving requests.",
            MetricType::Gauge,
            self.workers as u64,
        )?;
        single(
            &mut enc,
            "portico_connections_open",
            "Client connections open.",
            MetricType::Gauge,
            self.connections_open,
        )?;
        single(
            &mut enc,
            "portico_requests_in_flight",
            "Requests in progress.",
            MetricType::Gauge,
            self.in_flight,
        )?;
        family(
            &mut enc,
            "portico_requests",
            "Requests finished, by route (empty: no route took it), method and status code sent.",
            None,
            MetricType::Counter,
            self.requests.iter().map(|((route, method, code), n)| {
                let labels: Labels<'_> = vec![
                    ("route", Cow::Borrowed(&**route)),
                    ("method", Cow::Borrowed(*method)),
                    ("code", Cow::Owned(code.to_string())),
                ];
                (labels, *n)
            }),
            counter,
        )?;
        family(
            &mut enc,
            "portico_request_duration",
            "Time from a request's complete head to its last response byte, by route.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
            self.durations.iter().map(|(route, h)| {
                let labels: Labels<'_> = vec![("route", Cow::Borrowed(&**route))];
                (labels, *h)
            }),
            histogram,
        )?;
        self.encode_upstreams(&mut enc)?;
        self.encode_decisions(&mut enc)?;
        self.encode_flat(&mut enc)
    }
}

impl Merged {
    fn encode_upstreams(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let per_endpoint: [(&str, &str, EndpointValue); 6] = [
            (
                "portico_upstream_requests",
                "Tries sent to an endpoint (retries and replays included).",
                |c| c.tries,
            ),
            (
                "portico_upstream_connect_failures",
                "Tries whose TCP connect failed or timed out.",
                |c| c.connect_failures,
            ),
            (
                "portico_upstream_tls_failures",
                "Tries whose TLS handshake to the endpoint failed.",
                |c| c.tls_failures,
            ),
            (
                "portico_upstream_timeouts",
                "Tries with no response head before the deadline.",
                |c| c.timeouts,
            ),
            (
                "portico_upstream_resets",
                "Tries the endpoint closed or reset before answering.",
                |c| c.resets,
            ),
            (
                "portico_upstream_protocol_errors",
                "Tries answered with something that is not usable HTTP/1.1.",
                |c| c.protocol_errors,
            ),
        ];
        for (name, help, value) in per_endpoint {
            family(
                enc,
                name,
                help,
                None,
                MetricType::Counter,
                self.endpoints
                    .iter()
                    .map(|((u, addr), c)| (endpoint_labels(u, *addr), value(c))),
                counter,
            )?;
        }
        family(
            enc,
            "portico_upstream_idle_connections",
            "Idle keep-alive connections in the workers' pools.",
            None,
            MetricType::Gauge,
            self.endpoints
                .iter()
                .map(|((u, addr), c)| (endpoint_labels(u, *addr), c.idle)),
            gauge,
        )?;
        family(
            enc,
            "portico_upstream_endpoint_healthy",
            "1 while the endpoint passes its health checks (always 1 without them).",
            None,
            MetricType::Gauge,
            self.health.iter().map(|h| {
                (
                    endpoint_labels(&h.upstream, h.endpoint),
                    u64::from(h.healthy),
                )
            }),
            gauge,
        )?;
        family(
            enc,
            "portico_upstream_endpoint_ejected_workers",
            "Workers on which outlier detection ejects the endpoint now.",
            None,
            MetricType::Gauge,
            self.health.iter().map(|h| {
                (
                    endpoint_labels(&h.upstream, h.endpoint),
                    h.ejected_workers as u64,
                )
            }),
            gauge,
        )?;
        family(
            enc,
            "portico_upstream_request_duration",
            "Time from a try's start to its response head (or its failure), by upstream.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
            self.upstreams.iter().map(|(u, c)| {
                let labels: Labels<'_> = vec![("upstream", Cow::Borrowed(&**u))];
                (labels, c.duration)
            }),
            histogram,
        )?;
        family(
            enc,
            "portico_upstream_retries",
            "Retries made (the stale-connection replay aside).",
            None,
            MetricType::Counter,
            self.upstreams.iter().map(|(u, c)| {
                let labels: Labels<'_> = vec![("upstream", Cow::Borrowed(&**u))];
                (labels, c.retries)
            }),
            counter,
        )?;
        family(
            enc,
            "portico_upstream_overflows",
            "Requests (503) and retries refused by a circuit breaker or the retry budget, by limit.",
            None,
            MetricType::Counter,
            self.upstreams.iter().flat_map(|(u, c)| {
                OverflowLimit::ALL.into_iter().map(move |limit| {
                    let labels: Labels<'_> = vec![
                        ("upstream", Cow::Borrowed(&**u)),
                        ("limit", Cow::Borrowed(limit.label())),
                    ];
                    (labels, c.overflows[limit as usize])
                })
            }),
            counter,
        )
    }

    fn encode_decisions(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        family(
            enc,
            "portico_auth_decisions",
            "Authentication decisions on routes with auth, by provider and result.",
            None,
            MetricType::Counter,
            self.auth.iter().flat_map(|(p, counts)| {
                AuthResult::ALL.into_iter().map(move |r| {
                    let labels: Labels<'_> = vec![
                        ("provider", Cow::Borrowed(&**p)),
                        ("result", Cow::Borrowed(r.label())),
                    ];
                    (labels, counts[r as usize])
                })
            }),
            counter,
        )?;
        family(
            enc,
            "portico_ratelimit_decisions",
            "Rate-limit decisions, one per policy checked and request, by policy and result.",
            None,
            MetricType::Counter,
            self.policies.iter().flat_map(|(p, counts)| {
                PolicyResult::ALL.into_iter().map(move |r| {
                    let labels: Labels<'_> = vec![
                        ("policy", Cow::Borrowed(&**p)),
                        ("result", Cow::Borrowed(r.label())),
                    ];
                    (labels, counts[r as usize])
                })
            }),
            counter,
        )
    }

    fn encode_flat(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut i = 0;
        while let Some(first) = FLAT.get(i) {
            let same = FLAT[i..]
                .iter()
                .take_while(|f| f.metric == first.metric)
                .count();
            let mut metric = enc.encode_descriptor(first.metric, first.help, None, first.kind)?;
            for f in &FLAT[i..i + same] {
                let v = self.counter(f.counter);
                match f.label {
                    Some(label) => {
                        let labels = [label];
                        let mut sample = metric.encode_family(&labels)?;
                        write_flat(&mut sample, f.kind, v)?;
                    }
                    None => write_flat(&mut metric, f.kind, v)?,
                }
            }
            i += same;
        }
        Ok(())
    }
}

fn write_flat(m: &mut MetricEncoder, kind: MetricType, v: u64) -> Result<(), std::fmt::Error> {
    match kind {
        MetricType::Counter => counter(m, &v),
        _ => gauge(m, &v),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::registry::{SeriesNames, WorkerMetrics};
    use super::super::series::MethodClass;
    use super::super::snapshot::WorkerGauges;
    use super::*;

    #[test]
    fn accept_picks_the_format() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=1, application/openmetrics-text;q=0.5")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::Text
        );
    }

    #[test]
    fn every_flat_counter_exists() {
        let names: Vec<&str> = crate::observe::PublishedCounters::default()
            .values()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for f in FLAT {
            assert!(names.contains(&f.counter), "{} is not a counter", f.counter);
        }
    }

    #[test]
    fn both_formats_render_the_merged_workers() {
        let w = WorkerMetrics::default();
        let g = w.generation(&SeriesNames {
            routes: vec!["echo"],
            upstreams: vec!["echo"],
            endpoints: vec![("echo", "127.0.0.1:9001".parse().unwrap())],
            ..SeriesNames::default()
        });
        g.route(Some(0))
            .record(MethodClass::Get, 200, Duration::from_millis(2));
        g.route(None)
            .record(MethodClass::Post, 404, Duration::from_micros(80));
        let snap = w.snapshot(WorkerGauges {
            connections_open: 1,
            requests_in_flight: 0,
            config_version: 1,
        });
        let scrape = Scrape {
            workers: vec![snap.clone(), snap],
            retired: Vec::new(),
            counters: vec![("connections_accepted", 4), ("trace_spans_dropped", 2)],
            endpoints: Vec::new(),
        };
        let text = render(Format::Text, scrape.clone());
        assert!(
            text.contains("portico_requests_total{route=\"echo\",method=\"GET\",code=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("portico_requests_total{route=\"\",method=\"POST\",code=\"404\"} 2\n")
        );
        assert!(text.contains("# TYPE portico_request_duration_seconds histogram\n"));
        assert!(text
            .contains("portico_request_duration_seconds_bucket{route=\"echo\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("portico_connections_open 2\n"));
        assert!(text.contains("portico_connections_accepted_total 4\n"));
        assert!(text.contains("portico_trace_spans_dropped_total{reason=\"queue_full\"} 2\n"));
        assert!(text.contains("portico_build_info{version=\""));
        assert!(!text.contains("# EOF"));
        let open = render(Format::OpenMetrics, scrape);
        assert!(open.contains("# TYPE portico_requests counter\n"));
        assert!(open.ends_with("# EOF\n"));
    }
}
