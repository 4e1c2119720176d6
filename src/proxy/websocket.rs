//! WebSocket upgrades (RFC 6455 over HTTP/1.1's Upgrade, RFC 9110 §7.8) on routes
//! with `websocket = true`: the upgrade request is forwarded with its `Upgrade`
//! (every stage ran on it first: routing, authentication, rate limits), and after
//! the upstream's `101` the two connections become a byte tunnel
//! (`downstream/tunnel.rs`), never pooled, counted while open, closed after
//! `websocket_idle_timeout_ms` without traffic, and on drain once quiet. An
//! upstream that answers anything but `101` is relayed as any answer.

use std::time::{Duration, Instant};

use crate::config::Route;
use crate::downstream::{Downstream, TunnelEnd};
use crate::http::HeaderLookup;
use crate::observe::Counters;
use crate::upstream::UpstreamResponse;

use super::context::RequestCtx;
use super::worker::Worker;

/// The protocol a request asks to switch to, when its route lets it through: an
/// HTTP/1.1 `GET` with `Upgrade: websocket` and `Connection: upgrade`.
pub fn upgrade_of<D: Downstream>(route: &Route, d: &D) -> Option<&'static [u8]> {
    route.websocket?;
    let asks = d.method() == b"GET"
        && !d.http10()
        && has_token(d, b"upgrade", b"websocket")
        && has_token(d, b"connection", b"upgrade");
    asks.then_some(b"websocket")
}

/// Whether a field `name` of `d` lists `token` (comma-separated, any case).
fn has_token<D: HeaderLookup>(d: &D, name: &[u8], token: &[u8]) -> bool {
    let mut found = false;
    d.each(&mut |n, value| {
        if n.eq_ignore_ascii_case(name) {
            found |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token));
        }
    });
    found
}

/// Sends the upstream's `101` to the client and tunnels the two connections until
/// the tunnel ends (`idle`: the route's `websocket_idle_timeout_ms`).
pub async fn tunnel<D: Downstream>(
    worker: &Worker,
    ctx: &mut RequestCtx,
    d: &mut D,
    response: UpstreamResponse,
    idle: Duration,
) {
    ctx.status = 101;
    ctx.timings.upstream_first_byte = Some(Instant::from(response.first_byte));
    let sent = {
        let fields = response.fields();
        let head = response.parts(&fields);
        d.send_response_head(&head, &[], &ctx.response_fields, ctx.id.as_str())
            .await
    };
    let Some(mut upgraded) = response.into_upgraded() else {
        d.abort();
        return;
    };
    if sent.is_err() {
        d.abort();
        return;
    }
    let c = &worker.counters;
    Counters::bump(&c.websocket_upgrades);
    c.websocket_tunnels_open
        .set(c.websocket_tunnels_open.get() + 1);
    let (stream, early) = upgraded.parts();
    let (end, bytes) = d.tunnel(stream, early, idle).await;
    tracing::debug!(
        ?end,
        to_upstream = bytes.to_upstream,
        to_client = bytes.to_client,
        "tunnel ended"
    );
    c.websocket_tunnels_open
        .set(c.websocket_tunnels_open.get().saturating_sub(1));
    match end {
        TunnelEnd::Idle => Counters::bump(&c.websocket_idle_closed),
        TunnelEnd::Drained => Counters::bump(&c.websocket_drain_closed),
        TunnelEnd::Closed | TunnelEnd::Failed => {}
    }
}
