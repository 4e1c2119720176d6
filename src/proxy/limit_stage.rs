//! The rate-limit stage: check a route's policies for one phase (before or after
//! authentication), answer a refusal with 429, and put the `RateLimit` fields on
//! allowed responses when configured.

use std::borrow::Cow;
use std::ops::ControlFlow;

use crate::auth::Caller;
use crate::config::Route;
use crate::downstream::Downstream;
use crate::http::LocalReply;
use crate::limit::{quota_headers, ClaimLookup, RequestFacts};

use super::context::RequestCtx;
use super::generation::Generation;
use super::replies;
use super::worker::Worker;

/// Which of a route's policy lists to check.
#[derive(Clone, Copy)]
pub enum Phase {
    /// Address-keyed policies, before the (costly) verification of a token.
    BeforeAuth,
    /// Policies on the verified identity (`claim:` keys read the caller's claims).
    AfterAuth,
}

/// Checks the route's policies of `phase`; the policy with the least remaining is
/// kept in the context for [`announce`].
pub fn check<D: Downstream>(
    worker: &Worker,
    generation: &Generation,
    route: &Route,
    phase: Phase,
    ctx: &mut RequestCtx,
    d: &D,
) -> ControlFlow<LocalReply<'static>> {
    let (policies, claims) = match phase {
        Phase::BeforeAuth => (&route.limits.before_auth, None),
        Phase::AfterAuth => (
            &route.limits.after_auth,
            ctx.caller.as_deref().map(|c| c as &dyn ClaimLookup),
        ),
    };
    if policies.is_empty() {
        return ControlFlow::Continue(());
    }
    let facts = RequestFacts {
        client: d.conn().peer.ip(),
        route: &route.name,
        headers: d,
        claims,
    };
    let settings = &generation.snapshot.rate_limits;
    match generation.limits.check(
        settings,
        policies,
        &facts,
        &worker.counters,
        generation.metrics.policies(),
        &mut ctx.quota,
    ) {
        Ok(()) => ControlFlow::Continue(()),
        Err(denial) => {
            ctx.ratelimit_denied = Some(denial.policy);
            ControlFlow::Break(replies::rate_limited(settings, &denial, &ctx.id))
        }
    }
}

/// With `[rate_limit_headers] on_allowed = true`, adds the fields of the policy
/// with the least remaining to whatever response this request gets.
pub fn announce(generation: &Generation, ctx: &mut RequestCtx) {
    let settings = &generation.snapshot.rate_limits;
    if !settings.headers.on_allowed {
        return;
    }
    let Some(q) = ctx.quota.get() else { return };
    if let Some(policy) = settings.policies.get(q.policy) {
        quota_headers::write_allowed(settings.headers.style, policy, &q, &mut ctx.response_fields);
    }
}

/// `claim:NAME` keys read the verified caller's claims: strings as they are,
/// numbers, booleans and arrays of them as the auth stage prints them.
impl ClaimLookup for Caller {
    fn claim(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        match self.claims.get(name)? {
            serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_bytes())),
            _ => self.claim_text(name).map(|t| Cow::Owned(t.into_bytes())),
        }
    }
}
