//! `run` over TLS: the rustls client that `--cacert`, `--insecure`, `--sni`,
//! `--tls-version` and `--no-resume` describe, the name each connection sends and
//! verifies, and one handshake before the run, so that a certificate the tool would
//! reject is one clear line (exit status 2) instead of a run full of `tls` errors.
//!
//! Each worker gets its own copy with its own session cache (`for_worker`): workers
//! share nothing while the run lasts, and a connection resumes the sessions of its
//! own thread.

use std::io;
use std::net::TcpStream as StdTcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use monoio::net::TcpStream;
use rustls::client::{Resumption, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, RootCertStore,
    SupportedProtocolVersion,
};

use super::target::Target;
use crate::tls::{pem, provider};
use portico_tls_stream::{AnyServerCertificate, TlsStream};

/// The ALPN protocol name of HTTP/2 over TLS (RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";

static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// TLS options of `portico-load run`; they apply to https URLs only.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "TLS (https URLs)")]
pub struct TlsArgs {
    /// Trust the CA certificates in FILE (PEM) instead of the system's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub cacert: Option<PathBuf>,

    /// Do not verify the server's certificate (any issuer, any name).
    #[arg(long)]
    pub insecure: bool,

    /// The server name to send (SNI) and to verify the certificate for. Default: the
    /// URL's host; for an IP address no SNI is sent and the certificate must name
    /// the IP.
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,

    /// Allow only this TLS version (default: 1.2 and 1.3, the server chooses).
    #[arg(long, value_name = "VERSION")]
    pub tls_version: Option<TlsVersion>,

    /// No session resumption: every new connection makes a full handshake.
    #[arg(long)]
    pub no_resume: bool,
}

impl TlsArgs {
    /// Whether any TLS option was given (they make no sense with http URLs).
    pub fn any(&self) -> bool {
        self.cacert.is_some()
            || self.insecure
            || self.sni.is_some()
            || self.tls_version.is_some()
            || self.no_resume
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsVersion {
    #[value(name = "1.2")]
    V1_2,
    #[value(name = "1.3")]
    V1_3,
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Against the CA certificates in this file (`--cacert`).
    CaFile(PathBuf),
    /// Against the system's roots.
    System,
    /// Not at all (`--insecure`).
    Insecure,
}

/// The TLS side of a run's connections.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    /// Sent as SNI when it is a DNS name; the certificate must be valid for it.
    pub name: ServerName<'static>,
    pub resume: bool,
    pub verify: Verify,
    pub version: Option<TlsVersion>,
    /// ALPN offers `h2` only (`--http2`); else `http/1.1` only.
    pub http2: bool,
}

impl TlsClient {
    /// The client for `targets` (all https), offering ALPN `h2` when `http2`, else
    /// `http/1.1`. `Err` is one line for the user.
    pub fn new(args: &TlsArgs, targets: &[Target], http2: bool) -> Result<TlsClient, String> {
        let name = server_name(args.sni.as_deref(), targets)?;
        let versions = match args.tls_version {
            None => rustls::ALL_VERSIONS,
            Some(TlsVersion::V1_2) => TLS12_ONLY,
            Some(TlsVersion::V1_3) => TLS13_ONLY,
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let (builder, verify) = if args.insecure {
            let verifier = Arc::new(AnyServerCertificate(provider()));
            let builder = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier);
            (builder, Verify::Insecure)
        } else if let Some(path) = &args.cacert {
            let roots = pem::roots(path, "--cacert")?;
            (
                builder.with_root_certificates(roots),
                Verify::CaFile(path.clone()),
            )
        } else {
            (
                builder.with_root_certificates(system_roots()?),
                Verify::System,
            )
        };
        let mut config = builder.with_no_client_auth();
        config.alpn_protocols = vec![if http2 {
            ALPN_H2.to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        config.resumption = if args.no_resume {
            Resumption::disabled()
        } else {
            Resumption::default()
        };
        Ok(TlsClient {
            config: Arc::new(config),
            name,
            resume: !args.no_resume,
            verify,
            version: args.tls_version,
            http2,
        })
    }

    /// A copy for one worker thread, with a session cache of its own.
    pub fn for_worker(&self) -> TlsClient {
        let mut config = (*self.config).clone();
        if self.resume {
            config.resumption = Resumption::default();
        }
        TlsClient {
            config: Arc::new(config),
            ..self.clone()
        }
    }

    /// The name as the report shows it: `SNI example.test`, or `no SNI (IP …)`.
    pub fn describe_name(&self) -> String {
        match &self.name {
            ServerName::DnsName(name) => format!("SNI {}", name.as_ref()),
            other => format!("no SNI (IP address {})", other.to_str()),
        }
    }

    /// The SNI sent, if any.
    pub fn sni(&self) -> Option<String> {
        match &self.name {
            ServerName::DnsName(name) => Some(name.as_ref().to_string()),
            _ => None,
        }
    }

    /// Runs the client handshake on a connected socket (the caller bounds it with a
    /// timeout).
    pub async fn connect(
        &self,
        socket: TcpStream,
    ) -> io::Result<TlsStream<UnbufferedClientConnection>> {
        let conn = UnbufferedClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .map_err(io::Error::other)?;
        let mut stream = TlsStream::new(socket, conn);
        stream.handshake().await?;
        Ok(stream)
    }

    /// One blocking handshake on `socket` before the run, without resumption (so it
    /// leaves no session behind for the measured connections to resume). With
    /// `--http2` the server must choose ALPN `h2`.
    pub fn check(
        &self,
        mut socket: StdTcpStream,
        url: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let fail = |why: String| format!("TLS handshake with {url} failed: {why}");
        let mut config = (*self.config).clone();
        config.resumption = Resumption::disabled();
        let mut conn = ClientConnection::new(Arc::new(config), self.name.clone())
            .map_err(|e| fail(e.to_string()))?;
        socket
            .set_read_timeout(Some(timeout))
            .and_then(|()| socket.set_write_timeout(Some(timeout)))
            .map_err(|e| fail(e.to_string()))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut socket)
                .map_err(|e| fail(explain(&e, timeout)))?;
        }
        let refused = self.http2 && conn.alpn_protocol() != Some(ALPN_H2);
        let chose = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        conn.send_close_notify();
        let _ = conn.complete_io(&mut socket);
        if refused {
            return Err(fail(format!(
                "the server does not speak HTTP/2 over TLS: ALPN offered h2, the server chose {}",
                chose.map_or("none".to_string(), |p| format!("{p:?}"))
            )));
        }
        Ok(())
    }
}

/// The name to send and verify: `--sni`, else the URLs' host, which must then be one.
fn server_name(sni: Option<&str>, targets: &[Target]) -> Result<ServerName<'static>, String> {
    let name = match sni {
        Some(name) => name,
        None => {
            let Some(first) = targets.first() else {
                return Err("no URL".into());
            };
            if let Some(other) = targets
                .iter()
                .find(|t| !t.host.eq_ignore_ascii_case(&first.host))
            {
                return Err(format!(
                    "the https URLs name different hosts ({} and {}), and each connection carries requests for all of them: give the TLS server name with --sni",
                    first.host, other.host
                ));
            }
            &first.host
        }
    };
    ServerName::try_from(name.to_string()).map_err(|_| {
        format!("{name:?} is not a valid TLS server name (want a DNS name or an IP address)")
    })
}

/// A handshake error in words, with a hint where one helps.
fn explain(e: &io::Error, timeout: Duration) -> String {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return format!("no answer within {timeout:?}");
    }
    let hint = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            " (--cacert FILE trusts the CA that issued it; --insecure skips verification)"
        }
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => " (--sni NAME verifies another name; --insecure skips verification)",
        Some(rustls::Error::InvalidCertificate(_)) => " (--insecure skips verification)",
        Some(rustls::Error::InvalidMessage(_)) => " (does the server speak TLS on this port?)",
        Some(rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol)) => {
            " (the server accepts none of the ALPN protocols offered: with --http2 that is h2, else http/1.1)"
        }
        _ => "",
    };
    format!("{e}{hint}")
}

/// The system's trusted roots (rustls-native-certs), for runs without `--cacert`.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(
            "no system CA certificates found: name the CA with --cacert FILE (or use --insecure)"
                .into(),
        );
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(urls: &[&str]) -> Vec<Target> {
        urls.iter().map(|u| Target::parse(u).unwrap()).collect()
    }

    #[test]
    fn names_from_urls_and_sni() {
        let ip = targets(&["https://127.0.0.1:1/a", "https://127.0.0.1:1/b"]);
        let name = server_name(None, &ip).unwrap();
        assert!(matches!(name, ServerName::IpAddress(_)), "no SNI for an IP");
        let name = server_name(Some("api.example.test"), &ip).unwrap();
        assert_eq!(name.to_str(), "api.example.test");
        let v6 = targets(&["https://[::1]:1/"]);
        assert!(matches!(
            server_name(None, &v6),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(server_name(Some("not a name"), &ip).is_err());
    }

    #[test]
    fn different_hosts_need_sni() {
        let mixed = [
            Target {
                host: "a.test".into(),
                ..Target::parse("https://127.0.0.1:1/").unwrap()
            },
            Target {
                host: "b.test".into(),
                ..Target::parse("https://127.0.0.1:1/").unwrap()
            },
        ];
        let e = server_name(None, &mixed).unwrap_err();
        assert!(e.contains("--sni"), "{e}");
        assert_eq!(
            server_name(Some("a.test"), &mixed).unwrap().to_str(),
            "a.test"
        );
    }

    #[test]
    fn insecure_and_versions() {
        let args = TlsArgs {
            insecure: true,
            tls_version: Some(TlsVersion::V1_2),
            no_resume: true,
            ..TlsArgs::default()
        };
        let client = TlsClient::new(&args, &targets(&["https://127.0.0.1:1/"]), false).unwrap();
        assert_eq!(client.verify, Verify::Insecure);
        assert!(!client.resume && client.sni().is_none());
        assert_eq!(client.describe_name(), "no SNI (IP address 127.0.0.1)");
        let missing = TlsArgs {
            cacert: Some("/nonexistent/ca.pem".into()),
            ..TlsArgs::default()
        };
        let e = TlsClient::new(&missing, &targets(&["https://127.0.0.1:1/"]), false).unwrap_err();
        assert!(
            e.starts_with("cannot read --cacert /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
