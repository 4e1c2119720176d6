//! Composition counters, per composed route and per part: calls, how each call was
//! answered (complete, partial, failed, rejected for a missing template value), and
//! each part's successes, fallbacks, omissions and failures by kind.
//!
//! Like `observe::Counters`, they are plain `Cell`s bumped on the worker (a worker
//! keeps one set per generation, laid out from that snapshot's routes) and copied
//! on the worker tick into its [`PublishedCompose`], which the admin listener sums
//! over workers by route and part name (during a reload's canary, workers serve
//! different configurations). A reload to a new snapshot starts them from zero: the
//! published copy takes the new generation's layout.

use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard};

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
#[derive(Clone, Default, PartialEq)]
struct Layout {
    routes: Vec<RouteLayout>,
    len: usize,
}

#[derive(Clone, PartialEq)]
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

    /// Copies every counter into `to` (the worker is its only writer), which takes
    /// this generation's layout if it had another.
    pub fn publish(&self, to: &PublishedCompose) {
        let mut published = to.lock();
        if published.layout != self.layout {
            published.layout = self.layout.clone();
        }
        published.values.clear();
        published.values.extend(self.cells.iter().map(Cell::get));
    }
}

/// The last published copy of one worker's composition counters, with the layout
/// of the generation they came from. Locked on the worker tick and by `/stats`,
/// never on the request path.
#[derive(Default)]
pub struct PublishedCompose {
    published: Mutex<Published>,
}

#[derive(Default)]
struct Published {
    layout: Layout,
    values: Vec<u64>,
}

impl PublishedCompose {
    /// Zeroed published counters laid out for `snapshot`.
    pub fn new(snapshot: &Snapshot) -> Self {
        let layout = Layout::of(snapshot);
        let values = vec![0; layout.len];
        PublishedCompose {
            published: Mutex::new(Published { layout, values }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters summed over `workers` by route and part name, as the JSON
    /// object of the admin `/stats` `compose` key: `{ROUTE: {calls, complete,
    /// partial, failed, rejected, parts: {PART: {calls, ok, fallback, omitted,
    /// failures: {KIND: n}}}}}`.
    pub fn render(workers: &[Arc<PublishedCompose>]) -> Value {
        let mut out = Map::new();
        for worker in workers {
            let published = worker.lock();
            let value = |i: usize| published.values.get(i).copied().unwrap_or(0);
            for route in &published.layout.routes {
                let r = entry(&mut out, &route.name);
                for (i, name) in ROUTE_FIELDS.iter().enumerate() {
                    add(r, name, value(route.offset + i));
                }
                let parts = entry(r, "parts");
                for (j, part) in route.parts.iter().enumerate() {
                    let base = route.offset + ROUTE_FIELDS.len() + j * PART_WIDTH;
                    let p = entry(parts, part);
                    for (i, name) in PART_FIELDS.iter().enumerate() {
                        add(p, name, value(base + i));
                    }
                    let failures = entry(p, "failures");
                    for (i, kind) in FailureKind::ALL.iter().enumerate() {
                        add(failures, kind.name(), value(base + PART_FIELDS.len() + i));
                    }
                }
            }
        }
        Value::Object(out)
    }
}

/// The object under `key` in `map` (made empty if absent).
fn entry<'m>(map: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let v = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// Adds `n` to the number under `key` in `map`.
fn add(map: &mut Map<String, Value>, key: &str, n: u64) {
    let total = map.get(key).and_then(Value::as_u64).unwrap_or(0) + n;
    map.insert(key.to_string(), total.into());
}
