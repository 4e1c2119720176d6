//! Remote key sets: a background thread per `jwks_url` provider fetches the JWKS
//! (prefetch at start-up, refresh on an interval or `Cache-Control: max-age`,
//! early refetch for an unknown `kid`, single-flight with a cooldown) and publishes
//! each new key set into the provider's [`KeySetSlot`]. A failed fetch keeps the
//! last good set serving.

mod fetcher;
mod http_get;
mod slot;

pub use fetcher::{start, JwksFetchers};
pub use http_get::JwksUrl;
pub use slot::KeySetSlot;
