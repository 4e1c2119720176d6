//! The life of one request on a worker, stage by stage, in the order of the design:
//! normalize → strip identity headers → route → rate limits on the client address
//! → authenticate → rate limits on the verified identity → respond or forward.
//! Logging and counting wrap this call in the connection loop, in one place.

use crate::auth::{self, Outbound, Rejection, RequestParts};
use crate::config::{Action, Route, Snapshot};
use crate::http::{self, BodyFraming, HttpError, RequestHead};
use crate::limit::{ClaimLookup, LeastRemaining};
use crate::observe::Counters;
use crate::route::{self, HeaderLookup, RouteMatch};
use crate::server::{ClientConn, Io, WorkerCtx};
use crate::upstream;

use super::rate_limit::{self, Phase};
use super::reply::{send_error, send_fixed, send_reply, LocalReply};
use super::{Outcome, RequestId};

/// Handles the request whose head `conn` holds; returns how it ended and the name
/// of the route it took.
pub async fn handle<'s, S: Io>(
    ctx: &WorkerCtx,
    snap: &'s Snapshot,
    conn: &mut ClientConn<S>,
) -> (Outcome, Option<&'s str>) {
    ctx.counters.requests.set(ctx.counters.requests.get() + 1);
    let request_id = client_request_id(conn).unwrap_or_else(|| ctx.request_ids.next());

    if snap.server.redirect_to_https && !conn.meta.secure {
        return (redirect_to_https(ctx, conn, request_id).await, None);
    }

    // Normalize the path once: it is what routes match and what goes upstream.
    let path_and_query = conn.head.path_and_query(conn.head_bytes());
    let target = match route::normalize_path(path_and_query, snap.server.path_parameters) {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("bad request target: {e}");
            return (
                send_error(conn, 400, &msg, request_id, false, &[]).await,
                None,
            );
        }
    };

    // Identity headers (claims_to_headers names, `x-portico-*`) only the gateway
    // may set: a client's copies go before anything reads the headers.
    strip_identity(snap, conn);

    // Route: host, path, method, headers.
    let found = {
        let head_bytes = conn.head_bytes();
        let head = &conn.head;
        let host = head.authority(head_bytes);
        let method = head_bytes.get(head.method.clone()).unwrap_or(b"");
        let headers = HeadHeaders {
            bytes: head_bytes,
            head,
        };
        snap.route_table
            .find(host, target.path.as_bytes(), method, &headers)
    };
    let index = match found {
        RouteMatch::Found(i) => i,
        RouteMatch::MethodNotAllowed { allow } => {
            Counters::bump(&ctx.counters.route_method_not_allowed);
            let keep = keep_alive_after_local_reply(ctx, conn);
            let headers: [(&str, &[u8]); 1] = [("allow", allow.as_bytes())];
            return (
                send_error(conn, 405, "method not allowed", request_id, keep, &headers).await,
                None,
            );
        }
        RouteMatch::NotFound => {
            Counters::bump(&ctx.counters.route_not_found);
            let keep = keep_alive_after_local_reply(ctx, conn);
            return (
                send_error(conn, 404, "no route", request_id, keep, &[]).await,
                None,
            );
        }
    };
    let Some(route) = snap.routes.get(index) else {
        return (
            send_error(conn, 500, "route table mismatch", request_id, false, &[]).await,
            None,
        );
    };

    // Rate limits keyed on the client address run before authentication, so a
    // flood never reaches the token verifier.
    let mut least = LeastRemaining::default();
    if let Err(denied) =
        rate_limit::check(ctx, snap, route, Phase::BeforeAuth, conn, None, &mut least)
    {
        let keep = keep_alive_after_local_reply(ctx, conn);
        let out = rate_limit::refuse(snap, conn, denied, request_id, keep).await;
        return (out, Some(&route.name));
    }

    // Authentication: the route's provider verifies the bearer token.
    let caller = {
        let parts = RequestParts {
            method: field(conn, &conn.head.method),
            bytes: conn.head_bytes(),
            headers: &conn.head.headers,
            query: target.query.as_deref(),
        };
        ctx.auth
            .authenticate(&snap.auth, route.auth.as_ref(), &parts, &ctx.counters)
    };
    let caller = match caller {
        Ok(c) => c,
        Err(rejected) => {
            let out = reject_auth(ctx, snap, route, conn, &rejected, request_id).await;
            return (out, Some(&route.name));
        }
    };

    // Rate limits on the verified identity (`claim:` keys read the caller's claims).
    let claims = caller.as_deref().map(|c| c as &dyn ClaimLookup);
    if let Err(denied) =
        rate_limit::check(ctx, snap, route, Phase::AfterAuth, conn, claims, &mut least)
    {
        let keep = keep_alive_after_local_reply(ctx, conn);
        let out = rate_limit::refuse(snap, conn, denied, request_id, keep).await;
        return (out, Some(&route.name));
    }
    rate_limit::announce(snap, conn, &least);
    let outbound = outbound(snap, route, caller.as_deref());

    if let BodyFraming::Length(n) = conn.head.body {
        if n > snap.server.limits.max_body_bytes {
            let out = send_error(conn, 413, "request body too large", request_id, false, &[]).await;
            return (out, Some(&route.name));
        }
    }

    let outcome = match &route.action {
        Action::Respond(fixed) => {
            let keep = keep_alive_after_local_reply(ctx, conn);
            send_fixed(conn, fixed, request_id, keep).await
        }
        Action::Forward(up) => {
            upstream::forward(ctx, snap, route, *up, conn, &target, &outbound, request_id).await
        }
    };
    (outcome, Some(&route.name))
}

/// Answers a request the codec refused, and closes.
pub async fn reject<S: Io>(ctx: &WorkerCtx, conn: &mut ClientConn<S>, err: HttpError) -> Outcome {
    send_error(
        conn,
        err.status,
        err.reason,
        ctx.request_ids.next(),
        false,
        &[],
    )
    .await
}

/// Drops client-sent identity headers from the parsed head (the bytes stay; the
/// header list no longer points at them, so nothing downstream sees them).
fn strip_identity<S: Io>(snap: &Snapshot, conn: &mut ClientConn<S>) {
    let end = conn.pos + conn.head.head_len;
    let bytes = conn.rbuf.get(conn.pos..end).unwrap_or(&[]);
    auth::strip_identity(&snap.auth, bytes, &mut conn.head.headers);
}

/// The 401/400/503 of a refused request, with its `WWW-Authenticate` challenge.
async fn reject_auth<S: Io>(
    ctx: &WorkerCtx,
    snap: &Snapshot,
    route: &Route,
    conn: &mut ClientConn<S>,
    rejected: &Rejection,
    request_id: RequestId,
) -> Outcome {
    let challenge = route
        .auth
        .as_ref()
        .and_then(|a| snap.auth.providers.get(a.provider))
        .map_or("Bearer", |p| p.challenge.as_str());
    let keep = keep_alive_after_local_reply(ctx, conn);
    let value = rejected.www_authenticate(challenge);
    let retry: [(&str, &[u8]); 1] = [("retry-after", b"1")];
    let headers: Vec<(&str, &[u8])> = match &value {
        Some(v) => vec![("www-authenticate", v.as_bytes())],
        None => retry.to_vec(),
    };
    send_error(
        conn,
        rejected.status(),
        rejected.message(),
        request_id,
        keep,
        &headers,
    )
    .await
}

/// What authentication changes on the way upstream: identity headers from the
/// verified claims, and the token removed when the provider says `forward_token = false`.
fn outbound<'a>(
    snap: &'a Snapshot,
    route: &Route,
    caller: Option<&'a auth::Caller>,
) -> Outbound<'a> {
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

/// `308` to the same host and target over https.
async fn redirect_to_https<S: Io>(
    ctx: &WorkerCtx,
    conn: &mut ClientConn<S>,
    request_id: RequestId,
) -> Outcome {
    let head_bytes = conn.head_bytes();
    let path_and_query = conn.head.path_and_query(head_bytes);
    let Some(location) = http::https_location(conn.head.authority(head_bytes), path_and_query)
    else {
        return send_error(
            conn,
            400,
            "a Host header is needed for the redirect",
            request_id,
            false,
            &[],
        )
        .await;
    };
    let keep = keep_alive_after_local_reply(ctx, conn);
    let headers: [(&str, &[u8]); 1] = [("location", &location)];
    let reply = LocalReply {
        status: 308,
        content_type: "text/plain",
        body: b"",
        headers: &headers,
    };
    send_reply(conn, &reply, request_id, keep).await
}

/// The client's `X-Request-Id`, when it is sane.
fn client_request_id<S: Io>(conn: &ClientConn<S>) -> Option<RequestId> {
    let head_bytes = conn.head_bytes();
    HeadHeaders {
        bytes: head_bytes,
        head: &conn.head,
    }
    .get(b"x-request-id")
    .and_then(RequestId::from_client)
}

/// After a reply that does not read the body, the connection can carry on only if
/// there was no body or all of it has already arrived (it is then skipped).
fn keep_alive_after_local_reply<S: Io>(ctx: &WorkerCtx, conn: &mut ClientConn<S>) -> bool {
    if !conn.head.keep_alive || ctx.drain.is_raised() {
        return false;
    }
    match conn.head.body {
        BodyFraming::None => true,
        BodyFraming::Length(n) => {
            let buffered = conn.unread().len().saturating_sub(conn.head.head_len) as u64;
            if n <= buffered {
                conn.consume_head();
                conn.consume(n as usize);
                true
            } else {
                false
            }
        }
        BodyFraming::Chunked | BodyFraming::UntilClose => false,
    }
}

fn field<'a, S: Io>(conn: &'a ClientConn<S>, range: &std::ops::Range<usize>) -> &'a [u8] {
    conn.head_bytes().get(range.clone()).unwrap_or(b"")
}

/// Header lookup over a parsed head, for route matching.
pub(crate) struct HeadHeaders<'a> {
    pub bytes: &'a [u8],
    pub head: &'a RequestHead,
}

impl HeaderLookup for HeadHeaders<'_> {
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]> {
        self.head.header(self.bytes, lowercase_name)
    }
}
