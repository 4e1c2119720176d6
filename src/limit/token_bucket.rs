//! The token bucket arithmetic every scope shares: refill at `rate` tokens per
//! second up to a cap, take whole tokens, and say how long until `n` tokens are there.
//!
//! The clock is injected: every method takes `now`, so tests drive time by hand.
//! Tokens are `f64`; a bucket may go below zero (debt) when spending that was not
//! backed by a lease is reported after the fact, and it then refills from below.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket holding `tokens` at `now` (a new key starts full: `tokens = burst`).
    pub fn with_tokens(tokens: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens,
            updated: now,
        }
    }

    /// Tokens in the bucket as of the last update (may be negative: debt).
    pub fn tokens(&self) -> f64 {
        self.tokens
    }

    /// Adds what `rate` refilled since the last update, never above `cap`. A bucket
    /// already above `cap` (the cap shrank) keeps what it has. Times earlier than the
    /// last update (another thread's older `Instant`) refill nothing.
    pub fn refill(&mut self, now: Instant, rate: f64, cap: f64) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        if elapsed > 0.0 {
            if self.tokens < cap {
                self.tokens = (self.tokens + elapsed * rate).min(cap);
            }
            self.updated = now;
        }
    }

    /// Refills, then takes one token if a whole one is there.
    pub fn try_take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Refills up to `cap`, then takes as many whole tokens as are there, at most `want`.
    pub fn take_up_to(&mut self, want: u32, now: Instant, rate: f64, cap: f64) -> u32 {
        self.refill(now, rate, cap);
        let whole = self.tokens.floor().max(0.0).min(f64::from(want)) as u32;
        self.tokens -= f64::from(whole);
        whole
    }

    /// Takes `n` tokens whether or not they are there (spending reported after the fact).
    pub fn debit(&mut self, n: f64) {
        self.tokens -= n;
    }

    /// Gives back `n` unspent tokens, never above `cap`.
    pub fn credit(&mut self, n: f64, cap: f64) {
        self.tokens = (self.tokens + n).min(cap.max(self.tokens));
    }

    /// How long from the last update until the bucket holds `n` tokens at `rate`.
    pub fn time_until(&self, n: f64, rate: f64) -> Duration {
        let missing = n - self.tokens;
        if missing <= 0.0 || rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((missing / rate).min(1e9))
    }
}

/// `Retry-After` in whole seconds: rounded up, and at least 1 (a 429 never says "now").
pub fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs();
    let rounded = if wait.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    };
    rounded.max(1)
}

/// Seconds until a bucket at `tokens` is full again, rounded up (the `t` of `RateLimit`).
pub fn seconds_until_full(tokens: f64, burst: f64, rate: f64) -> u64 {
    if tokens >= burst || rate <= 0.0 {
        return 0;
    }
    ((burst - tokens) / rate).ceil().min(1e9) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_gives_burst_then_refuses() {
        let t0 = Instant::now();
        let mut b = TokenBucket::with_tokens(5.0, t0);
        for _ in 0..5 {
            assert!(b.try_take(t0, 1.0, 5.0));
        }
        assert!(!b.try_take(t0, 1.0, 5.0));
    }

    #[test]
    fn refill_follows_the_rate_and_stops_at_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::with_tokens(0.0, t0);
        b.refill(t0 + ms(250), 1000.0, 5000.0);
        assert!((b.tokens() - 250.0).abs() < 1e-6);
        b.refill(t0 + ms(60_000), 1000.0, 5000.0);
        assert_eq!(b.tokens(), 5000.0, "capped at the burst");
    }

    #[test]
    fn aws_example_sustains_the_rate_after_the_burst() {
        // rate 1000, burst 5000: 5000 at once, then 1000 per second.
        let t0 = Instant::now();
        let mut b = TokenBucket::with_tokens(5000.0, t0);
        let mut admitted = 0;
        for _ in 0..6000 {
            if b.try_take(t0, 1000.0, 5000.0) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 5000);
        let mut later = 0;
        for i in 0..3000u64 {
            // 3000 requests spread over one second: 1000 fit.
            if b.try_take(t0 + Duration::from_micros(i * 333), 1000.0, 5000.0) {
                later += 1;
            }
        }
        assert!((998..=1000).contains(&later), "{later}");
    }

    #[test]
    fn an_earlier_instant_refills_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::with_tokens(1.0, t0 + ms(100));
        b.refill(t0, 10.0, 10.0);
        assert_eq!(b.tokens(), 1.0);
    }

    #[test]
    fn a_shrunken_cap_keeps_what_is_there() {
        let t0 = Instant::now();
        let mut b = TokenBucket::with_tokens(8.0, t0);
        b.refill(t0 + ms(1000), 10.0, 5.0);
        assert_eq!(b.tokens(), 8.0);
    }

    #[test]
    fn take_up_to_takes_whole_tokens_only() {
        let t0 = Instant::now();
        let mut b = TokenBucket::with_tokens(2.5, t0);
        assert_eq!(b.take_up_to(10, t0, 1.0, 10.0), 2);
        assert!((b.tokens() - 0.5).abs() < 1e-9);
        assert_eq!(b.take_up_to(10, t0, 1.0, 10.0), 0);
        assert_eq!(b.take_up_to(1, t0 + ms(500), 1.0, 10.0), 1);
    }

    #[test]
    fn debt_is_repaid_by_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::with_tokens(0.0, t0);
        b.debit(3.0);
        assert!(
            !b.try_take(t0 + ms(3000), 1.0, 5.0),
            "3 s only repays the debt"
        );
        assert!(b.try_take(t0 + ms(4000), 1.0, 5.0));
    }

    #[test]
    fn credit_never_exceeds_the_cap() {
        let t0 = Instant::now();
        let mut b = TokenBucket::with_tokens(4.0, t0);
        b.credit(3.0, 5.0);
        assert_eq!(b.tokens(), 5.0);
    }

    #[test]
    fn time_until_and_retry_after() {
        let t0 = Instant::now();
        let b = TokenBucket::with_tokens(0.25, t0);
        assert_eq!(b.time_until(1.0, 1.0), ms(750));
        assert_eq!(retry_after_secs(ms(750)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
        assert_eq!(retry_after_secs(ms(2000)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        // 100 per minute: one token takes 0.6 s.
        let slow = TokenBucket::with_tokens(0.0, t0);
        assert_eq!(retry_after_secs(slow.time_until(1.0, 100.0 / 60.0)), 1);
        // 1 per hour.
        assert_eq!(retry_after_secs(slow.time_until(1.0, 1.0 / 3600.0)), 3600);
        assert_eq!(b.time_until(0.1, 1.0), Duration::ZERO);
    }

    #[test]
    fn seconds_until_full_rounds_up() {
        assert_eq!(seconds_until_full(0.0, 5000.0, 1000.0), 5);
        assert_eq!(seconds_until_full(4999.5, 5000.0, 1000.0), 1);
        assert_eq!(seconds_until_full(10.0, 10.0, 1.0), 0);
    }
}
