//! Composition counters, per composed route and per part: calls, how each call was
//! answered (complete, partial, failed, rejected for a missing template value), and
//! each part's successes, fallbacks, omissions and failures by kind.
//!
//! Like `observe::Counters`, they are plain `Cell`s bumped on the worker (a worker
//! keeps one set per generation, laid out from that snapshot's routes) and copied
//! on the worker tick into a [`PublishedCompose`] of single-writer atomics, which
//! the admin listener sums over workers. A reload to a new snapshot starts them
//! from zero.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{Action, Snapshot};

use super::failure::FailureKind;

/// What happened to one composed call.
#[derive(Debug, Clone, Copy)]
pub enum RouteEvent {
    Call,
    /// 200 with every part's answer.
    Complete,
    /// 200 with some optional parts replaced by their fallback or left out.
    Partial,
    /// A failed part failed the call (502, 504, or the client's own error).
    Failed,
    /// 400 before any part was sent: a template value was missing; or the merged
    /// answer was over `max_response_bytes` (502).
    Rejected,
}

const ROUTE_FIELDS: [&str; 5] = ["calls", "complete", "partial", "failed", "rejected"];

/// What happened to one part.
#[derive(Debug, Clone, Copy)]
pub enum PartEvent {
    Call,
    Ok,
    /// Failed, and its `fallback` took its place.
    Fallback,
    /// Failed, and it was left out of the answer.
    Omitted,
    Failed(FailureKind),
}

const PART_FIELDS: [&str; 4] = ["calls", "ok", "fallback", "omitted"];
const PART_WIDTH: usize = PART_FIELDS.len() + FailureKind::ALL.len();

/// Where each composed route's counters are, by its `ComposePlan::slot`.
struct Layout {
    routes: Vec<RouteLayout>,
    len: usize,
}

struct RouteLayout {
    name: String,
    offset: usize,
    parts: Vec<String>,
}

impl Layout {
    fn of(snapshot: &Snapshot) -> Layout {
        let mut routes = Vec::new();
        let mut len = 0;
        for route in &snapshot.routes {
            if let Action::Compose(plan) = &route.action {
                let parts: Vec<String> = plan.parts.iter().map(|p| p.name.clone()).collect();
                routes.push(RouteLayout {
                    name: route.name.clone(),
                    offset: len,
                    parts,
                });
                len += ROUTE_FIELDS.len() + plan.parts.len() * PART_WIDTH;
            }
        }
        Layout { routes, len }
    }

    fn route(&self, slot: usize, event: RouteEvent) -> Option<usize> {
        let field = match event {
            RouteEvent::Call => 0,
            RouteEvent::Complete => 1,
            RouteEvent::Partial => 2,
            RouteEvent::Failed => 3,
            RouteEvent::Rejected => 4,
        };
        self.routes.get(slot).map(|r| r.offset + field)
    }

    fn part(&self, slot: usize, part: usize, event: PartEvent) -> Option<usize> {
        let field = match event {
            PartEvent::Call => 0,
            PartEvent::Ok => 1,
            PartEvent::Fallback => 2,
            PartEvent::Omitted => 3,
            PartEvent::Failed(kind) => {
                PART_FIELDS.len() + FailureKind::ALL.iter().position(|k| *k == kind)?
            }
        };
        let route = self.routes.get(slot).filter(|r| part < r.parts.len())?;
        Some(route.offset + ROUTE_FIELDS.len() + part * PART_WIDTH + field)
    }
}

/// One worker's composition counters for one snapshot.
pub struct ComposeCounters {
    layout: Layout,
    cells: Vec<Cell<u64>>,
}

impl ComposeCounters {
    /// Zeroed counters for every composed route of `snapshot`.
    pub fn new(snapshot: &Snapshot) -> Self {
        let layout = Layout::of(snapshot);
        let cells = (0..layout.len).map(|_| Cell::new(0)).collect();
        ComposeCounters { layout, cells }
    }

    /// Counts `event` for the route in counter slot `slot`.
    pub fn route(&self, slot: usize, event: RouteEvent) {
        self.bump(self.layout.route(slot, event));
    }

    /// Counts `event` for part `part` (declared position) of the route in `slot`.
    pub fn part(&self, slot: usize, part: usize, event: PartEvent) {
        self.bump(self.layout.part(slot, part, event));
    }

    fn bump(&self, at: Option<usize>) {
        if let Some(c) = at.and_then(|i| self.cells.get(i)) {
            c.set(c.get() + 1);
        }
    }

    /// Copies every counter into `to` (made from the same snapshot; the worker is
    /// its only writer).
    pub fn publish(&self, to: &PublishedCompose) {
        for (cell, slot) in self.cells.iter().zip(&to.values) {
            slot.store(cell.get(), Ordering::Relaxed);
        }
    }
}

/// The last published copy of one worker's composition counters.
pub struct PublishedCompose {
    layout: Layout,
    values: Vec<AtomicU64>,
}

impl PublishedCompose {
    /// Zeroed published counters laid out for `snapshot`.
    pub fn new(snapshot: &Snapshot) -> Self {
        let layout = Layout::of(snapshot);
        let values = (0..layout.len).map(|_| AtomicU64::new(0)).collect();
        PublishedCompose { layout, values }
    }

    /// The counters summed over `workers`, as the JSON object of the admin `/stats`
    /// `compose` key: `{ROUTE: {calls, complete, partial, failed, rejected,
    /// parts: {PART: {calls, ok, fallback, omitted, failures: {KIND: n}}}}}`.
    pub fn render(workers: &[Arc<PublishedCompose>]) -> Value {
        let Some(first) = workers.first() else {
            return Value::Object(Map::new());
        };
        let total = |i: usize| -> u64 {
            workers
                .iter()
                .filter_map(|w| w.values.get(i))
                .map(|v| v.load(Ordering::Relaxed))
                .sum()
        };
        let mut out = Map::new();
        for route in &first.layout.routes {
            let mut r = Map::new();
            for (i, name) in ROUTE_FIELDS.iter().enumerate() {
                r.insert(name.to_string(), total(route.offset + i).into());
            }
            let mut parts = Map::new();
            for (j, part) in route.parts.iter().enumerate() {
                let base = route.offset + ROUTE_FIELDS.len() + j * PART_WIDTH;
                let mut p = Map::new();
                for (i, name) in PART_FIELDS.iter().enumerate() {
                    p.insert(name.to_string(), total(base + i).into());
                }
                let mut failures = Map::new();
                for (i, kind) in FailureKind::ALL.iter().enumerate() {
                    failures.insert(
                        kind.name().to_string(),
                        total(base + PART_FIELDS.len() + i).into(),
                    );
                }
                p.insert("failures".into(), Value::Object(failures));
                parts.insert(part.clone(), Value::Object(p));
            }
            r.insert("parts".into(), Value::Object(parts));
            out.insert(route.name.clone(), Value::Object(r));
        }
        Value::Object(out)
    }
}
