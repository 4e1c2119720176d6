//! The compiled, immutable configuration a worker serves from.
//!
//! A `Snapshot` is built and validated on the control thread, then shared with every
//! worker as an `Arc`. Nothing in it changes after compilation. Each worker derives
//! its own per-snapshot state from it (a `proxy::Generation`), and each connection
//! pins the generation it was accepted under and finishes on it.

use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use super::resilience::{BreakerSettings, HealthCheck, OutlierSettings, RetryBudget, RetryPolicy};
use crate::http::FieldList;
use crate::limit::{RateLimitSettings, RouteLimits};
use crate::observe::{AccessLogFormat, AccessLogTarget, TracingSettings};
use crate::route::RouteTable;
use crate::text::AddrText;
use crate::tls::{ListenerTls, TlsListenerSettings, UpstreamTls};

pub struct Snapshot {
    /// Where it was loaded from, for log lines and `portico check`.
    pub source: String,
    /// The SHA-256 of the file's text: the configuration's version.
    pub hash: super::ConfigHash,
    pub server: ServerSettings,
    pub admin: Option<SocketAddr>,
    /// `[admin] token_env`: the variable holding the admin bearer token.
    pub admin_token_env: Option<String>,
    /// `[reload]`: how a new configuration is tried and adopted.
    pub reload: super::ReloadSettings,
    pub log: LogSettings,
    /// Matches a request to an index into `routes`.
    pub route_table: RouteTable,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    /// Endpoints of all upstreams, numbered 0..endpoint_count (`Endpoint::id`), so a
    /// worker can keep per-endpoint state (pools, in-flight counts) in flat vectors.
    pub endpoint_count: usize,
    /// `[[rate_limit]]` policies, `[fleet]` and `[rate_limit_headers]`.
    pub rate_limits: Arc<RateLimitSettings>,
    /// `[auth.jwt.*]` providers and the identity headers stripped from every request.
    pub auth: crate::auth::AuthSettings,
    /// What `portico check` and the start-up log show as `warning:` lines (the file
    /// is valid; e.g. a flat merge whose parts can write the same key).
    pub warnings: Vec<super::ConfigError>,
    /// `[tracing]`: trace context and span export, when configured.
    pub tracing: Option<TracingSettings>,
}

/// `[server]`: listeners, worker layout and the limits every request is held to.
pub struct ServerSettings {
    pub listen: Vec<SocketAddr>,
    /// `None` = "auto": one worker per core the process may run on.
    pub workers: Option<usize>,
    pub pin_workers: bool,
    pub listen_backlog: i32,
    /// `fd_limit`: warn, or refuse to start, when the descriptor limit is too low.
    pub fd_limit: FdLimitPolicy,
    pub limits: Limits,
    pub drain_timeout: Duration,
    pub redirect_to_https: bool,
    /// Requests in progress on one worker past which new ones are answered `503`
    /// with `Retry-After` before any work is done for them (load shedding).
    pub max_in_flight_per_worker: usize,
    /// HTTP/2 towards clients: ALPN `h2`, h2c, limits and flood guards.
    pub http2: super::http2::Http2Settings,
    /// `[server.runtime]`: driver, cores, ring, buffers and accepts of every worker.
    pub runtime: super::RuntimeSettings,
    /// What a `;` in a request path means (`path_parameters`).
    pub path_parameters: crate::route::PathParameters,
    /// `[[server.tls]]` listeners with their loaded certificates.
    pub tls: Vec<TlsListener>,
    /// Headers that carry the gateway's own assertions (the verified client
    /// certificate subject). Compiled into the identity headers, which are removed
    /// from every client request on every listener before routing.
    pub reserved_headers: Vec<String>,
}

/// `[server] fd_limit`: what start-up does when the descriptors the configuration
/// may need exceed the process's limit (see docs/operations.md for the estimate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdLimitPolicy {
    /// Log a warning with the arithmetic and start anyway.
    Warn,
    /// Refuse to start, with the same message.
    Refuse,
}

/// A TLS listener: its settings, and the certificates loaded from them (reloaded on
/// SIGHUP or when the files change, without a new snapshot).
pub struct TlsListener {
    pub settings: TlsListenerSettings,
    pub tls: Arc<ListenerTls>,
}

/// Per-request and per-connection limits of `[server]`.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections_per_worker: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// A write to a client that moves no byte for this long closes the connection
    /// (`send_timeout_ms`).
    pub send_timeout: Duration,
    /// What a client header named with `_` becomes (`headers_with_underscores`).
    pub underscores: crate::http::UnderscoreHeaders,
}

impl Limits {
    /// What the codec holds a request head to.
    pub fn head_limits(&self) -> crate::http::HeadLimits {
        crate::http::HeadLimits {
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_uri_bytes: self.max_uri_bytes,
            underscores: self.underscores,
        }
    }
}

pub struct LogSettings {
    pub level: String,
    pub access_log: AccessLogTarget,
    pub access_log_format: AccessLogFormat,
}

/// One `[[route]]`: what to do with a request the route table matched to it.
pub struct Route {
    pub name: String,
    pub action: Action,
    /// The route's `path_prefix` (or exact `path`), for `strip_prefix` / `rewrite_prefix`.
    pub path_prefix: Option<String>,
    pub strip_prefix: bool,
    pub rewrite_prefix: Option<String>,
    pub preserve_host: bool,
    /// The route's `timeout_ms`, else the upstream's `request_timeout_ms`: the whole
    /// exchange up to the response head (connect, send the head and body, wait), and
    /// then the longest wait for each read of the response body.
    pub timeout: Duration,
    /// The route's rate-limit policies, before and after authentication.
    pub limits: RouteLimits,
    /// The route's `auth`: which provider checks its requests.
    pub auth: Option<crate::auth::RouteAuth>,
    /// The route's `retry = { ... }`: when a failed try is sent again.
    pub retry: Option<RetryPolicy>,
    /// `websocket = true`: HTTP/1.1 WebSocket upgrades go through, and the
    /// connection becomes a tunnel closed after this long without a byte
    /// (`websocket_idle_timeout_ms`). `None`: `Upgrade` stops at the gateway.
    pub websocket: Option<Duration>,
    /// `request_headers` / `response_headers` over the upstream's defaults; `None`
    /// when there are none (forwarding routes only).
    pub header_rules: Option<Box<crate::transform::HeaderRules>>,
    /// `cors = { ... }`: preflights answered at the door, CORS fields on responses.
    pub cors: Option<Box<crate::transform::CorsPolicy>>,
}

pub enum Action {
    /// Forward to the upstream with this index in `Snapshot::upstreams`.
    Forward(usize),
    /// Answer from the gateway itself.
    Respond(FixedResponse),
    /// Call several upstreams at once and answer with their merged JSON
    /// (`[route.compose]`, `crate::compose`).
    Compose(super::ComposePlan),
    /// REST → gRPC: answer from a gRPC call to an HTTP/2 upstream, as the route's
    /// `google.api.http` bindings say (`crate::transform::transcode`).
    Transcode(Box<TranscodeRoute>),
}

/// A transcoding route's upstream and bindings.
pub struct TranscodeRoute {
    /// The upstream's index in `Snapshot::upstreams` (HTTP/2 or h2c).
    pub upstream: usize,
    pub transcoder: crate::transform::transcode::Transcoder,
}

/// A static response, as parts: status, the configured fields (lowercase names,
/// `content-type` included), and the body. Rendered per protocol by the downstream.
pub struct FixedResponse {
    pub status: u16,
    pub fields: FieldList,
    pub body: Vec<u8>,
}

pub struct Upstream {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub balance: BalancePolicy,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// A write to an endpoint that moves no byte for this long fails the exchange
    /// (`send_timeout_ms`, 504).
    pub send_timeout: Duration,
    pub max_idle_per_endpoint: usize,
    pub pool_idle_timeout: Duration,
    pub max_requests_per_connection: u64,
    /// Re-encryption to the endpoints, when `tls = { ... }` is set.
    pub tls: Option<Arc<UpstreamTls>>,
    /// What the endpoints speak (`protocol`).
    pub protocol: UpstreamProtocol,
    /// HTTP/2: requests at once on one connection to an endpoint, at most (fewer
    /// if the endpoint's SETTINGS say so); more open another connection.
    pub max_concurrent_streams: usize,
    /// Active health checks, when `health_check = { ... }` is set.
    pub health_check: Option<HealthCheck>,
    /// Passive outlier ejection, when `outlier = { ... }` is set.
    pub outlier: Option<OutlierSettings>,
    /// Circuit breakers (process-wide bounds, split over the workers).
    pub breakers: BreakerSettings,
    /// How many retries may be in flight beside the requests (on by default).
    pub retry_budget: RetryBudget,
}

/// An upstream's `protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over keep-alive connections, pooled per endpoint.
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`), multiplexed connections per endpoint.
    H2,
    /// HTTP/2 over plain TCP with prior knowledge (h2c).
    H2c,
}

pub struct Endpoint {
    /// Global endpoint number in this snapshot (per-snapshot state such as in-flight
    /// counts is indexed by it; state that outlives a snapshot uses `key`).
    pub id: usize,
    pub addr: SocketAddr,
    /// `addr` as text, for the access log and the spans.
    pub text: AddrText,
    /// The `host:port` as written in the config; the Host header sent upstream.
    pub authority: String,
    /// What makes this endpoint the same connection target in another snapshot.
    pub key: EndpointKey,
}

/// An endpoint's identity: its address, and for re-encrypted upstreams the TLS
/// settings and the server name it is reached with. Never its position in a
/// config, so keep-alive pools can outlive a snapshot when an endpoint is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub addr: SocketAddr,
    /// A fingerprint of the TLS settings and server name; `None` for plain TCP.
    pub tls: Option<u64>,
}

impl EndpointKey {
    /// The key of an endpoint at `addr` written as `authority`, reached with `tls`.
    pub fn new(addr: SocketAddr, authority: &str, tls: Option<&UpstreamTls>) -> Self {
        use std::hash::{Hash, Hasher};
        let tls = tls.map(|t| {
            let mut h = std::hash::DefaultHasher::new();
            t.settings.hash(&mut h);
            authority.hash(&mut h);
            h.finish()
        });
        EndpointKey { addr, tls }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BalancePolicy {
    RoundRobin,
    /// Power of two choices on this worker's in-flight requests per endpoint.
    LeastRequest,
    Hash(HashOn),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    ClientIp,
    /// Lowercase header name; requests without it hash on the client address.
    Header(String),
}
