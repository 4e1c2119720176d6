//! Passive outlier detection: each worker watches the outcome of its own tries
//! and ejects an endpoint that fails too many times in a row, for
//! `base_ejection_ms × ejections so far` (at most `max_ejection_ms`), as long as
//! `max_ejection_percent` of the upstream's endpoints (rounded down) are not
//! ejected already and the upstream has at least `min_hosts` endpoints.
//!
//! Per worker, from the worker's own traffic: no cross-thread traffic on the
//! request path. The price is that each worker learns of a failing endpoint on its
//! own (docs/upstreams.md quantifies it).

use std::time::Instant;

use crate::config::{Endpoint, Upstream};
use crate::observe::Counters;

use super::balance::Balancer;
use super::failure::FailureSource;

/// The outcome of one try, as outlier detection counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500.
    Success,
    /// A 5xx response, or one that is not usable HTTP (counted by
    /// `consecutive_failures`).
    Failure,
    /// Connect failure, reset or timeout (counted by `consecutive_gateway_failures`).
    GatewayFailure,
    /// Not the endpoint's doing (the client's body failed, a pooled connection
    /// found closed): counted as a try, not in a streak.
    Ignored,
    /// Nothing was sent (a breaker refused the try): not counted at all.
    NotSent,
}

impl Outcome {
    /// The outcome of a try the endpoint answered with `status`.
    pub fn of_status(status: u16) -> Outcome {
        if status >= 500 {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    /// The outcome of a try that failed at `source`; `stale` when the connection
    /// was an idle pooled one the endpoint had closed (the keep-alive race).
    pub fn of_failure(source: &FailureSource, stale: bool) -> Outcome {
        match source {
            FailureSource::Overflow(_) => Outcome::NotSent,
            _ if stale => Outcome::Ignored,
            FailureSource::Connect
            | FailureSource::ConnectTimeout
            | FailureSource::Tls { .. }
            | FailureSource::Closed
            | FailureSource::Write
            | FailureSource::Timeout => Outcome::GatewayFailure,
            FailureSource::Protocol => Outcome::Failure,
            FailureSource::Client(_) => Outcome::Ignored,
        }
    }
}

/// Records one try's `outcome` at `endpoint` of `upstream` (counted per endpoint
/// always; streaks and ejections only with `outlier = { ... }`).
pub fn record(
    balancer: &Balancer,
    upstream: &Upstream,
    endpoint: &Endpoint,
    outcome: Outcome,
    counters: &Counters,
) {
    let Some(me) = balancer.health(endpoint.id) else {
        return;
    };
    if outcome == Outcome::NotSent {
        return;
    }
    me.requests.set(me.requests.get() + 1);
    let streak = match outcome {
        Outcome::Success => {
            me.consecutive_failures.set(0);
            me.consecutive_gateway_failures.set(0);
            return;
        }
        Outcome::Ignored | Outcome::NotSent => return,
        Outcome::Failure => {
            // The endpoint answered: it is reachable.
            me.consecutive_gateway_failures.set(0);
            &me.consecutive_failures
        }
        Outcome::GatewayFailure => &me.consecutive_gateway_failures,
    };
    me.failures.set(me.failures.get() + 1);
    streak.set(streak.get() + 1);
    let Some(settings) = &upstream.outlier else {
        return;
    };
    let threshold = match outcome {
        Outcome::Failure => settings.consecutive_failures,
        _ => settings.consecutive_gateway_failures,
    };
    if threshold == 0 || streak.get() < threshold || me.ejected() {
        return;
    }
    let ejected = upstream
        .endpoints
        .iter()
        .filter(|e| balancer.health(e.id).is_some_and(|h| h.ejected()))
        .count();
    if ejected >= settings.max_ejected(upstream.endpoints.len()) {
        Counters::bump(&counters.outlier_ejections_refused);
        // Counted again only after another full streak.
        streak.set(0);
        return;
    }
    me.eject(
        Instant::now(),
        settings.base_ejection,
        settings.max_ejection,
    );
    Counters::bump(&counters.outlier_ejections);
    tracing::warn!(
        upstream = %upstream.name,
        endpoint = %endpoint.addr,
        ejections = me.ejections(),
        "endpoint ejected after {} failures in a row",
        streak.get()
    );
}
