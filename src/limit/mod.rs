//! The rate-limit stage: token buckets per policy and key, enforced in two stages
//! so that no request ever waits for another thread (docs/rate-limiting.md).
//!
//! Reading order:
//!
//! 1. [`policy`]: what a `[[rate_limit]]` compiles to (key parts, rate, burst,
//!    scope), and a route's policies in the order they are checked.
//! 2. [`request_key`]: the bucket key of a request (address, header, verified
//!    claim through the [`ClaimLookup`] hook, route, global, composites).
//! 3. [`token_bucket`]: the arithmetic every scope shares, with an injected clock.
//! 4. Stage 1, on each worker: [`LocalLimiter`] keeps a bounded [`LruMap`] per
//!    policy of thread-local buckets (`worker` scope) or [`Lease`]s.
//! 5. Stage 2, one thread per instance: [`GlobalLimiter`] owns the true buckets
//!    and answers the workers' [`messages`]; for `fleet` policies it takes tokens
//!    from Redis ([`RedisBuckets`]) once per sync tick.
//! 6. [`quota_headers`]: `Retry-After`, `RateLimit-Policy`, `RateLimit`.
//!
//! [`LruMap`]: lru_map::LruMap
//! [`Lease`]: lease::Lease
//! [`RedisBuckets`]: redis_buckets::RedisBuckets

pub mod policy;
pub mod request_key;
pub mod token_bucket;

mod global_limiter;
mod lease;
pub mod lease_sizing;
mod local_limiter;
mod lru_map;
pub mod messages;
pub mod quota_headers;
mod redis_buckets;

pub use global_limiter::{GlobalLimiter, LimiterThread};
pub use local_limiter::{LocalLimiter, WorkerLimiter, LIMIT_TICK};
pub use messages::WorkerLink;
pub use policy::{
    Fallback, FleetSettings, HeaderSettings, HeaderStyle, KeyPart, OnRedisFailure, Policy,
    PolicyId, RateLimitSettings, RouteLimits, Scope,
};
pub use quota_headers::{Denial, LeastRemaining};
pub use request_key::{ClaimLookup, RequestFacts};
