//! The record of configuration attempts, and what `GET /config` shows: the running
//! version (hash, time, source, trigger), the canary in progress, the version each
//! worker serves, and the last [`KEPT`] attempts (newest first) with their outcome
//! and reason.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::admin::ConfigView;
use crate::observe::utc_timestamp;

/// Attempts kept for `/config`.
pub const KEPT: usize = 16;

/// How an attempt ended (or where it is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The configuration the process started with.
    Started,
    /// Refused before any worker took it (invalid, over a limit, an address in use).
    Refused,
    /// On the canary workers, window running.
    Canary,
    /// Running on every worker (or on its way to them).
    Promoted,
    /// The canary was rolled back; the running configuration serves on.
    RolledBack,
    /// A newer attempt replaced it during its canary.
    Superseded,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Started => "started",
            Outcome::Refused => "refused",
            Outcome::Canary => "canary",
            Outcome::Promoted => "promoted",
            Outcome::RolledBack => "rolled_back",
            Outcome::Superseded => "superseded",
        }
    }
}

/// One attempt to change the configuration.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// Numbered from 1 for the life of the process.
    pub id: u64,
    /// The version the configuration got (none when refused).
    pub version: Option<u64>,
    pub hash: Option<String>,
    /// What asked for it: `start`, `SIGHUP`, `file change`, `certificate files
    /// changed`, `POST /config/reload`.
    pub trigger: String,
    pub at: SystemTime,
    pub outcome: Outcome,
    /// Why it ended as it did (the verdict, the errors).
    pub reason: String,
    /// From the trigger to every worker serving it, once they all do.
    pub applied: Option<Duration>,
}

impl Attempt {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "version": self.version,
            "hash": self.hash,
            "trigger": self.trigger,
            "at": utc_timestamp(self.at),
            "outcome": self.outcome.name(),
            "reason": self.reason,
            "applied_ms": self.applied.map(|d| d.as_millis() as u64),
        })
    }
}

/// The last attempts, and the view `/config` serves.
pub struct History {
    attempts: VecDeque<Attempt>,
    next_id: u64,
    view: ConfigView,
}

impl History {
    pub fn new(view: ConfigView) -> Self {
        History {
            attempts: VecDeque::new(),
            next_id: 1,
            view,
        }
    }

    /// Records a new attempt (its `id` is set here); returns the id.
    pub fn add(&mut self, mut attempt: Attempt) -> u64 {
        attempt.id = self.next_id;
        self.next_id += 1;
        if self.attempts.len() == KEPT {
            self.attempts.pop_front();
        }
        self.attempts.push_back(attempt);
        self.next_id - 1
    }

    /// Attempt `id`, while it is kept.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Attempt> {
        self.attempts.iter_mut().find(|a| a.id == id)
    }

    /// Sets how attempt `id` ended, and why.
    pub fn end(&mut self, id: u64, outcome: Outcome, reason: &str) {
        if let Some(a) = self.get_mut(id) {
            a.outcome = outcome;
            a.reason = reason.to_string();
        }
    }

    /// Rewrites `/config` with `running`, `canary` and `workers` as given (their
    /// JSON) and the attempts, newest first.
    pub fn publish(&self, running: Value, canary: Value, workers: Value) {
        let attempts: Vec<Value> = self.attempts.iter().rev().map(Attempt::to_json).collect();
        let text = json!({
            "running": running,
            "canary": canary,
            "workers": workers,
            "attempts": attempts,
        })
        .to_string();
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }
}
