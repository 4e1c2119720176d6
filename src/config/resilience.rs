//! The compiled settings that keep a failing upstream from taking the gateway with
//! it: active health checks, passive outlier ejection and circuit breakers per
//! `[[upstream]]`, the retry budget per upstream, and the retry policy per
//! `[[route]]`. Only data lives here; `crate::upstream` and the forward stage act
//! on it (docs/upstreams.md says how).

use std::ops::RangeInclusive;
use std::time::Duration;

/// An upstream's `health_check = { ... }`: one prober for the whole process sends
/// `GET path` to every endpoint every `interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path and query sent, e.g. `/healthz`.
    pub path: String,
    pub interval: Duration,
    /// A probe without a complete response head by then fails.
    pub timeout: Duration,
    /// Consecutive passing probes that make an unhealthy endpoint healthy.
    pub healthy_threshold: u32,
    /// Consecutive failing probes that make a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Statuses that pass.
    pub expected_status: StatusSet,
}

/// A set of HTTP statuses, as inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSet(pub Vec<RangeInclusive<u16>>);

impl StatusSet {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
    }
}

/// An upstream's `outlier = { ... }`: passive ejection, decided by each worker from
/// its own traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierSettings {
    /// 5xx answers in a row that eject an endpoint (0 = not counted).
    pub consecutive_failures: u32,
    /// Connect failures, resets and timeouts in a row that eject it (0 = not counted).
    pub consecutive_gateway_failures: u32,
    /// An ejection lasts this × the number of times the endpoint was ejected...
    pub base_ejection: Duration,
    /// ...but never longer than this.
    pub max_ejection: Duration,
    /// At most this share of the upstream's endpoints is ejected at once, rounded
    /// down (50% of 3 endpoints is 1).
    pub max_ejection_percent: u32,
    /// Upstreams with fewer endpoints than this are never ejected from.
    pub min_hosts: usize,
}

impl OutlierSettings {
    /// How many of `endpoints` endpoints may be ejected at the same time.
    pub fn max_ejected(&self, endpoints: usize) -> usize {
        if endpoints < self.min_hosts {
            return 0;
        }
        endpoints * self.max_ejection_percent as usize / 100
    }
}

/// An upstream's circuit breakers, as process-wide bounds (each worker enforces
/// its share: [`BreakerSettings::share`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Open connections to the upstream's endpoints (idle pooled ones included).
    pub max_connections: u32,
    /// Requests waiting for a connection while `max_connections` are open.
    pub max_pending: u32,
    /// Requests in flight to the upstream.
    pub max_requests: u32,
    /// Retries in flight to the upstream; `None` = bounded by the retry budget only.
    pub max_retries: Option<u32>,
}

impl BreakerSettings {
    /// Worker `worker`'s share of a process-wide bound `total` over `workers`
    /// workers: `total / workers`, one more for the first `total % workers`
    /// workers, so the shares add up to `total` exactly; but at least 1, so a bound
    /// below the worker count still lets every worker send (the process-wide bound
    /// is then `workers`).
    pub fn share(total: u32, workers: usize, worker: usize) -> u32 {
        let workers = workers.max(1) as u32;
        let worker = worker as u32 % workers;
        let share = total / workers + u32::from(worker < total % workers);
        share.max(1)
    }
}

/// An upstream's `retry_budget = { ... }`, on by default: on each worker, a retry
/// may start only while retries in flight stay below
/// `max(min_concurrency, percent% × requests in flight)` (Envoy's retry budget).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    pub percent: u32,
    pub min_concurrency: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            percent: 20,
            min_concurrency: 3,
        }
    }
}

/// A route's `retry = { ... }` (with the route's `retry_non_idempotent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (2 = one retry).
    pub attempts: u32,
    /// What is retried.
    pub on: RetryOn,
    /// Each try must have its response head within this (the route's `timeout_ms`
    /// still bounds all tries together); `None` = only the route timeout.
    pub per_try_timeout: Option<Duration>,
    /// Retry `n` (from 1) waits a random time in `[d/2, d]` with
    /// `d = min(backoff_max, backoff_base × 2^(n-1))`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A request body up to this size is read whole before the first try, so it
    /// can be sent again; a larger one is streamed and only connect failures are
    /// retried.
    pub buffer_body_bytes: u64,
    /// Retry methods that are not idempotent (POST, PATCH, ...) too.
    pub non_idempotent: bool,
}

/// Why a try may be retried: one bit per `on = [...]` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryReason {
    /// `connect-failure`: connect refused or timed out, or the TLS handshake failed:
    /// the request never reached the endpoint.
    ConnectFailure = 1,
    /// `reset`: the endpoint closed or reset the connection before a response head.
    Reset = 2,
    /// `timeout`: no response head within the try's timeout.
    Timeout = 4,
    /// `503`: the endpoint answered 503.
    Status503 = 8,
    /// `gateway-error`: the endpoint answered 502, 503 or 504, or sent something
    /// that is not a usable response.
    GatewayError = 16,
}

impl RetryReason {
    pub const ALL: [(&'static str, RetryReason); 5] = [
        ("connect-failure", RetryReason::ConnectFailure),
        ("reset", RetryReason::Reset),
        ("timeout", RetryReason::Timeout),
        ("503", RetryReason::Status503),
        ("gateway-error", RetryReason::GatewayError),
    ];
}

/// The set of [`RetryReason`]s a route retries on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn(pub u8);

impl RetryOn {
    pub fn with(self, reason: RetryReason) -> Self {
        RetryOn(self.0 | reason as u8)
    }

    pub fn contains(self, reason: RetryReason) -> bool {
        self.0 & reason as u8 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_bound_and_are_never_zero() {
        let shares: Vec<u32> = (0..3).map(|w| BreakerSettings::share(10, 3, w)).collect();
        assert_eq!(shares, [4, 3, 3]);
        assert_eq!(BreakerSettings::share(1, 2, 0), 1);
        assert_eq!(BreakerSettings::share(1, 2, 1), 1);
        assert_eq!(BreakerSettings::share(1024, 2, 1), 512);
    }

    #[test]
    fn ejection_percent_is_honoured_exactly() {
        let o = OutlierSettings {
            consecutive_failures: 5,
            consecutive_gateway_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
            min_hosts: 2,
        };
        assert_eq!(o.max_ejected(3), 1);
        assert_eq!(o.max_ejected(4), 2);
        assert_eq!(o.max_ejected(1), 0);
        let all = OutlierSettings {
            max_ejection_percent: 100,
            min_hosts: 1,
            ..o
        };
        assert_eq!(all.max_ejected(1), 1);
    }
}
