//! What the config layer hands the route stage: one [`RouteSpec`] per `[[route]]`,
//! and [`RouteSpec::check`], the route stage's own rules for those values.

use crate::http::is_tchar;

use super::host::check_host_pattern;
use super::normalize::{normalize_path, PathParameters};
use super::pattern::PathPattern;

/// One route's match conditions, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub name: String,
    /// `"api.example.com"` or `"*.example.com"`; `None` = any host.
    pub host: Option<String>,
    pub path: PathMatch,
    /// Uppercase method tokens; `None` = any method. `GET` also admits `HEAD`.
    pub methods: Option<Vec<String>>,
    /// Header name (matched case-insensitively; the table lowercases it) and
    /// the condition on its value; all must hold.
    pub headers: Vec<(String, HeaderMatch)>,
}

/// The `path` (exact) or `path_prefix` (segment-aware prefix) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// An exact path; whole segments may be names in braces (`/users/{id}`).
    Exact(String),
    Prefix(String),
}

/// A header condition: the value equals these bytes exactly (case-sensitive),
/// or (`"*"` in the config) the header is present with any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    Equals(Vec<u8>),
    Present,
}

impl RouteSpec {
    /// The route stage's rules for a spec, for the config layer to report with
    /// the route's name and position. A spec that fails them would never match
    /// (a path not in normal form, a host with a port) or would match by accident.
    pub fn check(&self) -> Result<(), String> {
        if let Some(host) = &self.host {
            check_host_pattern(host)?;
        }
        let (key, path) = match &self.path {
            PathMatch::Exact(path) => ("path", path),
            PathMatch::Prefix(path) => ("path_prefix", path),
        };
        check_route_path(key, path)?;
        match &self.path {
            PathMatch::Exact(path) => {
                PathPattern::parse(path).map_err(|why| format!("path {path:?}: {why}"))?;
            }
            PathMatch::Prefix(path) if path.contains(['{', '}']) => {
                return Err(format!(
                    "path_prefix {path:?}: named segments are for exact paths (path = ...)"
                ));
            }
            PathMatch::Prefix(_) => {}
        }
        if let Some(methods) = &self.methods {
            if methods.is_empty() {
                return Err(
                    "methods: an empty list matches nothing; omit the key for any method".into(),
                );
            }
            for method in methods {
                if method.is_empty()
                    || !method
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
                {
                    return Err(format!(
                        "methods: {method:?} is not an uppercase method token"
                    ));
                }
            }
        }
        for (name, condition) in &self.headers {
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(format!("headers: {name:?} is not a header name"));
            }
            if let HeaderMatch::Equals(value) = condition {
                if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                    return Err(format!(
                        "headers: the value for {name:?} contains a control character"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Request paths are normalized before matching, so a configured path must
/// already be in that normal form, or it could never match.
fn check_route_path(key: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{key} {path:?}: must start with '/'"));
    }
    if path.contains('?') {
        return Err(format!(
            "{key} {path:?}: a route path cannot contain a query"
        ));
    }
    // Route paths never hold parameters: no request path keeps one.
    match normalize_path(path.as_bytes(), PathParameters::Reject) {
        Ok(normal) if normal.path == path => Ok(()),
        Ok(normal) => Err(format!(
            "{key} {path:?}: requests are matched after normalization, so this would never match; write {:?}",
            normal.path
        )),
        Err(why) => Err(format!("{key} {path:?}: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: PathMatch) -> RouteSpec {
        RouteSpec {
            name: "r".into(),
            host: None,
            path,
            methods: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn paths_must_be_in_normal_form() {
        assert_eq!(spec(PathMatch::Prefix("/api/".into())).check(), Ok(()));
        assert_eq!(spec(PathMatch::Exact("/a%20b".into())).check(), Ok(()));
        for bad in [
            "api", "/a/../b", "/a//b", "/%7euser", "/a%2fb", "/a?x=1", "/a%2",
        ] {
            assert!(spec(PathMatch::Exact(bad.into())).check().is_err(), "{bad}");
        }
        assert_eq!(spec(PathMatch::Exact("/a/{id}".into())).check(), Ok(()));
        assert!(spec(PathMatch::Exact("/a/x{id}".into())).check().is_err());
        assert!(spec(PathMatch::Prefix("/a/{id}".into())).check().is_err());
        let why = spec(PathMatch::Prefix("/a/./b".into()))
            .check()
            .unwrap_err();
        assert!(why.contains("write \"/a/b\""), "{why}");
    }

    #[test]
    fn methods_and_headers_are_checked() {
        let mut s = spec(PathMatch::Prefix("/".into()));
        s.methods = Some(vec![]);
        assert!(s.check().is_err());
        s.methods = Some(vec!["get".into()]);
        assert!(s.check().is_err());
        s.methods = Some(vec!["GET".into(), "PURGE".into()]);
        assert_eq!(s.check(), Ok(()));
        s.headers = vec![("x version".into(), HeaderMatch::Present)];
        assert!(s.check().is_err());
        s.headers = vec![("X-Version".into(), HeaderMatch::Present)];
        assert_eq!(s.check(), Ok(()));
        s.headers = vec![("x-version".into(), HeaderMatch::Equals(b"2\r\n".to_vec()))];
        assert!(s.check().is_err());
        s.headers = vec![("x-version".into(), HeaderMatch::Equals(b"2".to_vec()))];
        assert_eq!(s.check(), Ok(()));
        s.host = Some("api.example.com:443".into());
        assert!(s.check().is_err());
    }
}
