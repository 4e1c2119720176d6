//! The path sent upstream: the normalized path, with the route's prefix
//! stripped (`strip_prefix`) or replaced (`rewrite_prefix`).

use std::borrow::Cow;

use super::path_index::{after_prefix, canonical_prefix};

/// The upstream path for a request that matched a route.
///
/// - `spec_prefix`: the route's `path_prefix`; for a `path` (exact) route pass
///   that path (it is the whole matched path); `None` leaves the path as is.
/// - `strip_prefix`: remove the prefix: with `/api`, `/api/x` → `/x`, `/api` → `/`.
/// - `rewrite_prefix`: replace the prefix: with `/api` → `/v2`, `/api/x` → `/v2/x`,
///   `/api` → `/v2`, `/api/` → `/v2/`.
///
/// Prefixes are segment-aware on both sides, so a trailing slash on either
/// (`/api/`, `/v2/`) changes nothing. `strip_prefix` and `rewrite_prefix`
/// together are a config error (the config layer rejects them); if both reach
/// here anyway, `rewrite_prefix` wins. The query is not part of `normalized_path`:
/// append it unchanged. The result always starts with `/`, and is borrowed
/// unless a rewrite had to build a new string.
pub fn upstream_path<'p>(
    spec_prefix: Option<&str>,
    strip_prefix: bool,
    rewrite_prefix: Option<&str>,
    normalized_path: &'p str,
) -> Cow<'p, str> {
    let replacement = match (rewrite_prefix, strip_prefix) {
        (Some(rewrite), _) => canonical_prefix(rewrite),
        (None, true) => "",
        (None, false) => return Cow::Borrowed(normalized_path),
    };
    let Some(rest) = spec_prefix.and_then(|p| after_prefix(canonical_prefix(p), normalized_path))
    else {
        return Cow::Borrowed(normalized_path);
    };
    match (replacement, rest) {
        ("", "") => Cow::Borrowed("/"),
        ("", rest) => Cow::Borrowed(rest),
        (replacement, rest) => Cow::Owned(format!("{replacement}{rest}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_prefix() {
        let strip = |prefix, path| upstream_path(Some(prefix), true, None, path);
        assert_eq!(strip("/api", "/api/x"), "/x");
        assert_eq!(strip("/api", "/api"), "/");
        assert_eq!(strip("/api", "/api/"), "/");
        assert_eq!(strip("/api/", "/api/x/y"), "/x/y");
        assert_eq!(strip("/", "/x"), "/x");
        assert!(matches!(strip("/api", "/api/x"), Cow::Borrowed(_)));
    }

    #[test]
    fn rewrite_prefix() {
        let rewrite = |prefix, to, path| upstream_path(Some(prefix), false, Some(to), path);
        assert_eq!(rewrite("/api", "/v2", "/api/x"), "/v2/x");
        assert_eq!(rewrite("/api", "/v2", "/api"), "/v2");
        assert_eq!(rewrite("/api", "/v2/", "/api/"), "/v2/");
        assert_eq!(rewrite("/api/", "/v2", "/api/x"), "/v2/x");
        assert_eq!(rewrite("/api", "/", "/api/x"), "/x");
        assert_eq!(rewrite("/api", "/", "/api"), "/");
        assert_eq!(rewrite("/", "/v2", "/x"), "/v2/x");
        assert_eq!(rewrite("/users", "/v2/users", "/users/7"), "/v2/users/7");
    }

    #[test]
    fn rewrite_wins_over_strip() {
        assert_eq!(
            upstream_path(Some("/api"), true, Some("/v2"), "/api/x"),
            "/v2/x"
        );
    }

    #[test]
    fn exact_routes_pass_their_path_as_the_prefix() {
        assert_eq!(upstream_path(Some("/login"), true, None, "/login"), "/");
        assert_eq!(
            upstream_path(Some("/login"), false, Some("/auth/login"), "/login"),
            "/auth/login"
        );
    }

    #[test]
    fn unchanged_when_nothing_applies_or_the_prefix_does_not_match() {
        assert_eq!(upstream_path(Some("/api"), false, None, "/api/x"), "/api/x");
        assert_eq!(upstream_path(None, true, Some("/v2"), "/api/x"), "/api/x");
        assert_eq!(upstream_path(Some("/api"), true, None, "/apix"), "/apix");
    }
}
