//! The gateway's own answers, one constructor per reason, all as [`LocalReply`]
//! parts: the stages decide, this file says what the client is told, and the
//! downstream writes it in the client's protocol.

use std::borrow::Cow;

use crate::auth::Rejection;
use crate::config::FixedResponse;
use crate::http::{FieldList, LocalReply};
use crate::limit::{quota_headers, Denial, RateLimitSettings};
use crate::transform::PREFLIGHT_VARY;

use super::request_id::RequestId;

/// A route's static `respond` answer (borrowed from the snapshot: no copy).
pub fn fixed(fixed: &FixedResponse) -> LocalReply<'_> {
    LocalReply {
        status: fixed.status,
        fields: Cow::Borrowed(&fixed.fields),
        body: Cow::Borrowed(&fixed.body),
        message: Cow::Borrowed(""),
        close: false,
    }
}

/// A request target that cannot be normalized: 400, and the connection closes.
pub fn bad_target(reason: &str, id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(400, &format!("bad request target: {reason}"), id.as_str()).closing()
}

/// `redirect_to_https` without a `Host` to redirect to: 400, closing.
pub fn no_host_for_redirect(id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(400, "a Host header is needed for the redirect", id.as_str()).closing()
}

/// `308` to the same host and target over https.
pub fn redirect(location: &[u8]) -> LocalReply<'static> {
    LocalReply::new(308, "text/plain", &b""[..]).with_field(b"location", location)
}

/// No route matched: 404.
pub fn not_found(id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(404, "no route", id.as_str())
}

/// A route matched but not the method: 405 with `Allow`.
pub fn method_not_allowed(allow: &str, id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(405, "method not allowed", id.as_str()).with_field(b"allow", allow.as_bytes())
}

/// An internal inconsistency (a route or upstream index out of range): 500, closing.
pub fn internal(message: &str, id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(500, message, id.as_str()).closing()
}

/// A declared body over `max_body_bytes`: 413, closing (the body is not read).
pub fn body_too_large(id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(413, "request body too large", id.as_str()).closing()
}

/// Refused by authentication: 401 with the RFC 6750 challenge, 400, or 503 with
/// `Retry-After` while keys are not available.
pub fn auth_rejected(rejected: &Rejection, challenge: &str, id: &RequestId) -> LocalReply<'static> {
    let reply = LocalReply::error(rejected.status(), rejected.message(), id.as_str());
    match rejected.www_authenticate(challenge) {
        Some(value) => reply.with_field(b"www-authenticate", value.as_bytes()),
        None => reply.with_field(b"retry-after", b"1"),
    }
}

/// Refused by a rate limit: 429, `Retry-After`, the refusing policy's `RateLimit`
/// fields, and a JSON body naming the policy.
pub fn rate_limited(
    settings: &RateLimitSettings,
    denial: &Denial,
    id: &RequestId,
) -> LocalReply<'static> {
    let Some(policy) = settings.policies.get(denial.policy) else {
        return LocalReply::new(
            429,
            "application/json",
            &b"{\"error\": \"rate limited\"}\n"[..],
        )
        .with_field(b"retry-after", b"1");
    };
    let body = format!(
        "{{\"error\": \"rate limited\", \"policy\": \"{}\", \"retry_after_s\": {}, \"request_id\": \"{}\"}}\n",
        policy.name, denial.retry_after_secs, id
    );
    let mut reply = LocalReply::new(429, "application/json", body.into_bytes());
    for (name, value) in quota_headers::denied_fields(settings.headers.style, policy, denial) {
        reply = reply.with_field(name.as_bytes(), &value);
    }
    reply
}

/// A failed upstream exchange or request body: `status` with `message`.
pub fn upstream_failure(status: u16, message: &str, id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(status, message, id.as_str())
}

/// A request the codec refused: its status and reason, closing.
pub fn refused(status: u16, reason: &str, id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(status, reason, id.as_str()).closing()
}

/// A circuit breaker of the upstream refused the request (`limit`: the key, e.g.
/// `max_requests`): 503 at once, the limit named in `x-portico-overflow`.
pub fn overflow(limit: &str, id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(503, &format!("upstream overflow: {limit}"), id.as_str())
        .with_field(b"x-portico-overflow", limit.as_bytes())
}

/// The worker has `max_in_flight_per_worker` requests in progress: 503 with
/// `Retry-After`, before any work is done for this one.
pub fn shed(id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(503, "overloaded, retry later", id.as_str())
        .with_field(b"retry-after", b"1")
        .with_field(b"x-portico-overflow", b"max_in_flight_per_worker")
}

/// A CORS preflight the route's policy allows: `200` with the policy's fields and
/// no body (docs/transform.md: 200 rather than 204, as Envoy and Kong answer).
pub fn cors_preflight(fields: FieldList) -> LocalReply<'static> {
    LocalReply {
        status: 200,
        fields: Cow::Owned(fields),
        body: Cow::Borrowed(b""),
        message: Cow::Borrowed(""),
        close: false,
    }
}

/// A CORS preflight the route's policy refuses (`why`: origin, method or header
/// not allowed): `403` without CORS fields, so the browser refuses the request.
pub fn cors_refused(why: &str, id: &RequestId) -> LocalReply<'static> {
    LocalReply::error(403, &format!("CORS preflight refused: {why}"), id.as_str())
        .with_field(b"vary", PREFLIGHT_VARY)
}
