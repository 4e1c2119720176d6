//! The compose action: the request's context handed to `crate::compose`, and its
//! answer sent through the one exit.

use crate::compose::{self, ClientRequest, Fanout};
use crate::config::{ComposePlan, Route};
use crate::downstream::Downstream;

use super::context::RequestCtx;
use super::exit::reply;
use super::generation::Generation;
use super::worker::Worker;

/// Runs `plan`, the action of `route`, and answers.
pub async fn compose<D: Downstream>(
    worker: &Worker,
    generation: &Generation,
    route: &Route,
    plan: &ComposePlan,
    ctx: &mut RequestCtx,
    d: &mut D,
) {
    let fanout = Fanout {
        snapshot: &generation.snapshot,
        exchanger: worker.exchanger(),
        balancer: &generation.balancer,
        breakers: &generation.breakers,
        counters: &generation.compose,
        metrics: &generation.metrics,
        trace_ids: &worker.trace_ids,
    };
    let (path, query) = match &ctx.target {
        Some(t) => (t.path.as_str(), t.query.as_deref()),
        None => ("/", None),
    };
    let request = ClientRequest {
        request_id: ctx.id.as_str(),
        path,
        query,
        authority: ctx.authority.as_deref(),
        caller: ctx.caller.as_deref(),
        trace: ctx.trace.as_ref(),
    };
    let composed = compose::run(&fanout, route, plan, &request, d).await;
    ctx.attempts += composed.attempts;
    ctx.failure = composed.failure;
    if let Some(trace) = ctx.trace.as_mut() {
        trace.tries.extend(composed.spans);
    }
    match composed.reply {
        Some(local) => reply(ctx, d, &local).await,
        None => {
            // The client went away while its body was being forwarded.
            ctx.status = 499;
            d.abort();
        }
    }
}
