//! A duration histogram with fixed buckets, in plain `Cell`s: recording is a few
//! comparisons and three additions on the worker; workers' histograms add up
//! bucket by bucket at scrape time because every one has the same bounds.

use std::cell::Cell;
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the `le` labels). Requests through a
/// gateway take from a fraction of a millisecond (a static answer) to the route
/// timeout (seconds); past the last bound they count in `+Inf` only.
pub const BUCKET_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// The bounds in nanoseconds, for the comparison made per record.
const BOUNDS_NANOS: [u64; 16] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];
/// Buckets counted: one per bound, and one past the last (`+Inf`).
pub const BUCKETS: usize = BOUNDS_NANOS.len() + 1;

/// One worker's histogram of durations (non-cumulative bucket counts).
#[derive(Default)]
pub struct DurationHistogram {
    buckets: [Cell<u64>; BUCKETS],
    sum_nanos: Cell<u64>,
}

impl DurationHistogram {
    /// Counts one duration.
    pub fn record(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BUCKETS - 1);
        self.buckets[i].set(self.buckets[i].get() + 1);
        self.sum_nanos
            .set(self.sum_nanos.get().saturating_add(nanos));
    }

    /// A copy of the counts, for publishing.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].get()),
            sum_nanos: self.sum_nanos.get(),
        }
    }
}

/// Published bucket counts of a [`DurationHistogram`] (non-cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub buckets: [u64; BUCKETS],
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of the durations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }

    /// Adds another worker's counts.
    pub fn add(&mut self, other: &HistogramSnapshot) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_nanos = self.sum_nanos.saturating_add(other.sum_nanos);
    }

    /// `(upper bound in seconds, count in that bucket)` pairs, `+Inf` last, as
    /// the exposition encoders take them (they make them cumulative).
    pub fn bucket_pairs(&self) -> Vec<(f64, u64)> {
        BUCKET_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let h = DurationHistogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(500)); // on the bound: `le` is inclusive
        h.record(Duration::from_millis(7));
        h.record(Duration::from_secs(3600));
        let s = h.snapshot();
        assert_eq!(s.count(), 4);
        assert_eq!(s.buckets[0], 2);
        assert_eq!(s.buckets[4], 1);
        assert_eq!(s.buckets[BUCKETS - 1], 1);
        let pairs = s.bucket_pairs();
        assert_eq!(pairs.len(), BUCKETS);
        assert_eq!(pairs[BUCKETS - 1], (f64::INFINITY, 1));
        assert!((s.sum_seconds() - 3600.0076).abs() < 1e-6);
        for (bound, nanos) in BUCKET_BOUNDS.iter().zip(BOUNDS_NANOS) {
            assert_eq!((bound * 1e9).round() as u64, nanos);
        }
        let mut total = s;
        total.add(&s);
        assert_eq!(total.count(), 8);
    }
}
