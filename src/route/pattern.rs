//! Named path segments in exact-path routes: `path = "/screens/home/{user_id}"`
//! matches `/screens/home/42` and `/screens/home/abc`, one whole non-empty segment
//! per name. A composed route's templates read the segment by its name
//! (`{path.user_id}`); the route table only needs to know that it matches.
//!
//! Precedence (docs/routing.md): an exact path without names wins over one with
//! names; between two paths with names, the one whose first differing segment is
//! literal wins (`/a/b/{x}` before `/a/{y}/c`); then file order.

/// An exact path with at least one `{name}` segment, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The segments between the slashes, after the leading `/`; a trailing slash
    /// is an empty last segment, as in the request path.
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Named(String),
}

impl PathPattern {
    /// Reads the `{name}` segments of an exact route path. `Ok(None)`: the path has
    /// no braces (a plain exact path). Errors say what is wrong: a brace that does
    /// not enclose a whole segment, an empty or invalid name (letters, digits and
    /// `_`), a name used twice.
    pub fn parse(path: &str) -> Result<Option<PathPattern>, String> {
        if !path.contains(['{', '}']) {
            return Ok(None);
        }
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("{path:?} must start with '/'"));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            let segment = match raw.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(format!(
                            "{{{name}}}: a segment name is letters, digits and '_'"
                        ));
                    }
                    if segments.contains(&Segment::Named(name.to_string())) {
                        return Err(format!("{{{name}}} is named twice"));
                    }
                    Segment::Named(name.to_string())
                }
                None if raw.contains(['{', '}']) => {
                    return Err(format!(
                    "segment {raw:?}: a name in braces must be a whole segment, like /users/{{id}}"
                ))
                }
                None => Segment::Literal(raw.to_string()),
            };
            segments.push(segment);
        }
        Ok(Some(PathPattern { segments }))
    }

    /// The request path (normalized, without the query) matches: same number of
    /// segments, literal ones equal, named ones non-empty.
    pub fn matches(&self, path: &[u8]) -> bool {
        let Some(rest) = path.strip_prefix(b"/") else {
            return false;
        };
        let mut parts = rest.split(|&b| b == b'/');
        for segment in &self.segments {
            let Some(part) = parts.next() else {
                return false;
            };
            let ok = match segment {
                Segment::Literal(lit) => lit.as_bytes() == part,
                Segment::Named(_) => !part.is_empty(),
            };
            if !ok {
                return false;
            }
        }
        parts.next().is_none()
    }

    /// The position of segment `{name}`, for [`path_segment`].
    pub fn segment_index(&self, name: &str) -> Option<usize> {
        self.segments
            .iter()
            .position(|s| matches!(s, Segment::Named(n) if n == name))
    }

    /// The segment names, in path order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Named(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Orders patterns by precedence: at the first segment where one is literal
    /// and the other named, the literal one comes first; otherwise equal (file
    /// order then decides, the sort being stable).
    pub(super) fn precedence(&self, other: &PathPattern) -> std::cmp::Ordering {
        let named = |s: &Segment| matches!(s, Segment::Named(_));
        for (a, b) in self.segments.iter().zip(&other.segments) {
            match (named(a), named(b)) {
                (false, true) => return std::cmp::Ordering::Less,
                (true, false) => return std::cmp::Ordering::Greater,
                _ => {}
            }
        }
        std::cmp::Ordering::Equal
    }
}

/// Segment `index` of a normalized `path` (as [`PathPattern::segment_index`]
/// counts), as received: percent-escapes are kept.
pub fn path_segment(path: &str, index: usize) -> Option<&str> {
    path.strip_prefix('/')?.split('/').nth(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(path: &str) -> PathPattern {
        PathPattern::parse(path).unwrap().unwrap()
    }

    #[test]
    fn plain_paths_are_not_patterns() {
        assert_eq!(PathPattern::parse("/users/me"), Ok(None));
    }

    #[test]
    fn named_segments_match_one_whole_segment() {
        let p = pattern("/screens/home/{user_id}");
        assert!(p.matches(b"/screens/home/42"));
        assert!(p.matches(b"/screens/home/a%20b"));
        assert!(!p.matches(b"/screens/home/"));
        assert!(!p.matches(b"/screens/home"));
        assert!(!p.matches(b"/screens/home/42/x"));
        assert!(!p.matches(b"/screens/away/42"));
        let p = pattern("/u/{id}/");
        assert!(p.matches(b"/u/7/"));
        assert!(!p.matches(b"/u/7"));
    }

    #[test]
    fn segments_are_read_by_name() {
        let p = pattern("/a/{x}/b/{y}");
        assert_eq!(p.names().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(p.segment_index("y"), Some(3));
        assert_eq!(p.segment_index("z"), None);
        assert_eq!(path_segment("/a/1/b/2%2C3", 3), Some("2%2C3"));
        assert_eq!(path_segment("/a", 3), None);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "/a/{}",
            "/a/{x-y}",
            "/a/x{y}",
            "/a/{x}{y}",
            "/a/{x}/{x}",
            "/a/{x",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn literal_segments_win_from_the_left() {
        let a = pattern("/a/b/{x}");
        let b = pattern("/a/{y}/c");
        assert_eq!(a.precedence(&b), std::cmp::Ordering::Less);
        assert_eq!(b.precedence(&a), std::cmp::Ordering::Greater);
        assert_eq!(a.precedence(&a), std::cmp::Ordering::Equal);
    }
}
