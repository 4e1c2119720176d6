//! Wall-clock time for access-log lines and span timestamps, read from the
//! monotonic instants a request takes anyway (when it arrived, when it ended), so
//! that observing a request costs no clock read of its own (`clock_gettime` is a
//! few percent of a proxied request on a virtual machine).
//!
//! The worker anchors the clock on its tick (every 50 ms): one `SystemTime` and
//! one `Instant` read together. Between anchors the wall clock is taken to run at
//! the monotonic clock's rate; NTP slews the wall clock by at most 500 ppm, so the
//! error stays under 25 µs, far below the log's millisecond. A step of the wall
//! clock (`settimeofday`, a VM resumed) shows from the next anchor on.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One worker's wall clock (not shared between threads).
pub struct WallClock {
    /// An instant and the time since the Unix epoch read with it.
    anchor: Cell<(Instant, Duration)>,
}

impl WallClock {
    /// A clock anchored now.
    pub fn new() -> Self {
        WallClock {
            anchor: Cell::new(read_both()),
        }
    }

    /// Reads both clocks again (the worker's tick).
    pub fn anchor(&self) {
        self.anchor.set(read_both());
    }

    /// The time since the Unix epoch at `at` (0 for a time before it).
    pub fn since_epoch(&self, at: Instant) -> Duration {
        let (instant, wall) = self.anchor.get();
        match at.checked_duration_since(instant) {
            Some(after) => wall + after,
            None => wall.saturating_sub(instant.saturating_duration_since(at)),
        }
    }

    /// [`since_epoch`](Self::since_epoch) in nanoseconds (`u64::MAX` after 2554).
    pub fn unix_nanos(&self, at: Instant) -> u64 {
        u64::try_from(self.since_epoch(at).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::new()
    }
}

fn read_both() -> (Instant, Duration) {
    let instant = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (instant, wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_read_as_the_wall_clock_reads_them() {
        let clock = WallClock::new();
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let now = Instant::now();
        let read = clock.since_epoch(now);
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        // Within the time the reads took (and a millisecond of slack).
        assert!(
            read + Duration::from_millis(1) >= before && read <= after + Duration::from_millis(1)
        );
        // Earlier and later instants keep their distance.
        let later = now + Duration::from_secs(3);
        assert_eq!(clock.since_epoch(later) - read, Duration::from_secs(3));
        if let Some(earlier) = now.checked_sub(Duration::from_secs(2)) {
            assert_eq!(read - clock.since_epoch(earlier), Duration::from_secs(2));
        }
        assert_eq!(
            u128::from(clock.unix_nanos(later)),
            clock.since_epoch(later).as_nanos()
        );
    }
}
