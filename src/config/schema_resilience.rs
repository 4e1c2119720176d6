//! The TOML shape of the resilience keys, as `docs/configuration.md` documents
//! them: an upstream's `health_check`, `outlier` and `retry_budget` tables, and a
//! route's `retry` table. Every table denies unknown keys; defaults are applied
//! (and values checked) in `compile_resilience.rs`, which knows each key's span.

use serde::Deserialize;
use toml::Spanned;

/// `health_check = { path, interval_ms, timeout_ms, healthy_threshold,
/// unhealthy_threshold, expected_status }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    pub path: Spanned<String>,
    pub interval_ms: Option<Spanned<u64>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub healthy_threshold: Option<Spanned<u64>>,
    pub unhealthy_threshold: Option<Spanned<u64>>,
    pub expected_status: Option<Spanned<StatusSetting>>,
}

/// `expected_status = 200`, `[200, 204]` or `"200-399"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusSetting {
    One(u64),
    Many(Vec<u64>),
    Range(String),
}

/// `outlier = { consecutive_failures, consecutive_gateway_failures,
/// base_ejection_ms, max_ejection_ms, max_ejection_percent, min_hosts }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierSection {
    pub consecutive_failures: Option<Spanned<u64>>,
    pub consecutive_gateway_failures: Option<Spanned<u64>>,
    pub base_ejection_ms: Option<Spanned<u64>>,
    pub max_ejection_ms: Option<Spanned<u64>>,
    pub max_ejection_percent: Option<Spanned<u64>>,
    pub min_hosts: Option<Spanned<u64>>,
}

/// `retry_budget = { percent, min_concurrency }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetSection {
    pub percent: Option<Spanned<u64>>,
    pub min_concurrency: Option<Spanned<u64>>,
}

/// A route's `retry = { attempts, on, per_try_timeout_ms, backoff_base_ms,
/// backoff_max_ms, buffer_body_bytes }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    pub attempts: Option<Spanned<u64>>,
    pub on: Option<Vec<Spanned<String>>>,
    pub per_try_timeout_ms: Option<Spanned<u64>>,
    pub backoff_base_ms: Option<Spanned<u64>>,
    pub backoff_max_ms: Option<Spanned<u64>>,
    pub buffer_body_bytes: Option<Spanned<u64>>,
}
