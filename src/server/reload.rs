//! Reloading the whole configuration on the control thread: read and validate it
//! off the workers, try it on the canary workers, then promote it to every worker
//! or roll it back — by itself, or by hand (docs/control-plane.md).
//!
//! 1. [`Reloads::reload`]: the file is read and compiled exactly as `portico check`
//!    does (every problem as `file:line:col`, the `[config_limits]` first); a new
//!    listen address is checked like at start-up (no other process may listen
//!    there). A refusal changes nothing: it is logged, recorded in `/config` and
//!    counted (`config_reloads_refused`). Otherwise the configuration gets the next
//!    version, the side threads are made ready for it (key sets, limiter policies,
//!    health-check targets: `side_reload.rs`), and it is posted to the canary
//!    workers' mailboxes — or, with `[reload] canary = false`, to every worker.
//! 2. [`Reloads::poll`], on every turn of the control loop: once every canary
//!    worker has installed it the window opens (counters sampled); a panic on a
//!    canary worker, a worker that stops ticking or fails to install rolls it back
//!    at once; when the window ends (`canary_ms`, or `canary_requests` served) the
//!    verdict (`canary.rs`) promotes it or rolls it back.
//! 3. Promotion posts it to the other workers and makes it the running
//!    configuration; a rollback posts the running one back to the canary workers.
//!    Connections keep the generation they pinned either way.
//!
//! The running configuration's `[reload]` decides how its successor is tried: a
//! new file cannot turn off the canary that judges it.
//!
//! A newer trigger during a canary supersedes it: the newest file is what gets
//! tried. A worker that dies is restarted on the running configuration; if it was
//! a canary worker, the canary is rolled back first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;
use serde_json::{json, Value};

use crate::admin::{ControlReply, ControlRequest};
use crate::config::{self, ConfigHash, Snapshot};
use crate::observe::{utc_timestamp, Counters, PublishedCounters};
use crate::upstream::EndpointBoard;

use super::canary::{self, Sample};
use super::listeners::listen_plan;
use super::reload_history::{Attempt, History, Outcome};
use super::reuseport::check_nobody_listens;
use super::side_reload::adopt_key_sets;
use super::side_threads::{Running, SideThreads};
use super::worker_set::WorkerSet;

/// How long workers get to install a configuration posted to them (one tick is
/// 50 ms; building a generation is quick).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A canary worker whose tick count does not move this long is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(2);

/// What a reload acts on.
pub struct Threads<'a> {
    pub workers: &'a mut WorkerSet,
    pub side: &'a mut SideThreads,
    pub board: &'a Arc<EndpointBoard>,
    /// Each worker's published counters (the canary's signals).
    pub published: &'a [Arc<PublishedCounters>],
}

/// One configuration with its version.
#[derive(Clone)]
pub struct Version {
    pub number: u64,
    pub snapshot: Arc<Snapshot>,
    loaded: SystemTime,
    trigger: String,
}

/// A canary in progress.
struct Canary {
    version: Version,
    attempt: u64,
    workers: Vec<usize>,
    /// When the trigger was handled (the reload's clock starts then).
    triggered: Instant,
    posted: Instant,
    window: Option<Window>,
    /// Calls that wait for the verdict.
    waiters: Vec<Sender<ControlReply>>,
}

/// The canary's window, once every canary worker installed the configuration.
struct Window {
    started: Instant,
    before: Vec<Sample>,
    /// Per canary worker: its tick count, and when it last moved.
    ticks: Vec<(u64, Instant)>,
}

/// A configuration on its way to workers: a promoted one to every worker, or the
/// running one back to the canary workers after a rollback. Calls that wait are
/// answered when every worker serves it.
struct Rollout {
    version: u64,
    attempt: u64,
    /// Promoted (the attempt's `applied_ms` is set), or rolled back.
    promoted: bool,
    triggered: Instant,
    posted: Instant,
    waiters: Vec<Sender<ControlReply>>,
    /// The answer for them: status and body.
    answer: (u16, Value),
    /// For a promotion: the configuration it replaced, put back if a worker
    /// cannot install the new one.
    previous: Option<Version>,
}

/// A configuration that passed the checks, on its way to the workers.
struct Trial {
    version: Version,
    attempt: u64,
    triggered: Instant,
    caller: Option<ControlRequest>,
}

impl Trial {
    /// The call that asked for it: answered `now` unless it waits for the verdict
    /// (then returned, to be answered then).
    fn waiters_or_answer(&self, now: Value) -> Vec<Sender<ControlReply>> {
        match &self.caller {
            Some(c) if c.wait => vec![c.reply.clone()],
            Some(c) => {
                answer(&c.reply, 200, now);
                Vec::new()
            }
            None => Vec::new(),
        }
    }
}

/// The control thread's reload state.
pub struct Reloads {
    path: PathBuf,
    /// Started with `--takeover`: new addresses are shared, not checked.
    takeover: bool,
    running: Version,
    canary: Option<Canary>,
    rollout: Option<Rollout>,
    /// The hash of the last file read (refused or not): a file event that leaves
    /// the text as it was does nothing.
    last_read: ConfigHash,
    history: History,
    next_version: u64,
    counters: Counters,
    published: Arc<PublishedCounters>,
    shared: Running,
}

impl Reloads {
    /// The state at start-up: `snapshot`, read from `path`, runs as version 1.
    pub fn new(
        path: &Path,
        takeover: bool,
        snapshot: Arc<Snapshot>,
        history: History,
        (published, shared): (Arc<PublishedCounters>, Running),
    ) -> Self {
        let running = Version {
            number: 1,
            snapshot: snapshot.clone(),
            loaded: SystemTime::now(),
            trigger: "start".to_string(),
        };
        let mut reloads = Reloads {
            path: path.to_path_buf(),
            takeover,
            running,
            canary: None,
            rollout: None,
            last_read: snapshot.hash,
            history,
            next_version: 2,
            counters: Counters::resume(&published),
            published,
            shared,
        };
        reloads.history.add(Attempt {
            id: 0,
            version: Some(1),
            hash: Some(snapshot.hash.hex()),
            trigger: "start".to_string(),
            at: SystemTime::now(),
            outcome: Outcome::Started,
            reason: String::new(),
            applied: None,
        });
        reloads
    }

    /// The running configuration and its version.
    pub fn running(&self) -> &Version {
        &self.running
    }

    /// The newest configuration in use: the canary's, else the running one.
    pub fn newest(&self) -> &Snapshot {
        &self
            .canary
            .as_ref()
            .map_or(&self.running, |c| &c.version)
            .snapshot
    }

    /// True while something waits for workers (a canary, a rollout): the control
    /// loop then looks often.
    pub fn busy(&self) -> bool {
        self.canary.is_some() || self.rollout.is_some()
    }

    /// Reads the file and tries it; `caller`, when a call asked for it, gets the
    /// answer (at once, or with `wait` when decided).
    pub fn reload(&mut self, trigger: &str, t: &mut Threads<'_>, caller: Option<ControlRequest>) {
        let triggered = Instant::now();
        Counters::bump(&self.counters.config_reloads);
        let snapshot = match self.check(t) {
            Ok(s) => s,
            Err((hash, errors)) => return self.refuse(trigger, hash, &errors, caller, t),
        };
        let number = self.next_version;
        self.next_version += 1;
        let version = Version {
            number,
            snapshot: snapshot.clone(),
            loaded: SystemTime::now(),
            trigger: trigger.to_string(),
        };
        let canary = self.running.snapshot.reload.canary;
        let attempt = self.history.add(Attempt {
            id: 0,
            version: Some(number),
            hash: Some(snapshot.hash.hex()),
            trigger: trigger.to_string(),
            at: SystemTime::now(),
            outcome: if canary {
                Outcome::Canary
            } else {
                Outcome::Promoted
            },
            reason: String::new(),
            applied: None,
        });
        if let Some(old) = self.canary.take() {
            let why = format!("version {number} replaced it during its window");
            self.history.end(old.attempt, Outcome::Superseded, &why);
            answer_all(
                old.waiters,
                409,
                json!({"outcome": "superseded", "reason": why}),
            );
        }
        let trial = Trial {
            version,
            attempt,
            triggered,
            caller,
        };
        match canary {
            true => self.start_canary(trial, t),
            false => {
                tracing::info!(
                    "reload ({trigger}): version {number} ({}) goes to every worker at once ([reload] canary = false)",
                    snapshot.hash.short()
                );
                let waiters =
                    trial.waiters_or_answer(json!({"version": number, "outcome": "promoted"}));
                let summary = "[reload] canary = false";
                self.promote_now(
                    trial.version,
                    trial.attempt,
                    trial.triggered,
                    waiters,
                    summary,
                    t,
                );
            }
        }
        self.publish(t);
    }

    /// Reads the file and checks it as `portico check` does, then the new listen
    /// addresses; carries the key sets of unchanged providers over and makes the
    /// side threads ready for it. On a refusal: the hash of the text read (if it
    /// could be) and the problems.
    fn check(
        &mut self,
        t: &mut Threads<'_>,
    ) -> Result<Arc<Snapshot>, (Option<ConfigHash>, Vec<String>)> {
        let text = config::read(&self.path);
        let read_hash = text.as_deref().ok().map(ConfigHash::of);
        if let Some(h) = read_hash {
            self.last_read = h;
        }
        let file = self.path.display().to_string();
        let mut next = text
            .and_then(|text| compile_guarded(&file, &text))
            .map_err(|errors| {
                (
                    read_hash,
                    errors.0.iter().map(ToString::to_string).collect(),
                )
            })?;
        let hash = Some(next.hash);
        self.check_new_addresses(&next)
            .map_err(|e| (hash, vec![e]))?;
        warn_restart_only(&self.running.snapshot, &next);
        let mut in_use = vec![self.running.snapshot.clone()];
        in_use.extend(self.canary.as_ref().map(|c| c.version.snapshot.clone()));
        adopt_key_sets(&mut next, &in_use);
        let snapshot = Arc::new(next);
        let in_use = [snapshot.clone(), self.running.snapshot.clone()];
        match t.side.follow(&in_use, t.board, t.workers.len()) {
            Ok(Some(links)) => t.workers.set_links(links),
            Ok(None) => {}
            Err(e) => return Err((hash, vec![e])),
        }
        Ok(snapshot)
    }

    /// Posts the trial's version to the canary workers; the window opens once they
    /// installed it ([`poll`](Self::poll)).
    fn start_canary(&mut self, trial: Trial, t: &mut Threads<'_>) {
        let settings = &self.running.snapshot.reload;
        let count = settings
            .canary_workers
            .min(t.workers.len().saturating_sub(1))
            .max(1);
        let workers: Vec<usize> = (0..count).collect();
        let number = trial.version.number;
        for &id in &workers {
            t.workers.post(id, number, &trial.version.snapshot);
        }
        let window_ms = settings.canary_window.as_millis() as u64;
        tracing::info!(
            "reload ({}): version {number} ({}) on worker(s) {workers:?} as a canary for {window_ms} ms; version {} serves on the others",
            trial.version.trigger,
            trial.version.snapshot.hash.short(),
            self.running.number
        );
        let waiters = trial.waiters_or_answer(json!({
            "version": number,
            "outcome": "canary",
            "canary_workers": workers,
            "canary_ms": window_ms,
        }));
        self.canary = Some(Canary {
            version: trial.version,
            attempt: trial.attempt,
            workers,
            triggered: trial.triggered,
            posted: Instant::now(),
            window: None,
            waiters,
        });
    }

    /// The config file changed (the file watch): reload unless its text is what
    /// was read last (an editor's rename, a touch, a file refused already).
    pub fn file_changed(&mut self, t: &mut Threads<'_>) {
        let Ok(text) = config::read(&self.path) else {
            tracing::warn!(
                "config file {} changed but cannot be read now; version {} serves on",
                self.path.display(),
                self.running.number
            );
            return;
        };
        if ConfigHash::of(&text) == self.last_read {
            tracing::debug!("config file event, content unchanged");
            return;
        }
        self.reload("file change", t, None);
    }

    /// `POST /config/promote` (`promote`) or `/config/rollback`.
    pub fn decide_by_hand(&mut self, promote: bool, t: &mut Threads<'_>, caller: ControlRequest) {
        let Some(number) = self.canary.as_ref().map(|c| c.version.number) else {
            let reason = "no canary in progress";
            answer(&caller.reply, 409, json!({"error": reason}));
            return;
        };
        let how = if promote { "promoted" } else { "rolled back" };
        let reason = format!(
            "{how} by hand (POST /config/{})",
            if promote { "promote" } else { "rollback" }
        );
        match promote {
            true => self.promote(&reason, t),
            false => self.rollback(&reason, t),
        }
        self.publish(t);
        answer(
            &caller.reply,
            200,
            json!({"version": number, "outcome": if promote { "promoted" } else { "rolled_back" }}),
        );
    }

    /// Worker `id` died: a canary it was part of is rolled back (the caller then
    /// restarts it on the running configuration).
    pub fn worker_died(&mut self, id: usize, why: &str, t: &mut Threads<'_>) {
        Counters::bump(&self.counters.worker_restarts);
        if self
            .canary
            .as_ref()
            .is_some_and(|c| c.workers.contains(&id))
        {
            self.rollback(&format!("canary worker {id} died ({why})"), t);
        }
    }

    /// One turn of the control loop: installs confirmed, the canary's window
    /// opened, watched and judged.
    pub fn poll(&mut self, t: &mut Threads<'_>) {
        self.poll_rollout(t);
        if let Some(failure) = self.canary_failure(t) {
            self.rollback(&failure, t);
        } else if let Some(verdict) = self.canary_verdict(t) {
            match verdict {
                Ok(summary) => self.promote(&summary, t),
                Err(reason) => self.rollback(&reason, t),
            }
        }
        self.publish(t);
    }

    /// The process is stopping: calls still waiting get an answer.
    pub fn stop(&mut self) {
        let body = json!({"error": "the gateway is stopping"});
        if let Some(c) = self.canary.take() {
            answer_all(c.waiters, 503, body.clone());
        }
        if let Some(r) = self.rollout.take() {
            answer_all(r.waiters, 503, body);
        }
    }

    fn refuse(
        &mut self,
        trigger: &str,
        hash: Option<ConfigHash>,
        errors: &[String],
        caller: Option<ControlRequest>,
        t: &Threads<'_>,
    ) {
        Counters::bump(&self.counters.config_reloads_refused);
        for e in errors {
            tracing::error!(
                "reload refused ({trigger}): {e}; version {} serves on",
                self.running.number
            );
        }
        self.history.add(Attempt {
            id: 0,
            version: None,
            hash: hash.map(|h| h.hex()),
            trigger: trigger.to_string(),
            at: SystemTime::now(),
            outcome: Outcome::Refused,
            reason: errors.join("\n"),
            applied: None,
        });
        // `/config` shows the refusal before the caller hears of it.
        self.publish(t);
        if let Some(c) = caller {
            answer(
                &c.reply,
                422,
                json!({"outcome": "refused", "errors": errors}),
            );
        }
    }

    /// New listen addresses must be free of other processes, as at start-up.
    fn check_new_addresses(&self, next: &Snapshot) -> Result<(), String> {
        if self.takeover {
            return Ok(());
        }
        let mut ours: Vec<_> = listen_plan(&self.running.snapshot);
        if let Some(c) = &self.canary {
            ours.extend(listen_plan(&c.version.snapshot));
        }
        for (addr, _) in listen_plan(next) {
            if !ours.iter().any(|(a, _)| *a == addr) {
                check_nobody_listens(addr, "listen on")?;
            }
        }
        Ok(())
    }

    /// The canary's verdict, once its window is over.
    fn canary_verdict(&mut self, t: &Threads<'_>) -> Option<Result<String, String>> {
        let canary = self.canary.as_mut()?;
        let window = canary.window.as_ref()?;
        let (mine, others) = deltas(&canary.workers, &window.before, t.published);
        let settings = &self.running.snapshot.reload;
        let goal = settings.canary_requests;
        let over = window.started.elapsed() >= settings.canary_window
            || (goal > 0 && mine.requests >= goal);
        over.then(|| canary::verdict(settings, &mine, &others))
    }

    /// What must roll the canary back now, if anything: a panic, an install that
    /// failed or did not happen, a stuck worker. Opens the window when every
    /// canary worker has installed the configuration.
    fn canary_failure(&mut self, t: &Threads<'_>) -> Option<String> {
        let canary = self.canary.as_mut()?;
        let number = canary.version.number;
        for &id in &canary.workers {
            let status = t.workers.status(id);
            if let Some(why) = status.failed(number) {
                return Some(format!("installing it on worker {id} panicked: {why}"));
            }
            if status.installed() == number {
                if let Some(e) = status.install_error() {
                    return Some(e);
                }
            }
        }
        let Some(window) = canary.window.as_mut() else {
            let installed = canary
                .workers
                .iter()
                .all(|&id| t.workers.status(id).installed() == number);
            if installed {
                canary.window = Some(Window {
                    started: Instant::now(),
                    before: t.published.iter().map(|p| Sample::read(p)).collect(),
                    ticks: canary
                        .workers
                        .iter()
                        .map(|&id| (t.workers.status(id).ticks(), Instant::now()))
                        .collect(),
                });
            } else if canary.posted.elapsed() > INSTALL_TIMEOUT {
                return Some(format!(
                    "the canary worker(s) did not install it within {} s",
                    INSTALL_TIMEOUT.as_secs()
                ));
            }
            return None;
        };
        let (mine, others) = deltas(&canary.workers, &window.before, t.published);
        if let Some(reason) = canary::panicked(&mine, &others) {
            return Some(reason);
        }
        for (&id, seen) in canary.workers.iter().zip(&mut window.ticks) {
            let ticks = t.workers.status(id).ticks();
            if ticks != seen.0 {
                *seen = (ticks, Instant::now());
            } else if seen.1.elapsed() > STUCK_AFTER {
                return Some(format!(
                    "canary worker {id} stopped ticking for {} s",
                    STUCK_AFTER.as_secs()
                ));
            }
        }
        None
    }

    /// Promotes the canary: it becomes the running configuration, and goes to the
    /// other workers.
    fn promote(&mut self, summary: &str, t: &mut Threads<'_>) {
        let Some(c) = self.canary.take() else { return };
        let (version, attempt, triggered, waiters) = (c.version, c.attempt, c.triggered, c.waiters);
        self.promote_now(version, attempt, triggered, waiters, summary, t);
    }

    fn promote_now(
        &mut self,
        version: Version,
        attempt: u64,
        triggered: Instant,
        waiters: Vec<Sender<ControlReply>>,
        summary: &str,
        t: &mut Threads<'_>,
    ) {
        let number = version.number;
        for id in 0..t.workers.len() {
            if t.workers.status(id).installed() != number {
                t.workers.post(id, number, &version.snapshot);
            }
        }
        let previous = std::mem::replace(&mut self.running, version);
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = self.running.snapshot.clone();
        Counters::bump(&self.counters.config_reloads_promoted);
        self.history.end(attempt, Outcome::Promoted, summary);
        tracing::info!(
            "version {number} promoted ({summary}); replacing version {} on every worker",
            previous.number
        );
        if let Err(e) = t.side.follow(
            std::slice::from_ref(&self.running.snapshot),
            t.board,
            t.workers.len(),
        ) {
            tracing::error!("after promoting version {number}: {e}");
        }
        self.roll_out(Rollout {
            version: number,
            attempt,
            promoted: true,
            triggered,
            posted: Instant::now(),
            waiters,
            answer: (200, json!({"version": number, "outcome": "promoted"})),
            previous: Some(previous),
        });
    }

    /// Follows `rollout` until every worker serves its version; one in progress
    /// is answered as it stands (the newer one covers its workers).
    fn roll_out(&mut self, rollout: Rollout) {
        if let Some(old) = self.rollout.take() {
            answer_all(old.waiters, old.answer.0, old.answer.1);
        }
        self.rollout = Some(rollout);
    }

    /// Rolls the canary back: its workers get the running configuration again.
    fn rollback(&mut self, reason: &str, t: &mut Threads<'_>) {
        let Some(c) = self.canary.take() else { return };
        for &id in &c.workers {
            t.workers
                .post(id, self.running.number, &self.running.snapshot);
        }
        Counters::bump(&self.counters.config_reloads_rolled_back);
        self.history.end(c.attempt, Outcome::RolledBack, reason);
        tracing::warn!(
            "version {} rolled back: {reason}; version {} serves on",
            c.version.number,
            self.running.number
        );
        if let Err(e) = t.side.follow(
            std::slice::from_ref(&self.running.snapshot),
            t.board,
            t.workers.len(),
        ) {
            tracing::error!("after rolling back version {}: {e}", c.version.number);
        }
        let answer =
            json!({"version": c.version.number, "outcome": "rolled_back", "reason": reason});
        self.roll_out(Rollout {
            version: self.running.number,
            attempt: c.attempt,
            promoted: false,
            triggered: c.triggered,
            posted: Instant::now(),
            waiters: c.waiters,
            answer: (422, answer),
            previous: None,
        });
    }

    /// A configuration on its way reached every worker (or took too long).
    fn poll_rollout(&mut self, t: &mut Threads<'_>) {
        let Some(r) = &self.rollout else { return };
        let failed = (0..t.workers.len())
            .find_map(|id| t.workers.status(id).failed(r.version).map(|why| (id, why)));
        if let Some((id, why)) = failed {
            return self.revert(id, &why, t);
        }
        let lagging: Vec<usize> = (0..t.workers.len())
            .filter(|&id| t.workers.status(id).installed() != r.version)
            .collect();
        if lagging.is_empty() {
            let applied = r.triggered.elapsed();
            match r.promoted {
                true => {
                    if let Some(a) = self.history.get_mut(r.attempt) {
                        a.applied = Some(applied);
                    }
                    tracing::info!(
                        "version {} serves on every worker ({} ms after the trigger)",
                        r.version,
                        applied.as_millis()
                    );
                }
                false => tracing::info!("version {} serves on every worker again", r.version),
            }
        } else if r.posted.elapsed() > INSTALL_TIMEOUT {
            tracing::warn!(
                "version {} is not installed on worker(s) {lagging:?} after {} s",
                r.version,
                INSTALL_TIMEOUT.as_secs()
            );
        } else {
            return;
        }
        // `/config` shows every worker on the version before the callers hear of it.
        self.publish(t);
        if let Some(r) = self.rollout.take() {
            let (status, mut body) = r.answer;
            if r.promoted {
                let applied = self.history.get_mut(r.attempt).and_then(|a| a.applied);
                body["applied_ms"] = json!(applied.map(|d| d.as_millis() as u64));
            }
            answer_all(r.waiters, status, body);
        }
    }

    /// A promoted configuration could not be installed on worker `id` (building
    /// its generation panicked; every worker would): the configuration it
    /// replaced goes back to every worker.
    fn revert(&mut self, id: usize, why: &str, t: &mut Threads<'_>) {
        let Some(r) = self.rollout.take() else { return };
        let Some(previous) = r.previous else { return };
        let failed = std::mem::replace(&mut self.running, previous);
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = self.running.snapshot.clone();
        for w in 0..t.workers.len() {
            t.workers
                .post(w, self.running.number, &self.running.snapshot);
        }
        let reason = format!(
            "installing it on worker {id} panicked: {why}; version {} is back",
            self.running.number
        );
        Counters::bump(&self.counters.config_reloads_rolled_back);
        self.history.end(r.attempt, Outcome::RolledBack, &reason);
        tracing::error!("version {} rolled back: {reason}", failed.number);
        if let Err(e) = t.side.follow(
            std::slice::from_ref(&self.running.snapshot),
            t.board,
            t.workers.len(),
        ) {
            tracing::error!("after rolling back version {}: {e}", failed.number);
        }
        self.rollout = Some(Rollout {
            version: self.running.number,
            attempt: r.attempt,
            promoted: false,
            triggered: r.triggered,
            posted: Instant::now(),
            waiters: r.waiters,
            answer: (
                422,
                json!({"version": failed.number, "outcome": "rolled_back", "reason": reason}),
            ),
            previous: None,
        });
    }

    /// Rewrites `/config` and publishes the reload counters.
    fn publish(&self, t: &Threads<'_>) {
        self.counters.publish(&self.published);
        let version_json = |v: &Version| {
            json!({
                "version": v.number,
                "hash": v.snapshot.hash.hex(),
                "source": v.snapshot.source,
                "loaded_at": utc_timestamp(v.loaded),
                "trigger": v.trigger,
            })
        };
        let canary = match &self.canary {
            None => Value::Null,
            Some(c) => {
                let mut v = version_json(&c.version);
                v["workers"] = json!(c.workers);
                v["window_ms"] =
                    json!(self.running.snapshot.reload.canary_window.as_millis() as u64);
                v["window_elapsed_ms"] = json!(c.window.as_ref().map(|w| w
                    .started
                    .elapsed()
                    .as_millis()
                    as u64));
                v
            }
        };
        let workers: Vec<Value> = t
            .workers
            .statuses()
            .iter()
            .enumerate()
            .map(|(id, s)| json!({"worker": id, "version": s.installed()}))
            .collect();
        self.history
            .publish(version_json(&self.running), canary, Value::Array(workers));
    }
}

/// The canary workers' counters since `before`, summed, and the other workers'.
fn deltas(
    canary: &[usize],
    before: &[Sample],
    published: &[Arc<PublishedCounters>],
) -> (Sample, Sample) {
    let mut mine = Sample::default();
    let mut others = Sample::default();
    for (id, (p, b)) in published.iter().zip(before).enumerate() {
        let d = Sample::read(p).since(b);
        match canary.contains(&id) {
            true => mine = mine.plus(&d),
            false => others = others.plus(&d),
        }
    }
    (mine, others)
}

/// Compiles `text` as `config::parse` does; a panic while compiling (a bug the file
/// happens to reach) refuses the file instead of ending the process.
fn compile_guarded(file: &str, text: &str) -> Result<Snapshot, config::ConfigErrors> {
    std::panic::catch_unwind(|| config::parse(file, text)).unwrap_or_else(|payload| {
        Err(config::ConfigErrors(vec![config::ConfigError {
            file: file.to_string(),
            line: 1,
            col: 1,
            reason: format!(
                "compiling this file panicked ({}): refused; please report it",
                super::panic_guard::panic_message(payload.as_ref())
            ),
        }]))
    })
}

/// Logs the changes a reload cannot make (they need a restart).
fn warn_restart_only(running: &Snapshot, next: &Snapshot) {
    let mut changed = Vec::new();
    if running.server.workers != next.server.workers
        || running.server.pin_workers != next.server.pin_workers
    {
        changed.push("[server] workers and pin_workers");
    }
    // The buffer sizes apply to new connections; the rest builds each worker's runtime.
    let (mut now, mut then) = (running.server.runtime.clone(), next.server.runtime.clone());
    (now.read_buffer_bytes, now.write_buffer_bytes) = (0, 0);
    (then.read_buffer_bytes, then.write_buffer_bytes) = (0, 0);
    if now != then {
        changed.push("[server.runtime] (except the buffer sizes)");
    }
    if running.admin != next.admin || running.admin_token_env != next.admin_token_env {
        changed.push("[admin]");
    }
    if running.log.level != next.log.level
        || running.log.access_log != next.log.access_log
        || running.log.access_log_format != next.log.access_log_format
    {
        changed.push("[log]");
    }
    if span_export(running) != span_export(next) {
        changed.push("[tracing] span export (otlp_endpoint, service_name, export_*)");
    }
    if !changed.is_empty() {
        tracing::warn!(
            "reload: {} changed; that takes effect at the next start (the rest applies now)",
            changed.join(", ")
        );
    }
}

/// The settings of the span exporter, which starts with the process (a reload
/// applies `sample_ratio` and turning trace context on or off, not these).
fn span_export(s: &Snapshot) -> Option<impl PartialEq + '_> {
    let t = s.tracing.as_ref()?;
    let endpoint = t.otlp.as_ref()?;
    Some((
        endpoint,
        t.service_name.as_str(),
        t.queue_spans,
        t.batch_spans,
        t.export_interval,
        t.export_timeout,
    ))
}

fn answer(to: &Sender<ControlReply>, status: u16, body: Value) {
    let _ = to.try_send(ControlReply {
        status,
        body: body.to_string(),
    });
}

fn answer_all(to: Vec<Sender<ControlReply>>, status: u16, body: Value) {
    for r in to {
        answer(&r, status, body.clone());
    }
}
