//! TLS for monoio: a rustls unbuffered connection driven over a `TcpStream` with
//! owned buffers, shared by the gateway (`portico`) and the load tool
//! (`portico-load`).
//!
//! Ours rather than monoio-rustls' because that crate gives no access to the rustls
//! session after the handshake (protocol version, ALPN, the peer's certificate for
//! mTLS, whether the session was resumed), and taking the session out of it drops
//! ciphertext it has already read (a TLS 1.3 client's first request often arrives in
//! the same read as its Finished). On rustls' unbuffered API rather than its
//! buffered one because then every buffer is ours to free while a connection idles
//! (stream.rs).

mod any_certificate;
mod flush;
mod records;
mod stream;

pub use any_certificate::AnyServerCertificate;
pub use records::UnbufferedConnection;
pub use stream::TlsStream;
