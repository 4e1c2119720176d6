//! Stage 1 of the two-stage limiter: a worker's lease on one key.
//!
//! Taking a token is a decrement of `tokens`. When the lease runs low the worker
//! asks the limiter thread for more (never waiting for the answer); until the
//! answer arrives it may spend its provisional allowance, and past that it
//! answers 429. Everything here is plain data driven by an injected `now`, so the
//! rules are unit-tested without threads.

use std::time::{Duration, Instant};

use super::lease_sizing::{LeaseSizing, LEASE_TTL, PENDING_TIMEOUT};
use super::messages::Grant;
use super::policy::Policy;
use super::token_bucket::TokenBucket;

#[derive(Debug)]
pub struct Lease {
    /// Tokens in hand.
    tokens: u32,
    /// When the tokens in hand become void.
    expires: Instant,
    /// Tokens that may still be spent without a lease.
    provisional: u32,
    /// Spent from leases, not yet reported.
    spent: u32,
    /// Spent without a lease, not yet reported.
    unbacked: u32,
    /// Voided lease tokens, not yet handed back.
    returned: u32,
    /// When the outstanding lease request was sent.
    pending: Option<Instant>,
    /// The limiter said no token before this time.
    retry_at: Option<Instant>,
    /// The size of the last request.
    want: u32,
    /// Requests seen since `since` (demand, allowed or not).
    attempts: u32,
    since: Instant,
    /// Whole tokens left in the true bucket at the last grant.
    remaining: u32,
    /// Set while the limiter cannot be reached: a bucket of this worker's share.
    local: Option<TokenBucket>,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Admitted; an estimate of the tokens left for the key.
    Allowed { remaining: u64, provisional: bool },
    /// Refused; how long until a token may be there (zero when unknown).
    Denied { wait: Duration },
}

/// What a worker sends in a `Demand`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    pub want: u32,
    pub spent: u32,
    pub unbacked: u32,
    pub returned: u32,
}

impl Lease {
    /// A key this worker has not seen: no tokens, the full provisional allowance.
    pub fn new(now: Instant, sizing: &LeaseSizing) -> Lease {
        Lease {
            tokens: 0,
            expires: now,
            provisional: sizing.provisional,
            spent: 0,
            unbacked: 0,
            returned: 0,
            pending: None,
            retry_at: None,
            want: sizing.provisional,
            attempts: 0,
            since: now,
            // Until the limiter says otherwise, assume a full bucket.
            remaining: sizing.burst.saturating_sub(sizing.provisional),
            local: None,
        }
    }

    /// Spends one token if it can. The `bool` says to send `report()` now.
    pub fn take(&mut self, now: Instant, policy: &Policy, sizing: &LeaseSizing) -> (Take, bool) {
        self.attempts = self.attempts.saturating_add(1);
        if self.tokens > 0 && now >= self.expires {
            self.returned += self.tokens;
            self.tokens = 0;
        }
        if let Some(sent) = self.pending {
            if now.saturating_duration_since(sent) >= PENDING_TIMEOUT {
                // The limiter did not answer: decide locally until it does.
                self.pending = None;
                self.go_local(now);
            }
        }
        let idle = self.pending.is_none();
        if let Some(local) = &mut self.local {
            let share_rate = policy.rate / f64::from(sizing.workers);
            let share_burst = (policy.burst / f64::from(sizing.workers)).max(1.0);
            let take = if local.try_take(now, share_rate, share_burst) {
                Take::Allowed {
                    remaining: local.tokens().max(0.0) as u64,
                    provisional: false,
                }
            } else {
                Take::Denied {
                    wait: local.time_until(1.0, share_rate),
                }
            };
            // Keep asking, so that a limiter that is back takes over again.
            return (take, idle);
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            self.spent += 1;
            let low = self.tokens.saturating_mul(2) <= self.want;
            let take = Take::Allowed {
                remaining: u64::from(self.tokens) + u64::from(self.remaining),
                provisional: false,
            };
            return (take, idle && low);
        }
        if self.provisional > 0 {
            self.provisional -= 1;
            self.unbacked += 1;
            let take = Take::Allowed {
                remaining: u64::from(self.provisional) + u64::from(self.remaining),
                provisional: true,
            };
            return (take, idle);
        }
        let wait = self
            .retry_at
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::ZERO);
        let may_ask = self.retry_at.is_none_or(|t| now >= t);
        (Take::Denied { wait }, idle && may_ask)
    }

    /// The report to send now; marks a request pending when it asks for tokens.
    pub fn report(&mut self, now: Instant, sizing: &LeaseSizing) -> Report {
        let want = sizing.want(self.attempts, now.saturating_duration_since(self.since));
        self.want = want;
        self.attempts = 0;
        self.since = now;
        self.pending = Some(now);
        self.take_report(want)
    }

    /// A report of spending and returns only (no tokens asked), if there is any.
    pub fn final_report(&mut self) -> Option<Report> {
        if self.pending.is_some() {
            return None; // the next grant settles it
        }
        self.returned += self.tokens;
        self.tokens = 0;
        let r = self.take_report(0);
        (r != Report::default()).then_some(r)
    }

    /// The limiter recalls the lease: hand back the tokens in hand, with what was
    /// spent. A request in flight stays in flight.
    pub fn recall(&mut self) -> Option<Report> {
        if self.tokens == 0 {
            return None;
        }
        self.returned += self.tokens;
        self.tokens = 0;
        Some(self.take_report(0))
    }

    fn take_report(&mut self, want: u32) -> Report {
        let r = Report {
            want,
            spent: self.spent,
            unbacked: self.unbacked,
            returned: self.returned,
        };
        self.spent = 0;
        self.unbacked = 0;
        self.returned = 0;
        r
    }

    /// The report could not be sent: the counts go back, and the key is decided
    /// locally until the limiter answers again.
    pub fn report_failed(&mut self, r: Report, now: Instant) {
        self.spent += r.spent;
        self.unbacked += r.unbacked;
        self.returned += r.returned;
        self.pending = None;
        self.go_local(now);
    }

    /// Starts deciding locally, from an empty bucket of this worker's share (a full
    /// one would admit a burst on every worker at the moment of trouble).
    fn go_local(&mut self, now: Instant) {
        if self.local.is_none() {
            self.local = Some(TokenBucket::with_tokens(0.0, now));
        }
    }

    /// Is the key decided locally (the limiter could not be reached)?
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Takes in a grant. Returns when its tokens expire.
    pub fn on_grant(&mut self, grant: &Grant, sizing: &LeaseSizing) -> Instant {
        self.tokens += grant.tokens;
        self.expires = grant.issued + LEASE_TTL;
        self.pending = None;
        self.local = None;
        self.remaining = grant.remaining;
        // An emptied bucket: no point asking again before it holds a token.
        self.retry_at = (grant.remaining == 0).then(|| grant.issued + grant.retry_after);
        // While the next request is in flight, spend on credit at most the
        // new-key allowance, and only the worker's share of what the bucket had
        // left: the workers' credits together never exceed it. (One more lease was
        // the limit before: at a low rate with a large burst, a lease is one token,
        // and a worker refused while the bucket was nearly full whenever the
        // limiter thread was slower than the next request.)
        self.provisional = sizing.provisional.min(grant.remaining / sizing.workers);
        self.expires
    }

    /// The tokens in hand expire at `at`: is this still the current lease?
    pub fn expires_at(&self, at: Instant) -> bool {
        self.expires == at
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

    fn grant(tokens: u32, remaining: u32, issued: Instant) -> Grant {
        Grant {
            policy: crate::limit::PolicyId(0),
            key: Box::new([]),
            tokens,
            issued,
            remaining,
            retry_after: Duration::from_millis(500),
            recall: false,
        }
    }

    #[test]
    fn a_new_key_spends_its_provisional_allowance_and_asks_at_once() {
        let p = policy(10.0, 8.0);
        let s = LeaseSizing::new(&p, 2); // provisional 2
        let t0 = Instant::now();
        let mut l = Lease::new(t0, &s);
        let (take, ask) = l.take(t0, &p, &s);
        assert!(matches!(
            take,
            Take::Allowed {
                provisional: true,
                ..
            }
        ));
        assert!(ask);
        let r = l.report(t0, &s);
        assert_eq!(r.unbacked, 1);
        assert!(r.want >= 1);
        let (take, ask) = l.take(t0, &p, &s);
        assert!(matches!(
            take,
            Take::Allowed {
                provisional: true,
                ..
            }
        ));
        assert!(!ask, "a request is already pending");
        let (take, _) = l.take(t0, &p, &s);
        assert!(
            matches!(take, Take::Denied { .. }),
            "allowance spent, no grant yet"
        );
    }

    #[test]
    fn after_a_grant_a_worker_runs_ahead_by_its_share_of_what_is_left() {
        // 50 an hour, burst 50, two workers: new-key allowance 12, leases of 1.
        let p = policy(50.0 / 3600.0, 50.0);
        let s = LeaseSizing::new(&p, 2);
        assert_eq!((s.provisional, s.max_lease), (12, 1));
        let t0 = Instant::now();
        // Requests admitted without another grant after one of a token, with
        // `remaining` left in the bucket.
        let admitted = |remaining| {
            let mut l = Lease::new(t0, &s);
            l.provisional = 0;
            l.on_grant(&grant(1, remaining, t0), &s);
            (0..20)
                .take_while(|_| matches!(l.take(t0, &p, &s).0, Take::Allowed { .. }))
                .count()
        };
        assert_eq!(
            admitted(48),
            1 + 12,
            "the lease, then the allowance on credit"
        );
        assert_eq!(
            admitted(6),
            1 + 3,
            "a bucket nearly dry: the worker's share"
        );
    }

    #[test]
    fn grants_are_spent_then_refused_with_the_limiters_wait() {
        let p = policy(10.0, 100.0);
        let s = LeaseSizing::new(&p, 1);
        let t0 = Instant::now();
        let mut l = Lease::new(t0, &s);
        l.provisional = 0;
        l.take(t0, &p, &s);
        l.report(t0, &s);
        l.on_grant(&grant(2, 0, t0), &s);
        assert!(matches!(
            l.take(t0, &p, &s).0,
            Take::Allowed {
                provisional: false,
                ..
            }
        ));
        assert!(matches!(l.take(t0, &p, &s).0, Take::Allowed { .. }));
        let (take, _) = l.take(t0, &p, &s);
        assert!(matches!(take, Take::Denied { .. }));
        let r = l.report(t0, &s);
        assert_eq!(r.spent, 2);
        l.on_grant(&grant(0, 0, t0), &s);
        let (take, ask) = l.take(t0 + Duration::from_millis(100), &p, &s);
        assert_eq!(
            take,
            Take::Denied {
                wait: Duration::from_millis(400)
            }
        );
        assert!(!ask, "no point asking before the limiter's retry time");
        let (_, ask) = l.take(t0 + Duration::from_millis(500), &p, &s);
        assert!(ask);
    }

    #[test]
    fn expired_tokens_are_handed_back() {
        let p = policy(10.0, 100.0);
        let s = LeaseSizing::new(&p, 1);
        let t0 = Instant::now();
        let mut l = Lease::new(t0, &s);
        l.report(t0, &s);
        l.on_grant(&grant(5, 50, t0), &s);
        l.take(t0, &p, &s);
        let r = l.final_report().unwrap();
        assert_eq!((r.spent, r.returned, r.want), (1, 4, 0));
        assert!(l.final_report().is_none());
    }

    #[test]
    fn an_unanswered_request_falls_back_to_a_local_share() {
        let p = policy(10.0, 4.0);
        let s = LeaseSizing::new(&p, 2);
        let t0 = Instant::now();
        let mut l = Lease::new(t0, &s);
        l.provisional = 0;
        l.take(t0, &p, &s);
        l.report(t0, &s);
        let later = t0 + PENDING_TIMEOUT;
        // The local share refills at rate / workers = 5 per second, from empty.
        assert!(matches!(l.take(later, &p, &s).0, Take::Denied { .. }));
        assert!(l.is_local());
        let later = later + Duration::from_millis(400);
        assert!(matches!(l.take(later, &p, &s).0, Take::Allowed { .. }));
        assert!(matches!(l.take(later, &p, &s).0, Take::Allowed { .. }));
        assert!(matches!(l.take(later, &p, &s).0, Take::Denied { .. }));
        l.on_grant(&grant(1, 0, later), &s);
        assert!(!l.is_local(), "a grant ends local decisions");
    }
}
