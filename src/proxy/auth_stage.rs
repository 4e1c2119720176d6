//! The authentication stage: identity fields a client sent are removed (every
//! route, before routing), the route's provider verifies the caller, and the
//! verified identity is described for the request that goes upstream.

use std::ops::ControlFlow;

use crate::auth::{self, Caller, Outbound, Rejection, RequestParts};
use crate::config::{Route, Snapshot};
use crate::downstream::Downstream;
use crate::http::LocalReply;
use crate::observe::metrics::AuthResult;
use crate::transform::preflight_method;

use super::context::RequestCtx;
use super::generation::Generation;
use super::replies;
use super::worker::Worker;

/// Removes client-sent identity fields (`claims_to_headers` names, `x-portico-*`,
/// the client-certificate subject field): only the gateway may set them.
pub fn strip_identity<D: Downstream>(snap: &Snapshot, d: &mut D) {
    d.remove_fields(&mut |name| auth::is_identity_header(&snap.auth, name));
}

/// Verifies the caller with the route's provider; the verified caller goes into
/// the context. A refusal answers 401 (with its challenge), 400 or 503. The
/// provider's decision is counted by result. A CORS preflight passes
/// unauthenticated (and uncounted: nothing was decided) where the route says
/// `cors_preflight = "bypass"` (to an upstream that answers CORS itself).
pub fn authenticate<D: Downstream>(
    worker: &Worker,
    generation: &Generation,
    route: &Route,
    ctx: &mut RequestCtx,
    d: &D,
) -> ControlFlow<LocalReply<'static>> {
    let bypass = route.auth.as_ref().is_some_and(|a| a.cors_preflight_bypass);
    if bypass && preflight_method(d.method(), d).is_some() {
        return ControlFlow::Continue(());
    }
    let snap = &generation.snapshot;
    let parts = RequestParts {
        method: d.method(),
        headers: d,
        query: ctx.target.as_ref().and_then(|t| t.query.as_deref()),
    };
    let decision =
        generation
            .auth
            .authenticate(&snap.auth, route.auth.as_ref(), &parts, &worker.counters);
    if let Some(series) = route
        .auth
        .as_ref()
        .and_then(|a| generation.metrics.auth(a.provider))
    {
        let result = match &decision {
            Ok(Some(_)) => AuthResult::Allowed,
            Ok(None) => AuthResult::Anonymous,
            Err(Rejection::Missing) => AuthResult::Missing,
            Err(Rejection::InvalidToken(_)) => AuthResult::InvalidToken,
            Err(Rejection::InvalidRequest(_)) => AuthResult::InvalidRequest,
            Err(Rejection::NoKeys) => AuthResult::Unavailable,
        };
        series.record(result as usize);
    }
    match decision {
        Ok(caller) => {
            ctx.caller = caller;
            ControlFlow::Continue(())
        }
        Err(rejected) => {
            let challenge = route
                .auth
                .as_ref()
                .and_then(|a| snap.auth.providers.get(a.provider))
                .map_or("Bearer", |p| p.challenge.as_str());
            ControlFlow::Break(replies::auth_rejected(&rejected, challenge, &ctx.id))
        }
    }
}

/// What authentication changes on the way upstream: identity fields from the
/// verified claims, and the token removed when the provider says `forward_token = false`.
pub fn outbound<'a>(snap: &'a Snapshot, route: &Route, caller: Option<&'a Caller>) -> Outbound<'a> {
    let provider = route
        .auth
        .as_ref()
        .and_then(|a| snap.auth.providers.get(a.provider));
    Outbound {
        caller,
        drop_token: match provider {
            Some(p) if !p.forward_token => &p.token_from,
            _ => &[],
        },
    }
}
