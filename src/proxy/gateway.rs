//! The gateway as a connection sees it: a [`Handler`] that runs each request
//! through the pipeline of the generation the connection pinned, and records it —
//! counters, metrics, the access-log line and the spans — in one place, from the
//! request context.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::downstream::{Downstream, Handler};
use crate::http::{grpc, HttpError};
use crate::observe::metrics::MethodClass;
use crate::observe::{AccessRecord, Counters, RequestFacts, TraceContext};

use super::context::RequestCtx;
use super::generation::Generation;
use super::request_id::RequestId;
use super::worker::Worker;
use super::{exit, pipeline, replies};

/// A worker and the generation one connection serves with.
pub struct Gateway {
    pub worker: Rc<Worker>,
    pub generation: Rc<Generation>,
}

impl Gateway {
    /// The gateway for a connection accepted now on `worker`: it pins the worker's
    /// current generation for its whole life.
    pub fn for_connection(worker: Rc<Worker>) -> Self {
        let generation = worker.generation();
        Gateway { worker, generation }
    }

    /// The context of a request that starts now; `traced` when it may carry trace
    /// context (not for heads the codec refused).
    fn start<D: Downstream>(&self, d: &D, id: RequestId, traced: bool) -> RequestCtx {
        let mut ctx = RequestCtx::new(id);
        ctx.grpc = grpc::is_grpc(d.get(b"content-type"));
        ctx.method = MethodClass::of(d.method());
        if traced {
            ctx.trace = self.trace_context(d, ctx.timings.received);
        }
        let spans_kept =
            self.worker.spans.is_some() && ctx.trace.as_ref().is_some_and(TraceContext::sampled);
        if self.worker.access_log.is_some() || spans_kept {
            ctx.keep_request_line(d.method(), d.target());
        }
        ctx
    }

    /// With `[tracing]`: the request's trace context, continued from its
    /// `traceparent` (and `tracestate`) or started here.
    fn trace_context<D: Downstream>(&self, d: &D, received: Instant) -> Option<TraceContext> {
        let settings = self.generation.snapshot.tracing.as_ref()?;
        let mut parents: Vec<&[u8]> = Vec::new();
        let mut states: Vec<&[u8]> = Vec::new();
        d.each(&mut |name, value| {
            if name.eq_ignore_ascii_case(b"traceparent") {
                parents.push(value);
            } else if name.eq_ignore_ascii_case(b"tracestate") {
                states.push(value);
            }
        });
        Some(TraceContext::for_request(
            &parents,
            &states,
            settings.sample_ratio,
            &self.worker.trace_ids,
            || self.worker.wall.unix_nanos(received),
        ))
    }

    /// Counts the finished request, records its metrics, writes its access-log
    /// line and hands its spans to the exporter.
    fn record<D: Downstream>(&self, ctx: &RequestCtx, d: &D) {
        let worker = &self.worker;
        let ended = Instant::now();
        let took = ended.saturating_duration_since(ctx.timings.received);
        worker.counters.count_status(ctx.status);
        self.generation
            .metrics
            .route(ctx.route)
            .record(ctx.method, ctx.status, took);
        let snapshot = &self.generation.snapshot;
        let route = ctx
            .route
            .and_then(|i| snapshot.routes.get(i))
            .map_or("", |r| r.name.as_str());
        let (method, target) = ctx.request_line();
        if let (Some(spans), Some(trace)) = (&worker.spans, &ctx.trace) {
            if trace.sampled() {
                let facts = RequestFacts {
                    method,
                    target,
                    route,
                    route_attribute: self.generation.route_span_attribute(ctx.route),
                    status: ctx.status,
                    client: d.conn().peer_ip.as_bytes(),
                    authority: ctx.authority.as_deref(),
                    request_id: ctx.id.as_bytes(),
                    attempts: ctx.attempts,
                    received: ctx.timings.received,
                    took,
                };
                spans.push_request(trace, &facts, &*self.generation, &worker.counters);
            }
        }
        if ctx.local_reply && ctx.status >= 500 {
            Counters::bump(&worker.counters.responses_local_5xx);
        }
        let Some(log) = &worker.access_log else {
            return;
        };
        let t = &ctx.timings;
        let since_try =
            |at: Option<Instant>| Some(at?.saturating_duration_since(t.upstream_started?));
        let trace_id = ctx.trace.as_ref().map(TraceContext::trace_id_hex);
        let ratelimit = match (ctx.ratelimit_denied, ctx.quota.get()) {
            (Some(p), _) => Some((p, false)),
            (None, Some(q)) => Some((q.policy, true)),
            (None, None) => None,
        };
        // The end as wall-clock time: from the trace's start when it has one (the
        // same anchor; a subtraction of two `Instant`s fewer).
        let now = match ctx.trace.as_ref().and_then(|t| t.started_at) {
            Some(start) => Duration::from_nanos(start).saturating_add(took),
            None => worker.wall.since_epoch(ended),
        };
        log.record(
            &AccessRecord {
                client: d.conn().peer_ip.as_bytes(),
                method,
                target,
                protocol: d.protocol(),
                authority: ctx.authority.as_deref(),
                status: ctx.status,
                bytes_received: d.bytes_received(),
                bytes_sent: d.bytes_sent(),
                duration: took,
                route,
                upstream_name: ctx
                    .upstream_index
                    .and_then(|i| snapshot.upstreams.get(i))
                    .map(|u| u.name.as_str()),
                upstream: ctx.upstream,
                // A pooled connection took no time to connect.
                upstream_connect: since_try(t.upstream_connected)
                    .or(t.upstream_first_byte.map(|_| Duration::ZERO)),
                upstream_first_byte: since_try(t.upstream_first_byte),
                request_id: ctx.id.as_bytes(),
                trace_id,
                auth_subject: ctx
                    .caller
                    .as_ref()
                    .and_then(|c| c.claims.get("sub"))
                    .and_then(serde_json::Value::as_str),
                ratelimit: ratelimit.and_then(|(p, allowed)| {
                    let policy = snapshot.rate_limits.policies.get(p)?;
                    Some((policy.name.as_str(), allowed))
                }),
                attempts: ctx.attempts,
                failure: ctx.failure.as_ref().map(|f| f.name()),
            },
            now,
        );
    }
}

impl Handler for Gateway {
    async fn handle<D: Downstream>(&self, d: &mut D) {
        let worker = &*self.worker;
        Counters::bump(&worker.counters.requests);
        let _in_progress = worker.enter_request();
        let id = d
            .get(b"x-request-id")
            .and_then(RequestId::from_client)
            .unwrap_or_else(|| worker.request_ids.next());
        let mut ctx = self.start(d, id, true);
        match d.client_reset() {
            None => pipeline::run(worker, &self.generation, &mut ctx, d).await,
            // An HTTP/2 client may cancel its request: the work stops there (an
            // upstream exchange in progress ends with it), logged as 499.
            Some(reset) => {
                let run = pipeline::run(worker, &self.generation, &mut ctx, d);
                let cancelled = monoio::select! {
                    _ = run => false,
                    _ = reset.wait() => true,
                };
                if cancelled {
                    Counters::bump(&worker.counters.h2_streams_reset);
                    ctx.status = 499;
                }
            }
        }
        self.record(&ctx, d);
    }

    async fn refuse<D: Downstream>(&self, d: &mut D, error: HttpError) {
        let worker = &*self.worker;
        Counters::bump(&worker.counters.requests_malformed);
        let mut ctx = self.start(d, worker.request_ids.next(), false);
        let local = replies::refused(error.status, error.reason, &ctx.id);
        exit::reply(&mut ctx, d, &local).await;
        self.record(&ctx, d);
    }
}
