//! A minimal blocking HTTP/1.1 GET for JWKS documents, over plain TCP or rustls
//! (ring provider only). One request per connection (`Connection: close`), a
//! deadline on the whole exchange, a size cap on the answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Largest JWKS answer read, head included.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl JwksUrl {
    pub fn parse(url: &str) -> Result<JwksUrl, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("must start with http:// or https://".to_string());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".to_string());
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| "bad port")?,
                None if after.is_empty() => default_port,
                None => return Err("bad host".to_string()),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| "bad port")?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() || port == 0 || path.contains(['#', ' ']) {
            return Err(
                "needs a host, a port from 1 to 65535 and a path without spaces".to_string(),
            );
        }
        Ok(JwksUrl {
            https,
            host,
            port,
            path: path.to_string(),
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.https { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A successful fetch: the body and the freshness the server gave it.
pub struct Fetched {
    pub body: Vec<u8>,
    pub max_age: Option<Duration>,
}

/// TLS settings for https fetches: the webpki roots, or the CAs of a PEM file.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable CA certificate in {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("no certificate in {}", path.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// GETs `url` within `timeout`; anything but a complete 200 is an error.
pub fn get(
    url: &JwksUrl,
    timeout: Duration,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Fetched, String> {
    let deadline = Instant::now() + timeout;
    let tcp = crate::side_net::connect(&url.host, url.port, deadline)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\naccept: application/json, application/jwk-set+json\r\nuser-agent: portico/{}\r\nconnection: close\r\n\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    let raw = if url.https {
        let config = tls.ok_or("no TLS configuration for an https URL")?;
        let name = ServerName::try_from(url.host.clone())
            .map_err(|_| format!("bad TLS server name {}", url.host))?;
        let conn = ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS: {e}"))?;
        exchange(
            StreamOwned::new(conn, tcp.try_clone().map_err(|e| e.to_string())?),
            &tcp,
            &request,
            deadline,
        )?
    } else {
        exchange(
            tcp.try_clone().map_err(|e| e.to_string())?,
            &tcp,
            &request,
            deadline,
        )?
    };
    parse_response(&raw)
}

/// Writes the request and reads until the server closes, within the deadline.
fn exchange<S: Read + Write>(
    mut io: S,
    tcp: &TcpStream,
    request: &str,
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    let set_timeouts = |tcp: &TcpStream| -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".to_string());
        }
        tcp.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(left)).map_err(|e| e.to_string())
    };
    set_timeouts(tcp)?;
    io.write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    io.flush().map_err(|e| format!("send: {e}"))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        set_timeouts(tcp)?;
        match io.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > MAX_RESPONSE_BYTES {
                    return Err("the answer is larger than 1 MiB".to_string());
                }
            }
            // Servers often close TLS without close_notify; the framing check below
            // still catches a truncated body.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(out),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

/// Reads a whole answer with the data path's codec: the response-head parser and
/// the body de-chunker of `crate::http`.
fn parse_response(raw: &[u8]) -> Result<Fetched, String> {
    let mut head = crate::http::ResponseHead::default();
    match crate::http::parse_response(raw, false, &mut head) {
        Ok(Some(())) => {}
        Ok(None) => return Err("the answer ended inside its head".to_string()),
        Err(e) => return Err(format!("malformed answer: {e}")),
    }
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    let max_age = head
        .headers
        .iter()
        .filter(|h| {
            raw.get(h.name.clone())
                .is_some_and(|n| n.eq_ignore_ascii_case(b"cache-control"))
        })
        .filter_map(|h| std::str::from_utf8(raw.get(h.value.clone())?).ok())
        .fold(None, |found, value| cache_max_age(value.trim()).or(found));
    let body = crate::http::decode_whole(head.body, &raw[head.head_len..])?;
    Ok(Fetched { body, max_age })
}

/// `max-age` of a `Cache-Control` value (`no-cache`/`no-store` count as 0).
pub fn cache_max_age(value: &str) -> Option<Duration> {
    let mut out = None;
    for directive in value.split(',') {
        let d = directive.trim().to_ascii_lowercase();
        if d == "no-cache" || d == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            out = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = JwksUrl::parse("https://id.example.com/.well-known/jwks.json").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "id.example.com", 443, "/.well-known/jwks.json")
        );
        let u = JwksUrl::parse("http://127.0.0.1:8081").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header()),
            (8081, "/", "127.0.0.1:8081".to_string())
        );
        let u = JwksUrl::parse("http://[::1]:9/k").unwrap();
        assert_eq!(u.host, "::1");
        assert!(JwksUrl::parse("ftp://x/").is_err());
        assert!(JwksUrl::parse("http://:80/").is_err());
        assert!(JwksUrl::parse("http://u:p@x/").is_err());
    }

    #[test]
    fn responses() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nCache-Control: public, max-age=120\r\nContent-Length: 2\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(
            (r.body.as_slice(), r.max_age),
            (&b"{}"[..], Some(Duration::from_secs(120)))
        );
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"{}");
        assert!(parse_response(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}").is_err());
        assert_eq!(cache_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(cache_max_age("public"), None);
    }
}
