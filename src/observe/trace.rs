//! The W3C trace context a request carries (`traceparent`, W3C Trace Context
//! Level 1): the slot every request context has, read by the access log and spans.

/// A request's position in a distributed trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// The span this request's work is a child of (8 bytes, never all zero).
    pub parent_id: [u8; 8],
    /// `trace-flags`; bit 0 = sampled.
    pub flags: u8,
}
