//! The compiled `[auth.jwt.NAME]` providers and a route's `auth`, as the
//! configuration loader builds them into the `Snapshot`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::jwks::{JwksUrl, KeySetSlot};
use super::keys::KeyPolicy;
use super::token::TokenSource;

/// Every provider, and the headers only the gateway may set.
#[derive(Default)]
pub struct AuthSettings {
    pub providers: Vec<JwtProvider>,
    /// Lowercase names of every `claims_to_headers` header of every provider. They,
    /// and any name starting with [`RESERVED_PREFIX`], are removed from every client
    /// request before routing.
    pub identity_headers: Vec<Vec<u8>>,
}

/// Header names starting with this are reserved for the gateway on every route.
pub const RESERVED_PREFIX: &[u8] = b"x-portico-";

impl AuthSettings {
    /// Why the gateway is not ready yet: a remote JWKS still being fetched for the
    /// first time (until it has keys or the first fetch gave up).
    pub fn not_ready(&self) -> Option<String> {
        let waiting: Vec<&str> = self
            .providers
            .iter()
            .filter(|p| !p.keys.is_ready())
            .map(|p| p.name.as_str())
            .collect();
        if waiting.is_empty() {
            None
        } else {
            Some(format!("waiting for the JWKS of {}", waiting.join(", ")))
        }
    }
}

/// One `[auth.jwt.NAME]`.
pub struct JwtProvider {
    pub name: String,
    /// The `WWW-Authenticate` challenge without an error: `Bearer realm="..."`.
    pub challenge: String,
    pub algorithms: Vec<Algorithm>,
    pub leeway_s: u64,
    pub max_lifetime_s: Option<u64>,
    /// Required claims beyond those jsonwebtoken checks itself (exp, nbf, iss, aud, sub).
    pub required_extra: Vec<String>,
    pub token_from: Vec<TokenSource>,
    pub max_token_bytes: usize,
    /// `(claim, lowercase header name)`.
    pub claims_to_headers: Vec<(String, String)>,
    pub forward_token: bool,
    /// Per-worker verified-token cache size; 0 turns the cache off.
    pub cache_entries: usize,
    /// The current key set, written by the JWKS fetcher (remote keys) or once at load.
    pub keys: Arc<KeySetSlot>,
    pub remote: Option<RemoteJwks>,
}

/// Where and how often a remote JWKS is fetched.
#[derive(Clone)]
pub struct RemoteJwks {
    /// As written, for log lines.
    pub url_text: String,
    pub url: JwksUrl,
    pub refresh: Duration,
    pub min_refetch: Duration,
    pub timeout: Duration,
    /// PEM file of CA certificates for an https URL; `None` = the webpki roots.
    pub ca: Option<PathBuf>,
    pub policy: KeyPolicy,
}

impl RemoteJwks {
    /// True when `other` fetches the same keys the same way: a reload keeps the
    /// provider's key set (and its fetcher) instead of fetching it again.
    pub fn same_source(&self, other: &RemoteJwks) -> bool {
        self.url_text == other.url_text
            && self.refresh == other.refresh
            && self.min_refetch == other.min_refetch
            && self.timeout == other.timeout
            && self.ca == other.ca
            && self.policy == other.policy
    }
}

/// A route's `auth`: which provider, and its exceptions.
#[derive(Clone, Debug)]
pub struct RouteAuth {
    /// Index into `AuthSettings::providers`.
    pub provider: usize,
    /// No token → forwarded anonymously; a bad token is still refused.
    pub optional: bool,
    /// CORS preflight requests skip authentication (the proxy's auth stage passes
    /// them; `crate::transform::preflight_method` says what a preflight is). A
    /// route with `cors` answers its preflights before authentication instead.
    pub cors_preflight_bypass: bool,
}
