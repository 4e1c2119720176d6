//! The signal thread: turns SIGTERM, SIGINT and SIGHUP into state the control
//! thread reads, so that no signal is lost to a full queue and none waits on
//! another thread.
//!
//! - The first stop signal (SIGTERM or SIGINT) is kept, with its time, until the
//!   process ends, and arms the shutdown watchdog. The same stop signal a second
//!   time (Ctrl-C, Ctrl-C) exits at once with code 1. A different one is logged and
//!   ignored: a supervisor's SIGTERM after a terminal's SIGINT (both sent on one
//!   Ctrl-C to a script that also stops its children) must not cut the drain short.
//! - SIGHUP marks a configuration reload as pending. Any number of SIGHUPs before
//!   the control thread looks make one reload, which reads the files after the last
//!   of them: the newest files always win.
//! - The control thread is woken through a channel with one slot; a full slot means
//!   a wake-up is already pending, so sending never blocks and loses nothing (what
//!   happened is in the flags, not in the queue).
//!
//! The thread is registered first thing at start-up, so a stop signal during
//! start-up is kept and acted on as soon as the gateway serves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::shutdown;

/// What the signal thread has seen, for the control thread.
pub struct SignalInbox {
    stop: OnceLock<(i32, Instant)>,
    reload: AtomicBool,
    /// The running configuration's `drain_timeout_ms` (sizes the watchdog).
    drain_timeout_ms: AtomicU64,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
}

/// What [`SignalInbox::wait`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Signalled {
    /// A stop signal, and when it arrived (the drain deadlines count from then).
    Stop { signal: i32, at: Instant },
    /// One or more SIGHUPs since the last look.
    Reload,
    /// Nothing within the wait.
    Nothing,
}

/// Registers the handlers and starts the signal thread. `drain_timeout` sizes the
/// watchdog armed by the first stop signal (a reload may change it:
/// [`SignalInbox::set_drain_timeout`]).
pub fn start(drain_timeout: Duration) -> Result<Arc<SignalInbox>, String> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let (wake_tx, wake_rx) = bounded(1);
    let inbox = Arc::new(SignalInbox {
        stop: OnceLock::new(),
        reload: AtomicBool::new(false),
        drain_timeout_ms: AtomicU64::new(drain_timeout.as_millis() as u64),
        wake_tx,
        wake_rx,
    });
    let seen = inbox.clone();
    std::thread::Builder::new()
        .name("portico-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let drain_timeout =
                    Duration::from_millis(seen.drain_timeout_ms.load(Ordering::Relaxed));
                seen.record(sig, drain_timeout);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(inbox)
}

impl SignalInbox {
    /// A sender that wakes the control thread out of [`wait`](Self::wait) (the
    /// admin listener and the file watch use it after queueing their news).
    pub fn waker(&self) -> Sender<()> {
        self.wake_tx.clone()
    }

    /// The running configuration's drain timeout, for the watchdog of a later stop.
    pub fn set_drain_timeout(&self, drain_timeout: Duration) {
        self.drain_timeout_ms
            .store(drain_timeout.as_millis() as u64, Ordering::Relaxed);
    }

    /// Waits up to `timeout` for a signal, or a wake-up. A stop signal is reported on every call
    /// once it arrived (it wins over a pending reload); a reload once per batch.
    pub fn wait(&self, timeout: Duration) -> Signalled {
        if self.stop.get().is_none() && !self.reload.load(Ordering::Acquire) {
            let _ = self.wake_rx.recv_timeout(timeout);
        }
        if let Some(&(signal, at)) = self.stop.get() {
            return Signalled::Stop { signal, at };
        }
        if self.reload.swap(false, Ordering::AcqRel) {
            return Signalled::Reload;
        }
        Signalled::Nothing
    }

    /// The signal thread's handling of one signal.
    fn record(&self, sig: i32, drain_timeout: Duration) {
        if sig == SIGHUP {
            self.reload.store(true, Ordering::Release);
        } else {
            match self.stop.get() {
                None => {
                    let _ = self.stop.set((sig, Instant::now()));
                    shutdown::arm_watchdog(drain_timeout);
                }
                Some(&(first, _)) if first == sig => {
                    tracing::warn!("signal {sig} again: exiting without waiting for the drain");
                    std::process::exit(1);
                }
                Some(_) => {
                    tracing::info!("signal {sig}: already draining");
                    return;
                }
            }
        }
        // Full: a wake-up is already pending, and it will see this signal too.
        let _ = self.wake_tx.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox() -> SignalInbox {
        let (wake_tx, wake_rx) = bounded(1);
        SignalInbox {
            stop: OnceLock::new(),
            reload: AtomicBool::new(false),
            drain_timeout_ms: AtomicU64::new(0),
            wake_tx,
            wake_rx,
        }
    }

    #[test]
    fn a_burst_of_reloads_is_one_reload_and_a_stop_is_never_lost() {
        let inbox = inbox();
        for _ in 0..200 {
            inbox.record(SIGHUP, Duration::ZERO);
        }
        assert_eq!(inbox.wait(Duration::ZERO), Signalled::Reload);
        assert_eq!(inbox.wait(Duration::ZERO), Signalled::Nothing);
        for _ in 0..50 {
            inbox.record(SIGHUP, Duration::ZERO);
        }
        // A stop after a full wake slot still gets through, and wins over the reload.
        inbox.record(SIGTERM, Duration::from_secs(3600));
        assert!(matches!(
            inbox.wait(Duration::ZERO),
            Signalled::Stop {
                signal: SIGTERM,
                ..
            }
        ));
        assert!(matches!(inbox.wait(Duration::ZERO), Signalled::Stop { .. }));
    }
}
