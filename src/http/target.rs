//! The request-target's form (RFC 9112 §3.2): origin-form (`/path?query`) or
//! absolute-form (`http://authority/path?query`), split once when the head is
//! parsed. Asterisk-form (`OPTIONS *`) and authority-form (`CONNECT host:port`)
//! name nothing a route can match, and are refused.

use std::ops::Range;

use super::authority::check_authority;
use super::HttpError;

/// A request-target split into its parts, as ranges into the target's bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TargetParts {
    /// The authority of an absolute-form target, validated.
    pub authority: Option<Range<usize>>,
    /// The path and query: all of an origin-form target (it starts with `/`);
    /// what follows the authority in absolute-form (empty, or starting with `/`
    /// or `?`).
    pub path_and_query: Range<usize>,
}

/// Splits and checks `target`.
pub(super) fn split_target(target: &[u8]) -> Result<TargetParts, HttpError> {
    match target.first() {
        Some(b'/') => {
            return Ok(TargetParts {
                authority: None,
                path_and_query: 0..target.len(),
            })
        }
        None => return Err(HttpError::bad_request("empty request-target")),
        Some(_) if target == b"*" => {
            return Err(HttpError::bad_request(
                "asterisk-form request-target is not routable",
            ))
        }
        Some(_) => {}
    }
    let Some(scheme_end) = target.windows(3).position(|w| w == b"://") else {
        return Err(HttpError::bad_request("request-target must start with '/'"));
    };
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(HttpError::bad_request(
            "request-target scheme must be http or https",
        ));
    }
    let start = scheme_end + 3;
    let end = target[start..]
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .map_or(target.len(), |i| start + i);
    check_authority(&target[start..end])
        .map_err(|_| HttpError::bad_request("invalid authority in request-target"))?;
    if target.get(end) == Some(&b'#') {
        return Err(HttpError::bad_request("fragment in request-target"));
    }
    Ok(TargetParts {
        authority: Some(start..end),
        path_and_query: end..target.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(t: &str) -> Result<(Option<&str>, &str), HttpError> {
        split_target(t.as_bytes()).map(|p| (p.authority.map(|a| &t[a]), &t[p.path_and_query]))
    }

    #[test]
    fn forms() {
        assert_eq!(parts("/a?b"), Ok((None, "/a?b")));
        assert_eq!(
            parts("http://API.example.com:8080/a/./b?q=1"),
            Ok((Some("API.example.com:8080"), "/a/./b?q=1"))
        );
        assert_eq!(parts("HTTPS://[::1]:8443"), Ok((Some("[::1]:8443"), "")));
        assert_eq!(parts("http://h?x"), Ok((Some("h"), "?x")));
        assert_eq!(parts("//a/b"), Ok((None, "//a/b")));
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "",
            "*",
            "example.com:443",
            "users",
            "ftp://h/x",
            "http:///x",
            "http://user@h/x",
            "http://public.example.com:@admin.example.com/x",
            "http://a b/x",
            "http://h:99999/",
            "http://[::1/",
            "1http://h/",
            "http://h#x",
        ] {
            assert!(split_target(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
