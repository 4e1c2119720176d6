//! Why a part failed, in the words the counters, the error answer and
//! docs/composition.md use.

use std::borrow::Cow;

use crate::downstream::BodyError;
use crate::upstream::{BreakerLimit, ExchangeError, FailureSource};

/// The kinds of part failure, each counted per part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Connect refused or failed, TLS handshake failed.
    Connect,
    /// The part's `timeout_ms` (or the exchange's own timeouts) passed.
    Timeout,
    /// The route's `deadline_ms` passed before the part answered.
    Deadline,
    /// An answer whose status is not accepted (5xx, 3xx, 1xx; 4xx unless `on_4xx = "data"`).
    Status,
    /// The upstream closed, reset or broke the HTTP exchange.
    Protocol,
    /// The answer body is not JSON.
    NotJson,
    /// The answer body is over `max_part_bytes`.
    TooLarge,
    /// `select` found nothing, or an object was needed (allow/deny/rename, flat merge).
    Shape,
    /// Stopped because another part's failure had already decided the call.
    Cancelled,
    /// The client's body, forwarded to this part, failed (closed, too slow, too large).
    Client,
    /// A circuit breaker of the part's upstream refused it (`max_requests`,
    /// `max_pending`, `max_connections`): nothing was sent.
    Overflow,
}

impl FailureKind {
    /// Every kind, in the order the counters list them.
    pub const ALL: [FailureKind; 11] = [
        FailureKind::Connect,
        FailureKind::Timeout,
        FailureKind::Deadline,
        FailureKind::Status,
        FailureKind::Protocol,
        FailureKind::NotJson,
        FailureKind::TooLarge,
        FailureKind::Shape,
        FailureKind::Cancelled,
        FailureKind::Client,
        FailureKind::Overflow,
    ];

    /// The name in counters and in the error answer's `reason`.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Deadline => "deadline",
            FailureKind::Status => "status",
            FailureKind::Protocol => "protocol",
            FailureKind::NotJson => "not_json",
            FailureKind::TooLarge => "too_large",
            FailureKind::Shape => "shape",
            FailureKind::Cancelled => "cancelled",
            FailureKind::Client => "client",
            FailureKind::Overflow => "overflow",
        }
    }
}

/// One failed part.
#[derive(Debug, Clone)]
pub struct PartFailure {
    pub kind: FailureKind,
    /// A short fixed phrase for the client (never upstream data).
    pub message: Cow<'static, str>,
    /// The status the part answered with (`Status` failures).
    pub upstream_status: Option<u16>,
    /// Where the exchange failed, when it did (for the access log).
    pub source: Option<FailureSource>,
}

impl PartFailure {
    pub fn new(kind: FailureKind, message: impl Into<Cow<'static, str>>) -> Self {
        PartFailure {
            kind,
            message: message.into(),
            upstream_status: None,
            source: None,
        }
    }

    /// A failed exchange, by where it failed.
    pub fn exchange(e: ExchangeError) -> Self {
        let kind = match &e.source {
            FailureSource::Connect | FailureSource::Tls { timed_out: false } => {
                FailureKind::Connect
            }
            FailureSource::ConnectTimeout
            | FailureSource::Timeout
            | FailureSource::Tls { timed_out: true } => FailureKind::Timeout,
            FailureSource::Closed | FailureSource::Write | FailureSource::Protocol => {
                FailureKind::Protocol
            }
            FailureSource::Client(_) => FailureKind::Client,
            FailureSource::Overflow(_) => FailureKind::Overflow,
        };
        PartFailure {
            kind,
            message: e.message,
            upstream_status: None,
            source: Some(e.source),
        }
    }

    /// The part answered with a status that is not accepted.
    pub fn status(status: u16) -> Self {
        PartFailure {
            upstream_status: Some(status),
            ..PartFailure::new(
                FailureKind::Status,
                "upstream answered with an error status",
            )
        }
    }

    /// A circuit breaker refused the part before anything was sent.
    pub fn overflow(limit: BreakerLimit) -> Self {
        PartFailure {
            source: Some(FailureSource::Overflow(limit)),
            ..PartFailure::new(
                FailureKind::Overflow,
                format!("upstream overflow: {}", limit.name()),
            )
        }
    }

    /// The status the client gets when this failure fails the call: 504 for the
    /// ones that ran out of time, 503 for a breaker's refusal, the client's own
    /// status for its body's failures, 502 for the rest.
    pub fn client_status(&self) -> u16 {
        match (&self.kind, &self.source) {
            (FailureKind::Client, Some(FailureSource::Client(e))) => e.status(),
            (FailureKind::Client, _) => BodyError::Closed.status(),
            (FailureKind::Timeout | FailureKind::Deadline, _) => 504,
            (FailureKind::Overflow, _) => 503,
            _ => 502,
        }
    }
}
