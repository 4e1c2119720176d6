//! The life of one request on a worker, stage by stage, in the order of the design.
//! Each stage passes (`Continue`) or answers (`Break` with a local reply); the one
//! exit, [`reply`] (`exit.rs`), writes local replies, and the downstream decides
//! keep-alive there, once. The order is a security property and stays in code:
//!
//! shed load → redirect → normalize → strip identity → CORS preflight → route →
//! CORS response fields → body limit → rate limits on the client address →
//! authenticate → rate limits on the verified identity → respond, forward (header
//! rules applied as the heads pass, `transform_stage.rs`), compose, or transcode
//! (REST → a unary gRPC call, `transcode_stage.rs`).
//!
//! Logging and counting wrap this call in one place (`gateway.rs`).

use std::ops::ControlFlow;

use crate::config::{Action, Route};
use crate::downstream::Downstream;
use crate::http::{BodyFraming, LocalReply};

use super::context::RequestCtx;
use super::exit::reply;
use super::generation::Generation;
use super::limit_stage::{self, Phase};
use super::worker::Worker;
use super::{
    auth_stage, compose_stage, cors_stage, exit, forward, replies, route_stage, shed_stage,
    transcode_stage,
};

/// Runs the request in `d` through the pipeline of `generation`, to the end of
/// its response.
pub async fn run<D: Downstream>(
    worker: &Worker,
    generation: &Generation,
    ctx: &mut RequestCtx,
    d: &mut D,
) {
    let route = match admit(worker, generation, ctx, d) {
        ControlFlow::Continue(route) => route,
        ControlFlow::Break(local) => return reply(ctx, d, &local).await,
    };
    match &route.action {
        Action::Respond(fixed) => exit::respond(ctx, d, &replies::fixed(fixed)).await,
        Action::Forward(upstream) => {
            forward::forward(worker, generation, route, *upstream, ctx, d).await
        }
        Action::Compose(plan) => {
            compose_stage::compose(worker, generation, route, plan, ctx, d).await
        }
        Action::Transcode(plan) => {
            transcode_stage::transcode(worker, generation, route, plan, ctx, d).await
        }
    }
}

/// The stages before the route's action, cheap checks before expensive ones.
fn admit<'g, D: Downstream>(
    worker: &Worker,
    generation: &'g Generation,
    ctx: &mut RequestCtx,
    d: &mut D,
) -> ControlFlow<LocalReply<'static>, &'g Route> {
    let snap = &*generation.snapshot;
    // Past max_in_flight_per_worker nothing more is started, not even routing.
    shed_stage::shed(worker, snap, ctx)?;
    route_stage::redirect_to_https(snap, ctx, d)?;
    route_stage::normalize(snap, ctx, d)?;
    // Identity fields only the gateway may set go before anything reads the head.
    auth_stage::strip_identity(snap, d);
    // CORS at the door: a preflight of a route with `cors` is answered from static
    // configuration — before body and rate limits and authentication, never
    // upstream — as cheaply as a 404; the other requests of such a route get the
    // CORS fields on every answer from here on (401s and 429s included).
    cors_stage::preflight(snap, ctx, d)?;
    let route = route_stage::find(worker, snap, ctx, d)?;
    #[cfg(debug_assertions)]
    super::test_panic::on_route(&route.name);
    cors_stage::response_fields(route, ctx, d)?;
    body_limit(snap.server.limits.max_body_bytes, ctx, d)?;
    // Address-keyed limits run before authentication, so a flood never reaches
    // the token verifier.
    limit_stage::check(worker, generation, route, Phase::BeforeAuth, ctx, d)?;
    auth_stage::authenticate(worker, generation, route, ctx, d)?;
    limit_stage::check(worker, generation, route, Phase::AfterAuth, ctx, d)?;
    limit_stage::announce(generation, ctx);
    ControlFlow::Continue(route)
}

/// A declared body over `max_body_bytes` is refused before any work is spent on it.
fn body_limit<D: Downstream>(
    max_body_bytes: u64,
    ctx: &RequestCtx,
    d: &D,
) -> ControlFlow<LocalReply<'static>> {
    match d.body_framing() {
        BodyFraming::Length(n) if n > max_body_bytes => {
            ControlFlow::Break(replies::body_too_large(&ctx.id))
        }
        _ => ControlFlow::Continue(()),
    }
}
