//! The per-worker series the request path records into: plain `Cell`s (and one
//! small `RefCell` list per route and method), never shared with another thread.
//! One series per route, upstream, endpoint, auth provider and rate-limit policy;
//! the label values they stand for are the keys they are registered under
//! (`registry.rs`), so the request path carries no strings.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use super::histogram::{DurationHistogram, HistogramSnapshot};

/// The `method` label: the methods of RFC 9110 and PATCH, anything else `_OTHER`
/// (as OpenTelemetry's semantic conventions say), so a client cannot grow the
/// label's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodClass {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl MethodClass {
    pub const COUNT: usize = 8;
    pub const ALL: [MethodClass; Self::COUNT] = [
        MethodClass::Get,
        MethodClass::Head,
        MethodClass::Post,
        MethodClass::Put,
        MethodClass::Delete,
        MethodClass::Patch,
        MethodClass::Options,
        MethodClass::Other,
    ];

    /// The class of `method` as sent (methods are case-sensitive).
    pub fn of(method: &[u8]) -> Self {
        match method {
            b"GET" => MethodClass::Get,
            b"HEAD" => MethodClass::Head,
            b"POST" => MethodClass::Post,
            b"PUT" => MethodClass::Put,
            b"DELETE" => MethodClass::Delete,
            b"PATCH" => MethodClass::Patch,
            b"OPTIONS" => MethodClass::Options,
            _ => MethodClass::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            MethodClass::Get => "GET",
            MethodClass::Head => "HEAD",
            MethodClass::Post => "POST",
            MethodClass::Put => "PUT",
            MethodClass::Delete => "DELETE",
            MethodClass::Patch => "PATCH",
            MethodClass::Options => "OPTIONS",
            MethodClass::Other => "_OTHER",
        }
    }
}

/// Requests of one route (or of no route): counts by method and status code,
/// and the duration histogram.
#[derive(Default)]
pub struct RouteSeries {
    /// Per method class, `(status code, count)` in the order first seen. A route
    /// sees few distinct codes, so a short list beats any map.
    codes: [RefCell<Vec<(u16, u64)>>; MethodClass::COUNT],
    duration: DurationHistogram,
}

impl RouteSeries {
    /// Counts one finished request: its method, the status sent, its duration
    /// from the complete head to the last byte.
    pub fn record(&self, method: MethodClass, status: u16, took: Duration) {
        let mut codes = self.codes[method as usize].borrow_mut();
        match codes.iter_mut().find(|(code, _)| *code == status) {
            Some((_, n)) => *n += 1,
            None => codes.push((status, 1)),
        }
        drop(codes);
        self.duration.record(took);
    }

    pub(super) fn snapshot_codes(&self) -> Vec<(MethodClass, u16, u64)> {
        let mut out = Vec::new();
        for class in MethodClass::ALL {
            for &(code, n) in self.codes[class as usize].borrow().iter() {
                out.push((class, code, n));
            }
        }
        out
    }

    pub(super) fn snapshot_duration(&self) -> HistogramSnapshot {
        self.duration.snapshot()
    }
}

/// How one upstream try ended, for its endpoint's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryOutcome {
    /// A response head came (any status).
    Response,
    /// TCP connect refused, failed or timed out.
    ConnectFailure,
    /// The TLS handshake to the endpoint failed.
    TlsFailure,
    /// No response head before the deadline.
    Timeout,
    /// The endpoint closed or reset the connection before answering, or while the
    /// body was sent.
    Reset,
    /// The endpoint answered something that is not usable HTTP/1.1.
    ProtocolError,
    /// The client side failed (its body could not be read).
    ClientFailure,
}

impl TryOutcome {
    const COUNT: usize = 7;
}

/// Tries to one endpoint of one upstream, and its idle pooled connections.
#[derive(Default)]
pub struct EndpointSeries {
    outcomes: [Cell<u64>; TryOutcome::COUNT],
    /// Idle keep-alive connections in this worker's pool (set on the tick).
    idle: Cell<u64>,
}

/// What an endpoint's series publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointCounts {
    /// Tries sent (every outcome).
    pub tries: u64,
    pub connect_failures: u64,
    pub tls_failures: u64,
    pub timeouts: u64,
    pub resets: u64,
    pub protocol_errors: u64,
    /// Idle pooled connections (a gauge).
    pub idle: u64,
}

impl EndpointCounts {
    pub fn add(&mut self, o: &EndpointCounts) {
        self.tries += o.tries;
        self.connect_failures += o.connect_failures;
        self.tls_failures += o.tls_failures;
        self.timeouts += o.timeouts;
        self.resets += o.resets;
        self.protocol_errors += o.protocol_errors;
        self.idle += o.idle;
    }
}

impl EndpointSeries {
    /// Counts one try that ended as `outcome`.
    pub fn record(&self, outcome: TryOutcome) {
        let c = &self.outcomes[outcome as usize];
        c.set(c.get() + 1);
    }

    /// Sets the idle-connection gauge.
    pub fn set_idle(&self, n: usize) {
        self.idle.set(n as u64);
    }

    pub(super) fn snapshot(&self) -> EndpointCounts {
        let n = |o: TryOutcome| self.outcomes[o as usize].get();
        EndpointCounts {
            tries: self.outcomes.iter().map(Cell::get).sum(),
            connect_failures: n(TryOutcome::ConnectFailure),
            tls_failures: n(TryOutcome::TlsFailure),
            timeouts: n(TryOutcome::Timeout),
            resets: n(TryOutcome::Reset),
            protocol_errors: n(TryOutcome::ProtocolError),
            idle: self.idle.get(),
        }
    }
}

/// A circuit breaker or retry bound that refused (the `limit` label), named as
/// the configuration key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverflowLimit {
    MaxConnections,
    MaxPending,
    MaxRequests,
    MaxRetries,
    RetryBudget,
}

impl OverflowLimit {
    pub const COUNT: usize = 5;
    pub const ALL: [OverflowLimit; Self::COUNT] = [
        OverflowLimit::MaxConnections,
        OverflowLimit::MaxPending,
        OverflowLimit::MaxRequests,
        OverflowLimit::MaxRetries,
        OverflowLimit::RetryBudget,
    ];

    pub fn label(self) -> &'static str {
        match self {
            OverflowLimit::MaxConnections => "max_connections",
            OverflowLimit::MaxPending => "max_pending",
            OverflowLimit::MaxRequests => "max_requests",
            OverflowLimit::MaxRetries => "max_retries",
            OverflowLimit::RetryBudget => "retry_budget",
        }
    }
}

/// One upstream: try durations, retries and overflows.
#[derive(Default)]
pub struct UpstreamSeries {
    /// From a try's start to its response head (or its failure).
    duration: DurationHistogram,
    retries: Cell<u64>,
    overflows: [Cell<u64>; OverflowLimit::COUNT],
}

/// What an upstream's series publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    pub duration: HistogramSnapshot,
    pub retries: u64,
    pub overflows: [u64; OverflowLimit::COUNT],
}

impl UpstreamCounts {
    pub fn add(&mut self, o: &UpstreamCounts) {
        self.duration.add(&o.duration);
        self.retries += o.retries;
        for (mine, theirs) in self.overflows.iter_mut().zip(o.overflows) {
            *mine += theirs;
        }
    }
}

impl UpstreamSeries {
    /// A try took `took` (to its response head or failure).
    pub fn record_try(&self, took: Duration) {
        self.duration.record(took);
    }

    /// A retry was made.
    pub fn record_retry(&self) {
        self.retries.set(self.retries.get() + 1);
    }

    /// A request or retry was refused by `limit`.
    pub fn record_overflow(&self, limit: OverflowLimit) {
        let c = &self.overflows[limit as usize];
        c.set(c.get() + 1);
    }

    pub(super) fn snapshot(&self) -> UpstreamCounts {
        UpstreamCounts {
            duration: self.duration.snapshot(),
            retries: self.retries.get(),
            overflows: std::array::from_fn(|i| self.overflows[i].get()),
        }
    }
}

/// What authentication decided for a request to a route with `auth` (the
/// `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// A token verified (or found in the verified-token cache).
    Allowed,
    /// Let through without a caller (optional auth without a token, a CORS
    /// preflight the route lets by).
    Anonymous,
    /// No token where one is required (401).
    Missing,
    /// A token that does not verify (401).
    InvalidToken,
    /// A malformed request, e.g. two tokens (400).
    InvalidRequest,
    /// The provider has no keys yet (503).
    Unavailable,
}

impl AuthResult {
    pub const COUNT: usize = 6;
    pub const ALL: [AuthResult; Self::COUNT] = [
        AuthResult::Allowed,
        AuthResult::Anonymous,
        AuthResult::Missing,
        AuthResult::InvalidToken,
        AuthResult::InvalidRequest,
        AuthResult::Unavailable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AuthResult::Allowed => "allowed",
            AuthResult::Anonymous => "anonymous",
            AuthResult::Missing => "missing",
            AuthResult::InvalidToken => "invalid_token",
            AuthResult::InvalidRequest => "invalid_request",
            AuthResult::Unavailable => "unavailable",
        }
    }
}

/// What a rate-limit policy decided for one request (the `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyResult {
    Allowed,
    /// Refused with 429.
    Denied,
}

impl PolicyResult {
    pub const COUNT: usize = 2;
    pub const ALL: [PolicyResult; Self::COUNT] = [PolicyResult::Allowed, PolicyResult::Denied];

    pub fn label(self) -> &'static str {
        match self {
            PolicyResult::Allowed => "allowed",
            PolicyResult::Denied => "denied",
        }
    }
}

/// Decisions counted by result (an auth provider's, or a rate-limit policy's).
pub struct DecisionSeries<const N: usize> {
    counts: [Cell<u64>; N],
}

impl<const N: usize> Default for DecisionSeries<N> {
    fn default() -> Self {
        DecisionSeries {
            counts: std::array::from_fn(|_| Cell::new(0)),
        }
    }
}

impl<const N: usize> DecisionSeries<N> {
    /// Counts one decision with result number `result` (`AuthResult as usize`, ...).
    pub fn record(&self, result: usize) {
        if let Some(c) = self.counts.get(result) {
            c.set(c.get() + 1);
        }
    }

    pub(super) fn snapshot(&self) -> [u64; N] {
        std::array::from_fn(|i| self.counts[i].get())
    }
}

/// An auth provider's decisions, by [`AuthResult`].
pub type AuthSeries = DecisionSeries<{ AuthResult::COUNT }>;
/// A rate-limit policy's decisions, by [`PolicyResult`].
pub type PolicySeries = DecisionSeries<{ PolicyResult::COUNT }>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_count_by_method_and_code() {
        let r = RouteSeries::default();
        r.record(MethodClass::of(b"GET"), 200, Duration::from_millis(1));
        r.record(MethodClass::of(b"GET"), 200, Duration::from_millis(1));
        r.record(MethodClass::of(b"GET"), 404, Duration::from_millis(1));
        r.record(MethodClass::of(b"BREW"), 200, Duration::from_millis(1));
        let codes = r.snapshot_codes();
        assert_eq!(
            codes,
            vec![
                (MethodClass::Get, 200, 2),
                (MethodClass::Get, 404, 1),
                (MethodClass::Other, 200, 1)
            ]
        );
        assert_eq!(r.snapshot_duration().count(), 4);
        assert_eq!(MethodClass::of(b"get"), MethodClass::Other);
    }

    #[test]
    fn endpoints_count_every_try_and_each_failure() {
        let e = EndpointSeries::default();
        e.record(TryOutcome::Response);
        e.record(TryOutcome::ConnectFailure);
        e.record(TryOutcome::Reset);
        e.set_idle(3);
        let c = e.snapshot();
        assert_eq!(
            (c.tries, c.connect_failures, c.resets, c.idle),
            (3, 1, 1, 3)
        );
    }
}
