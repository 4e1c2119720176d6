//! The retry rules of the forward stage: which failed tries a route's
//! `retry = { ... }` sends again, how long it waits first, and what a request
//! must be for a second copy to be safe. The loop that applies them is in
//! `forward.rs`, above choosing and exchanging.
//!
//! A try is retried only before any response byte reached the client (the
//! forward stage relays nothing until a try is kept), only when:
//! - its failure is one the route names in `on`;
//! - the request never reached the endpoint (connect failure), or its method is
//!   idempotent (RFC 9110 §9.2.2) or the route says `retry_non_idempotent = true`,
//!   and its body was whole in the gateway's hands before the first try;
//! - tries are left (`attempts`) and the backoff ends before the route's deadline;
//! - the upstream's `max_retries` and retry budget admit it (`Breaker::admit_retry`).

use std::time::Duration;

use crate::config::{RetryOn, RetryPolicy, RetryReason};
use crate::upstream::{ExchangeError, FailureSource, UpstreamResponse};

/// Most tries a route may ask for (`retry.attempts`).
pub const MAX_ATTEMPTS: usize = 10;

/// What one try came to.
pub type TryResult = Result<UpstreamResponse, ExchangeError>;

/// The `on = [...]` names a try's result matches (empty: nothing to retry).
pub fn reasons(result: &TryResult) -> RetryOn {
    let none = RetryOn::default();
    match result {
        Ok(response) => match response.status() {
            503 => none
                .with(RetryReason::Status503)
                .with(RetryReason::GatewayError),
            502 | 504 => none.with(RetryReason::GatewayError),
            _ => none,
        },
        Err(e) => match e.source {
            FailureSource::Connect | FailureSource::ConnectTimeout | FailureSource::Tls { .. } => {
                none.with(RetryReason::ConnectFailure)
            }
            FailureSource::Closed | FailureSource::Write => none.with(RetryReason::Reset),
            FailureSource::Timeout => none.with(RetryReason::Timeout),
            FailureSource::Protocol => none.with(RetryReason::GatewayError),
            FailureSource::Client(_) | FailureSource::Overflow(_) => none,
        },
    }
}

/// Whether `policy` lets a try that ended as `result` be sent again, for a request
/// that is `idempotent` (or not) and whose body was `body_whole` before the first
/// try. Tries left, the deadline and the budget are the caller's to check.
pub fn may_retry(
    policy: &RetryPolicy,
    result: &TryResult,
    idempotent: bool,
    body_whole: bool,
) -> bool {
    let matched = reasons(result);
    if matched.0 & policy.on.0 == 0 {
        return false;
    }
    // Never sent: any method, any body (nothing of it was taken).
    if matched == RetryOn::default().with(RetryReason::ConnectFailure) {
        return true;
    }
    (idempotent || policy.non_idempotent) && body_whole
}

/// The wait before retry `n` (1 for the first retry): uniform in `[d/2, d]` with
/// `d = min(backoff_max, backoff_base × 2^(n-1))` ("equal jitter": never less than
/// half the exponential step, so retries of many requests spread out without
/// ever hammering at once). `random` is any 64-bit random value.
pub fn backoff(policy: &RetryPolicy, n: u32, random: u64) -> Duration {
    let step = policy
        .backoff_base
        .saturating_mul(1u32 << n.saturating_sub(1).min(20))
        .min(policy.backoff_max);
    let half = step / 2;
    let spread = (step - half).as_micros() as u64;
    half + Duration::from_micros(if spread == 0 {
        0
    } else {
        random % (spread + 1)
    })
}

/// Ids of the endpoints a request tried, so a retry goes elsewhere when it can.
#[derive(Default)]
pub struct Tried {
    ids: [usize; MAX_ATTEMPTS],
    len: usize,
}

impl Tried {
    pub fn push(&mut self, id: usize) {
        if self.len < MAX_ATTEMPTS && !self.as_slice().contains(&id) {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[usize] {
        &self.ids[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            on: RetryOn::default()
                .with(RetryReason::ConnectFailure)
                .with(RetryReason::Reset),
            per_try_timeout: None,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            buffer_body_bytes: 1024,
            non_idempotent: false,
        }
    }

    fn failed(source: FailureSource) -> TryResult {
        Err(ExchangeError::new(source, "x"))
    }

    #[test]
    fn a_request_never_sent_is_retried_whatever_its_method() {
        let p = policy();
        assert!(may_retry(&p, &failed(FailureSource::Connect), false, false));
        assert!(may_retry(&p, &failed(FailureSource::Closed), true, true));
        assert!(!may_retry(&p, &failed(FailureSource::Closed), false, true));
        assert!(!may_retry(&p, &failed(FailureSource::Closed), true, false));
        assert!(!may_retry(&p, &failed(FailureSource::Timeout), true, true));
        let post = RetryPolicy {
            non_idempotent: true,
            ..policy()
        };
        assert!(may_retry(
            &post,
            &failed(FailureSource::Closed),
            false,
            true
        ));
    }

    #[test]
    fn backoff_doubles_within_bounds_and_stops_at_the_cap() {
        let p = policy();
        for r in [0, 1, u64::MAX / 3, u64::MAX] {
            let first = backoff(&p, 1, r);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let second = backoff(&p, 2, r);
            assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
            let capped = backoff(&p, 5, r);
            assert!(capped >= Duration::from_millis(150) && capped <= Duration::from_millis(300));
        }
    }

    #[test]
    fn tried_keeps_each_endpoint_once() {
        let mut t = Tried::default();
        t.push(3);
        t.push(3);
        t.push(1);
        assert_eq!(t.as_slice(), &[3, 1]);
    }
}
