//! How big leases and provisional allowances are, and what that costs in accuracy.
//!
//! All figures are per policy and key. `W` is the number of workers of an
//! instance, `I` the number of instances sharing a Redis.
//!
//! - Provisional allowance `P = max(1, floor(burst / 2W))`: what a worker may spend
//!   on a key it has no grant for yet (a new key), so the first request never waits.
//!   After a grant, the credit while the next request is in flight is
//!   `min(P, remaining / W)`: the worker's share of what the limiter said the
//!   bucket held, so the workers' credits together never exceed it. Tokens spent
//!   this way are reported and taken from the true bucket afterwards, possibly into
//!   debt, which the refill repays: over a long window nothing is over-admitted, and
//!   at any moment at most `W × P ≤ burst / 2` (at least `W`) is.
//! - Lease size: the worker asks for its recent demand over [`LEASE_HORIZON`]
//!   (at least 1, at most `P`). The limiter grants at most
//!   `max(max_lease, available / 2W)`, with `max_lease = clamp(ceil(rate × 2 ×
//!   LEASE_HORIZON), 1, P)`: large while the bucket is full (a burst is spent without
//!   a round trip per few requests), two horizons of the rate once it runs low, so
//!   few tokens sit unused on a worker whose traffic stopped while another worker's
//!   grew (they come back when the lease expires). Leases are taken from the true bucket
//!   when granted, and the limiter caps the refill so that bucket + leases never
//!   exceed `burst`: leases move admissions in time, they never add to them.
//! - A lease lives [`LEASE_TTL`]; what is left then is handed back.

use std::time::Duration;

use super::policy::Policy;

/// Leases cover this much of a worker's recent demand.
pub const LEASE_HORIZON: Duration = Duration::from_millis(20);
/// A lease's tokens are void this long after the limiter issued them.
pub const LEASE_TTL: Duration = Duration::from_secs(1);
/// A lease request unanswered this long means the limiter is not keeping up: the
/// key falls back to a local bucket until a grant arrives.
pub const PENDING_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSizing {
    pub provisional: u32,
    pub max_lease: u32,
    pub workers: u32,
    /// The policy's burst in whole tokens.
    pub burst: u32,
}

impl LeaseSizing {
    pub fn new(policy: &Policy, workers: usize) -> LeaseSizing {
        let w = workers.max(1) as f64;
        let share = (policy.burst / (2.0 * w))
            .floor()
            .clamp(1.0, u32::MAX as f64);
        let two_horizons = (policy.rate * 2.0 * LEASE_HORIZON.as_secs_f64()).ceil();
        LeaseSizing {
            provisional: share as u32,
            max_lease: two_horizons.clamp(1.0, share) as u32,
            workers: workers.max(1) as u32,
            burst: policy.burst.clamp(1.0, u32::MAX as f64) as u32,
        }
    }

    /// Tokens to ask for, given `attempts` requests over `over`.
    pub fn want(&self, attempts: u32, over: Duration) -> u32 {
        let secs = over.as_secs_f64().max(0.001);
        let per_lease = f64::from(attempts) / secs * LEASE_HORIZON.as_secs_f64();
        (per_lease.ceil() as u32).clamp(1, self.provisional)
    }

    /// The most the limiter grants at once from a bucket holding `available` tokens.
    pub fn grant_limit(&self, available: f64) -> u32 {
        let half_share = (available / (2.0 * f64::from(self.workers)))
            .floor()
            .clamp(0.0, u32::MAX as f64) as u32;
        self.max_lease.max(half_share)
    }

    /// At most this many tokens are admitted beyond the bucket, per key and
    /// instance, at any moment (provisional spending on a new key, not yet repaid).
    pub fn worst_case_over_admission(&self) -> u64 {
        u64::from(self.workers) * u64::from(self.provisional)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::policy::{Fallback, KeyPart, Scope};

    fn policy(rate: f64, burst: f64) -> Policy {
        Policy {
            name: "p".into(),
            key: vec![KeyPart::Ip],
            fallback: Fallback::Key(KeyPart::Ip),
            rate,
            burst,
            scope: Scope::Instance,
            before_auth: false,
            max_keys: 10,
        }
    }

    #[test]
    fn shares_are_half_the_burst_over_the_workers() {
        let s = LeaseSizing::new(&policy(1000.0, 5000.0), 2);
        assert_eq!(s.provisional, 1250);
        assert_eq!(s.worst_case_over_admission(), 2500);
        let small = LeaseSizing::new(&policy(10.0, 10.0), 2);
        assert_eq!(small.provisional, 2);
        let tiny = LeaseSizing::new(&policy(1.0, 1.0), 4);
        assert_eq!(tiny.provisional, 1, "never below one token");
    }

    #[test]
    fn want_follows_demand_within_bounds() {
        let s = LeaseSizing::new(&policy(1000.0, 5000.0), 2);
        assert_eq!(s.max_lease, 40, "two horizons of the rate");
        // 1000 requests in 100 ms = 10k/s: 200 per 20 ms.
        assert_eq!(s.want(1000, Duration::from_millis(100)), 200);
        assert_eq!(s.want(1, Duration::from_secs(10)), 1);
        assert_eq!(s.want(1_000_000, Duration::from_millis(1)), 1250);
        assert_eq!(s.grant_limit(5000.0), 1250, "a full bucket: big grants");
        assert_eq!(
            s.grant_limit(100.0),
            40,
            "a low bucket: two horizons of the rate"
        );
    }
}
