//! The bounds on shutdown: every wait after a stop signal has a deadline, and a
//! watchdog ends the process if the control thread itself cannot get there.
//!
//! From the stop signal at `t0` (see docs/operations.md, "Shutdown"):
//! - workers drain until `t0 + drain_timeout` (noticed on their 50 ms tick);
//! - the control thread waits for them until `t0 + drain_timeout + WORKER_GRACE`;
//! - then stops the side threads and waits for them [`SIDE_WAIT`] from then, but
//!   never past `t0 + drain_timeout + SIDE_GRACE`; a thread still busy then (a log
//!   writer stuck on a full pipe, a JWKS fetch in a slow network call) is named in
//!   the log and left behind: the process exits 0 without it;
//! - the admin listener stops last (so `/healthz` says `stopping` meanwhile), with
//!   at most [`ADMIN_WAIT`] more;
//! - at `t0 + drain_timeout + STOP_GRACE` the watchdog ends the process with exit
//!   code 1 whatever any thread does (it only fires if the control thread is stuck).

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// After the drain timeout: how long the control thread waits for the workers.
pub const WORKER_GRACE: Duration = Duration::from_millis(500);
/// How long the side threads get once the workers are done...
pub const SIDE_WAIT: Duration = Duration::from_millis(500);
/// ...but never past the drain timeout plus this.
pub const SIDE_GRACE: Duration = Duration::from_millis(700);
/// What the admin listener gets after the other side threads.
pub const ADMIN_WAIT: Duration = Duration::from_millis(200);
/// After the drain timeout: when the watchdog ends the process.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// The deadlines of one shutdown, counted from the stop signal.
#[derive(Clone, Copy, Debug)]
pub struct StopDeadlines {
    /// Workers must have ended by then.
    pub workers: Instant,
    /// The latest the side threads may take.
    side_threads_latest: Instant,
}

impl StopDeadlines {
    /// Deadlines for a stop signalled at `signalled` with a drain of `drain_timeout`.
    pub fn after_signal(signalled: Instant, drain_timeout: Duration) -> StopDeadlines {
        StopDeadlines {
            workers: signalled + drain_timeout + WORKER_GRACE,
            side_threads_latest: signalled + drain_timeout + SIDE_GRACE,
        }
    }

    /// Deadlines for a start-up that failed: nothing is draining yet.
    pub fn now() -> StopDeadlines {
        StopDeadlines::after_signal(Instant::now(), Duration::ZERO)
    }

    /// When the side threads must have stopped, asked once the workers are done.
    pub fn side_threads(&self) -> Instant {
        (Instant::now() + SIDE_WAIT).min(self.side_threads_latest)
    }
}

/// Joins `handle` if its thread ends by `deadline`; otherwise logs that `what` did
/// not stop in time and leaves the thread behind. True when it was joined.
pub fn join_until<T>(handle: JoinHandle<T>, deadline: Instant, what: &str) -> bool {
    // std has no join with a timeout; polling `is_finished` is fine off the data path.
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            tracing::warn!("{what} did not stop in time; exiting without waiting for it");
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = handle.join();
    true
}

/// Starts the watchdog: `drain_timeout + STOP_GRACE` from now the process exits
/// with code 1, whatever its threads are doing. Called once, on the first stop
/// signal, by the signal thread (so a busy control thread cannot delay it).
pub fn arm_watchdog(drain_timeout: Duration) {
    let fire_at = Instant::now() + drain_timeout + STOP_GRACE;
    let spawned = std::thread::Builder::new()
        .name("portico-watchdog".into())
        .spawn(move || {
            std::thread::sleep(fire_at.saturating_duration_since(Instant::now()));
            // Logging can block (stderr may be a full pipe): log from a helper
            // thread and exit after a short wait whether or not it got through.
            let _ = std::thread::Builder::new().spawn(|| {
                tracing::error!(
                    "shutdown did not finish within drain_timeout_ms + {} ms: exiting now",
                    STOP_GRACE.as_millis()
                );
            });
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: `_exit` ends the process at once; nothing after it runs. It is
            // used instead of `exit` because `exit` flushes stdout, which can block.
            unsafe { libc::_exit(1) }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the shutdown watchdog: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_until_joins_a_finished_thread_and_leaves_a_stuck_one() {
        let done = std::thread::spawn(|| ());
        assert!(join_until(
            done,
            Instant::now() + Duration::from_secs(5),
            "quick"
        ));
        let (_keep, rx) = crossbeam_channel::bounded::<()>(0);
        let stuck = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        assert!(!join_until(
            stuck,
            Instant::now() + Duration::from_millis(50),
            "stuck"
        ));
    }
}
