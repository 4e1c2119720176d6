//! The canary's verdict: did the workers trying a new configuration do worse than
//! the workers still on the running one, over the same window?
//!
//! Each worker publishes its counters on its tick; the control thread samples
//! them when the canary starts and when its window ends, and compares the
//! difference on the canary workers with the difference on the others
//! ([`verdict`]). The signals, each a share so that workers with more or less
//! traffic compare fairly (docs/control-plane.md, "The canary"):
//!
//! - panics: any panic while serving on a canary worker, more often than on the
//!   others (per request), rolls it back;
//! - gateway-made 5xx (`responses_local_5xx`: no endpoint, upstream failures and
//!   timeouts, breakers, shedding — not relayed answers, not a configured
//!   `respond`): the canary's share of requests may exceed the others' by at most
//!   `canary_max_error_increase`;
//! - local rejections by kind (no route: 404 and 405; authentication; rate
//!   limits; shedding; TLS handshake failures per handshake): each share may exceed
//!   the others' by at most `canary_max_rejection_increase`.
//!
//! Latency is not compared: a worker publishes no latency histogram yet, and
//! p99 over a window of a few seconds on one core is too noisy to judge a
//! configuration by. With a single worker there are no others: the canary is
//! compared with zero.

use crate::config::ReloadSettings;
use crate::observe::PublishedCounters;

/// The counters a verdict reads, for one worker or a sum of workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub requests: u64,
    pub local_5xx: u64,
    pub no_route: u64,
    pub auth_rejected: u64,
    pub rate_limited: u64,
    pub shed: u64,
    pub handshakes: u64,
    pub handshake_failures: u64,
    pub panics: u64,
}

impl Sample {
    /// What `c` holds now.
    pub fn read(c: &PublishedCounters) -> Sample {
        use std::sync::atomic::Ordering::Relaxed;
        Sample {
            requests: c.requests.load(Relaxed),
            local_5xx: c.responses_local_5xx.load(Relaxed),
            no_route: c.route_not_found.load(Relaxed) + c.route_method_not_allowed.load(Relaxed),
            auth_rejected: c.auth_rejected.load(Relaxed),
            rate_limited: c.ratelimit_denied.load(Relaxed),
            shed: c.requests_shed.load(Relaxed),
            handshakes: c.tls_handshakes.load(Relaxed),
            handshake_failures: c.tls_handshake_failures.load(Relaxed),
            panics: c.worker_panics.load(Relaxed),
        }
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Sample) -> Sample {
        Sample {
            requests: self.requests.saturating_sub(before.requests),
            local_5xx: self.local_5xx.saturating_sub(before.local_5xx),
            no_route: self.no_route.saturating_sub(before.no_route),
            auth_rejected: self.auth_rejected.saturating_sub(before.auth_rejected),
            rate_limited: self.rate_limited.saturating_sub(before.rate_limited),
            shed: self.shed.saturating_sub(before.shed),
            handshakes: self.handshakes.saturating_sub(before.handshakes),
            handshake_failures: self
                .handshake_failures
                .saturating_sub(before.handshake_failures),
            panics: self.panics.saturating_sub(before.panics),
        }
    }

    /// The sum of `self` and `other`.
    pub fn plus(&self, other: &Sample) -> Sample {
        Sample {
            requests: self.requests + other.requests,
            local_5xx: self.local_5xx + other.local_5xx,
            no_route: self.no_route + other.no_route,
            auth_rejected: self.auth_rejected + other.auth_rejected,
            rate_limited: self.rate_limited + other.rate_limited,
            shed: self.shed + other.shed,
            handshakes: self.handshakes + other.handshakes,
            handshake_failures: self.handshake_failures + other.handshake_failures,
            panics: self.panics + other.panics,
        }
    }

    /// The signals a verdict compares: `(name, count, out of)`.
    fn signals(&self) -> [(&'static str, u64, u64); 5] {
        let tls_tries = self.handshakes + self.handshake_failures;
        [
            ("no route (404/405)", self.no_route, self.requests),
            ("authentication refused", self.auth_rejected, self.requests),
            ("rate limited (429)", self.rate_limited, self.requests),
            ("shed (503)", self.shed, self.requests),
            ("TLS handshakes failed", self.handshake_failures, tls_tries),
        ]
    }
}

/// `count / of`, 0 when `of` is 0.
fn share(count: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        count as f64 / of as f64
    }
}

/// A panic on the canary workers, more often than on the others: `Some(reason)`.
pub fn panicked(canary: &Sample, others: &Sample) -> Option<String> {
    let worse =
        share(canary.panics, canary.requests.max(1)) > share(others.panics, others.requests.max(1));
    (canary.panics > 0 && worse).then(|| {
        format!(
            "the canary panicked {} time(s) serving {} request(s) (the other workers: {} in {})",
            canary.panics, canary.requests, others.panics, others.requests
        )
    })
}

/// Judges the canary's window: `Ok(summary)` to promote, `Err(reason)` to roll
/// back. `others` is the sum of the workers on the running configuration (all
/// zero when there are none).
pub fn verdict(
    settings: &ReloadSettings,
    canary: &Sample,
    others: &Sample,
) -> Result<String, String> {
    if let Some(reason) = panicked(canary, others) {
        return Err(reason);
    }
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let (c, o) = (
        share(canary.local_5xx, canary.requests),
        share(others.local_5xx, others.requests),
    );
    if c - o > settings.max_error_increase {
        return Err(format!(
            "gateway-made 5xx: {} of the canary's {} request(s), {} of the other workers' {} \
             (canary_max_error_increase = {})",
            pct(c),
            canary.requests,
            pct(o),
            others.requests,
            pct(settings.max_error_increase)
        ));
    }
    for ((name, cn, cof), (_, on, oof)) in canary.signals().into_iter().zip(others.signals()) {
        let (c, o) = (share(cn, cof), share(on, oof));
        if c - o > settings.max_rejection_increase {
            return Err(format!(
                "{name}: {} of the canary's {cof}, {} of the other workers' {oof} \
                 (canary_max_rejection_increase = {})",
                pct(c),
                pct(o),
                pct(settings.max_rejection_increase)
            ));
        }
    }
    Ok(format!(
        "the canary served {} request(s) with {} gateway-made 5xx (the other workers: {} in {})",
        canary.requests, canary.local_5xx, others.local_5xx, others.requests
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(requests: u64, local_5xx: u64) -> Sample {
        Sample {
            requests,
            local_5xx,
            ..Sample::default()
        }
    }

    #[test]
    fn errors_beyond_the_margin_roll_back_and_shared_errors_do_not() {
        let s = ReloadSettings::default();
        assert!(verdict(&s, &sample(100, 40), &sample(100, 0)).is_err());
        assert!(
            verdict(&s, &sample(100, 4), &sample(100, 0)).is_ok(),
            "within 5 points"
        );
        assert!(
            verdict(&s, &sample(100, 40), &sample(100, 38)).is_ok(),
            "the running configuration fails the same way: not the new one's fault"
        );
        assert!(
            verdict(&s, &sample(0, 0), &sample(100, 0)).is_ok(),
            "no traffic: nothing against it"
        );
        let reason = verdict(&s, &sample(10, 10), &Sample::default()).expect_err("alone");
        assert!(reason.contains("100.0% of the canary's 10"), "{reason}");
    }

    #[test]
    fn rejections_are_compared_kind_by_kind() {
        let s = ReloadSettings::default();
        let lost_routes = Sample {
            requests: 100,
            no_route: 60,
            ..Sample::default()
        };
        let reason = verdict(&s, &lost_routes, &sample(100, 0)).expect_err("routes gone");
        assert!(reason.starts_with("no route"), "{reason}");
        let bad_cert = Sample {
            handshakes: 1,
            handshake_failures: 9,
            ..Sample::default()
        };
        let running = Sample {
            handshakes: 10,
            ..Sample::default()
        };
        assert!(verdict(&s, &bad_cert, &running)
            .expect_err("tls")
            .starts_with("TLS"));
    }

    #[test]
    fn a_panic_rolls_back_unless_the_others_panic_as_often() {
        let s = ReloadSettings::default();
        let mut canary = sample(50, 0);
        canary.panics = 1;
        assert!(verdict(&s, &canary, &sample(50, 0)).is_err());
        let mut others = sample(50, 0);
        others.panics = 3;
        assert!(panicked(&canary, &others).is_none());
    }
}
