//! The request's authority: one validated `host[:port]`, found once when the head is
//! parsed, that every later consumer reads (route matching, the `Host` sent upstream,
//! `X-Forwarded-Host`, `Forwarded`, redirect `Location`s, rate-limit and balancing
//! keys on `header:host`).
//!
//! Where it comes from (RFC 9112 §3.2.2): the authority of an absolute-form target
//! (`GET http://a.example/x`) when there is one, and the `Host` header otherwise. A
//! `Host` header is checked even when the target's authority replaces it (RFC 9112
//! §3.2: an invalid `Host` is a 400).
//!
//! What is accepted is RFC 3986's `host [":" port]`, narrowed to what a URL parser
//! and a DNS resolver read the same way:
//! - `host` is an IPv6 literal in brackets (`[::1]`; no zone, no IPvFuture), a
//!   dotted-quad IPv4 address without leading zeros, or a DNS-style name of
//!   labels made of letters, digits, `-` and `_`, each 1 to 63 bytes, 253 bytes in
//!   all, with at most one trailing dot. A name whose last label is numeric (or
//!   `0x…`) must be a valid dotted quad, because WHATWG URL parsers read `1.2.3.4.5`,
//!   `0x7f.1` or `2130706433` as IPv4 addresses.
//! - `port` is empty or 1 to 5 digits up to 65535.
//!
//! Everything else is refused: userinfo (`a@b`, and so `public.example.com:@admin`),
//! percent-escapes, sub-delimiters (`,` `;` `!` …), spaces, empty hosts.

use std::net::Ipv6Addr;

use super::HttpError;

/// Checks one authority (`host[:port]`) against the rules in the module doc.
pub fn check_authority(authority: &[u8]) -> Result<(), HttpError> {
    let (host, port) = split_host_port(authority).ok_or(BAD_AUTHORITY)?;
    if let Some(port) = port {
        check_port(port)?;
    }
    match host.first() {
        Some(b'[') => check_ip_literal(host),
        Some(_) => check_name_or_ipv4(host),
        None => Err(BAD_AUTHORITY),
    }
}

/// The host part of a valid authority, port removed (`[::1]:8443` → `[::1]`,
/// `api.example.com:80` → `api.example.com`).
pub fn authority_host(authority: &[u8]) -> &[u8] {
    split_host_port(authority).map_or(authority, |(host, _)| host)
}

/// The `Location` of a redirect to the same request over https: the authority's
/// host without its port (the plaintext listener's port says nothing about the TLS
/// one), then the path and query (`path_and_query`, `/` when empty). `None` when
/// the request has no authority (an HTTP/1.0 request without `Host`).
pub fn https_location(authority: Option<&[u8]>, path_and_query: &[u8]) -> Option<Vec<u8>> {
    let host = authority_host(authority?);
    let mut location = Vec::with_capacity(8 + host.len() + path_and_query.len() + 1);
    location.extend_from_slice(b"https://");
    location.extend_from_slice(host);
    if !path_and_query.starts_with(b"/") {
        location.push(b'/');
    }
    location.extend_from_slice(path_and_query);
    Some(location)
}

const BAD_AUTHORITY: HttpError = HttpError::bad_request("invalid host or authority");

/// Splits `host[:port]`; `None` when a bracketed literal is not closed or is
/// followed by anything but `:port`.
fn split_host_port(authority: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    if authority.first() == Some(&b'[') {
        let close = authority.iter().position(|&b| b == b']')?;
        let (host, rest) = authority.split_at(close + 1);
        return match rest {
            [] => Some((host, None)),
            [b':', port @ ..] => Some((host, Some(port))),
            _ => None,
        };
    }
    Some(match authority.iter().position(|&b| b == b':') {
        Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
        None => (authority, None),
    })
}

/// Empty (RFC 3986 allows `host:`) or 1 to 5 digits, at most 65535.
fn check_port(port: &[u8]) -> Result<(), HttpError> {
    if port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return Err(BAD_AUTHORITY);
    }
    let value = port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    if value > 65535 {
        return Err(BAD_AUTHORITY);
    }
    Ok(())
}

/// `[IPv6address]`, as the standard library parses it (no zone identifier).
fn check_ip_literal(host: &[u8]) -> Result<(), HttpError> {
    let inner = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .ok_or(BAD_AUTHORITY)?;
    let text = std::str::from_utf8(inner).map_err(|_| BAD_AUTHORITY)?;
    text.parse::<Ipv6Addr>()
        .map(|_| ())
        .map_err(|_| BAD_AUTHORITY)
}

/// A DNS-style name, or a strict dotted-quad IPv4 address.
fn check_name_or_ipv4(host: &[u8]) -> Result<(), HttpError> {
    let name = host.strip_suffix(b".").unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return Err(BAD_AUTHORITY);
    }
    let mut last = &name[..0];
    for label in name.split(|&b| b == b'.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(BAD_AUTHORITY);
        }
        last = label;
    }
    let numeric_end = last.iter().all(u8::is_ascii_digit)
        || (last.len() > 1 && last[0] == b'0' && last[1].eq_ignore_ascii_case(&b'x'));
    if numeric_end && !is_dotted_quad(name) {
        return Err(BAD_AUTHORITY);
    }
    Ok(())
}

/// Four decimal octets 0–255 without leading zeros.
fn is_dotted_quad(name: &[u8]) -> bool {
    let mut count = 0;
    for octet in name.split(|&b| b == b'.') {
        count += 1;
        let ok = !octet.is_empty()
            && octet.len() <= 3
            && octet.iter().all(u8::is_ascii_digit)
            && !(octet.len() > 1 && octet[0] == b'0')
            && octet
                .iter()
                .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
                <= 255;
        if !ok {
            return false;
        }
    }
    count == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_authorities() {
        for ok in [
            "example.com",
            "API.Example.COM:8443",
            "example.com.",
            "example.com:",
            "a_b.internal:1",
            "localhost",
            "127.0.0.1",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:8443",
            "[2001:db8::7]:80",
            "[::ffff:10.0.0.1]",
            "xn--bcher-kva.example",
            "3com.example",
        ] {
            assert_eq!(check_authority(ok.as_bytes()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refused_authorities() {
        for bad in [
            "",
            ":80",
            "a b",
            "public.example.com:@admin.example.com",
            "user@example.com",
            "user:pw@example.com",
            "example.com:80:81",
            "example.com:65536",
            "example.com:123456",
            "example.com:8o",
            "exa%6Dple.com",
            "a,b",
            "a;b",
            "a..b",
            ".example.com",
            "example.com..",
            "[::1",
            "[::1]x",
            "[::1]:80:80",
            "[fe80::1%25eth0]",
            "[v1.fe80::a+en1]",
            "[127.0.0.1]",
            "1.2.3.4.5",
            "1.2.3",
            "256.1.1.1",
            "01.2.3.4",
            "0x7f.1",
            "2130706433",
            "a.0x10",
            "exa\tmple.com",
            "example.com/",
            "example.com\\",
            "ex\u{e4}mple.com",
        ] {
            assert!(check_authority(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let long = format!("{}.com", "a".repeat(250));
        assert!(check_authority(long.as_bytes()).is_err());
        let label = format!("{}.com", "a".repeat(64));
        assert!(check_authority(label.as_bytes()).is_err());
    }

    #[test]
    fn host_without_port() {
        assert_eq!(authority_host(b"[::1]:8443"), b"[::1]");
        assert_eq!(authority_host(b"[::1]"), b"[::1]");
        assert_eq!(authority_host(b"api.example.com:80"), b"api.example.com");
        assert_eq!(authority_host(b"api.example.com"), b"api.example.com");
    }

    #[test]
    fn https_locations() {
        let at = |a: &str, p: &str| {
            https_location(Some(a.as_bytes()), p.as_bytes()).map(|l| String::from_utf8(l).unwrap())
        };
        assert_eq!(at("[::1]:8443", "/a").as_deref(), Some("https://[::1]/a"));
        assert_eq!(
            at("api.example.com:80", "/a?b=1").as_deref(),
            Some("https://api.example.com/a?b=1")
        );
        assert_eq!(at("h", "").as_deref(), Some("https://h/"));
        assert_eq!(at("h", "?q").as_deref(), Some("https://h/?q"));
        assert_eq!(https_location(None, b"/a"), None);
    }
}
