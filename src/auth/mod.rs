//! Authentication at the door: JWT bearer tokens checked once, at the edge, so
//! services behind the gateway inherit *who* the caller is and nobody else can
//! claim to say it. Authorization stays with the services.
//!
//! The stages, in request order:
//! 1. [`is_identity_header`]: identity headers a client sent are removed, on every
//!    route, before routing (`identity.rs`; the pipeline removes them).
//! 2. [`AuthWorker::authenticate`]: find the token (`token.rs`), answer from the
//!    per-worker cache (`cache.rs`) or verify it (`verify.rs`, jsonwebtoken over
//!    `ring_provider.rs`) against the worker's key set (`keys.rs`), with the JOSE
//!    rules jsonwebtoken leaves to its caller (`jose.rs`: `crit`, `b64`,
//!    duplicate names).
//! 3. [`Outbound`]: identity headers from the verified claims go upstream; the
//!    token too, unless `forward_token = false`.
//!
//! Key sets come from files and the configuration at load time, or from a remote
//! JWKS fetched by a background thread (`jwks/`); workers take new sets on their tick.

mod cache;
mod caller;
mod identity;
pub mod jose;
pub mod jwks;
pub mod keys;
mod rejection;
pub mod ring_provider;
mod settings;
mod token;
mod verify;
mod worker_state;

pub use caller::Caller;
pub use identity::{is_identity_header, Outbound};
pub use rejection::Rejection;
pub use settings::{AuthSettings, JwtProvider, RemoteJwks, RouteAuth, RESERVED_PREFIX};
pub use token::{RequestParts, TokenSource};
pub use worker_state::AuthWorker;
