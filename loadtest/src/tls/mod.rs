//! TLS for both sides of the tool, on rustls with the ring provider only (the
//! gateway's choice; never aws-lc-rs).
//!
//! - the stream itself is `portico_tls_stream::TlsStream` (crates/tls-stream), the
//!   same one the gateway uses;
//! - `transport.rs`: a socket that is plain TCP or TLS, for code that serves both;
//! - `pem.rs`: certificates and keys from PEM files.
//!
//! What the client does with it (`run --cacert`, `--insecure`, `--sni`, …) is in
//! `run/tls.rs`; the server side (`serve --tls`) in `serve/tls.rs`.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub mod pem;
pub mod transport;

/// The crypto provider of every TLS context: rustls on ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
