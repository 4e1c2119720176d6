//! `[server]`'s HTTP/2 settings as the client side uses them: what is offered
//! (ALPN `h2`, h2c), the limits advertised in SETTINGS, and the flood guards
//! (docs/http2.md explains each, with its default and counter).

use std::time::Duration;

/// HTTP/2 towards clients.
#[derive(Clone, Debug)]
pub struct Http2Settings {
    /// `http2`: TLS listeners offer ALPN `h2` (then `http/1.1`).
    pub alpn: bool,
    /// `h2c`: plaintext listeners take HTTP/2 with prior knowledge too.
    pub h2c: bool,
    /// `http2_max_concurrent_streams`: SETTINGS_MAX_CONCURRENT_STREAMS, and the
    /// most requests of one connection in progress at once.
    pub max_concurrent_streams: u32,
    /// `http2_max_header_list_bytes`: SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113
    /// §6.5.2 size: names, values and 32 bytes per field).
    pub max_header_list_bytes: u32,
    /// `http2_initial_stream_window_bytes`: how much of a request body a client
    /// may send before the gateway forwarded some of it.
    pub initial_stream_window: u32,
    /// `http2_initial_connection_window_bytes`: the same for all streams of a
    /// connection together.
    pub initial_connection_window: u32,
    pub flood: FloodLimits,
}

/// Frames a client may send per `window` before the connection is closed with
/// GOAWAY `ENHANCE_YOUR_CALM` (counted by kind).
#[derive(Clone, Copy, Debug)]
pub struct FloodLimits {
    /// `http2_flood_window_ms`.
    pub window: Duration,
    /// `http2_max_resets`: RST_STREAM frames (CVE-2023-44487, rapid reset).
    pub resets: u32,
    /// `http2_max_pings`: PING frames (not acknowledgements).
    pub pings: u32,
    /// `http2_max_settings`: SETTINGS frames (not acknowledgements).
    pub settings: u32,
    /// `http2_max_empty_data_frames`: DATA frames with no payload that do not end
    /// their stream.
    pub empty_data: u32,
    /// `http2_max_continuation_frames`: CONTINUATION frames in one header block
    /// (not per window).
    pub continuation: u32,
}
