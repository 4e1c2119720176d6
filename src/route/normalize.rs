//! Request-target normalization (RFC 3986 §6.2.2, plus Envoy's `normalize_path`
//! and `merge_slashes`), done once per request before routing. The normalized
//! path is both what routes are matched against and what goes upstream, so the
//! gateway and the service always agree on which path was asked for.
//!
//! Rules, in order, per path segment:
//! 1. Path parameters (`;` and what follows it up to the next `/`, which Tomcat,
//!    Jetty and Spring remove before matching) follow `[server] path_parameters`:
//!    `reject` refuses the request; `strip` removes them from the segment before
//!    anything else, so `/admin;x/secret` is `/admin/secret` and `..;x` is `..`.
//! 2. `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded;
//!    any other escape is kept, with its hex digits uppercased. Refused: a `%`
//!    without two hex digits, `%2F` (`/`), `%5C` (`\`), `%3B` (`;`, a parameter
//!    delimiter to some servers and not to others), `%00` and other control
//!    characters, and escaped bytes ≥ 0x80 that are not well-formed UTF-8
//!    (overlong forms such as `%C0%AE` read as `.` by lenient decoders).
//! 3. Raw control characters, space, `\`, `#` and bytes ≥ 0x80 are refused.
//! 4. Empty segments (`//`) are dropped; `.` is dropped; `..` drops the segment
//!    before it and never climbs above `/`. Decoding comes first, so `%2e%2e`
//!    is `..`. Slashes merge before dots resolve, as in nginx (`/a//../b` is
//!    `/b`; Envoy, resolving first, gives `/a/b`). A trailing slash is kept.
//!
//! The query is kept verbatim; it is only checked for bytes that cannot appear
//! in a request-target (controls, space, `#`, bytes ≥ 0x80).

use std::fmt;

/// What to do with path parameters (`/a;p=1/b`), `[server] path_parameters`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathParameters {
    /// A `;` in the path is a 400 (as Spring Security's `StrictHttpFirewall`).
    #[default]
    Reject,
    /// Each segment's parameters are removed, as Tomcat, Jetty and Spring do
    /// before matching; the path is routed and forwarded without them.
    Strip,
}

/// A request-target's path and query, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedTarget {
    /// The normalized path: starts with `/`, ASCII. Route on it, forward it.
    pub path: String,
    /// The query exactly as received, without the `?`; `Some("")` for a bare `?`.
    pub query: Option<String>,
}

/// Why a request-target was refused; each is a 400 Bad Request, with
/// [`Display`](fmt::Display) as the short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/` (nor is the empty or `?query` rest of an
    /// absolute-form target).
    NotOriginForm,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` or `%5C`: a slash or backslash hidden from segment matching.
    EncodedSlash,
    /// `%00` in the path.
    EncodedNul,
    /// An escaped control character other than NUL (`%01`–`%1F`, `%7F`).
    EncodedControl,
    /// `%3B`: servers disagree on whether it delimits a path parameter.
    EncodedSemicolon,
    /// Escaped bytes ≥ 0x80 that are not well-formed UTF-8.
    BadUtf8Escape,
    /// A `;` (path parameter) with `path_parameters = "reject"`.
    PathParameter,
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
            PathError::NotOriginForm => "request-target must start with '/'",
            PathError::BadEscape => "malformed percent-escape in path",
            PathError::EncodedSlash => "encoded slash or backslash in path",
            PathError::EncodedNul => "encoded NUL in path",
            PathError::EncodedControl => "encoded control character in path",
            PathError::EncodedSemicolon => "encoded semicolon in path",
            PathError::BadUtf8Escape => "percent-escapes in path are not UTF-8",
            PathError::PathParameter => "path parameters (';') are not accepted",
            PathError::Backslash => "backslash in path",
            PathError::InvalidPathChar => "invalid character in path",
            PathError::InvalidQueryChar => "invalid character in query",
        })
    }
}

impl std::error::Error for PathError {}

/// Normalizes the path and query of a request-target (`/a/../b?q`; for an
/// absolute-form target, what follows the authority, where an empty path is `/`)
/// for matching and forwarding, with `params` deciding path parameters. See the
/// module doc for the rules.
pub fn normalize_path(raw: &[u8], params: PathParameters) -> Result<NormalizedTarget, PathError> {
    if !matches!(raw.first(), None | Some(b'/' | b'?')) {
        return Err(PathError::NotOriginForm);
    }
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(q) => (&raw[..q], Some(&raw[q + 1..])),
        None => (raw, None),
    };
    Ok(NormalizedTarget {
        path: normalize_segments(path, params)?,
        query: query.map(checked_query).transpose()?,
    })
}

/// Decodes, checks and resolves the path (see the module doc). An empty path
/// (absolute-form `http://host`) becomes `/`.
fn normalize_segments(path: &[u8], params: PathParameters) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len().max(1));
    out.push('/');
    let mut segments = path
        .strip_prefix(b"/")
        .unwrap_or(path)
        .split(|&b| b == b'/')
        .peekable();
    while let Some(raw_segment) = segments.next() {
        let segment = match raw_segment.iter().position(|&b| b == b';') {
            None => raw_segment,
            Some(_) if params == PathParameters::Reject => return Err(PathError::PathParameter),
            Some(semicolon) => &raw_segment[..semicolon],
        };
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
    let mut utf8 = Utf8Escapes::default();
    let mut bytes = segment.iter();
    while let Some(&b) = bytes.next() {
        if b != b'%' {
            utf8.end()?;
            if b == b'\\' {
                return Err(PathError::Backslash);
            }
            if is_forbidden_raw(b) {
                return Err(PathError::InvalidPathChar);
            }
            out.push(b as char);
            continue;
        }
        let (Some(hi), Some(lo)) = (bytes.next().and_then(hex), bytes.next().and_then(hex)) else {
            return Err(PathError::BadEscape);
        };
        let decoded = hi << 4 | lo;
        if decoded >= 0x80 {
            utf8.push(decoded)?;
        } else {
            utf8.end()?;
        }
        match decoded {
            b'/' | b'\\' => return Err(PathError::EncodedSlash),
            0 => return Err(PathError::EncodedNul),
            b';' => return Err(PathError::EncodedSemicolon),
            c if c < 0x20 || c == 0x7f => return Err(PathError::EncodedControl),
            c if is_unreserved(c) => out.push(c as char),
            _ => {
                out.push('%');
                out.push(HEX_UPPER[usize::from(hi)] as char);
                out.push(HEX_UPPER[usize::from(lo)] as char);
            }
        }
    }
    utf8.end()
}

/// Checks that escaped bytes ≥ 0x80 form whole, well-formed UTF-8 sequences.
#[derive(Default)]
struct Utf8Escapes {
    buf: [u8; 4],
    len: usize,
    want: usize,
}

impl Utf8Escapes {
    fn push(&mut self, b: u8) -> Result<(), PathError> {
        if self.len == 0 {
            self.want = match b {
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => return Err(PathError::BadUtf8Escape),
            };
        } else if !(0x80..=0xbf).contains(&b) {
            return Err(PathError::BadUtf8Escape);
        }
        self.buf[self.len] = b;
        self.len += 1;
        if self.len == self.want {
            // Overlong forms, surrogates and code points past U+10FFFF.
            std::str::from_utf8(&self.buf[..self.len]).map_err(|_| PathError::BadUtf8Escape)?;
            self.len = 0;
        }
        Ok(())
    }

    /// Something other than a high escape follows: no sequence may be open.
    fn end(&mut self) -> Result<(), PathError> {
        if self.len != 0 {
            return Err(PathError::BadUtf8Escape);
        }
        Ok(())
    }
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
        normalize_path(raw.as_bytes(), PathParameters::Reject).map(|t| t.path)
    }

    fn stripped(raw: &str) -> Result<String, PathError> {
        normalize_path(raw.as_bytes(), PathParameters::Strip).map(|t| t.path)
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
            ("/a%2a%3d", "/a%2A%3D"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%3fb%23c", "/a%3Fb%23c"),
            ("/x%25y", "/x%25y"),
            ("/caf%C3%A9/%F0%9F%98%80", "/caf%C3%A9/%F0%9F%98%80"),
            // printable non-unreserved ASCII passes raw
            ("/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="),
            // the rest of an absolute-form target
            ("", "/"),
        ];
        for &(raw, want) in cases {
            assert_eq!(path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn rejection_table() {
        let cases: &[(&[u8], PathError)] = &[
            (b"*", PathError::NotOriginForm),
            (b"example.com:443", PathError::NotOriginForm),
            (b"users", PathError::NotOriginForm),
            (b"http://h/x", PathError::NotOriginForm),
            (b"/a;b", PathError::PathParameter),
            (b"/admin;x/secret", PathError::PathParameter),
            (b"/a/..;/b", PathError::PathParameter),
            (b"/a%3bb", PathError::EncodedSemicolon),
            (b"/a%3B", PathError::EncodedSemicolon),
            (b"/a%09", PathError::EncodedControl),
            (b"/a%0d%0a", PathError::EncodedControl),
            (b"/a%7f", PathError::EncodedControl),
            (b"/%c0%ae%c0%ae/x", PathError::BadUtf8Escape),
            (b"/%e0%80%ae", PathError::BadUtf8Escape),
            (b"/%ed%a0%80", PathError::BadUtf8Escape),
            (b"/%c3", PathError::BadUtf8Escape),
            (b"/%c3x", PathError::BadUtf8Escape),
            (b"/%a9", PathError::BadUtf8Escape),
            (b"/%f5%80%80%80", PathError::BadUtf8Escape),
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
                normalize_path(raw, PathParameters::Reject),
                Err(want),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn query_is_kept_verbatim() {
        let n = |raw: &[u8]| normalize_path(raw, PathParameters::Reject).unwrap();
        let t = n(b"/a/../b?x=%2e%2e&y=/../z&%zz&k=a?b;c");
        assert_eq!(t.path, "/b");
        assert_eq!(t.query.as_deref(), Some("x=%2e%2e&y=/../z&%zz&k=a?b;c"));
        assert_eq!(n(b"/a?").query.as_deref(), Some(""));
        assert_eq!(n(b"/a").query, None);
        // a '?' encoded in the path is path, not query
        let t = n(b"/a%3Fx=1");
        assert_eq!((t.path.as_str(), t.query), ("/a%3Fx=1", None));
        // the rest of an absolute-form target without a path
        let t = n(b"?x");
        assert_eq!((t.path.as_str(), t.query.as_deref()), ("/", Some("x")));
    }

    /// `path_parameters = "strip"`: each segment loses `;...` before decoding and
    /// dot-segment resolution, as Tomcat, Jetty and Spring read it.
    #[test]
    fn stripped_path_parameters() {
        let cases: &[(&str, &str)] = &[
            ("/admin;x/secret", "/admin/secret"),
            ("/admin;", "/admin"),
            ("/admin;jsessionid=ABC", "/admin"),
            ("/a;x=1;y=2/b;z", "/a/b"),
            ("/;x/admin", "/admin"),
            ("/public/..;/admin", "/admin"),
            ("/public/..;x/admin", "/admin"),
            ("/.;/admin", "/admin"),
            ("/.;x/admin", "/admin"),
            ("/public/%2e%2e;x/admin", "/admin"),
            ("/public;/../admin", "/admin"),
            ("/a;b%2f/c", "/a/c"),
        ];
        for &(raw, want) in cases {
            assert_eq!(stripped(raw).as_deref(), Ok(want), "{raw}");
        }
        // an escaped ';' is refused in either mode; what follows a raw ';' is
        // dropped unread, as those servers drop it, and never forwarded
        assert_eq!(stripped("/a%3b/b"), Err(PathError::EncodedSemicolon));
        assert_eq!(stripped("/a;x\\y"), Ok("/a".to_string()));
    }

    #[test]
    fn stripping_is_idempotent_and_leaves_no_parameter() {
        for raw in ["/a;b/c;d/..;e/f", "/;/;/", "/x/.;/..;/y;"] {
            let once = stripped(raw).unwrap();
            assert!(!once.contains(';'), "{raw} -> {once}");
            assert_eq!(path(&once).as_deref(), Ok(once.as_str()));
        }
    }

    #[test]
    fn errors_have_short_reasons() {
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "encoded slash or backslash in path"
        );
        assert_eq!(
            PathError::PathParameter.to_string(),
            "path parameters (';') are not accepted"
        );
    }
}
