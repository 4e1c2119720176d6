//! Compiles `[server]`'s HTTP/2 keys into [`Http2Settings`], each checked against
//! what RFC 9113 allows and what is sane for a gateway.

use std::time::Duration;

use super::error::Problems;
use super::http2::{FloodLimits, Http2Settings};
use super::schema::ServerSection;
use super::values::in_range;

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
