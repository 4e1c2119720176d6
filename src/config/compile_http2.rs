//! Compiles the protocol keys: `[server]`'s HTTP/2 settings into
//! [`Http2Settings`], an upstream's `protocol` and `max_concurrent_streams`, a
//! route's `websocket`; each checked against what RFC 9113 allows and what is sane
//! for a gateway.

use std::time::Duration;

use super::error::Problems;
use super::http2::{FloodLimits, Http2Settings};
use super::schema::{RouteSection, ServerSection, UpstreamSection};
use super::snapshot::{Upstream, UpstreamProtocol};
use super::values::{in_range, millis};

/// Largest flow-control window HTTP/2 allows (RFC 9113 §6.9.1).
const MAX_WINDOW: u64 = (1 << 31) - 1;

/// The HTTP/2 settings of `[server]`; problems are recorded at their keys.
pub fn http2_settings(s: &ServerSection, p: &mut Problems<'_>) -> Http2Settings {
    Http2Settings {
        alpn: s.http2,
        h2c: s.h2c,
        max_concurrent_streams: in_range(&s.http2_max_concurrent_streams, 1, 10_000, p) as u32,
        max_header_list_bytes: in_range(&s.http2_max_header_list_bytes, 1024, 1 << 20, p) as u32,
        initial_stream_window: in_range(&s.http2_initial_stream_window_bytes, 65_535, MAX_WINDOW, p)
            as u32,
        initial_connection_window: in_range(
            &s.http2_initial_connection_window_bytes,
            65_535,
            MAX_WINDOW,
            p,
        ) as u32,
        flood: FloodLimits {
            window: Duration::from_millis(in_range(&s.http2_flood_window_ms, 100, 3_600_000, p)),
            resets: in_range(&s.http2_max_resets, 1, 1_000_000, p) as u32,
            pings: in_range(&s.http2_max_pings, 1, 1_000_000, p) as u32,
            settings: in_range(&s.http2_max_settings, 1, 1_000_000, p) as u32,
            empty_data: in_range(&s.http2_max_empty_data_frames, 1, 1_000_000, p) as u32,
            continuation: in_range(&s.http2_max_continuation_frames, 1, 1_000, p) as u32,
        },
    }
}

/// An upstream's `protocol` (with `tls` for `"h2"`, without for `"h2c"`) and its
/// `max_concurrent_streams` (HTTP/2 only; default 100).
pub fn upstream_protocol(u: &UpstreamSection, p: &mut Problems<'_>) -> (UpstreamProtocol, usize) {
    let protocol = match u
        .protocol
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("http1", _)) => UpstreamProtocol::Http1,
        Some(("h2", span)) => {
            if u.tls.is_none() {
                p.at(
                    span,
                    "protocol = \"h2\" is HTTP/2 over TLS: give tls = { ... }, or use \"h2c\" for plaintext",
                );
            }
            UpstreamProtocol::H2
        }
        Some(("h2c", span)) => {
            if u.tls.is_some() {
                p.at(
                    span,
                    "protocol = \"h2c\" is plaintext HTTP/2: drop tls, or use \"h2\"",
                );
            }
            UpstreamProtocol::H2c
        }
        Some((other, span)) => {
            p.at(
                span,
                format!("protocol \"{other}\" must be \"http1\", \"h2\" or \"h2c\""),
            );
            UpstreamProtocol::Http1
        }
    };
    let streams = match &u.max_concurrent_streams {
        Some(v) => {
            if protocol == UpstreamProtocol::Http1 {
                p.at(
                    v.span(),
                    "max_concurrent_streams is for HTTP/2 upstreams (protocol = \"h2\" or \"h2c\")",
                );
            }
            in_range(v, 1, 10_000, p) as usize
        }
        None => 100,
    };
    (protocol, streams)
}

/// A route's `websocket` and `websocket_idle_timeout_ms`: the tunnel's idle timeout
/// when upgrades go through (only to HTTP/1.1 upstreams: the upgrade is HTTP/1.1's).
pub fn route_websocket(
    r: &RouteSection,
    upstream: Option<&Upstream>,
    p: &mut Problems<'_>,
) -> Option<Duration> {
    let on = r.websocket.as_ref().filter(|w| *w.get_ref());
    if let (None, Some(t)) = (on, &r.websocket_idle_timeout_ms) {
        p.at(t.span(), "websocket_idle_timeout_ms needs websocket = true");
    }
    let on = on?;
    match upstream {
        None => p.at(on.span(), "websocket = true needs upstream = \"NAME\""),
        Some(u) if u.protocol != UpstreamProtocol::Http1 => p.at(
            on.span(),
            format!(
                "websocket = true needs an HTTP/1.1 upstream; \"{}\" speaks HTTP/2",
                u.name
            ),
        ),
        Some(_) => {}
    }
    let idle = match &r.websocket_idle_timeout_ms {
        Some(t) => millis(t, p),
        None => Duration::from_millis(60_000),
    };
    Some(idle)
}
