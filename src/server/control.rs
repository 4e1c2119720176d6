//! The control thread's loop while serving: stop signals, reload triggers, the
//! canary's progress, and workers that died.
//!
//! A stop signal ends the loop (the caller drains). A reload is triggered by
//! SIGHUP, by a change of the configuration file (`config_watch.rs`) or of a
//! certificate file it names (looked at every second), or by `POST /config/reload`
//! on the admin listener; `reload.rs` does the rest. While a canary runs or a
//! configuration is on its way to the workers the loop turns every 10 ms,
//! otherwise once a second or when woken (a signal, an admin call, a file event).
//! A worker whose thread ended is restarted on the running configuration.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::admin::{ControlAction, ControlRequest};
use crate::config::Snapshot;

use super::config_watch::{CertificateFiles, ConfigWatch};
use super::reload::{Reloads, Threads};
use super::signals::{SignalInbox, Signalled};
use super::worker_set::Shared;

/// How often the loop turns when nothing is in progress (certificate files are
/// looked at this often).
const IDLE_TURN: Duration = Duration::from_secs(1);
/// How often it turns while a canary runs or workers install a configuration.
const BUSY_TURN: Duration = Duration::from_millis(10);

/// What the control loop works with.
pub struct Control<'a> {
    pub signals: &'a SignalInbox,
    pub requests: &'a Receiver<ControlRequest>,
    pub reloads: &'a mut Reloads,
    pub threads: Threads<'a>,
    pub access_log: Option<&'a crate::observe::AccessLogWriter>,
    /// The span exporter (lent, as the access-log writer is, for restarts).
    pub spans: Option<&'a crate::observe::SpanExporter>,
    /// Each worker's metric series (a restarted worker goes on from its own).
    pub metrics: &'a [Arc<crate::observe::metrics::PublishedMetrics>],
    /// Each worker's composition counters (for a worker restarted).
    pub compose: &'a [Arc<crate::compose::PublishedCompose>],
    pub config_path: &'a Path,
}

/// Runs until a stop signal arrives; returns it and when it arrived.
pub fn serve_until_stopped(c: &mut Control<'_>) -> (i32, Instant) {
    let mut running = c.reloads.running().number;
    let mut certificates = CertificateFiles::of(&c.reloads.running().snapshot);
    let mut watch = start_watch(
        c.config_path,
        &c.reloads.running().snapshot,
        c.signals.waker(),
    );
    let mut next_look = Instant::now() + IDLE_TURN;
    c.reloads.poll(&mut c.threads);
    loop {
        let turn = if c.reloads.busy() {
            BUSY_TURN
        } else {
            IDLE_TURN
        };
        // Each reload reads the certificate files anew: what they are before it
        // is what later looks compare with.
        match c.signals.wait(turn) {
            Signalled::Stop { signal, at } => {
                c.reloads.stop();
                return (signal, at);
            }
            Signalled::Reload => {
                certificates.changed();
                c.reloads.reload("SIGHUP", &mut c.threads, None);
            }
            Signalled::Nothing => {}
        }
        while let Ok(request) = c.requests.try_recv() {
            match request.action {
                ControlAction::Reload => {
                    certificates.changed();
                    c.reloads
                        .reload("POST /config/reload", &mut c.threads, Some(request))
                }
                ControlAction::Promote => c.reloads.decide_by_hand(true, &mut c.threads, request),
                ControlAction::Rollback => c.reloads.decide_by_hand(false, &mut c.threads, request),
            }
        }
        if watch.as_ref().is_some_and(ConfigWatch::take_change) {
            // Certificates often live beside the configuration file.
            match certificates.changed() {
                true => c
                    .reloads
                    .reload("certificate files changed", &mut c.threads, None),
                false => c.reloads.file_changed(&mut c.threads),
            }
        }
        if Instant::now() >= next_look {
            next_look = Instant::now() + IDLE_TURN;
            if certificates.changed() {
                tracing::info!("certificate files changed: reloading the configuration");
                c.reloads
                    .reload("certificate files changed", &mut c.threads, None);
            }
        }
        certificates.follow(c.reloads.newest());
        restart_dead_workers(c);
        c.reloads.poll(&mut c.threads);
        if c.reloads.running().number != running {
            // A new running configuration: its files, its watch, its drain timeout.
            running = c.reloads.running().number;
            let snapshot = c.reloads.running().snapshot.clone();
            c.signals.set_drain_timeout(snapshot.server.drain_timeout);
            let was = watch.is_some();
            if was != snapshot.reload.watch {
                watch = start_watch(c.config_path, &snapshot, c.signals.waker());
            }
        }
    }
}

/// The file watch, when `[reload] watch` asks for it (a failure to start it is
/// logged: SIGHUP and the admin call still reload).
fn start_watch(path: &Path, snapshot: &Arc<Snapshot>, wake: Sender<()>) -> Option<ConfigWatch> {
    if !snapshot.reload.watch {
        return None;
    }
    match ConfigWatch::start(path, snapshot.reload.watch_debounce, wake) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("{e}; reload with SIGHUP or POST /config/reload instead");
            None
        }
    }
}

/// Restarts each worker whose thread ended, on the running configuration (a
/// canary it was part of is rolled back first).
fn restart_dead_workers(c: &mut Control<'_>) {
    for (id, why) in c.threads.workers.reap() {
        c.threads.board.forget_worker(id);
        c.reloads.worker_died(id, &why, &mut c.threads);
        let running = c.reloads.running();
        let configuration = (running.number, running.snapshot.clone());
        let shared = Shared {
            published: c.threads.published,
            compose: c.compose,
            board: c.threads.board,
            access_log: c.access_log,
            spans: c.spans,
            metrics: c.metrics,
        };
        match c.threads.workers.restart(id, configuration, &shared) {
            Ok(()) => tracing::info!("worker {id} restarted on version {}", running.number),
            Err(e) => tracing::error!("worker {id} could not be restarted: {e}"),
        }
    }
}
