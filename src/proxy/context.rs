//! The request context: the life of one request as data (what Pingora calls CTX
//! and Envoy StreamInfo). Created when a request starts, filled by the stages,
//! read once at the end by the access log, the counters, the metrics and the
//! spans, so no stage passes loose parameters to another.

use std::rc::Rc;
use std::time::Instant;

use smallvec::SmallVec;

use crate::auth::Caller;
use crate::http::FieldList;
use crate::limit::LeastRemaining;
use crate::observe::metrics::MethodClass;
use crate::observe::TraceContext;
use crate::route::NormalizedTarget;
use crate::text::AddrText;
use crate::upstream::FailureSource;

use super::request_id::RequestId;

/// One request's state, from its head to its last byte.
pub struct RequestCtx {
    pub id: RequestId,
    /// The method's class, for the metrics (read when the request starts).
    pub method: MethodClass,
    /// The W3C trace context (with `[tracing]`).
    pub trace: Option<TraceContext>,
    /// The normalized target: what routes match and what goes upstream.
    pub target: Option<NormalizedTarget>,
    /// The request's authority: the absolute-form target's, else `Host`.
    pub authority: Option<Vec<u8>>,
    /// Index of the route taken in the generation's snapshot.
    pub route: Option<usize>,
    /// The verified caller, when the route authenticates.
    pub caller: Option<Rc<Caller>>,
    /// The rate-limit policy with the least remaining, for the `RateLimit` fields.
    pub quota: LeastRemaining,
    /// The rate-limit policy that refused the request (429), by index.
    pub ratelimit_denied: Option<usize>,
    /// Fields added to whatever response this request gets (e.g. `RateLimit`).
    pub response_fields: FieldList,
    pub timings: Timings,
    /// Upstream attempts made (a replay on a fresh connection counts).
    pub attempts: u32,
    /// The upstream forwarded to (index in the generation's snapshot).
    pub upstream_index: Option<usize>,
    /// The endpoint that was (last) tried.
    pub upstream: Option<AddrText>,
    /// The status sent (or logged: 499 when the client went away first).
    pub status: u16,
    /// Where the upstream exchange failed, when it did.
    pub failure: Option<FailureSource>,
    /// The request is a gRPC call (`content-type: application/grpc…`): the
    /// gateway's own errors are answered as gRPC errors.
    pub grpc: bool,
    /// The gRPC call's deadline (`grpc-timeout`), when it bounds the exchange.
    pub grpc_deadline: Option<Instant>,
    /// The exchange ran out of time because of that deadline (DEADLINE_EXCEEDED).
    pub deadline_exceeded: bool,
    /// The gateway answered by itself (a local reply, not a configured `respond`
    /// nor an upstream's answer).
    pub local_reply: bool,
    /// `METHOD` and target as received, kept for the access log (the head's bytes
    /// may be overwritten by the body before the line is written). Empty when the
    /// access log is off. Up to 64 bytes (most request lines) are kept inline: no
    /// allocation per logged request.
    request_line: SmallVec<[u8; 64]>,
    method_len: usize,
}

/// When things happened.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// The request head was complete.
    pub received: Instant,
    /// The last upstream try started.
    pub upstream_started: Option<Instant>,
    /// A new upstream connection was established (none when a pooled one was used).
    pub upstream_connected: Option<Instant>,
    /// The upstream response head was complete.
    pub upstream_first_byte: Option<Instant>,
}

impl RequestCtx {
    /// A context for a request that starts now.
    pub fn new(id: RequestId) -> Self {
        RequestCtx {
            id,
            method: MethodClass::Other,
            trace: None,
            target: None,
            authority: None,
            route: None,
            caller: None,
            quota: LeastRemaining::default(),
            ratelimit_denied: None,
            response_fields: FieldList::new(),
            timings: Timings {
                received: Instant::now(),
                upstream_started: None,
                upstream_connected: None,
                upstream_first_byte: None,
            },
            attempts: 0,
            upstream_index: None,
            upstream: None,
            status: 0,
            failure: None,
            grpc: false,
            grpc_deadline: None,
            deadline_exceeded: false,
            local_reply: false,
            request_line: SmallVec::new(),
            method_len: 0,
        }
    }

    /// Keeps the method and target for the access log.
    pub fn keep_request_line(&mut self, method: &[u8], target: &[u8]) {
        let (m, len) = (method.len(), method.len() + target.len());
        self.method_len = m;
        let mut inline = [0u8; 64];
        if len <= inline.len() {
            // Built in place: SmallVec's reserve and two extends were ≈ 180
            // instructions per logged request.
            inline[..m].copy_from_slice(method);
            inline[m..len].copy_from_slice(target);
            self.request_line = SmallVec::from_buf_and_len(inline, len);
        } else {
            let mut line = Vec::with_capacity(len);
            line.extend_from_slice(method);
            line.extend_from_slice(target);
            self.request_line = SmallVec::from_vec(line);
        }
    }

    /// The method and target kept by [`keep_request_line`](Self::keep_request_line),
    /// or `("-", "-")`.
    pub fn request_line(&self) -> (&[u8], &[u8]) {
        if self.request_line.is_empty() {
            return (b"-", b"-");
        }
        self.request_line.split_at(self.method_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_is_kept_whole_inline_or_not() {
        let mut ctx = RequestCtx::new(RequestId::none());
        assert_eq!(ctx.request_line(), (&b"-"[..], &b"-"[..]));
        for target_len in [0, 1, 57, 58, 59, 61, 200] {
            let target: Vec<u8> = (0..target_len).map(|i| b'a' + (i % 26) as u8).collect();
            ctx.keep_request_line(b"DELETE", &target);
            assert_eq!(
                ctx.request_line(),
                (&b"DELETE"[..], &target[..]),
                "{target_len}"
            );
        }
    }
}
