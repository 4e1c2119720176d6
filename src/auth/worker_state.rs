//! A worker's authentication state: its copy of each provider's key set (renewed
//! on the worker tick from the provider's slot) and its verified-token cache.
//! Everything here is touched by one thread only; nothing on the request path
//! locks or waits.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::observe::Counters;

use super::cache::{token_hash, VerifiedCache};
use super::caller::{render_identity_headers, Caller};
use super::keys::KeySet;
use super::rejection::Rejection;
use super::settings::{AuthSettings, JwtProvider, RouteAuth};
use super::token::{self, Found, RequestParts};
use super::verify::{verify, Failure};

/// A worker asks its provider for an unknown-`kid` refetch at most this often; the
/// fetcher applies `jwks_min_refetch_s` across all workers.
const REFETCH_ASK_INTERVAL: Duration = Duration::from_secs(1);

pub struct AuthWorker {
    providers: Vec<ProviderState>,
}

struct ProviderState {
    generation: Cell<u64>,
    keys: RefCell<Arc<KeySet>>,
    cache: RefCell<VerifiedCache>,
    last_refetch_ask: Cell<Option<Instant>>,
}

impl AuthWorker {
    pub fn new(settings: &AuthSettings) -> Self {
        let providers = settings
            .providers
            .iter()
            .map(|p| {
                let (generation, keys) = p.keys.current();
                ProviderState {
                    generation: Cell::new(generation),
                    keys: RefCell::new(keys),
                    cache: RefCell::new(VerifiedCache::new(p.cache_entries)),
                    last_refetch_ask: Cell::new(None),
                }
            })
            .collect();
        AuthWorker { providers }
    }

    /// Takes key sets published since the last call, dropping the cached
    /// verifications made with the old ones. Called on the worker tick.
    pub fn refresh_keys(&self, settings: &AuthSettings) {
        for (p, state) in settings.providers.iter().zip(&self.providers) {
            state.sync(p);
        }
    }

    /// Authenticates a request to a route with `auth`: `Ok(None)` = let it through
    /// anonymously (no auth on the route, or optional auth without a token). A CORS
    /// preflight the route lets by (`cors_preflight = "bypass"`) never gets here:
    /// the proxy's auth stage passes it.
    pub fn authenticate(
        &self,
        settings: &AuthSettings,
        auth: Option<&RouteAuth>,
        req: &RequestParts<'_>,
        counters: &Counters,
    ) -> Result<Option<Rc<Caller>>, Rejection> {
        let Some(auth) = auth else { return Ok(None) };
        let (Some(provider), Some(state)) = (
            settings.providers.get(auth.provider),
            self.providers.get(auth.provider),
        ) else {
            return Err(Rejection::NoKeys);
        };
        let result = self.check(provider, state, auth.optional, req, counters);
        if result.is_err() {
            Counters::bump(&counters.auth_rejected);
        }
        result
    }

    fn check(
        &self,
        provider: &JwtProvider,
        state: &ProviderState,
        optional: bool,
        req: &RequestParts<'_>,
        counters: &Counters,
    ) -> Result<Option<Rc<Caller>>, Rejection> {
        let token = match token::find(&provider.token_from, req) {
            Found::Token(t) => t,
            Found::Nothing if optional => return Ok(None),
            Found::Nothing => return Err(Rejection::Missing),
            Found::Conflicting => {
                return Err(Rejection::InvalidRequest(
                    "more than one token in the request",
                ))
            }
        };
        if token.len() > provider.max_token_bytes {
            return Err(Rejection::invalid("token too large"));
        }
        let now = unix_now();
        let hash = state.cache.borrow().is_enabled().then(|| token_hash(token));
        if let Some(h) = &hash {
            if let Some(caller) = state.cache.borrow_mut().get(h, now) {
                Counters::bump(&counters.auth_cache_hits);
                return Ok(Some(caller));
            }
        }
        let Ok(text) = std::str::from_utf8(token) else {
            return Err(Rejection::invalid("malformed token"));
        };
        // Cold paths look at the provider's slot before the next tick would: no keys
        // yet, or a kid this worker has not seen (the fetcher may just have got it).
        let no_keys = state.keys.borrow().is_empty();
        if no_keys && !state.sync(provider) {
            return Err(Rejection::NoKeys);
        }
        let keys = state.keys.borrow().clone();
        let claims = match verify(text, provider, &keys, now) {
            Ok(c) => c,
            Err(Failure::UnknownKid) if state.sync(provider) => {
                let keys = state.keys.borrow().clone();
                match verify(text, provider, &keys, now) {
                    Ok(c) => c,
                    Err(f) => return Err(self.refused(provider, state, f)),
                }
            }
            Err(f) => return Err(self.refused(provider, state, f)),
        };
        Counters::bump(&counters.auth_verified);
        let identity_headers = render_identity_headers(&claims, &provider.claims_to_headers)
            .map_err(Rejection::invalid)?;
        let valid_until = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .map(|exp| exp.saturating_add(provider.leeway_s));
        let caller = Rc::new(Caller {
            claims,
            identity_headers,
            valid_until,
        });
        if let Some(h) = hash {
            state.cache.borrow_mut().put(h, caller.clone());
        }
        Ok(Some(caller))
    }

    fn refused(
        &self,
        provider: &JwtProvider,
        state: &ProviderState,
        failure: Failure,
    ) -> Rejection {
        match failure {
            Failure::UnknownKid => {
                self.ask_refetch(provider, state);
                Rejection::invalid("unknown key id")
            }
            Failure::Rejected(r) => r,
        }
    }

    fn ask_refetch(&self, provider: &JwtProvider, state: &ProviderState) {
        if provider.remote.is_none() {
            return;
        }
        let now = Instant::now();
        if state
            .last_refetch_ask
            .get()
            .is_some_and(|t| now.duration_since(t) < REFETCH_ASK_INTERVAL)
        {
            return;
        }
        state.last_refetch_ask.set(Some(now));
        provider.keys.ask_refetch();
    }
}

impl ProviderState {
    /// Takes the provider's newest key set if it changed, dropping the verifications
    /// cached under the old one. True when it did.
    fn sync(&self, provider: &JwtProvider) -> bool {
        if provider.keys.generation() == self.generation.get() {
            return false;
        }
        let (generation, keys) = provider.keys.current();
        self.generation.set(generation);
        *self.keys.borrow_mut() = keys;
        self.cache.borrow_mut().clear();
        true
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
