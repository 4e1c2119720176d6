//! The route stage: the https redirect, the normalized target, the request's
//! authority, and the route (host, path, method, headers) — or the local reply that
//! ends the request here (308, 400, 404, 405).

use std::ops::ControlFlow;
use std::time::Instant;

use crate::config::{Route, Snapshot};
use crate::downstream::Downstream;
use crate::http::LocalReply;
use crate::observe::Counters;
use crate::route::{self, RouteMatch};

use super::context::RequestCtx;
use super::replies;
use super::worker::Worker;

/// With `redirect_to_https`, a plaintext request is answered with `308` to the same
/// host (without the plaintext port) and target.
pub fn redirect_to_https<D: Downstream>(
    snap: &Snapshot,
    ctx: &RequestCtx,
    d: &D,
) -> ControlFlow<LocalReply<'static>> {
    if !snap.server.redirect_to_https || d.conn().secure {
        return ControlFlow::Continue(());
    }
    let host = d.host().unwrap_or(b"");
    // The port of a plaintext listener says nothing about the TLS one: drop it.
    let host = host.split(|&b| b == b':').next().unwrap_or(b"");
    if host.is_empty() {
        return ControlFlow::Break(replies::no_host_for_redirect(&ctx.id));
    }
    let mut location = b"https://".to_vec();
    location.extend_from_slice(host);
    location.extend_from_slice(d.target());
    ControlFlow::Break(replies::redirect(&location))
}

/// Normalizes the request-target once: it is what routes match and what goes
/// upstream. The authority is the absolute-form target's, else `Host`
/// (RFC 9112 §3.2.2).
pub fn normalize<D: Downstream>(ctx: &mut RequestCtx, d: &D) -> ControlFlow<LocalReply<'static>> {
    match route::normalize_path(d.target()) {
        Ok(target) => {
            ctx.authority = match &target.authority {
                Some(a) => Some(a.as_bytes().to_vec()),
                None => d.host().map(<[u8]>::to_vec),
            };
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
            ctx.timings.routed = Some(Instant::now());
            ControlFlow::Continue(route)
        }
        None => ControlFlow::Break(replies::internal("route table mismatch", &ctx.id)),
    }
}
