//! The TOML schema: what an operator may write, exactly as `docs/configuration.md`
//! documents it. Every section denies unknown keys; defaults live here, next to the key.
//!
//! These types are only the parsed shape. `compile.rs` validates them and turns them
//! into the immutable `Snapshot` the workers use.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: Vec<Spanned<String>>,
    pub workers: Spanned<Workers>,
    pub pin_workers: bool,
    pub max_connections_per_worker: Spanned<u64>,
    pub max_header_bytes: Spanned<u64>,
    pub max_headers: Spanned<u64>,
    pub max_uri_bytes: Spanned<u64>,
    pub max_body_bytes: Spanned<u64>,
    pub header_read_timeout_ms: Spanned<u64>,
    pub body_read_timeout_ms: Spanned<u64>,
    pub idle_timeout_ms: Spanned<u64>,
    pub send_timeout_ms: Spanned<u64>,
    pub drain_timeout_ms: Spanned<u64>,
    pub redirect_to_https: bool,
    pub listen_backlog: Spanned<u64>,
    /// What to do when the descriptor limit cannot hold what the config may open.
    pub fd_limit: Spanned<String>,
    pub max_in_flight_per_worker: Spanned<u64>,
    /// HTTP/2 on the client side (docs/http2.md): ALPN `h2` on TLS listeners.
    pub http2: bool,
    /// h2c with prior knowledge on plaintext listeners (HTTP/1.1 still served).
    pub h2c: bool,
    pub http2_max_concurrent_streams: Spanned<u64>,
    pub http2_max_header_list_bytes: Spanned<u64>,
    pub http2_initial_stream_window_bytes: Spanned<u64>,
    pub http2_initial_connection_window_bytes: Spanned<u64>,
    pub http2_flood_window_ms: Spanned<u64>,
    pub http2_max_resets: Spanned<u64>,
    pub http2_max_pings: Spanned<u64>,
    pub http2_max_settings: Spanned<u64>,
    pub http2_max_empty_data_frames: Spanned<u64>,
    pub http2_max_continuation_frames: Spanned<u64>,
    /// `[server.runtime]`: how each worker's event loop runs.
    pub runtime: super::schema_runtime::RuntimeSection,
    pub path_parameters: PathParametersSetting,
    pub headers_with_underscores: UnderscoreHeadersSetting,
    pub tls: Vec<TlsListenerSection>,
}

/// `path_parameters`: what a `;` in a request path means (docs/routing.md).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PathParametersSetting {
    #[default]
    Reject,
    Strip,
}

/// `headers_with_underscores`: what a client header named with `_` becomes
/// (docs/http.md).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreHeadersSetting {
    #[default]
    Drop,
    Reject,
    Allow,
}

impl Default for ServerSection {
    fn default() -> Self {
        let s = |v: u64| Spanned::new(0..0, v);
        ServerSection {
            listen: vec![Spanned::new(0..0, "0.0.0.0:8080".to_string())],
            workers: Spanned::new(0..0, Workers::Named(Workers::AUTO.to_string())),
            pin_workers: true,
            max_connections_per_worker: s(10_000),
            max_header_bytes: s(16_384),
            max_headers: s(100),
            max_uri_bytes: s(8_192),
            max_body_bytes: s(10_485_760),
            header_read_timeout_ms: s(10_000),
            body_read_timeout_ms: s(30_000),
            idle_timeout_ms: s(60_000),
            send_timeout_ms: s(60_000),
            drain_timeout_ms: s(15_000),
            redirect_to_https: false,
            listen_backlog: s(1024),
            fd_limit: Spanned::new(0..0, "warn".to_string()),
            max_in_flight_per_worker: s(10_000),
            http2: true,
            h2c: false,
            http2_max_concurrent_streams: s(100),
            http2_max_header_list_bytes: s(16_384),
            http2_initial_stream_window_bytes: s(262_144),
            http2_initial_connection_window_bytes: s(1_048_576),
            http2_flood_window_ms: s(10_000),
            http2_max_resets: s(200),
            http2_max_pings: s(100),
            http2_max_settings: s(100),
            http2_max_empty_data_frames: s(50),
            http2_max_continuation_frames: s(5),
            runtime: Default::default(),
            path_parameters: PathParametersSetting::default(),
            headers_with_underscores: UnderscoreHeadersSetting::default(),
            tls: Vec::new(),
        }
    }
}

/// `workers = "auto"` (one per allowed core) or a number; checked in `compile.rs`
/// so a bad value is reported without hiding the rest of `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Workers {
    Count(i64),
    Named(String),
}

impl Workers {
    pub const AUTO: &'static str = "auto";
}

/// `[[server.tls]]`: one TLS listener and its certificates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerSection {
    pub listen: Spanned<String>,
    pub min_version: Option<Spanned<String>>,
    pub default_cert: Option<Spanned<String>>,
    pub client_ca: Option<Spanned<String>>,
    pub client_subject_header: Option<Spanned<String>>,
    #[serde(default = "defaults::handshake_timeout_ms")]
    pub handshake_timeout_ms: Spanned<u64>,
    #[serde(default)]
    pub cert: Vec<Spanned<TlsCertSection>>,
}

/// `[[server.tls.cert]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertSection {
    pub name: Spanned<String>,
    #[serde(default)]
    pub sni: Vec<Spanned<String>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// An upstream's `tls = { ... }`: re-encryption to the service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    pub sni: Option<Spanned<String>>,
    pub ca: Option<Spanned<String>>,
    #[serde(default = "defaults::yes")]
    pub verify: Spanned<bool>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    pub listen: Spanned<String>,
    /// The environment variable holding the bearer token for mutating calls.
    pub token_env: Option<Spanned<String>>,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: Spanned::new(0..0, "127.0.0.1:9901".to_string()),
            token_env: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub name: Spanned<String>,
    pub endpoints: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub balance: Balance,
    pub hash_on: Option<Spanned<String>>,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: Spanned<u64>,
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: Spanned<u64>,
    #[serde(default = "defaults::send_timeout_ms")]
    pub send_timeout_ms: Spanned<u64>,
    #[serde(default = "defaults::max_idle_per_endpoint")]
    pub max_idle_per_endpoint: Spanned<u64>,
    #[serde(default = "defaults::pool_idle_timeout_ms")]
    pub pool_idle_timeout_ms: Spanned<u64>,
    #[serde(default = "defaults::max_requests_per_connection")]
    pub max_requests_per_connection: Spanned<u64>,
    pub tls: Option<Spanned<UpstreamTlsSection>>,
    /// `"http1"` (default), `"h2"` (over `tls`, ALPN h2) or `"h2c"` (prior knowledge).
    pub protocol: Option<Spanned<String>>,
    /// HTTP/2: requests at once on one connection (the endpoint's own limit too).
    pub max_concurrent_streams: Option<Spanned<u64>>,
    pub health_check: Option<Spanned<super::schema_resilience::HealthCheckSection>>,
    pub outlier: Option<Spanned<super::schema_resilience::OutlierSection>>,
    pub max_connections: Option<Spanned<u64>>,
    pub max_pending: Option<Spanned<u64>>,
    pub max_requests: Option<Spanned<u64>>,
    pub max_retries: Option<Spanned<u64>>,
    pub retry_budget: Option<Spanned<super::schema_resilience::RetryBudgetSection>>,
    /// Defaults for the routes to this upstream (`schema_transform.rs`).
    pub request_headers: Option<Spanned<super::schema_transform::HeaderRulesSection>>,
    pub response_headers: Option<Spanned<super::schema_transform::HeaderRulesSection>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastRequest,
    Hash,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: Spanned<String>,
    pub host: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub methods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    pub respond: Option<Spanned<RespondSection>>,
    pub strip_prefix: Option<Spanned<bool>>,
    pub rewrite_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub preserve_host: bool,
    pub timeout_ms: Option<Spanned<u64>>,
    /// Names of `[[rate_limit]]` policies, in any order (checked most specific first).
    #[serde(default)]
    pub rate_limits: Vec<Spanned<String>>,
    pub auth: Option<Spanned<RouteAuthSection>>,
    pub retry: Option<Spanned<super::schema_resilience::RetrySection>>,
    pub retry_non_idempotent: Option<Spanned<bool>>,
    /// Let HTTP/1.1 WebSocket upgrades through to the upstream, then tunnel.
    pub websocket: Option<Spanned<bool>>,
    /// A tunnel with no byte either way for this long is closed (default 60000).
    pub websocket_idle_timeout_ms: Option<Spanned<u64>>,
    /// `[route.compose]`: fan out to several upstreams and merge (`compose_schema.rs`).
    pub compose: Option<Spanned<super::compose_schema::ComposeSection>>,
    /// Header rules and CORS (`schema_transform.rs`).
    pub request_headers: Option<Spanned<super::schema_transform::HeaderRulesSection>>,
    pub response_headers: Option<Spanned<super::schema_transform::HeaderRulesSection>>,
    pub cors: Option<Spanned<super::schema_transform::CorsSection>>,
    /// REST → gRPC transcoding over the route's HTTP/2 upstream (`compile_transcode.rs`).
    pub transcode: Option<Spanned<super::schema_transform::TranscodeSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondSection {
    pub status: Spanned<u64>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub level: Spanned<String>,
    pub access_log: Spanned<String>,
    pub access_log_format: Spanned<String>,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: Spanned::new(0..0, "info".to_string()),
            access_log: Spanned::new(0..0, "stdout".to_string()),
            access_log_format: Spanned::new(0..0, "text".to_string()),
        }
    }
}

/// One `[[rate_limit]]` policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    pub name: Spanned<String>,
    pub key: Spanned<KeySetting>,
    pub rate: Spanned<RateSetting>,
    pub burst: Option<Spanned<f64>>,
    pub scope: Option<Spanned<ScopeSetting>>,
    pub before_auth: Option<Spanned<bool>>,
    pub fallback: Option<Spanned<String>>,
    pub max_keys: Option<Spanned<u64>>,
}

/// `key = "ip"` or a composite `key = ["claim:sub", "route"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KeySetting {
    One(String),
    Parts(Vec<String>),
}

/// `rate = 100` (per second) or `rate = "6000/m"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RateSetting {
    PerSecond(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScopeSetting {
    Worker,
    Instance,
    Fleet,
}

/// `[fleet]`: the Redis shared by every instance, for `scope = "fleet"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetSection {
    pub redis: Spanned<String>,
    pub sync_interval_ms: Spanned<u64>,
    pub redis_timeout_ms: Spanned<u64>,
    pub on_redis_failure: OnRedisFailureSetting,
    pub key_prefix: Spanned<String>,
}

impl Default for FleetSection {
    fn default() -> Self {
        FleetSection {
            redis: Spanned::new(0..0, "redis://127.0.0.1:6379".to_string()),
            sync_interval_ms: Spanned::new(0..0, 10),
            redis_timeout_ms: Spanned::new(0..0, 50),
            on_redis_failure: OnRedisFailureSetting::Instance,
            key_prefix: Spanned::new(0..0, "portico:rl:".to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisFailureSetting {
    Open,
    Closed,
    Instance,
}

/// `[rate_limit_headers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitHeadersSection {
    pub style: HeaderStyleSetting,
    pub on_allowed: bool,
}

impl Default for RateLimitHeadersSection {
    fn default() -> Self {
        RateLimitHeadersSection {
            style: HeaderStyleSetting::Draft,
            on_allowed: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HeaderStyleSetting {
    Draft,
    Legacy,
    None,
}

/// `[auth]`: named providers; only `[auth.jwt.NAME]` today.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default)]
    pub jwt: BTreeMap<String, Spanned<JwtSection>>,
}

/// One `[auth.jwt.NAME]`. Key sources (give exactly one): `jwks_file`, `jwks_url`,
/// `public_key_pem`, `hmac_secret_file`, `hmac_secret_env`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    pub issuer: Option<Spanned<String>>,
    #[serde(default)]
    pub audiences: Vec<Spanned<String>>,
    pub algorithms: Option<Vec<Spanned<String>>>,
    #[serde(default = "defaults::leeway_s")]
    pub leeway_s: Spanned<u64>,
    pub require: Option<Vec<Spanned<String>>>,
    pub max_lifetime_s: Option<Spanned<u64>>,
    pub jwks_file: Option<Spanned<String>>,
    pub jwks_url: Option<Spanned<String>>,
    pub public_key_pem: Option<Spanned<OneOrMany>>,
    pub hmac_secret_file: Option<Spanned<String>>,
    pub hmac_secret_env: Option<Spanned<String>>,
    #[serde(default = "defaults::jwks_refresh_s")]
    pub jwks_refresh_s: Spanned<u64>,
    #[serde(default = "defaults::jwks_min_refetch_s")]
    pub jwks_min_refetch_s: Spanned<u64>,
    #[serde(default = "defaults::jwks_timeout_ms")]
    pub jwks_timeout_ms: Spanned<u64>,
    pub jwks_ca: Option<Spanned<String>>,
    pub token_from: Option<Vec<Spanned<String>>>,
    #[serde(default = "defaults::max_token_bytes")]
    pub max_token_bytes: Spanned<u64>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, Spanned<String>>,
    #[serde(default = "defaults::forward_token")]
    pub forward_token: bool,
    pub realm: Option<Spanned<String>>,
    #[serde(default = "defaults::cache_entries")]
    pub cache_entries: Spanned<u64>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A route's `auth`: `"NAME"` or `{ provider, optional, cors_preflight }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteAuthSection {
    Provider(String),
    Table(RouteAuthTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthTable {
    pub provider: String,
    #[serde(default)]
    pub optional: bool,
    /// `"bypass"` lets CORS preflight requests through without a token;
    /// `"authenticate"` (the default) treats them like any request.
    pub cors_preflight: Option<String>,
}

mod defaults {
    pub fn leeway_s() -> Spanned<u64> {
        Spanned::new(0..0, 60)
    }
    pub fn jwks_refresh_s() -> Spanned<u64> {
        Spanned::new(0..0, 600)
    }
    pub fn jwks_min_refetch_s() -> Spanned<u64> {
        Spanned::new(0..0, 30)
    }
    pub fn jwks_timeout_ms() -> Spanned<u64> {
        Spanned::new(0..0, 5_000)
    }
    pub fn max_token_bytes() -> Spanned<u64> {
        Spanned::new(0..0, 8_192)
    }
    pub fn cache_entries() -> Spanned<u64> {
        Spanned::new(0..0, 10_000)
    }
    pub fn forward_token() -> bool {
        true
    }

    use toml::Spanned;

    pub fn connect_timeout_ms() -> Spanned<u64> {
        Spanned::new(0..0, 1_000)
    }
    pub fn request_timeout_ms() -> Spanned<u64> {
        Spanned::new(0..0, 15_000)
    }
    pub fn send_timeout_ms() -> Spanned<u64> {
        Spanned::new(0..0, 60_000)
    }
    pub fn max_idle_per_endpoint() -> Spanned<u64> {
        Spanned::new(0..0, 64)
    }
    pub fn pool_idle_timeout_ms() -> Spanned<u64> {
        Spanned::new(0..0, 60_000)
    }
    pub fn max_requests_per_connection() -> Spanned<u64> {
        Spanned::new(0..0, 10_000)
    }
    pub fn handshake_timeout_ms() -> Spanned<u64> {
        Spanned::new(0..0, 10_000)
    }
    pub fn yes() -> Spanned<bool> {
        Spanned::new(0..0, true)
    }
}
