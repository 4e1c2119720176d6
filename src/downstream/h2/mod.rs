//! HTTP/2 client connections (RFC 9113): ALPN `h2` on TLS listeners, h2c with prior
//! knowledge on plaintext ones. The framing, HPACK, flow control and stream states
//! are the `h2` crate's (docs/http2.md says why), run over monoio through
//! monoio-compat; what is the gateway's is around it:
//!
//! - `conn.rs`: the connection's task — SETTINGS with the configured limits, one
//!   request per stream handed to the [`Handler`](super::Handler) (every stage runs
//!   per stream, as for HTTP/1.1), the idle timeout, GOAWAY on drain and on floods;
//! - `guard.rs`: the flood guard on the bytes the client sends (resets, PINGs,
//!   SETTINGS, empty DATA, CONTINUATION);
//! - `request.rs`: one stream as a [`Downstream`](super::Downstream), `body.rs` its
//!   body (detachable: streams are full duplex);
//! - `send.rs`: response heads and flow-controlled DATA.

mod body;
mod conn;
mod guard;
mod request;
mod send;

use std::time::Duration;

pub use body::DuplexBody;
pub use conn::serve;
pub use guard::PREFACE;
pub use request::H2Request;
pub use send::send_data;

/// What every stream of a connection is held to.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// No DATA from the client for this long fails the request (408).
    pub body_read_timeout: Duration,
    /// `max_body_bytes`: a body growing past it is refused (413).
    pub max_body_bytes: u64,
    /// A response that gets no flow-control window for this long is reset.
    pub send_stall: Duration,
    /// `http2_max_header_list_bytes`: a larger header list is refused (431).
    pub max_header_list_bytes: usize,
    /// `max_uri_bytes`: a longer `:path` is refused (414).
    pub max_uri_bytes: usize,
}
