//! Validation and compilation of the resilience keys: an upstream's
//! `health_check`, `outlier`, circuit breakers (`max_connections`, `max_pending`,
//! `max_requests`, `max_retries`) and `retry_budget`, and a route's `retry` with
//! `retry_non_idempotent`. Each problem is recorded at its key; defaults are here.

use std::time::Duration;

use toml::Spanned;

use super::error::Problems;
use super::resilience::{
    BreakerSettings, HealthCheck, OutlierSettings, RetryBudget, RetryOn, RetryPolicy, RetryReason,
    StatusSet,
};
use super::schema::{RouteSection, UpstreamSection};
use super::schema_resilience::{
    HealthCheckSection, OutlierSection, RetryBudgetSection, StatusSetting,
};
use super::values::in_range;

/// Longest interval, timeout or ejection time accepted: one day.
const MAX_MS: u64 = 86_400_000;

/// The resilience settings of one `[[upstream]]`.
pub(crate) struct UpstreamResilience {
    pub health_check: Option<HealthCheck>,
    pub outlier: Option<OutlierSettings>,
    pub breakers: BreakerSettings,
    pub retry_budget: RetryBudget,
}

pub(crate) fn upstream(u: &UpstreamSection, p: &mut Problems<'_>) -> UpstreamResilience {
    UpstreamResilience {
        health_check: u.health_check.as_ref().map(|h| health_check(h, p)),
        outlier: u.outlier.as_ref().map(|o| outlier(o, p)),
        breakers: BreakerSettings {
            max_connections: number(u.max_connections.as_ref(), 1024, 1, 10_000_000, p) as u32,
            max_pending: number(u.max_pending.as_ref(), 1024, 1, 10_000_000, p) as u32,
            max_requests: number(u.max_requests.as_ref(), 1024, 1, 10_000_000, p) as u32,
            max_retries: u
                .max_retries
                .as_ref()
                .map(|m| number(Some(m), 0, 1, 10_000_000, p) as u32),
        },
        retry_budget: u
            .retry_budget
            .as_ref()
            .map(|b| retry_budget(b, p))
            .unwrap_or_default(),
    }
}

fn health_check(h: &Spanned<HealthCheckSection>, p: &mut Problems<'_>) -> HealthCheck {
    let s = h.get_ref();
    let path = s.path.get_ref();
    if !path.starts_with('/') || !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        p.at(
            s.path.span(),
            format!("health_check path \"{path}\" must start with '/' and hold no spaces or control characters"),
        );
    }
    let interval = number(s.interval_ms.as_ref(), 5_000, 10, MAX_MS, p);
    let timeout = number(s.timeout_ms.as_ref(), 1_000, 1, MAX_MS, p);
    if timeout > interval {
        let span = s.timeout_ms.as_ref().map_or(h.span(), |t| t.span());
        p.at(
            span,
            format!("health_check timeout_ms ({timeout}) must not exceed interval_ms ({interval})"),
        );
    }
    let expected_status = match &s.expected_status {
        None => StatusSet(vec![200..=399]),
        Some(e) => status_set(e, p),
    };
    HealthCheck {
        path: path.clone(),
        interval: Duration::from_millis(interval),
        timeout: Duration::from_millis(timeout),
        healthy_threshold: number(s.healthy_threshold.as_ref(), 2, 1, 1000, p) as u32,
        unhealthy_threshold: number(s.unhealthy_threshold.as_ref(), 3, 1, 1000, p) as u32,
        expected_status,
    }
}

fn status_set(e: &Spanned<StatusSetting>, p: &mut Problems<'_>) -> StatusSet {
    let bad = |p: &mut Problems<'_>| {
        p.at(
            e.span(),
            "expected_status must be a status (200), a list ([200, 204]) or a range (\"200-399\"), from 100 to 599",
        );
        StatusSet(vec![200..=399])
    };
    let ok = |v: u64| (100..=599).contains(&v);
    match e.get_ref() {
        StatusSetting::One(v) if ok(*v) => StatusSet(vec![*v as u16..=*v as u16]),
        StatusSetting::Many(vs) if !vs.is_empty() && vs.iter().all(|v| ok(*v)) => {
            StatusSet(vs.iter().map(|v| *v as u16..=*v as u16).collect())
        }
        StatusSetting::Range(r) => {
            let parsed = r
                .split_once('-')
                .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse().ok()?)));
            match parsed {
                Some((a, b)) if ok(a) && ok(b) && a <= b => StatusSet(vec![a as u16..=b as u16]),
                _ => bad(p),
            }
        }
        _ => bad(p),
    }
}

fn outlier(o: &Spanned<OutlierSection>, p: &mut Problems<'_>) -> OutlierSettings {
    let s = o.get_ref();
    let consecutive_failures = number(s.consecutive_failures.as_ref(), 5, 0, 100_000, p) as u32;
    let consecutive_gateway_failures =
        number(s.consecutive_gateway_failures.as_ref(), 5, 0, 100_000, p) as u32;
    if consecutive_failures == 0 && consecutive_gateway_failures == 0 {
        p.at(
            o.span(),
            "outlier ejects nothing with consecutive_failures and consecutive_gateway_failures both 0; leave the table out instead",
        );
    }
    let base = number(s.base_ejection_ms.as_ref(), 30_000, 1, MAX_MS, p);
    let max = number(s.max_ejection_ms.as_ref(), 300_000.max(base), 1, MAX_MS, p);
    if max < base {
        let span = s.max_ejection_ms.as_ref().map_or(o.span(), |m| m.span());
        p.at(
            span,
            format!("max_ejection_ms ({max}) must not be below base_ejection_ms ({base})"),
        );
    }
    OutlierSettings {
        consecutive_failures,
        consecutive_gateway_failures,
        base_ejection: Duration::from_millis(base),
        max_ejection: Duration::from_millis(max.max(base)),
        max_ejection_percent: number(s.max_ejection_percent.as_ref(), 50, 0, 100, p) as u32,
        min_hosts: number(s.min_hosts.as_ref(), 2, 1, 100_000, p) as usize,
    }
}

fn retry_budget(b: &Spanned<RetryBudgetSection>, p: &mut Problems<'_>) -> RetryBudget {
    let s = b.get_ref();
    let default = RetryBudget::default();
    RetryBudget {
        percent: number(s.percent.as_ref(), default.percent.into(), 0, 100, p) as u32,
        min_concurrency: number(
            s.min_concurrency.as_ref(),
            default.min_concurrency.into(),
            0,
            100_000,
            p,
        ) as u32,
    }
}

/// A route's `retry` and `retry_non_idempotent`; `forwards` says whether the route
/// has an upstream (a `respond` route has nothing to retry).
pub(crate) fn route_retry(
    r: &RouteSection,
    forwards: bool,
    p: &mut Problems<'_>,
) -> Option<RetryPolicy> {
    let non_idempotent = r.retry_non_idempotent.as_ref();
    let Some(retry) = &r.retry else {
        if let Some(n) = non_idempotent {
            p.at(n.span(), "retry_non_idempotent needs retry = { ... }");
        }
        return None;
    };
    if !forwards {
        p.at(
            retry.span(),
            "retry is only for routes with an upstream, not respond",
        );
    }
    let s = retry.get_ref();
    let mut on = RetryOn::default();
    match &s.on {
        None => {
            on = on
                .with(RetryReason::ConnectFailure)
                .with(RetryReason::Reset)
                .with(RetryReason::Timeout);
        }
        Some(names) => {
            if names.is_empty() {
                p.at(
                    retry.span(),
                    "retry on = [] retries nothing; leave retry out instead",
                );
            }
            for n in names {
                match RetryReason::ALL.iter().find(|(name, _)| name == n.get_ref()) {
                    Some((_, reason)) => on = on.with(*reason),
                    None => p.at(
                        n.span(),
                        format!(
                            "retry on \"{}\" is not one of connect-failure, reset, timeout, 503, gateway-error",
                            n.get_ref()
                        ),
                    ),
                }
            }
        }
    }
    let base = number(s.backoff_base_ms.as_ref(), 25, 1, MAX_MS, p);
    let max = number(
        s.backoff_max_ms.as_ref(),
        base.saturating_mul(10),
        1,
        MAX_MS,
        p,
    );
    if max < base {
        let span = s.backoff_max_ms.as_ref().map_or(retry.span(), |m| m.span());
        p.at(
            span,
            format!("backoff_max_ms ({max}) must not be below backoff_base_ms ({base})"),
        );
    }
    Some(RetryPolicy {
        attempts: number(s.attempts.as_ref(), 2, 1, 10, p) as u32,
        on,
        per_try_timeout: s
            .per_try_timeout_ms
            .as_ref()
            .map(|t| Duration::from_millis(number(Some(t), 0, 1, MAX_MS, p))),
        backoff_base: Duration::from_millis(base),
        backoff_max: Duration::from_millis(max.max(base)),
        buffer_body_bytes: number(s.buffer_body_bytes.as_ref(), 65_536, 0, 64 << 20, p),
        non_idempotent: non_idempotent.is_some_and(|n| *n.get_ref()),
    })
}

/// The value of an optional numeric key, `default` when absent; a value outside
/// `min..=max` is a problem at the key (and clamped, so compilation goes on).
pub(crate) fn number(
    v: Option<&Spanned<u64>>,
    default: u64,
    min: u64,
    max: u64,
    p: &mut Problems<'_>,
) -> u64 {
    v.map_or(default, |v| in_range(v, min, max, p))
}
