//! The route stage: the https redirect, the normalized target, the request's
//! authority, and the route (host, path, method, headers) — or the local reply that
//! ends the request here (308, 400, 404, 405).

use std::ops::ControlFlow;

use crate::config::{Route, Snapshot};
use crate::downstream::Downstream;
use crate::http::{self, LocalReply};
use crate::observe::Counters;
use crate::route::{self, RouteMatch};

use super::context::RequestCtx;
use super::replies;
use super::worker::Worker;

/// With `redirect_to_https`, a plaintext request is answered with `308` to the same
/// host (the request's one authority, without the plaintext port) and path and
/// query (`http::https_location`).
pub fn redirect_to_https<D: Downstream>(
    snap: &Snapshot,
    ctx: &RequestCtx,
    d: &D,
) -> ControlFlow<LocalReply<'static>> {
    if !snap.server.redirect_to_https || d.conn().secure {
        return ControlFlow::Continue(());
    }
    match http::https_location(d.authority(), d.path_and_query()) {
        Some(location) => ControlFlow::Break(replies::redirect(&location)),
        None => ControlFlow::Break(replies::no_host_for_redirect(&ctx.id)),
    }
}

/// Normalizes the target's path once (`[server] path_parameters` says what a `;`
/// means): it is what routes match and what goes upstream. The authority is the
/// one the codec validated (the absolute-form target's, else `Host`, RFC 9112
/// §3.2.2); it is kept in the context for every later reader.
pub fn normalize<D: Downstream>(
    snap: &Snapshot,
    ctx: &mut RequestCtx,
    d: &D,
) -> ControlFlow<LocalReply<'static>> {
    match route::normalize_path(d.path_and_query(), snap.server.path_parameters) {
        Ok(target) => {
            ctx.authority = d.authority().map(<[u8]>::to_vec);
            ctx.target = Some(target);
            ControlFlow::Continue(())
        }
        Err(e) => ControlFlow::Break(replies::bad_target(&e.to_string(), &ctx.id)),
    }
}

/// Finds the route for the request: host, path, method, headers.
pub fn find<'s, D: Downstream>(
    worker: &Worker,
    snap: &'s Snapshot,
    ctx: &mut RequestCtx,
    d: &D,
) -> ControlFlow<LocalReply<'static>, &'s Route> {
    let path = ctx.target.as_ref().map_or("/", |t| t.path.as_str());
    let found = snap
        .route_table
        .find(ctx.authority.as_deref(), path.as_bytes(), d.method(), d);
    let index = match found {
        RouteMatch::Found(i) => i,
        RouteMatch::MethodNotAllowed { allow } => {
            Counters::bump(&worker.counters.route_method_not_allowed);
            return ControlFlow::Break(replies::method_not_allowed(&allow, &ctx.id));
        }
        RouteMatch::NotFound => {
            Counters::bump(&worker.counters.route_not_found);
            return ControlFlow::Break(replies::not_found(&ctx.id));
        }
    };
    match snap.routes.get(index) {
        Some(route) => {
            ctx.route = Some(index);
            ControlFlow::Continue(route)
        }
        None => ControlFlow::Break(replies::internal("route table mismatch", &ctx.id)),
    }
}
