//! One composed call, start to answer:
//!
//! 1. choose every part's endpoint and write every part's request head; a template
//!    value that is missing answers 400 here, before any part is sent;
//! 2. start all parts at once on this task (`join.rs`), each under its own timeout,
//!    all under the route's deadline;
//! 3. stop as soon as a failed part decides the call (`merge::decides`) or the
//!    deadline passes, dropping the parts still running (their connections close);
//! 4. merge in declared order (`merge.rs`) and answer: 200 with the merged JSON
//!    and `x-portico-composition: complete | partial` (a partial answer names its
//!    missing parts in `x-portico-partial`), or the error of the deciding part.
//!
//! Each part's exchange is recorded in its endpoint's and upstream's metric series,
//! and with trace context each part is a client span of the request (its span ID
//! goes upstream in the part's `traceparent`).

use std::ops::ControlFlow;
use std::pin::Pin;

use monoio::time::Instant;
use serde_json::{json, Value};

use crate::config::{ComposePlan, Endpoint, Merge, Route, Snapshot, Upstream};
use crate::downstream::{BodyError, BodySource, Downstream, Piece};
use crate::http::{BodyFraming, LocalReply};
use crate::observe::metrics::{GenerationMetrics, TryOutcome};
use crate::observe::{Counters, TraceIds, TrySpan};
use crate::upstream::{Balancer, Breaker, Exchanger, FailureSource, HashKey};

use super::counters::{ComposeCounters, PartEvent, RouteEvent};
use super::failure::{FailureKind, PartFailure};
use super::join::join_until;
use super::merge::{self, Answer};
use super::outbound::{write_head, ClientRequest};
use super::part::{self, PartCall, PartOutcome};
use super::template::Unrenderable;

/// What composition uses of its worker and generation.
pub struct Fanout<'a> {
    pub snapshot: &'a Snapshot,
    pub exchanger: Exchanger<'a>,
    pub balancer: &'a Balancer,
    /// Circuit breakers per upstream (`Snapshot::upstreams` order).
    pub breakers: &'a [Breaker],
    pub counters: &'a ComposeCounters,
    /// The worker's metric series of this generation (parts' tries are counted).
    pub metrics: &'a GenerationMetrics,
    /// Span IDs for the parts (with trace context).
    pub trace_ids: &'a TraceIds,
}

/// The end of a composed call, for the pipeline to send and record.
pub struct Composed {
    /// The answer; `None` when the client went away while its body was being
    /// forwarded to a part (nothing is sent, the connection closes).
    pub reply: Option<LocalReply<'static>>,
    /// Upstream exchanges made, all parts together.
    pub attempts: u32,
    /// Where the exchange of the part that failed the call failed, if it did.
    pub failure: Option<FailureSource>,
    /// A client span per part sent (when the request's trace is sampled).
    pub spans: Vec<TrySpan>,
}

/// The response field that says whether an answer is whole: `complete`,
/// `partial` or `failed`.
pub const COMPOSITION_FIELD: &[u8] = b"x-portico-composition";
/// The response field that names the parts missing from a partial answer, in
/// declared order, comma-separated.
pub const PARTIAL_FIELD: &[u8] = b"x-portico-partial";

/// Runs `plan` (the action of `route`) for the client request `req` on `d`.
pub async fn run<D: Downstream>(
    fanout: &Fanout<'_>,
    route: &Route,
    plan: &ComposePlan,
    req: &ClientRequest<'_>,
    d: &mut D,
) -> Composed {
    let counters = fanout.counters;
    counters.route(plan.slot, RouteEvent::Call);
    let mut calls = Vec::with_capacity(plan.parts.len());
    // Per part: its endpoint and, with trace context, its span ID.
    let mut targets: Vec<(&Endpoint, Option<[u8; 8]>)> = Vec::with_capacity(plan.parts.len());
    for (i, part) in plan.parts.iter().enumerate() {
        let (Some(upstream), Some(breaker)) = (
            fanout.snapshot.upstreams.get(part.upstream),
            fanout.breakers.get(part.upstream),
        ) else {
            return answer(internal("a part names a missing upstream", req.request_id));
        };
        let endpoint = choose(fanout, part.upstream, upstream, d);
        let span_id = req.trace.map(|_| fanout.trace_ids.span_id());
        targets.push((endpoint, span_id));
        let mut head = Vec::with_capacity(1024);
        let written = write_head(
            &mut head,
            part,
            endpoint,
            route,
            fanout.snapshot,
            req,
            span_id,
            d,
        );
        if let Err(missing) = written {
            counters.route(plan.slot, RouteEvent::Rejected);
            return answer(unrenderable(plan, i, &missing, req.request_id));
        }
        if part.forward_body {
            // Body bytes that came with the client's head go in the same write.
            if let Err(e) = d.take_buffered(&mut head) {
                counters.route(plan.slot, RouteEvent::Failed);
                return client_failed(e, req.request_id);
            }
        }
        calls.push((upstream, breaker, endpoint, head));
    }

    let start = Instant::now();
    let started = std::time::Instant::now();
    let deadline = start + plan.deadline;
    let mut client = Some(&mut *d);
    let mut slots: Vec<Option<Pin<Box<_>>>> = plan
        .parts
        .iter()
        .zip(calls)
        .enumerate()
        .map(|(i, (part, (upstream, breaker, endpoint, head)))| {
            counters.part(plan.slot, i, PartEvent::Call);
            let body = match part.forward_body.then(|| client.take()).flatten() {
                Some(d) => PartBody::Client(d),
                None => PartBody::Empty,
            };
            let (part_deadline, expiry) = match part.timeout.map(|t| start + t) {
                Some(own) if own < deadline => (own, FailureKind::Timeout),
                _ => (deadline, FailureKind::Deadline),
            };
            let call = PartCall {
                part,
                upstream,
                breaker,
                endpoint,
                head,
                deadline: part_deadline,
                expiry,
                max_bytes: plan.max_part_bytes,
                flat: plan.merge == Merge::Flat,
            };
            Some(Box::pin(part::call(
                fanout.exchanger,
                fanout.balancer,
                call,
                body,
            )))
        })
        .collect();

    let mut outcomes: Vec<Option<Result<Value, PartFailure>>> = vec![None; plan.parts.len()];
    // Per part: when its outcome arrived and the status its upstream answered.
    let mut ended: Vec<Option<(std::time::Instant, Option<u16>)>> = vec![None; plan.parts.len()];
    let mut attempts = 0;
    let arrived = |i: usize, outcome: PartOutcome| {
        attempts += outcome.attempts;
        if let Some(at) = ended.get_mut(i) {
            *at = Some((std::time::Instant::now(), outcome.status));
        }
        let decided = matches!(&outcome.result, Err(f) if merge::decides(plan, i, f));
        outcomes[i] = Some(outcome.result);
        if decided {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let joined = monoio::time::timeout_at(deadline, join_until(&mut slots, arrived)).await;
    // Parts still running are cancelled: dropping them closes their connections.
    let stopped = match joined {
        Err(_) => part::expired(FailureKind::Deadline),
        Ok(_) => PartFailure::new(FailureKind::Cancelled, "cancelled: the call had failed"),
    };
    for (slot, outcome) in slots.iter_mut().zip(outcomes.iter_mut()) {
        if slot.take().is_some() {
            *outcome = Some(Err(stopped.clone()));
        }
    }
    drop(slots);

    let outcomes: Vec<Result<Value, PartFailure>> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(stopped.clone())))
        .collect();
    let spans = observe_parts(fanout, plan, &targets, &outcomes, started, &ended, req);
    for (i, outcome) in outcomes.iter().enumerate() {
        let event = match outcome {
            Ok(_) => PartEvent::Ok,
            Err(f) => {
                let c = fanout.exchanger.counters;
                match &f.source {
                    Some(FailureSource::Overflow(limit)) => Counters::bump(limit.counter(c)),
                    _ if matches!(f.kind, FailureKind::Timeout | FailureKind::Deadline) => {
                        Counters::bump(&c.upstream_timeouts)
                    }
                    _ => {}
                }
                PartEvent::Failed(f.kind)
            }
        };
        counters.part(plan.slot, i, event);
    }
    let mut composed = match merge::merge(plan, outcomes) {
        Answer::Failed { part, failure } => {
            counters.route(plan.slot, RouteEvent::Failed);
            failed(plan, part, failure, req.request_id)
        }
        Answer::Merged { body, missing } => {
            for &i in &missing {
                let event = match plan.parts.get(i).and_then(|p| p.fallback.as_ref()) {
                    Some(_) => PartEvent::Fallback,
                    None => PartEvent::Omitted,
                };
                counters.part(plan.slot, i, event);
            }
            merged(plan, body, &missing, req.request_id, counters)
        }
    };
    composed.attempts = attempts;
    composed.spans = spans;
    composed
}

/// Records each part's exchange in its endpoint's and upstream's series, and
/// returns a client span per part when the request's trace is sampled. A part
/// stopped before it was sent (a breaker's refusal, another part deciding the
/// call) counts as no try.
fn observe_parts(
    fanout: &Fanout<'_>,
    plan: &ComposePlan,
    targets: &[(&Endpoint, Option<[u8; 8]>)],
    outcomes: &[Result<Value, PartFailure>],
    started: std::time::Instant,
    ended: &[Option<(std::time::Instant, Option<u16>)>],
    req: &ClientRequest<'_>,
) -> Vec<TrySpan> {
    let sampled = req.trace.is_some_and(|t| t.sampled());
    let mut spans = Vec::new();
    for (i, (part, outcome)) in plan.parts.iter().zip(outcomes).enumerate() {
        let Some(&(endpoint, span_id)) = targets.get(i) else {
            continue;
        };
        let (end, status) = ended
            .get(i)
            .copied()
            .flatten()
            .unwrap_or_else(|| (std::time::Instant::now(), None));
        let tried = match outcome {
            Ok(_) => Some(TryOutcome::Response),
            Err(f) => match &f.source {
                Some(source) => source.try_outcome(),
                None if f.kind == FailureKind::Cancelled => None,
                None if matches!(f.kind, FailureKind::Timeout | FailureKind::Deadline) => {
                    Some(TryOutcome::Timeout)
                }
                None => Some(TryOutcome::Response),
            },
        };
        if let Some(tried) = tried {
            if let Some(series) = fanout.metrics.endpoint(endpoint.id) {
                series.record(tried);
            }
            if let Some(series) = fanout.metrics.upstream(part.upstream) {
                series.record_try(end.saturating_duration_since(started));
            }
        }
        if let (true, Some(span_id)) = (sampled, span_id) {
            spans.push(TrySpan {
                span_id,
                started,
                ended: Some(end),
                upstream: part.upstream,
                endpoint: endpoint.id,
                attempt: 1,
                status,
                failure: outcome.as_ref().err().map(|f| f.kind.name()),
                part: Some((part.name.clone(), part.method.clone())),
            });
        }
    }
    spans
}

/// The 200 answer, or 502 when it is over `max_response_bytes`.
fn merged(
    plan: &ComposePlan,
    body: Value,
    missing: &[usize],
    request_id: &str,
    counters: &ComposeCounters,
) -> Composed {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    if bytes.len() as u64 > plan.max_response_bytes {
        counters.route(plan.slot, RouteEvent::Rejected);
        let body = json!({
            "error": "composed answer too large",
            "max_response_bytes": plan.max_response_bytes,
            "request_id": request_id,
        });
        return answer(json_reply(502, &body));
    }
    let mut reply = LocalReply::new(200, "application/json", bytes);
    if missing.is_empty() {
        counters.route(plan.slot, RouteEvent::Complete);
        reply = reply.with_field(COMPOSITION_FIELD, b"complete");
    } else {
        counters.route(plan.slot, RouteEvent::Partial);
        let names: Vec<&str> = missing
            .iter()
            .filter_map(|&i| plan.parts.get(i).map(|p| p.name.as_str()))
            .collect();
        reply = reply
            .with_field(COMPOSITION_FIELD, b"partial")
            .with_field(PARTIAL_FIELD, names.join(",").as_bytes());
    }
    answer(reply)
}

/// The answer when part `index` failed the call: 502, 504 (out of time), or the
/// client's own error when its forwarded body failed.
fn failed(plan: &ComposePlan, index: usize, failure: PartFailure, request_id: &str) -> Composed {
    let name = plan.parts.get(index).map_or("", |p| p.name.as_str());
    let source = failure.source.clone();
    if let Some(FailureSource::Client(BodyError::Closed)) = source {
        return Composed {
            reply: None,
            attempts: 0,
            failure: source,
            spans: Vec::new(),
        };
    }
    let mut body = json!({
        "error": format!("part \"{name}\" failed: {}", failure.message),
        "part": name,
        "reason": failure.kind.name(),
        "request_id": request_id,
    });
    if let (Some(status), Value::Object(map)) = (failure.upstream_status, &mut body) {
        map.insert("upstream_status".into(), status.into());
    }
    let reply = json_reply(failure.client_status(), &body).with_field(COMPOSITION_FIELD, b"failed");
    Composed {
        reply: Some(reply),
        attempts: 0,
        failure: source,
        spans: Vec::new(),
    }
}

/// 400 naming the part and the template value that is missing.
fn unrenderable(
    plan: &ComposePlan,
    index: usize,
    missing: &Unrenderable,
    request_id: &str,
) -> LocalReply<'static> {
    let name = plan.parts.get(index).map_or("", |p| p.name.as_str());
    let body = json!({
        "error": format!("{{{}}} is {} (part \"{name}\")", missing.placeholder, missing.why),
        "part": name,
        "value": missing.placeholder,
        "request_id": request_id,
    });
    json_reply(400, &body)
}

/// The client's forwarded body could not be read before any part was sent.
fn client_failed(e: BodyError, request_id: &str) -> Composed {
    if e == BodyError::Closed {
        return Composed {
            reply: None,
            attempts: 0,
            failure: Some(FailureSource::Client(e)),
            spans: Vec::new(),
        };
    }
    answer(LocalReply::error(e.status(), e.message(), request_id).closing())
}

fn internal(message: &str, request_id: &str) -> LocalReply<'static> {
    LocalReply::error(500, message, request_id).closing()
}

fn json_reply(status: u16, body: &Value) -> LocalReply<'static> {
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes.push(b'\n');
    LocalReply::new(status, "application/json", bytes)
}

fn answer(reply: LocalReply<'static>) -> Composed {
    Composed {
        reply: Some(reply),
        attempts: 0,
        failure: None,
        spans: Vec::new(),
    }
}

/// Picks a part's endpoint as the forwarder picks a first try (`balance = "hash"`
/// hashes the configured header of the client's request, or the client address;
/// unhealthy and ejected endpoints are skipped while others are available, and a
/// pick while none is counts as panic mode).
fn choose<'u, D: Downstream>(
    fanout: &Fanout<'_>,
    index: usize,
    upstream: &'u Upstream,
    d: &D,
) -> &'u Endpoint {
    let hash = HashKey::request_hash(&upstream.balance, d.conn().peer.ip(), |name| d.get(name));
    let endpoint = fanout.balancer.pick(index, upstream, hash, &[]);
    if !fanout.balancer.available(endpoint.id) {
        Counters::bump(&fanout.exchanger.counters.upstream_panic);
    }
    endpoint
}

/// A part's request body: none, or the client's (one part at most).
enum PartBody<'d, D> {
    Empty,
    Client(&'d mut D),
}

impl<D: BodySource> BodySource for PartBody<'_, D> {
    fn body_framing(&self) -> BodyFraming {
        match self {
            PartBody::Empty => BodyFraming::None,
            PartBody::Client(d) => d.body_framing(),
        }
    }

    fn is_complete(&self) -> bool {
        match self {
            PartBody::Empty => true,
            PartBody::Client(d) => d.is_complete(),
        }
    }

    fn take_buffered(&mut self, out: &mut Vec<u8>) -> Result<(), BodyError> {
        match self {
            PartBody::Empty => Ok(()),
            PartBody::Client(d) => d.take_buffered(out),
        }
    }

    async fn next_piece(&mut self) -> Result<Option<Piece>, BodyError> {
        match self {
            PartBody::Empty => Ok(None),
            PartBody::Client(d) => d.next_piece().await,
        }
    }

    fn give_back(&mut self, piece: Piece) {
        if let PartBody::Client(d) = self {
            d.give_back(piece);
        }
    }
}
