//! `serve --tls`: HTTPS with the certificate chain and key of `--cert` and `--key`,
//! ALPN `http/1.1`, TLS 1.2 and 1.3. Sessions resume whichever worker a client's next
//! connection lands on: one ticket key for the process (stateless tickets), and a
//! session cache per worker for TLS 1.2 session IDs.

use std::io;
use std::path::Path;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::server::ServerSessionMemoryCache;
use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

use crate::tls::{pem, provider};
use portico_tls_stream::TlsStream;

/// Sessions remembered per worker for session-ID resumption (TLS 1.2 clients that
/// do not take tickets).
const SESSION_CACHE_PER_WORKER: usize = 4096;

/// The loaded certificate, key and ticket key, from which each worker gets its
/// `ServerConfig`.
pub struct ServerTls {
    base: ServerConfig,
}

impl ServerTls {
    /// Reads and checks `--cert` and `--key` (the key must belong to the
    /// certificate). `Err` is one line for the user.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, String> {
        let chain = pem::certificates(cert, "--cert")?;
        let key_der = pem::private_key(key, "--key")?;
        let mut base = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| {
                format!(
                    "--cert {} with --key {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
        base.alpn_protocols = vec![b"http/1.1".to_vec()];
        base.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| format!("cannot create a session ticket key: {e}"))?;
        Ok(ServerTls { base })
    }

    /// A worker's `ServerConfig`: the shared certificate and ticket key, its own
    /// session cache.
    pub fn for_worker(&self) -> Arc<ServerConfig> {
        let mut config = self.base.clone();
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_PER_WORKER);
        Arc::new(config)
    }
}

/// Runs the server handshake on an accepted connection.
pub async fn accept(
    socket: TcpStream,
    config: Arc<ServerConfig>,
) -> io::Result<TlsStream<UnbufferedServerConnection>> {
    let conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
    let mut stream = TlsStream::new(socket, conn);
    stream.handshake().await?;
    Ok(stream)
}
