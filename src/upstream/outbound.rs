//! The request side of an exchange, whatever the protocol: the request head the
//! forwarder built (HTTP/1.1 text, with any body bytes already known), what it
//! means for replays, and the deadline.

use monoio::time::Instant;

use super::breaker::Breaker;

/// The request side of one exchange.
pub struct OutboundRequest<'a> {
    /// The HTTP/1.1 request head, followed by any body bytes already known. It is
    /// left intact, so the caller can send it again after a replayable failure.
    pub head: &'a mut Vec<u8>,
    /// A `HEAD` request: the response carries no body whatever its framing says.
    pub is_head: bool,
    /// The method is idempotent (RFC 9110 §9.2.2): sending the request twice has
    /// the effect of sending it once, so it may be replayed after the endpoint
    /// closed without answering (it may have acted on it).
    pub idempotent: bool,
    /// Connect, send and the response head must be done by then (the route timeout
    /// covers the whole exchange up to the response head).
    pub deadline: Instant,
    /// The request asks to switch protocols (a WebSocket upgrade): a `101` is its
    /// final answer, and its connection becomes the tunnel's (never pooled).
    pub upgrade: bool,
    /// The upstream's circuit breakers on this worker: new connections count
    /// against `max_connections` (`None`: not counted, e.g. health probes).
    pub breaker: Option<&'a Breaker>,
    /// When the try started (the caller read the clock for it): the pool judges
    /// its idle connections' age against it rather than reading the clock again.
    pub started: Instant,
}
