//! Request-target normalization (RFC 3986 §6.2.2, plus Envoy's `normalize_path`
//! and `merge_slashes`), done once per request before routing. The normalized
//! path is both what routes are matched against and what goes upstream, so the
//! gateway and the service always agree on which path was asked for.
//!
//! Rules, in order, per path segment:
//! 1. `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded;
//!    any other escape is kept, with its hex digits uppercased. A `%` without two
//!    hex digits, `%2F` (`/`), `%5C` (`\`) and `%00` are rejected.
//! 2. Raw control characters, space, `\`, `#` and bytes ≥ 0x80 are rejected.
//! 3. Empty segments (`//`) are dropped; `.` is dropped; `..` drops the segment
//!    before it and never climbs above `/`. Decoding comes first, so `%2e%2e`
//!    is `..`. Slashes merge before dots resolve, as in nginx (`/a//../b` is
//!    `/b`; Envoy, resolving first, gives `/a/b`). A trailing slash is kept.
//!
//! The query is kept verbatim; it is only checked for bytes that cannot appear
//! in a request-target (controls, space, `#`, bytes ≥ 0x80).

use std::fmt;

/// A request-target split and normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedTarget {
    /// The normalized path: starts with `/`, ASCII. Route on it, forward it.
    pub path: String,
    /// The query exactly as received, without the `?`; `Some("")` for a bare `?`.
    pub query: Option<String>,
    /// The authority of an absolute-form target (`http://host:port/path`), as
    /// received. When present it is the request's host: RFC 9112 §3.2.2 says
    /// the Host header is then ignored, so route and forward with this one.
    pub authority: Option<String>,
}

/// Why a request-target was refused; each is a 400 Bad Request, with
/// [`Display`](fmt::Display) as the short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Nothing where the request-target should be.
    Empty,
    /// `*` (asterisk-form, server-wide `OPTIONS`): there is no route for it.
    AsteriskForm,
    /// Neither origin-form (`/path`) nor absolute-form; includes the
    /// authority-form `host:port` of `CONNECT`, which a gateway does not tunnel.
    NotOriginForm,
    /// Absolute-form with a scheme other than `http` or `https`.
    UnsupportedScheme,
    /// Absolute-form with an empty or malformed authority, or one with userinfo.
    BadAuthority,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` or `%5C`: a slash or backslash hidden from segment matching.
    EncodedSlash,
    /// `%00` in the path.
    EncodedNul,
    /// A raw `\` in the path (some servers treat it as `/`).
    Backslash,
    /// A control character, space, `#` or a byte ≥ 0x80 in the path.
    InvalidPathChar,
    /// A control character, space, `#` or a byte ≥ 0x80 in the query.
    InvalidQueryChar,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Empty => "empty request-target",
            PathError::AsteriskForm => "asterisk-form request-target is not routable",
            PathError::NotOriginForm => "request-target must start with '/'",
            PathError::UnsupportedScheme => "request-target scheme must be http or https",
            PathError::BadAuthority => "invalid authority in request-target",
            PathError::BadEscape => "malformed percent-escape in path",
            PathError::EncodedSlash => "encoded slash or backslash in path",
            PathError::EncodedNul => "encoded NUL in path",
            PathError::Backslash => "backslash in path",
            PathError::InvalidPathChar => "invalid character in path",
            PathError::InvalidQueryChar => "invalid character in query",
        })
    }
}

impl std::error::Error for PathError {}

/// Normalizes a request-target (origin-form, or absolute-form whose authority
/// is returned apart) for matching and forwarding. See the module doc for the rules.
pub fn normalize_path(raw: &[u8]) -> Result<NormalizedTarget, PathError> {
    let (authority, target) = split_absolute_form(raw)?;
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };
    Ok(NormalizedTarget {
        path: normalize_segments(path)?,
        query: query.map(checked_query).transpose()?,
        authority,
    })
}

/// Splits `http://authority/path?query` into its authority and the rest;
/// passes origin-form through with no authority.
fn split_absolute_form(raw: &[u8]) -> Result<(Option<String>, &[u8]), PathError> {
    match raw.first() {
        None => return Err(PathError::Empty),
        Some(b'/') => return Ok((None, raw)),
        Some(_) if raw == b"*" => return Err(PathError::AsteriskForm),
        Some(_) => {}
    }
    let Some(scheme_end) = raw.windows(3).position(|w| w == b"://") else {
        return Err(PathError::NotOriginForm);
    };
    let scheme = &raw[..scheme_end];
    let is_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !is_scheme {
        return Err(PathError::NotOriginForm);
    }
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(PathError::UnsupportedScheme);
    }
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let authority_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(b);
    if authority.is_empty() || !authority.iter().all(authority_byte) {
        return Err(PathError::BadAuthority); // also refuses userinfo ('@')
    }
    let authority = String::from_utf8(authority.to_vec()).map_err(|_| PathError::BadAuthority)?;
    Ok((Some(authority), &rest[authority_end..]))
}

/// Decodes, checks and resolves the path (see the module doc). An empty path
/// (absolute-form `http://host`) becomes `/`.
fn normalize_segments(path: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len().max(1));
    out.push('/');
    let mut segments = path
        .strip_prefix(b"/")
        .unwrap_or(path)
        .split(|&b| b == b'/')
        .peekable();
    while let Some(segment) = segments.next() {
        // `out` ends with '/' here: the segment is written after it, then judged.
        let start = out.len();
        push_decoded(&mut out, segment)?;
        match &out[start..] {
            "" => {}
            "." => out.truncate(start),
            ".." => {
                out.truncate(start);
                if start > 1 {
                    let parent = out[..start - 1].rfind('/').unwrap_or(0);
                    out.truncate(parent + 1);
                }
            }
            _ if segments.peek().is_some() => out.push('/'),
            _ => {}
        }
    }
    Ok(out)
}

/// Appends one raw path segment to `out`, percent-decoding unreserved
/// characters and uppercasing the hex of the escapes it keeps.
fn push_decoded(out: &mut String, segment: &[u8]) -> Result<(), PathError> {
    let mut bytes = segment.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let (Some(hi), Some(lo)) = (bytes.next().and_then(hex), bytes.next().and_then(hex))
            else {
                return Err(PathError::BadEscape);
            };
            let decoded = hi << 4 | lo;
            match decoded {
                b'/' | b'\\' => return Err(PathError::EncodedSlash),
                0 => return Err(PathError::EncodedNul),
                c if is_unreserved(c) => out.push(c as char),
                _ => {
                    out.push('%');
                    out.push(HEX_UPPER[usize::from(hi)] as char);
                    out.push(HEX_UPPER[usize::from(lo)] as char);
                }
            }
        } else if b == b'\\' {
            return Err(PathError::Backslash);
        } else if is_forbidden_raw(b) {
            return Err(PathError::InvalidPathChar);
        } else {
            out.push(b as char);
        }
    }
    Ok(())
}

fn checked_query(query: &[u8]) -> Result<String, PathError> {
    if query.iter().any(|&b| is_forbidden_raw(b)) {
        return Err(PathError::InvalidQueryChar);
    }
    String::from_utf8(query.to_vec()).map_err(|_| PathError::InvalidQueryChar)
}

/// Bytes that never appear raw in a request-target we accept: controls
/// (NUL included), space, DEL, `#` (a fragment is never sent) and non-ASCII.
fn is_forbidden_raw(b: u8) -> bool {
    b <= b' ' || b >= 0x7f || b == b'#'
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex(&b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> Result<String, PathError> {
        normalize_path(raw.as_bytes()).map(|t| t.path)
    }

    #[test]
    fn normalization_table() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/users/42", "/users/42"),
            ("/users/42/", "/users/42/"),
            // dot segments
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/..", "/"),
            ("/../../a", "/a"),
            ("/.", "/"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/c", "/a/..b/c"),
            // merged slashes (merged before dot resolution, as nginx does)
            ("//", "/"),
            ("//a///b//", "/a/b/"),
            ("/a//../b", "/b"),
            // encoded unreserved are decoded, including encoded dots
            ("/%7Euser/%41%62%2D%5F", "/~user/Ab-_"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E/b", "/a/b"),
            ("/a/.%2e/b", "/b"),
            ("/%2e%2e/%2e%2e/etc", "/etc"),
            // other escapes kept, hex uppercased
            ("/a%20b", "/a%20b"),
            ("/a%2a%3b", "/a%2A%3B"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%3fb%23c", "/a%3Fb%23c"),
            ("/x%25y", "/x%25y"),
            // printable non-unreserved ASCII passes raw
            ("/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="),
        ];
        for &(raw, want) in cases {
            assert_eq!(path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn rejection_table() {
        let cases: &[(&[u8], PathError)] = &[
            (b"", PathError::Empty),
            (b"*", PathError::AsteriskForm),
            (b"example.com:443", PathError::NotOriginForm),
            (b"users", PathError::NotOriginForm),
            (b"ftp://h/x", PathError::UnsupportedScheme),
            (b"http:///x", PathError::BadAuthority),
            (b"http://user@h/x", PathError::BadAuthority),
            (b"/a%2", PathError::BadEscape),
            (b"/a%", PathError::BadEscape),
            (b"/a%zz", PathError::BadEscape),
            (b"/a%g1/b", PathError::BadEscape),
            (b"/a%2Fb", PathError::EncodedSlash),
            (b"/a%2fb", PathError::EncodedSlash),
            (b"/a%5cb", PathError::EncodedSlash),
            (b"/a%00b", PathError::EncodedNul),
            (b"/a\\b", PathError::Backslash),
            (b"/a b", PathError::InvalidPathChar),
            (b"/a\0b", PathError::InvalidPathChar),
            (b"/a\tb", PathError::InvalidPathChar),
            (b"/a\x7fb", PathError::InvalidPathChar),
            (b"/caf\xc3\xa9", PathError::InvalidPathChar),
            (b"/a#frag", PathError::InvalidPathChar),
            (b"/a?b c", PathError::InvalidQueryChar),
            (b"/a?b\0", PathError::InvalidQueryChar),
            (b"/a?b\r\n", PathError::InvalidQueryChar),
            (b"/a?\xff", PathError::InvalidQueryChar),
        ];
        for &(raw, want) in cases {
            assert_eq!(
                normalize_path(raw),
                Err(want),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn query_is_kept_verbatim() {
        let t = normalize_path(b"/a/../b?x=%2e%2e&y=/../z&%zz&k=a?b").unwrap();
        assert_eq!(t.path, "/b");
        assert_eq!(t.query.as_deref(), Some("x=%2e%2e&y=/../z&%zz&k=a?b"));
        assert_eq!(t.authority, None);
        assert_eq!(normalize_path(b"/a?").unwrap().query.as_deref(), Some(""));
        assert_eq!(normalize_path(b"/a").unwrap().query, None);
        // a '?' encoded in the path is path, not query
        let t = normalize_path(b"/a%3Fx=1").unwrap();
        assert_eq!((t.path.as_str(), t.query), ("/a%3Fx=1", None));
    }

    #[test]
    fn absolute_form_yields_authority_and_path() {
        let t = normalize_path(b"http://API.example.com:8080/a/./b?q=1").unwrap();
        assert_eq!(t.authority.as_deref(), Some("API.example.com:8080"));
        assert_eq!(t.path, "/a/b");
        assert_eq!(t.query.as_deref(), Some("q=1"));
        let t = normalize_path(b"HTTPS://[::1]:8443").unwrap();
        assert_eq!(
            (t.authority.as_deref(), t.path.as_str()),
            (Some("[::1]:8443"), "/")
        );
        let t = normalize_path(b"http://h?x").unwrap();
        assert_eq!((t.path.as_str(), t.query.as_deref()), ("/", Some("x")));
    }

    /// Random paths over an alphabet rich in separators, dots and escapes: the
    /// result never holds `//`, `.` or `..` segments, and normalizing it again
    /// changes nothing (what is matched is exactly what is forwarded).
    #[test]
    fn normalization_is_idempotent() {
        const PIECES: [&str; 12] = [
            "/", "/", ".", "..", "a", "%2e", "%2E", "%41", "%3f", "%", "%zz", "b~",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as usize
        };
        let mut checked = 0;
        for _ in 0..20_000 {
            let mut raw = String::from("/");
            for _ in 0..next() % 12 {
                raw.push_str(PIECES[next() % PIECES.len()]);
            }
            let Ok(once) = path(&raw) else { continue };
            assert!(once.starts_with('/'), "{raw} -> {once}");
            for bad in ["//", "/./", "/../"] {
                assert!(!once.contains(bad), "{raw} -> {once}");
            }
            assert!(
                !once.ends_with("/.") && !once.ends_with("/.."),
                "{raw} -> {once}"
            );
            assert_eq!(path(&once).as_deref(), Ok(once.as_str()), "{raw}");
            checked += 1;
        }
        assert!(checked > 5_000, "only {checked} random paths were valid");
    }

    #[test]
    fn errors_have_short_reasons() {
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "encoded slash or backslash in path"
        );
        assert_eq!(
            PathError::AsteriskForm.to_string(),
            "asterisk-form request-target is not routable"
        );
    }
}
