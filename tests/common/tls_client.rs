//! A rustls client for tests: a TLS connection to the gateway on 127.0.0.1,
//! trusting one CA file, with the handshake done.

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `port`, sends `name` as SNI and completes the handshake; `None` if
/// the connection or the handshake fails.
pub fn connect(port: u16, ca: &Path, name: &str) -> Option<TlsStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).ok()? {
        roots.add(cert.ok()?).ok()?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).ok()?;
    let mut conn = ClientConnection::new(Arc::new(config), server_name).ok()?;
    let mut sock = TcpStream::connect(("127.0.0.1", port)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).ok()?;
    }
    Some(StreamOwned::new(conn, sock))
}

/// The common name of the certificate the server presented.
pub fn peer_cn(stream: &TlsStream) -> String {
    let Some(der) = stream.conn.peer_certificates().and_then(|c| c.first()) else {
        return String::new();
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return String::new();
    };
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("")
        .to_string();
    cn
}
