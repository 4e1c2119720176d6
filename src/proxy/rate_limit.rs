//! The rate-limit stage of the pipeline: check a route's policies for one phase
//! (before or after authentication), answer a refusal with 429, and put the
//! `RateLimit` fields on allowed responses when configured.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::auth::Caller;
use crate::config::{Route, Snapshot};
use crate::limit::{quota_headers, ClaimLookup, Denial, LeastRemaining, RequestFacts};
use crate::server::{ClientConn, Io, WorkerCtx};

use super::pipeline::HeadHeaders;
use super::reply::{send_reply, LocalReply};
use super::{Outcome, RequestId};

/// Which of a route's policy lists to check.
#[derive(Clone, Copy)]
pub enum Phase {
    /// Address-keyed policies, before the (costly) verification of a token.
    BeforeAuth,
    /// Policies on the verified identity.
    AfterAuth,
}

/// Checks the route's policies of `phase`; `claims` are the caller's verified
/// claims once authentication has run. The policy with the least remaining is
/// kept in `least` for [`announce`].
pub fn check<S: Io>(
    ctx: &WorkerCtx,
    snap: &Snapshot,
    route: &Route,
    phase: Phase,
    conn: &ClientConn<S>,
    claims: Option<&dyn ClaimLookup>,
    least: &mut LeastRemaining,
) -> Result<(), Denial> {
    let policies = match phase {
        Phase::BeforeAuth => &route.limits.before_auth,
        Phase::AfterAuth => &route.limits.after_auth,
    };
    if policies.is_empty() {
        return Ok(());
    }
    let headers = HeadHeaders {
        bytes: conn.head_bytes(),
        head: &conn.head,
    };
    let facts = RequestFacts {
        client: client_ip(conn),
        route: &route.name,
        headers: &headers,
        claims,
    };
    ctx.limits
        .check(&snap.rate_limits, policies, &facts, &ctx.counters, least)
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

fn client_ip<S: Io>(conn: &ClientConn<S>) -> IpAddr {
    conn.peer.ip()
}

/// Answers a refused request: 429, `Retry-After`, the `RateLimit` fields of the
/// refusing policy, and a small JSON body.
pub async fn refuse<S: Io>(
    snap: &Snapshot,
    conn: &mut ClientConn<S>,
    denial: Denial,
    request_id: RequestId,
    keep_alive: bool,
) -> Outcome {
    let settings = &snap.rate_limits;
    let Some(policy) = settings.policies.get(denial.policy) else {
        let reply = LocalReply {
            status: 429,
            content_type: "application/json",
            body: b"{\"error\": \"rate limited\"}\n",
            headers: &[("retry-after", b"1")],
        };
        return send_reply(conn, &reply, request_id, keep_alive).await;
    };
    let fields = quota_headers::denied_fields(settings.headers.style, policy, &denial);
    let headers: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let body = format!(
        "{{\"error\": \"rate limited\", \"policy\": \"{}\", \"retry_after_s\": {}, \"request_id\": \"{}\"}}\n",
        policy.name, denial.retry_after_secs, request_id
    );
    let reply = LocalReply {
        status: 429,
        content_type: "application/json",
        body: body.as_bytes(),
        headers: &headers,
    };
    send_reply(conn, &reply, request_id, keep_alive).await
}

/// With `[rate_limit_headers] on_allowed = true`, adds the fields of the policy
/// with the least remaining to whatever response this request gets.
pub fn announce<S: Io>(snap: &Snapshot, conn: &mut ClientConn<S>, least: &LeastRemaining) {
    let settings = &snap.rate_limits;
    if !settings.headers.on_allowed {
        return;
    }
    let Some(q) = least.get() else { return };
    if let Some(policy) = settings.policies.get(q.policy) {
        quota_headers::write_allowed(
            settings.headers.style,
            policy,
            &q,
            &mut conn.response_headers,
        );
    }
}
