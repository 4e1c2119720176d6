//! Re-encryption to an upstream: verify its certificate against a CA bundle (or the
//! system roots), send SNI, and present a client certificate for mTLS when configured.
//! A certificate that cannot be verified fails the connection (502), never a silent
//! downgrade; `verify = false` exists for test setups and says so in the log.

use std::path::PathBuf;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::ClientConfig;

use super::certs::{load_chain, load_roots, provider, system_roots};
use portico_tls_stream::{AnyServerCertificate, TlsStream};

/// An upstream's `tls = { ... }` as configured (paths resolved).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamTlsSettings {
    pub sni: Option<String>,
    pub ca: Option<PathBuf>,
    pub verify: bool,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The upstream speaks HTTP/2 (`protocol = "h2"`): ALPN offers `h2` only.
    pub h2: bool,
}

/// A loaded upstream TLS context, shared by the workers.
pub struct UpstreamTls {
    /// What it was loaded from: part of an endpoint's identity.
    pub settings: UpstreamTlsSettings,
    pub config: Arc<ClientConfig>,
    /// The configured SNI; without one, each endpoint's host name is used.
    pub sni: Option<ServerName<'static>>,
}

impl UpstreamTls {
    pub fn load(s: &UpstreamTlsSettings) -> Result<UpstreamTls, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = if s.verify {
            let roots = match &s.ca {
                Some(ca) => load_roots(ca)?,
                None => system_roots()?,
            };
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider())))
        };
        let mut config = match (&s.client_cert, &s.client_key) {
            (Some(cert), Some(key)) => {
                let chain = load_chain(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    format!("cannot read a private key from {}: {e}", key.display())
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate {}: {e}", cert.display()))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("client_cert and client_key go together".to_string()),
        };
        config.alpn_protocols = if s.h2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let sni = match &s.sni {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| format!("sni \"{name}\" is not a valid server name"))?,
            ),
            None => None,
        };
        Ok(UpstreamTls {
            settings: s.clone(),
            config: Arc::new(config),
            sni,
        })
    }

    /// The name to send and verify for an endpoint written as `host:port`.
    pub fn server_name(&self, authority: &str) -> Option<ServerName<'static>> {
        if let Some(n) = &self.sni {
            return Some(n.clone());
        }
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string()).ok()
    }
}

/// Runs a client handshake on a connected stream.
pub async fn connect(
    stream: TcpStream,
    tls: &UpstreamTls,
    name: ServerName<'static>,
) -> std::io::Result<TlsStream<UnbufferedClientConnection>> {
    let conn =
        UnbufferedClientConnection::new(tls.config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = TlsStream::new(stream, conn);
    tls.handshake().await?;
    Ok(tls)
}
