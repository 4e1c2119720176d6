//! The control thread's loop while serving: signals, and certificate reloads.
//!
//! A stop signal ends the loop (the caller drains). SIGHUP, or a change to any
//! certificate, key or client-CA file (checked every second), reloads the TLS
//! listeners' certificates: all files are read and checked first; only if every
//! listener loads are the new contexts posted to the workers' mailboxes, where they
//! replace any set a worker has not installed yet (so the newest always wins).
//! Otherwise the refusal is logged, file by file, and the certificates in use keep
//! serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Snapshot;
use crate::tls::ListenerTls;

use super::mailbox::Mailbox;
use super::signals::{SignalInbox, Signalled};

const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until a stop signal arrives; returns it and when it arrived.
pub fn serve_until_stopped(
    snapshot: &Snapshot,
    workers: &[Arc<Mailbox>],
    signals: &SignalInbox,
) -> (i32, Instant) {
    let mut watch = FileWatch::new(snapshot);
    let mut reloads = CertificateReloads { generation: 0 };
    loop {
        match signals.wait(WATCH_INTERVAL) {
            Signalled::Stop { signal, at } => return (signal, at),
            Signalled::Reload => {
                tracing::info!("SIGHUP: reloading certificates");
                watch.refresh();
                reloads.reload(snapshot, workers);
            }
            Signalled::Nothing => {
                if watch.refresh() {
                    tracing::info!("certificate files changed: reloading certificates");
                    reloads.reload(snapshot, workers);
                }
            }
        }
    }
}

/// Numbers the certificate sets handed to the workers (for the log).
struct CertificateReloads {
    generation: u64,
}

impl CertificateReloads {
    fn reload(&mut self, snapshot: &Snapshot, workers: &[Arc<Mailbox>]) {
        if snapshot.server.tls.is_empty() {
            return;
        }
        let mut contexts = Vec::new();
        for listener in &snapshot.server.tls {
            match ListenerTls::load(&listener.settings) {
                Ok(c) => contexts.push(Arc::new(c)),
                Err(errors) => {
                    for (_, reason) in errors {
                        tracing::error!(
                            "certificate reload refused for {}: {reason}; the certificates in use keep serving",
                            listener.settings.listen
                        );
                    }
                    return;
                }
            }
        }
        self.generation += 1;
        for w in workers {
            w.post_tls(self.generation, contexts.clone());
        }
        tracing::info!(
            "certificates reloaded for {} TLS listener(s) (generation {}); workers install them within 50 ms",
            contexts.len(),
            self.generation
        );
    }
}

/// Modification times of the certificate files.
struct FileWatch {
    files: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
}

impl FileWatch {
    fn new(snapshot: &Snapshot) -> Self {
        let mut files = Vec::new();
        for l in &snapshot.server.tls {
            for c in &l.settings.certs {
                files.push((c.cert.clone(), None));
                files.push((c.key.clone(), None));
            }
            if let Some(ca) = &l.settings.client_ca {
                files.push((ca.clone(), None));
            }
        }
        let mut watch = FileWatch { files };
        watch.refresh();
        watch
    }

    /// Re-reads the times; true if any changed since the last look.
    fn refresh(&mut self) -> bool {
        let mut changed = false;
        for (path, seen) in &mut self.files {
            let now = std::fs::metadata(&*path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            if now != *seen {
                changed = true;
                *seen = now;
            }
        }
        changed
    }
}
