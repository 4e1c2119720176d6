//! The gateway as a connection sees it: a [`Handler`] that runs each request
//! through the pipeline of the generation the connection pinned, and records it —
//! counters and the access-log line — in one place, from the request context.

use std::rc::Rc;

use crate::downstream::{Downstream, Handler};
use crate::http::{grpc, HttpError};
use crate::observe::{AccessRecord, Counters};

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

    fn start<D: Downstream>(&self, d: &D, id: RequestId) -> RequestCtx {
        let mut ctx = RequestCtx::new(id);
        ctx.grpc = grpc::is_grpc(d.get(b"content-type"));
        if self.worker.access_log.is_some() {
            ctx.keep_request_line(d.method(), d.target());
        }
        ctx
    }

    /// Counts the finished request and writes its access-log line.
    fn record<D: Downstream>(&self, ctx: &RequestCtx, d: &D) {
        let worker = &self.worker;
        worker.counters.count_status(ctx.status);
        let Some(log) = &worker.access_log else {
            return;
        };
        let (method, target) = ctx.request_line();
        let route = ctx
            .route
            .and_then(|i| self.generation.snapshot.routes.get(i))
            .map_or("", |r| r.name.as_str());
        log.record(&AccessRecord {
            client: d.conn().peer.ip(),
            method,
            target,
            protocol: d.protocol(),
            status: ctx.status,
            bytes_sent: d.bytes_sent(),
            duration: ctx.timings.received.elapsed(),
            route,
            upstream: ctx.upstream,
            request_id: ctx.id.as_str(),
            attempts: ctx.attempts,
        });
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
        let mut ctx = self.start(d, id);
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
        let mut ctx = self.start(d, worker.request_ids.next());
        let local = replies::refused(error.status, error.reason, &ctx.id);
        exit::reply(&mut ctx, d, &local).await;
        self.record(&ctx, d);
    }
}
