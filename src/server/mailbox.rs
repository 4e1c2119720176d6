//! Orders from the control thread to one worker, where the newest always wins.
//!
//! A bounded queue of commands can fill up (a burst of SIGHUPs once made a worker
//! skip a certificate reload: "command queue is full"), and an unbounded one would
//! replay stale reloads. Instead each worker has a mailbox with one slot per kind of
//! order: posting a configuration to install replaces any the worker has not picked
//! up yet, and a drain, once posted, stays posted. The worker empties it on its
//! tick (every 50 ms), never on the request path; the lock is held for a pointer
//! swap.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::config::Snapshot;
use crate::limit::WorkerLink;

/// One worker's mailbox, shared by the control thread (posting) and the worker.
#[derive(Default)]
pub struct Mailbox {
    slots: Mutex<Posted>,
}

/// What was posted since the worker last looked.
#[derive(Default)]
pub struct Posted {
    /// Drain: stop accepting, let requests in flight finish until this deadline
    /// (the stop signal's time plus `drain_timeout_ms`), then exit.
    pub drain: Option<Instant>,
    /// The configuration new connections are to pin from now on.
    pub install: Option<Install>,
}

/// A configuration for a worker to install: it builds its generation from it,
/// takes its certificates, and listens on its addresses (binding the new ones).
pub struct Install {
    /// The version the control thread gave the configuration.
    pub version: u64,
    pub snapshot: Arc<Snapshot>,
    /// The worker's link to a limiter thread started after the worker (the first
    /// configuration that needs one).
    pub limiter: Option<WorkerLink>,
}

impl Mailbox {
    /// Asks the worker to drain until `deadline` (the first deadline posted stays).
    pub fn post_drain(&self, deadline: Instant) {
        self.lock().drain.get_or_insert(deadline);
    }

    /// Hands the worker a configuration, replacing any it has not installed yet.
    pub fn post_install(&self, install: Install) {
        self.lock().install = Some(install);
    }

    /// What was posted since the last call; a drain stays posted.
    pub fn take(&self) -> Posted {
        let mut slots = self.lock();
        Posted {
            drain: slots.drain,
            install: slots.install.take(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Posted> {
        // Nothing can panic while the lock is held, but a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_configuration_wins_and_a_drain_stays_posted() {
        let snapshot = Arc::new(
            crate::config::parse(
                "t.toml",
                "[[route]]\nname = \"r\"\nrespond = { status = 200 }\n",
            )
            .expect("config"),
        );
        let mailbox = Mailbox::default();
        for version in 1..=200 {
            mailbox.post_install(Install {
                version,
                snapshot: snapshot.clone(),
                limiter: None,
            });
        }
        let posted = mailbox.take();
        assert_eq!(posted.install.map(|i| i.version), Some(200));
        assert!(posted.drain.is_none());
        assert!(mailbox.take().install.is_none(), "taken once");
        let deadline = Instant::now();
        mailbox.post_drain(deadline);
        mailbox.post_drain(deadline + std::time::Duration::from_secs(1));
        assert_eq!(mailbox.take().drain, Some(deadline));
        assert_eq!(
            mailbox.take().drain,
            Some(deadline),
            "a drain is not forgotten"
        );
    }
}
