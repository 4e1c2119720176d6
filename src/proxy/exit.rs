//! The one exit for the gateway's own answers: every local reply of every stage is
//! written here, with the fields the request gathered (e.g. `RateLimit`), and its
//! status noted in the request context. A gRPC caller's errors leave as gRPC
//! errors (trailers-only, the matching `grpc-status`: `http::grpc`).

use crate::downstream::Downstream;
use crate::http::{grpc, LocalReply};

use super::context::RequestCtx;

/// Writes `local`, an answer of the gateway's own, to the client; the downstream
/// decides keep-alive as it writes.
pub async fn reply<D: Downstream>(ctx: &mut RequestCtx, d: &mut D, local: &LocalReply<'_>) {
    ctx.local_reply = true;
    respond(ctx, d, local).await;
}

/// Writes a route's configured `respond` answer (not counted as the gateway's
/// own: a configured 503 is what the operator asked for).
pub async fn respond<D: Downstream>(ctx: &mut RequestCtx, d: &mut D, local: &LocalReply<'_>) {
    ctx.status = local.status;
    let as_grpc =
        (ctx.grpc && local.status >= 400).then(|| grpc::error_reply(local, ctx.deadline_exceeded));
    let local = as_grpc.as_ref().unwrap_or(local);
    // A reply that could not be written leaves nothing to do: the connection ends.
    let _ = d
        .send_reply(local, &ctx.response_fields, ctx.id.as_str())
        .await;
}
