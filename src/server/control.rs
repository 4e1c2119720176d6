//! The control thread's loop while serving: signals, and certificate reloads.
//!
//! SIGTERM/SIGINT end the loop (the caller drains). SIGHUP, or a change to any
//! certificate, key or client-CA file (checked every second), reloads the TLS
//! listeners' certificates: all files are read and checked first; only if every
//! listener loads are the new contexts sent to the workers. Otherwise the error is
//! logged and the certificates in use keep serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use signal_hook::consts::SIGHUP;

use crate::config::Snapshot;
use crate::tls::ListenerTls;

use super::worker::Command;

const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until a stop signal arrives; returns it.
pub fn serve_until_stopped(
    snapshot: &Snapshot,
    workers: &[Sender<Command>],
    signals: &Receiver<i32>,
) -> i32 {
    let mut watch = FileWatch::new(snapshot);
    loop {
        match signals.recv_timeout(WATCH_INTERVAL) {
            Ok(SIGHUP) => {
                tracing::info!("SIGHUP: reloading certificates");
                watch.refresh();
                reload_certificates(snapshot, workers);
            }
            Ok(sig) => return sig,
            Err(RecvTimeoutError::Timeout) => {
                if watch.refresh() {
                    tracing::info!("certificate files changed: reloading certificates");
                    reload_certificates(snapshot, workers);
                }
            }
            Err(RecvTimeoutError::Disconnected) => return 0,
        }
    }
}

fn reload_certificates(snapshot: &Snapshot, workers: &[Sender<Command>]) {
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
    for w in workers {
        if w.try_send(Command::ReloadTls(contexts.clone())).is_err() {
            tracing::warn!("a worker's command queue is full; it keeps its certificates");
        }
    }
    tracing::info!(
        "certificates reloaded for {} TLS listener(s)",
        contexts.len()
    );
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
