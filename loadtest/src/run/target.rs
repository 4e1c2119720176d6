//! Target URLs: `http[s]://host[:port][/path][?query]`, parsed by hand and resolved
//! once at start.

use std::net::{SocketAddr, ToSocketAddrs};

/// One URL to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    /// `https://`: connections speak TLS (`run/tls.rs`).
    pub tls: bool,
    /// The host as written, without IPv6 brackets: the default TLS server name.
    pub host: String,
    /// Where connections go (the first address the host resolves to).
    pub addr: SocketAddr,
    /// The `Host` header: the URL's authority as written.
    pub authority: String,
    /// The request-target: path and query, `/` when the URL has none.
    pub path: String,
}

impl Target {
    /// Parses and resolves `url`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, authority, path) = split_url(url)?;
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_authority(authority, default_port)
            .ok_or_else(|| format!("bad host or port in URL {url:?}"))?;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host:?} in URL {url:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host:?} in URL {url:?} resolves to no address"))?;
        Ok(Target {
            url: url.to_string(),
            tls,
            host: host.to_string(),
            addr,
            authority: authority.to_string(),
            path: if path.starts_with('?') {
                format!("/{path}")
            } else {
                path.to_string()
            },
        })
    }
}

/// `http[s]://AUTHORITY/PATH` → (https?, AUTHORITY, /PATH).
fn split_url(url: &str) -> Result<(bool, &str, &str), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("not a URL (want http://host[:port]/path): {url:?}"));
    };
    let tls = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(format!(
            "unsupported scheme {scheme:?} in {url:?} (want http or https)"
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, mut path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("bad host in URL {url:?}"));
    }
    if let Some(hash) = path.find('#') {
        path = &path[..hash];
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("spaces or control bytes in URL {url:?}"));
    }
    Ok((tls, authority, if path.is_empty() { "/" } else { path }))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → (host, port).
fn split_authority(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:9001/a/b?x=1#frag").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:9001", "/a/b?x=1")
        );
        let t = Target::parse("http://127.0.0.1").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
        let t = Target::parse("HTTP://[::1]:8080?q").unwrap();
        assert_eq!(
            (t.addr, t.path.as_str()),
            ("[::1]:8080".parse().unwrap(), "/?q")
        );
        assert_eq!(t.authority, "[::1]:8080");
        assert_eq!((t.host.as_str(), t.tls), ("::1", false));
        let t = Target::parse("https://127.0.0.1/x").unwrap();
        assert_eq!((t.addr.port(), t.tls), (443, true));
        assert_eq!(
            (t.host.as_str(), t.authority.as_str()),
            ("127.0.0.1", "127.0.0.1")
        );
    }

    #[test]
    fn bad_urls() {
        for bad in [
            "127.0.0.1:9001",
            "ftp://127.0.0.1/",
            "http:///x",
            "http://127.0.0.1:port/",
            "http://127.0.0.1:99999/",
            "http://127.0.0.1:/",
            "http://u@127.0.0.1/",
            "http://127.0.0.1/a b",
            "http://[::1/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
