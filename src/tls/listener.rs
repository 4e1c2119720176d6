//! A TLS listener's rustls context: certificates by SNI, protocol versions, ALPN,
//! resumption (a per-worker session cache, and tickets whose keys rotate), and the
//! optional client-certificate verifier (mTLS at the edge).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::UnbufferedServerConnection;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{ServerConfig, SupportedProtocolVersion};

use super::certs::{load_certified_key, load_roots, provider};
use super::sni::SniResolver;
use portico_tls_stream::TlsStream;

static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Sessions remembered per worker for ID-based resumption (TLS 1.2).
const SESSION_CACHE_PER_WORKER: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// One `[[server.tls]]` as configured (paths already resolved).
#[derive(Clone, Debug)]
pub struct TlsListenerSettings {
    pub listen: std::net::SocketAddr,
    pub min_version: TlsVersion,
    pub handshake_timeout: Duration,
    pub default_cert: Option<String>,
    pub client_ca: Option<PathBuf>,
    pub client_subject_header: Option<String>,
    pub certs: Vec<CertSettings>,
}

/// One `[[server.tls.cert]]`.
#[derive(Clone, Debug)]
pub struct CertSettings {
    pub name: String,
    /// Lowercase names or `*.suffix` patterns.
    pub sni: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A loaded listener context, from which each worker gets its own `ServerConfig`.
pub struct ListenerTls {
    resolver: Arc<SniResolver>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    versions: &'static [&'static SupportedProtocolVersion],
    ticketer: Arc<dyn ProducesTickets>,
}

/// A problem loading a listener: `Some(i)` names the `cert` entry it concerns.
pub type LoadError = (Option<usize>, String);

impl ListenerTls {
    /// Reads every certificate and key and the client CA. All problems are returned.
    pub fn load(settings: &TlsListenerSettings) -> Result<ListenerTls, Vec<LoadError>> {
        let mut errors = Vec::new();
        let mut names = Vec::new();
        let mut default = None;
        for (i, c) in settings.certs.iter().enumerate() {
            match load_certified_key(&c.cert, &c.key) {
                Ok(key) => {
                    for n in &c.sni {
                        names.push((n.clone(), key.clone()));
                    }
                    if settings.default_cert.as_deref() == Some(c.name.as_str()) {
                        default = Some(key);
                    }
                }
                Err(e) => errors.push((Some(i), format!("certificate \"{}\": {e}", c.name))),
            }
        }
        let verifier = match &settings.client_ca {
            None => None,
            Some(ca) => match load_roots(ca).and_then(|roots| {
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| format!("client_ca {}: {e}", ca.display()))
            }) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push((None, e));
                    None
                }
            },
        };
        let ticketer = match rustls::crypto::ring::Ticketer::new() {
            Ok(t) => t,
            Err(e) => {
                errors.push((None, format!("cannot create a session ticketer: {e}")));
                return Err(errors);
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let versions: &'static [&'static SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::V1_2 => rustls::ALL_VERSIONS,
            TlsVersion::V1_3 => TLS13_ONLY,
        };
        Ok(ListenerTls {
            resolver: Arc::new(SniResolver::new(names, default)),
            verifier,
            versions,
            ticketer,
        })
    }

    /// A `ServerConfig` for one worker: shared certificates and ticket keys, its own
    /// session cache; ALPN offers `h2` before `http/1.1` when `h2` is set.
    pub fn server_config(&self, h2: bool) -> Result<Arc<ServerConfig>, String> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(self.versions)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = match &self.verifier {
            Some(v) => builder.with_client_cert_verifier(v.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = if h2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_PER_WORKER);
        config.ticketer = self.ticketer.clone();
        Ok(Arc::new(config))
    }
}

/// Runs a server handshake on an accepted connection.
pub async fn accept(
    stream: TcpStream,
    config: Arc<ServerConfig>,
) -> std::io::Result<TlsStream<UnbufferedServerConnection>> {
    let conn = UnbufferedServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = TlsStream::new(stream, conn);
    tls.handshake().await?;
    Ok(tls)
}
