//! TLS at the door and on the way out, with rustls on the ring provider only.
//!
//! - `listener.rs`: a TLS listener's certificates (chosen by SNI), versions, ALPN,
//!   session resumption and optional client-certificate verification; loaded at start
//!   and again on reload, then turned into one rustls `ServerConfig` per worker.
//! - `upstream.rs`: re-encryption to an upstream (CA or system roots, SNI, mTLS).
//! - the TLS stream a worker reads and writes is `portico_tls_stream::TlsStream`
//!   (crates/tls-stream, shared with portico-load).
//! - `certs.rs`, `sni.rs`, `subject.rs`: PEM loading, SNI choice, client subjects.

mod certs;
mod listener;
mod sni;
mod subject;
mod upstream;

pub use listener::{accept, CertSettings, ListenerTls, TlsListenerSettings, TlsVersion};
pub use portico_tls_stream::TlsStream;
pub use subject::client_subject;
pub use upstream::{connect, UpstreamTls, UpstreamTlsSettings};
