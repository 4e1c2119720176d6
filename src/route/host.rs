//! Host patterns: how a route's `host` is stored, and how a request's Host is
//! reduced to the same form before lookup.
//!
//! Both sides are compared lowercased, without a port and without a trailing dot;
//! an IPv6 literal in its RFC 5952 text (`[0:0::1]` is `[::1]`).
//! `*.example.com` is a suffix match: it matches `a.example.com` and
//! `a.b.example.com`, but not `example.com` itself (as nginx and Envoy do).

use std::io::Write as _;
use std::net::Ipv6Addr;

/// Longest host this module compares: a DNS name is at most 253 bytes, and a
/// bracketed IPv6 literal far less. A longer Host can name no route's host.
pub(super) const MAX_HOST_LEN: usize = 255;

/// A route's host condition, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostPattern {
    /// No `host` key: any Host, or none.
    Any,
    /// `api.example.com`, stored lowercase.
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com`, lowercase.
    Suffix(String),
}

impl HostPattern {
    pub(super) fn parse(host: Option<&str>) -> HostPattern {
        let Some(host) = host else {
            return HostPattern::Any;
        };
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if let Some(v6) = ipv6_literal(host.as_bytes()) {
            return HostPattern::Exact(format!("[{v6}]"));
        }
        match host.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') => HostPattern::Suffix(suffix.to_owned()),
            _ => HostPattern::Exact(host),
        }
    }
}

/// Why a `host` value from the config cannot be used, or `Ok`.
pub(super) fn check_host_pattern(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(format!(
            "host {host:?}: must be a host name of 1 to 253 bytes"
        ));
    }
    if name.starts_with('[') {
        return match ipv6_literal(name.as_bytes()) {
            Some(_) => Ok(()),
            None => Err(format!("host {host:?}: not an IPv6 address in brackets")),
        };
    }
    if name.contains('*') {
        return Err(format!(
            "host {host:?}: a wildcard is only allowed as a leading \"*.\" label"
        ));
    }
    if name.contains(':') {
        return Err(format!(
            "host {host:?}: hosts are matched without the port; remove \":port\""
        ));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(valid_label) {
        return Err(format!(
            "host {host:?}: labels must be 1 to 63 letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

/// Reduces a request's Host value to the form hosts are stored in: port removed
/// (`[v6]:port` understood), one trailing dot removed, ASCII lowercased. Writes
/// into `buf`; `None` when nothing is left or the result is longer than any
/// host could be.
pub(super) fn request_host<'b>(raw: &[u8], buf: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b [u8]> {
    let end = if raw.first() == Some(&b'[') {
        raw.iter()
            .position(|&b| b == b']')
            .map_or(raw.len(), |i| i + 1)
    } else {
        raw.iter().position(|&b| b == b':').unwrap_or(raw.len())
    };
    let name = &raw[..end];
    if let Some(v6) = ipv6_literal(name) {
        let mut w = &mut buf[..];
        write!(w, "[{v6}]").ok()?;
        let len = MAX_HOST_LEN - w.len();
        return Some(&buf[..len]);
    }
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return None;
    }
    let out = &mut buf[..name.len()];
    for (o, &b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

/// `[IPv6address]` parsed, for comparing in one spelling.
fn ipv6_literal(name: &[u8]) -> Option<Ipv6Addr> {
    let inner = name.strip_prefix(b"[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// The wildcard suffixes a (reduced) host could match, longest first:
/// `a.b.example.com` → `.b.example.com`, `.example.com`, `.com`.
/// The first label is never part of a suffix, so `*.example.com` cannot match
/// `example.com`.
pub(super) fn wildcard_suffixes(host: &[u8]) -> impl Iterator<Item = &[u8]> {
    host.iter()
        .enumerate()
        .skip(1)
        .filter(|&(_, &b)| b == b'.')
        .map(move |(i, _)| &host[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reduce(raw: &str) -> Option<String> {
        let mut buf = [0u8; MAX_HOST_LEN];
        request_host(raw.as_bytes(), &mut buf).map(|h| String::from_utf8_lossy(h).into_owned())
    }

    #[test]
    fn request_host_drops_port_and_trailing_dot_and_lowercases() {
        assert_eq!(
            reduce("API.Example.COM:8443").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            reduce("api.example.com.").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            reduce("api.example.com.:80").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(reduce("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(reduce("[FE80::1]").as_deref(), Some("[fe80::1]"));
        assert_eq!(reduce("[0:0:0:0:0:0:0:1]:80").as_deref(), Some("[::1]"));
        assert_eq!(
            reduce("[::FFFF:127.0.0.1]").as_deref(),
            Some("[::ffff:127.0.0.1]")
        );
        assert_eq!(reduce("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(reduce(""), None);
        assert_eq!(reduce(":80"), None);
        assert_eq!(reduce(&"a".repeat(300)), None);
    }

    #[test]
    fn patterns_compile_lowercase_without_trailing_dot() {
        assert_eq!(HostPattern::parse(None), HostPattern::Any);
        assert_eq!(
            HostPattern::parse(Some("API.example.com.")),
            HostPattern::Exact("api.example.com".into())
        );
        assert_eq!(
            HostPattern::parse(Some("*.Example.com")),
            HostPattern::Suffix(".example.com".into())
        );
        assert_eq!(
            HostPattern::parse(Some("[0::1]")),
            HostPattern::Exact("[::1]".into())
        );
    }

    #[test]
    fn wildcard_suffixes_longest_first_never_the_whole_host() {
        let got: Vec<&[u8]> = wildcard_suffixes(b"a.b.example.com").collect();
        assert_eq!(got, [&b".b.example.com"[..], b".example.com", b".com"]);
        assert_eq!(wildcard_suffixes(b"localhost").count(), 0);
    }

    #[test]
    fn config_host_patterns_are_checked() {
        for ok in [
            "api.example.com",
            "*.example.com",
            "API.Example.com.",
            "[::1]",
            "a_b.internal",
        ] {
            assert_eq!(check_host_pattern(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "*.",
            "a.*.com",
            "api*.example.com",
            "api.example.com:80",
            "a..b",
            "a b.com",
            "[::1",
            "[x]",
        ] {
            assert!(check_host_pattern(bad).is_err(), "{bad}");
        }
    }
}
