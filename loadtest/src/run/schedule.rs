//! Open-loop timing: when each request is meant to leave, and where its latency counts
//! from.
//!
//! With `--rate R` over `C` connections in total, connection `j` sends its `k`-th
//! request at `start + (j + k·C) / R`: every connection runs at `R / C`, and the
//! connections are offset so that the whole run sends evenly at `R`. The number
//! `j + k·C` is also the request's sequence number (which URL and header-file line it
//! uses), so round robin is exact over the run.
//!
//! A request that leaves late — its connection was still waiting for the previous
//! answer, or the tool itself was late — is timed from its intended send time, so a
//! stall shows in the tail instead of silently lowering the offered load (coordinated
//! omission corrected, as wrk2 does). monoio's timer counts whole milliseconds and may
//! wake a sleeper up to two ticks after the deadline it was given, so an idle
//! connection asks to wake `EARLY` before the intended time and, once awake, sends at
//! once; a request that leaves early is timed from when it actually left, never from
//! before. Without this, half the requests would carry up to 1 ms of the tool's own
//! timer slack in their latency.

use std::time::{Duration, Instant};

/// How early an idle connection may wake and send (two ticks of the timer).
pub const EARLY: Duration = Duration::from_millis(2);

/// One connection's sequence of intended send times.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    /// Requests per second of the whole run.
    rate: f64,
    /// This connection's sequence numbers: `first`, `first + step`, …
    sequence: u64,
    step: u64,
}

impl Schedule {
    /// Connection `connection` of `connections`, sharing `rate` requests/s from `start`.
    pub fn new(start: Instant, connection: u64, connections: u64, rate: f64) -> Schedule {
        Schedule {
            start,
            rate,
            sequence: connection,
            step: connections,
        }
    }

    /// The sequence number of the next request.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// When the next request is meant to leave.
    pub fn intended(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.sequence as f64 / self.rate)
    }

    pub fn advance(&mut self) {
        self.sequence += self.step;
    }

    /// Intended send times from the next one up to `end` (exclusive): the requests
    /// that will never leave when a run stops at `end`.
    pub fn remaining_before(&self, end: Instant) -> u64 {
        let span = end.saturating_duration_since(self.start).as_secs_f64();
        // Sequence numbers below `end`; the epsilon keeps 3 s × 2000/s at 6000, not 6001.
        let total = (span * self.rate - 1e-6).ceil().max(0.0) as u64;
        total.saturating_sub(self.sequence).div_ceil(self.step)
    }
}

/// Where a request's latency counts from: its intended send time, or when it actually
/// left if that was earlier (an early wake-up within `EARLY`).
pub fn latency_start(intended: Instant, sent: Instant) -> Instant {
    intended.min(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_evenly() {
        let start = Instant::now();
        let mut a = Schedule::new(start, 0, 4, 1000.0);
        let mut b = Schedule::new(start, 3, 4, 1000.0);
        let ms = |s: &Schedule| s.intended().duration_since(start).as_secs_f64() * 1000.0;
        assert_eq!((a.sequence(), ms(&a)), (0, 0.0));
        assert!((ms(&b) - 3.0).abs() < 1e-6);
        a.advance();
        b.advance();
        assert_eq!(a.sequence(), 4);
        assert!((ms(&a) - 4.0).abs() < 1e-6 && (ms(&b) - 7.0).abs() < 1e-6);
    }

    #[test]
    fn counts_what_a_window_holds() {
        // 1000 req/s over 4 connections for 1 s: 1000 sends, 250 per connection.
        let start = Instant::now();
        let end = start + Duration::from_secs(1);
        let total: u64 = (0..4)
            .map(|j| Schedule::new(start, j, 4, 1000.0).remaining_before(end))
            .sum();
        assert_eq!(total, 1000);
        let mut s = Schedule::new(start, 1, 4, 1000.0);
        for _ in 0..249 {
            s.advance();
        }
        assert_eq!(s.remaining_before(end), 1);
        s.advance();
        assert_eq!(s.remaining_before(end), 0);
    }

    #[test]
    fn latency_counts_from_the_intended_time_when_late() {
        let intended = Instant::now();
        let late = intended + Duration::from_millis(300);
        let answered = late + Duration::from_millis(2);
        // A request held back 300 ms by a busy connection: 302 ms, not 2 ms.
        assert_eq!(
            answered - latency_start(intended, late),
            Duration::from_millis(302)
        );
        // Sent 0.4 ms early: timed from when it left.
        let early = intended - Duration::from_micros(400);
        assert_eq!(latency_start(intended, early), early);
    }
}
