//! Why an exchange with an endpoint failed: where it failed (the source), whether
//! the request may be sent again, and the status the client is answered with.

use std::borrow::Cow;

use crate::downstream::BodyError;
use crate::observe::metrics::TryOutcome;

use super::breaker::BreakerLimit;

/// Where an exchange failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureSource {
    /// The TCP connect was refused or failed (502).
    Connect,
    /// The TCP connect did not finish within `connect_timeout_ms` (504).
    ConnectTimeout,
    /// The TLS handshake to the endpoint failed or timed out (502 / 504).
    Tls { timed_out: bool },
    /// The endpoint closed (or reset) the connection before any response byte (502).
    Closed,
    /// Writing the request body to the endpoint failed (502).
    Write,
    /// No response head before the deadline (504).
    Timeout,
    /// The endpoint sent something that is not a usable HTTP/1.1 response (502).
    Protocol,
    /// The client side failed while its body was being forwarded (408, 400, 413, or
    /// 499 = the client went away).
    Client(BodyError),
    /// A circuit breaker refused the request: no connection could be had within
    /// `max_connections` / `max_pending` (503, nothing was sent).
    Overflow(BreakerLimit),
}

impl FailureSource {
    /// A short name for logs and spans: `connect`, `connect_timeout`, `tls`,
    /// `tls_timeout`, `reset`, `write`, `timeout`, `protocol`, `client_closed`,
    /// `client_timeout`, `client_malformed`, `client_too_large`, `overflow`.
    pub fn name(&self) -> &'static str {
        match self {
            FailureSource::Connect => "connect",
            FailureSource::ConnectTimeout => "connect_timeout",
            FailureSource::Tls { timed_out: false } => "tls",
            FailureSource::Tls { timed_out: true } => "tls_timeout",
            FailureSource::Closed => "reset",
            FailureSource::Write => "write",
            FailureSource::Timeout => "timeout",
            FailureSource::Protocol => "protocol",
            FailureSource::Client(BodyError::Closed) => "client_closed",
            FailureSource::Client(BodyError::TimedOut) => "client_timeout",
            FailureSource::Client(BodyError::Malformed(_)) => "client_malformed",
            FailureSource::Client(BodyError::TooLarge) => "client_too_large",
            FailureSource::Overflow(_) => "overflow",
        }
    }

    /// How a try that failed here counts in its endpoint's series; `None` for a
    /// breaker's refusal (nothing was sent: an overflow, not a try).
    pub fn try_outcome(&self) -> Option<TryOutcome> {
        Some(match self {
            FailureSource::Connect | FailureSource::ConnectTimeout => TryOutcome::ConnectFailure,
            FailureSource::Tls { .. } => TryOutcome::TlsFailure,
            FailureSource::Timeout => TryOutcome::Timeout,
            FailureSource::Closed | FailureSource::Write => TryOutcome::Reset,
            FailureSource::Protocol => TryOutcome::ProtocolError,
            FailureSource::Client(_) => TryOutcome::ClientFailure,
            FailureSource::Overflow(_) => return None,
        })
    }
}

/// A failed exchange.
#[derive(Clone, Debug)]
pub struct ExchangeError {
    pub source: FailureSource,
    /// What the client is told (a short fixed phrase, never upstream data).
    pub message: Cow<'static, str>,
    /// The connection came from the keep-alive pool.
    pub reused: bool,
    /// The request may be sent again on another connection: the endpoint closed
    /// without answering, the method is idempotent (RFC 9110 §9.2.2: a second
    /// copy has no further effect), and the body is complete in the gateway's hands.
    pub replayable: bool,
}

impl ExchangeError {
    pub fn new(source: FailureSource, message: impl Into<Cow<'static, str>>) -> Self {
        ExchangeError {
            source,
            message: message.into(),
            reused: false,
            replayable: false,
        }
    }

    /// The status the client gets for this failure (499: none, the connection closes).
    pub fn status(&self) -> u16 {
        match &self.source {
            FailureSource::Connect
            | FailureSource::Closed
            | FailureSource::Write
            | FailureSource::Protocol => 502,
            FailureSource::Tls { timed_out } => {
                if *timed_out {
                    504
                } else {
                    502
                }
            }
            FailureSource::ConnectTimeout | FailureSource::Timeout => 504,
            FailureSource::Client(e) => e.status(),
            FailureSource::Overflow(_) => 503,
        }
    }

    /// A pooled connection the endpoint had already closed: the classic keep-alive
    /// race, safe to try once more on a fresh connection when `replayable`.
    pub fn is_stale_connection(&self) -> bool {
        self.reused && self.source == FailureSource::Closed
    }
}
