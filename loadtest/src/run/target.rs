//! Target URLs: `http://host[:port][/path][?query]`, parsed by hand and resolved once
//! at start.

use std::net::{SocketAddr, ToSocketAddrs};

/// One URL to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    /// Where connections go (the first address the host resolves to).
    pub addr: SocketAddr,
    /// The `Host` header: the URL's authority as written.
    pub authority: String,
    /// The request-target: path and query, `/` when the URL has none.
    pub path: String,
}

impl Target {
    /// Parses and resolves `url`. Only `http://` is supported; `https://` waits for
    /// the TLS work.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (authority, path) = split_url(url)?;
        let (host, port) =
            split_authority(authority).ok_or_else(|| format!("bad host or port in URL {url:?}"))?;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host:?} in URL {url:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host:?} in URL {url:?} resolves to no address"))?;
        Ok(Target {
            url: url.to_string(),
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

/// `http://AUTHORITY/PATH` → (AUTHORITY, /PATH).
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("not a URL (want http://host[:port]/path): {url:?}"));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "https is not supported yet (plain http only): {url:?}"
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "unsupported scheme {scheme:?} in {url:?} (want http)"
        ));
    }
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
    Ok((authority, if path.is_empty() { "/" } else { path }))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → (host, port); port 80 by default.
fn split_authority(authority: &str) -> Option<(&str, u16)> {
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
        None => 80,
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
    }

    #[test]
    fn bad_urls() {
        for bad in [
            "127.0.0.1:9001",
            "https://127.0.0.1/",
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
