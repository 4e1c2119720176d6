//! TLS for monoio: a rustls connection driven over a `TcpStream` with owned buffers,
//! shared by the gateway (`portico`) and the load tool (`portico-load`).
//!
//! Ours rather than monoio-rustls' because that crate gives no access to the rustls
//! session after the handshake (SNI, protocol version, the peer's certificate for
//! mTLS, whether the session was resumed), and taking the session out of it drops
//! ciphertext it has already read (a TLS 1.3 client's first request often arrives in
//! the same read as its Finished).

mod any_certificate;
mod stream;

pub use any_certificate::AnyServerCertificate;
pub use stream::TlsStream;
