//! CORS at the door. A preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) to a route with `cors` is answered here from the
//! route's policy — `200` with the `Access-Control-Allow-*` fields, or `403`
//! without them — before body limits, rate limits and authentication, and without
//! reaching the upstream. Every other request to such a route gets `Vary: Origin`
//! and, from an allowed origin, the CORS response fields on whatever answer it gets
//! (the upstream's, or the gateway's own 401, 429, 502 …).
//!
//! A preflight is matched to the route the request it announces would take: same
//! host and path, the method it asks about (`methods = ["PUT"]` routes answer
//! preflights for PUT without listing OPTIONS).

use std::ops::ControlFlow;

use crate::config::{Route, Snapshot};
use crate::downstream::Downstream;
use crate::http::LocalReply;
use crate::route::RouteMatch;
use crate::transform::{preflight_method, CorsPolicy};

use super::context::RequestCtx;
use super::replies;

/// Answers a CORS preflight whose route (matched with the method it asks about) has
/// `cors`; any other request passes (an `OPTIONS` check: one comparison).
pub fn preflight<D: Downstream>(
    snap: &Snapshot,
    ctx: &mut RequestCtx,
    d: &D,
) -> ControlFlow<LocalReply<'static>> {
    let Some(method) = preflight_method(d.method(), d) else {
        return ControlFlow::Continue(());
    };
    let path = ctx.target.as_ref().map_or("/", |t| t.path.as_str());
    let found = snap
        .route_table
        .find(ctx.authority.as_deref(), path.as_bytes(), method, d);
    let RouteMatch::Found(index) = found else {
        return ControlFlow::Continue(());
    };
    let Some(policy) = snap.routes.get(index).and_then(|r| r.cors.as_deref()) else {
        return ControlFlow::Continue(());
    };
    ctx.route = Some(index);
    ControlFlow::Break(answer(policy, method, ctx, d))
}

/// On a route with `cors`: a preflight that reached it by its own `OPTIONS` method
/// is answered; any other request gets the CORS response fields. Routes without
/// `cors` pass at the cost of one branch.
pub fn response_fields<D: Downstream>(
    route: &Route,
    ctx: &mut RequestCtx,
    d: &D,
) -> ControlFlow<LocalReply<'static>> {
    let Some(policy) = route.cors.as_deref() else {
        return ControlFlow::Continue(());
    };
    if let Some(method) = preflight_method(d.method(), d) {
        return ControlFlow::Break(answer(policy, method, ctx, d));
    }
    policy.actual_fields(d.get(b"origin"), &mut ctx.response_fields);
    ControlFlow::Continue(())
}

/// The answer to a preflight for `method` under `policy`.
fn answer<D: Downstream>(
    policy: &CorsPolicy,
    method: &[u8],
    ctx: &RequestCtx,
    d: &D,
) -> LocalReply<'static> {
    let origin = d.get(b"origin").unwrap_or(b"");
    let requested = d.get(b"access-control-request-headers");
    match policy.preflight(origin, method, requested) {
        Ok(fields) => replies::cors_preflight(fields),
        Err(why) => replies::cors_refused(why, &ctx.id),
    }
}
