//! Giving memory back to the system after a burst.
//!
//! glibc's allocator keeps what is freed for reuse and returns only the top of each
//! heap, so after 10,000 connections come and go (or go idle and release their
//! buffers) the holes they leave stay resident. `malloc_trim(0)` hands every free page
//! of every arena back (`MADV_DONTNEED`). It walks the arenas under their locks, so a
//! worker calls it on its tick only after a lot was freed ([`TRIM_AFTER_BYTES`], at
//! most once per [`TRIM_EVERY`]), or once the freeing has stopped for
//! [`TRIM_WHEN_QUIET`] (the tail of a burst): steady traffic whose connections do
//! not come and go by the thousand never pays for it.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Freed bytes (estimated) that make a trim worth its walk.
const TRIM_AFTER_BYTES: usize = 4 << 20;
/// The shortest time between two trims of one worker.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Less than `TRIM_AFTER_BYTES` is trimmed too once nothing was freed for this long
/// (and at least [`TRIM_TAIL_BYTES`] are waiting).
const TRIM_WHEN_QUIET: Duration = Duration::from_secs(2);
const TRIM_TAIL_BYTES: usize = 256 << 10;

/// What one worker freed since its last trim.
pub struct FreedMemory {
    bytes: Cell<usize>,
    last_freed: Cell<Instant>,
    last_trim: Cell<Instant>,
}

impl Default for FreedMemory {
    fn default() -> Self {
        FreedMemory {
            bytes: Cell::new(0),
            last_freed: Cell::new(Instant::now()),
            last_trim: Cell::new(Instant::now()),
        }
    }
}

impl FreedMemory {
    /// Counts `bytes` freed (buffers released by an idle or closed connection).
    pub fn add(&self, bytes: usize) {
        self.bytes.set(self.bytes.get().saturating_add(bytes));
        self.last_freed.set(Instant::now());
    }

    /// On the worker's tick: trims when enough was freed and the last trim is old
    /// enough, or when a smaller tail has waited for a quiet moment. Returns whether
    /// it trimmed.
    pub fn trim_if_worth_it(&self, now: Instant) -> bool {
        let bytes = self.bytes.get();
        let burst =
            bytes >= TRIM_AFTER_BYTES && now.duration_since(self.last_trim.get()) >= TRIM_EVERY;
        let tail = bytes >= TRIM_TAIL_BYTES
            && now.duration_since(self.last_freed.get()) >= TRIM_WHEN_QUIET;
        if !burst && !tail {
            return false;
        }
        self.bytes.set(0);
        self.last_trim.set(now);
        trim();
        true
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only reads and updates the allocator's own state, under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_trims_at_once_and_a_tail_once_freeing_stops() {
        let m = FreedMemory::default();
        let t0 = Instant::now();
        m.add(TRIM_AFTER_BYTES);
        assert!(
            !m.trim_if_worth_it(t0),
            "not twice within TRIM_EVERY of the start"
        );
        assert!(m.trim_if_worth_it(t0 + TRIM_EVERY));
        m.add(TRIM_TAIL_BYTES);
        let freed = m.last_freed.get();
        assert!(!m.trim_if_worth_it(freed + Duration::from_millis(100)));
        assert!(m.trim_if_worth_it(freed + TRIM_WHEN_QUIET));
        assert!(
            !m.trim_if_worth_it(freed + TRIM_WHEN_QUIET * 2),
            "nothing left"
        );
    }
}
