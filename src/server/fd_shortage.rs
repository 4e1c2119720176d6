//! What an accept loop does when the process runs out of file descriptors
//! (`accept` fails with `EMFILE` or `ENFILE`).
//!
//! The failed connection stays in the kernel's accept queue, so a loop that just
//! retries spins, and one that waits leaves the clients hanging with no answer. The
//! classic remedy (libev, nginx, HAProxy): keep one spare descriptor open. When
//! accept fails for lack of descriptors, close the spare, accept the waiting client
//! with the descriptor that frees, answer it `503` (plaintext; a TLS client is
//! closed, as a handshake would need more), close it and reopen the spare. Meanwhile
//! the failures are counted (`accept_fd_exhausted`), logged at most once per
//! [`LOG_EVERY`] with the count since the last line, and, when even the spare
//! cannot be had, the loop backs off (10 ms doubling to 500 ms) instead of spinning.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

/// At most one log line per accept loop this often while descriptors are short.
pub const LOG_EVERY: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// True for the errors that mean "no descriptor to put the connection in".
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// One accept loop's spare descriptor, log throttle and backoff.
pub struct FdShortage {
    spare: Option<File>,
    failures_since_log: u64,
    last_log: Option<Instant>,
    backoff: Duration,
}

impl FdShortage {
    /// Opens the spare descriptor (`/dev/null`); without one, only backoff is left.
    pub fn new() -> FdShortage {
        FdShortage {
            spare: open_spare(),
            failures_since_log: 0,
            last_log: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// Notes a failed accept; logs if the last line is older than [`LOG_EVERY`].
    pub fn note_failure(&mut self, worker: usize, error: &io::Error) {
        self.failures_since_log += 1;
        let now = Instant::now();
        if self.last_log.is_some_and(|t| now < t + LOG_EVERY) {
            return;
        }
        tracing::warn!(
            worker,
            "accept failed: {error}; {} time(s) since the last such line. Waiting clients \
             get 503 until descriptors free up; raise the descriptor limit (see \
             docs/operations.md, \"File descriptors\")",
            self.failures_since_log
        );
        self.failures_since_log = 0;
        self.last_log = Some(now);
    }

    /// Closes the spare so that one accept can succeed. False when there is none.
    pub fn release_spare(&mut self) -> bool {
        self.spare.take().is_some()
    }

    /// Reopens the spare after the refused client was closed.
    pub fn restore_spare(&mut self) {
        if self.spare.is_none() {
            self.spare = open_spare();
        }
    }

    /// How long to wait before the next accept when nothing could be done; doubles.
    pub fn next_backoff(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        wait
    }

    /// An accept succeeded: descriptors are back.
    pub fn recovered(&mut self) {
        self.backoff = FIRST_BACKOFF;
        self.restore_spare();
    }
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut s = FdShortage::new();
        let waits: Vec<u64> = (0..8)
            .map(|_| s.next_backoff().as_millis() as u64)
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 500, 500]);
        s.recovered();
        assert_eq!(s.next_backoff(), FIRST_BACKOFF);
    }

    #[test]
    fn the_spare_is_released_once_and_restored() {
        let mut s = FdShortage::new();
        assert!(s.release_spare());
        assert!(!s.release_spare());
        s.restore_spare();
        assert!(s.release_spare());
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
