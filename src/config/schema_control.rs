//! The TOML shape of the control-plane keys, as `docs/configuration.md` documents
//! them: `[reload]` (how a new configuration is tried and adopted) and
//! `[config_limits]` (what one configuration may hold). Both deny unknown keys;
//! defaults are applied (and values checked) in `compile_control.rs`, which knows
//! each key's span.

use serde::Deserialize;
use toml::Spanned;

/// `[reload]`: the canary, its thresholds, and the file watch.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadSection {
    pub canary: Option<Spanned<bool>>,
    pub canary_workers: Option<Spanned<u64>>,
    pub canary_ms: Option<Spanned<u64>>,
    pub canary_requests: Option<Spanned<u64>>,
    pub canary_max_error_increase: Option<Spanned<f64>>,
    pub canary_max_rejection_increase: Option<Spanned<f64>>,
    pub watch: Option<Spanned<bool>>,
    pub watch_debounce_ms: Option<Spanned<u64>>,
}

/// `[config_limits]`: the most one configuration file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigLimitsSection {
    pub max_file_bytes: Option<Spanned<u64>>,
    pub max_routes: Option<Spanned<u64>>,
    pub max_upstreams: Option<Spanned<u64>>,
    pub max_endpoints: Option<Spanned<u64>>,
    pub max_rate_limits: Option<Spanned<u64>>,
}
