//! What one worker knows of one endpoint of one upstream: the prober's verdict, its
//! ejection (with how often it was ejected), the failure streaks outlier detection
//! counts, and how many requests it got.
//!
//! The balancer reads one flag per candidate ([`EndpointHealth::available`]); the
//! rest changes only on failures, on the worker's tick, and when the prober
//! changes its mind. Kept on the worker per upstream name and endpoint identity, so
//! a new configuration finds the state of unchanged endpoints as it was.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One endpoint as this worker sees it.
pub struct EndpointHealth {
    pub upstream: String,
    pub addr: SocketAddr,
    /// Healthy and not ejected: the balancer may choose it.
    available: Cell<bool>,
    /// The active health check's verdict (true without health checks).
    healthy: Cell<bool>,
    /// Ejected by outlier detection until then.
    ejected_until: Cell<Option<Instant>>,
    /// Ejections so far (the ejection time multiplier), decaying while it behaves.
    ejections: Cell<u32>,
    /// When the multiplier next drops by one, and by how long each step is.
    decay: Cell<Option<(Instant, Duration)>>,
    /// 5xx answers in a row.
    pub(super) consecutive_failures: Cell<u32>,
    /// Connect failures, resets and timeouts in a row.
    pub(super) consecutive_gateway_failures: Cell<u32>,
    /// Tries sent to it by this worker.
    pub requests: Cell<u64>,
    /// Tries that failed (5xx or gateway failures).
    pub failures: Cell<u64>,
}

impl EndpointHealth {
    pub fn new(upstream: &str, addr: SocketAddr) -> Self {
        EndpointHealth {
            upstream: upstream.to_string(),
            addr,
            available: Cell::new(true),
            healthy: Cell::new(true),
            ejected_until: Cell::new(None),
            ejections: Cell::new(0),
            decay: Cell::new(None),
            consecutive_failures: Cell::new(0),
            consecutive_gateway_failures: Cell::new(0),
            requests: Cell::new(0),
            failures: Cell::new(0),
        }
    }

    /// The balancer may choose it: healthy and not ejected.
    #[inline]
    pub fn available(&self) -> bool {
        self.available.get()
    }

    pub fn healthy(&self) -> bool {
        self.healthy.get()
    }

    pub fn ejected(&self) -> bool {
        self.ejected_until.get().is_some()
    }

    /// Times it was ejected, as the ejection time multiplier stands now.
    pub fn ejections(&self) -> u32 {
        self.ejections.get()
    }

    /// The prober's verdict. Turning healthy also ends an ejection (the endpoint
    /// proved itself). Returns whether the verdict changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        if self.healthy.get() == healthy {
            return false;
        }
        self.healthy.set(healthy);
        if healthy {
            self.end_ejection(Instant::now());
        }
        self.refresh();
        true
    }

    /// Ejects it for `base × (ejections + 1)`, at most `max`.
    pub(super) fn eject(&self, now: Instant, base: Duration, max: Duration) {
        let n = self.ejections.get().saturating_add(1);
        self.ejections.set(n);
        let time = base.saturating_mul(n).min(max);
        self.ejected_until.set(Some(now + time));
        // The decay: each base period it stays back without a new ejection takes
        // one off the multiplier.
        self.decay.set(Some((now + time + base, base)));
        self.refresh();
    }

    /// The worker's tick: an ejection whose time is over ends, and the multiplier
    /// decays. Returns whether an ejection ended.
    pub(super) fn tick(&self, now: Instant) -> bool {
        let ended = match self.ejected_until.get() {
            Some(until) if until <= now => {
                self.end_ejection(now);
                true
            }
            _ => false,
        };
        if let Some((at, step)) = self.decay.get() {
            if self.ejected_until.get().is_none() && at <= now {
                let n = self.ejections.get().saturating_sub(1);
                self.ejections.set(n);
                self.decay.set((n > 0).then_some((now + step, step)));
            }
        }
        ended
    }

    fn end_ejection(&self, now: Instant) {
        if self.ejected_until.take().is_some() {
            self.consecutive_failures.set(0);
            self.consecutive_gateway_failures.set(0);
            if let Some((_, step)) = self.decay.get() {
                self.decay.set(Some((now + step, step)));
            }
            self.refresh();
        }
    }

    fn refresh(&self) {
        self.available
            .set(self.healthy.get() && self.ejected_until.get().is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> EndpointHealth {
        EndpointHealth::new("u", "127.0.0.1:9".parse().unwrap())
    }

    #[test]
    fn ejection_time_grows_with_each_ejection_and_is_capped() {
        let e = endpoint();
        let t0 = Instant::now();
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(250);
        e.eject(t0, base, max);
        assert!(!e.available());
        assert!(!e.tick(t0 + Duration::from_millis(99)));
        assert!(e.tick(t0 + Duration::from_millis(100)));
        assert!(e.available());
        let t1 = t0 + Duration::from_millis(150);
        e.eject(t1, base, max);
        assert!(!e.tick(t1 + Duration::from_millis(199)));
        assert!(e.tick(t1 + Duration::from_millis(200)));
        let t2 = t1 + Duration::from_millis(210);
        e.eject(t2, base, max);
        assert_eq!(e.ejections(), 3);
        assert!(!e.tick(t2 + Duration::from_millis(249)));
        assert!(e.tick(t2 + Duration::from_millis(250)));
    }

    #[test]
    fn the_multiplier_decays_while_the_endpoint_behaves() {
        let e = endpoint();
        let t0 = Instant::now();
        let base = Duration::from_millis(100);
        e.eject(t0, base, Duration::from_secs(10));
        e.tick(t0 + base);
        assert_eq!(e.ejections(), 1);
        e.tick(t0 + base * 2);
        assert_eq!(e.ejections(), 0);
    }

    #[test]
    fn unhealthy_is_unavailable_and_turning_healthy_ends_an_ejection() {
        let e = endpoint();
        assert!(e.set_healthy(false));
        assert!(!e.available());
        e.eject(
            Instant::now(),
            Duration::from_secs(30),
            Duration::from_secs(30),
        );
        assert!(e.set_healthy(true));
        assert!(e.available());
        assert!(!e.ejected());
        assert!(!e.set_healthy(true));
    }
}
