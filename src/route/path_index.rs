//! The routes of one host group, indexed by path.
//!
//! Exact paths live in a hash map. Exact paths with named segments
//! (`/users/{id}`, `pattern.rs`) are a short list in precedence order, tried
//! after the exact map; only those with as many segments as the request path are
//! compared. Prefixes live in a second hash map keyed by the prefix; a request path is probed once per place a matching prefix could
//! end — the whole path, then each `/` from the right — so the longest matching
//! prefix comes first and the cost grows with the path's depth, not with the
//! number of routes (probes of lengths no prefix has cost no hashing). The `/`
//! prefix matches every path and is kept apart.

use std::ops::ControlFlow;

use super::key_map::KeyMap;
use super::pattern::PathPattern;
use super::spec::PathMatch;

#[derive(Debug, Default)]
pub(super) struct PathIndex {
    /// Exact path → routes, in file order.
    exact: KeyMap<Vec<usize>>,
    /// Exact paths with named segments → route, in precedence order (the most
    /// literal first, then file order), with their segment counts.
    patterns: Vec<(usize, PathPattern, usize)>,
    /// Canonical prefix (see [`canonical_prefix`]) → routes, in file order.
    prefixes: KeyMap<Vec<usize>>,
    /// Routes with the prefix `/`, in file order.
    root: Vec<usize>,
}

/// A prefix as it is matched: trailing slashes removed, so `/api/` and `/api`
/// are the same prefix, and `/` becomes the empty string (matches everything).
pub(super) fn canonical_prefix(prefix: &str) -> &str {
    prefix.trim_end_matches('/')
}

/// The rest of `path` after a segment-aware `prefix` (canonical): `Some("")`
/// or `Some("/…")` when it matches, `None` when it does not (`/api` vs `/apix`).
pub(super) fn after_prefix<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    path.strip_prefix(prefix)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl PathIndex {
    pub(super) fn insert(&mut self, path: &PathMatch, route: usize) {
        match path {
            PathMatch::Exact(exact) => match PathPattern::parse(exact) {
                Ok(Some(pattern)) => {
                    let segments = exact.matches('/').count();
                    let at = self
                        .patterns
                        .iter()
                        .position(|(_, p, _)| pattern.precedence(p).is_lt())
                        .unwrap_or(self.patterns.len());
                    self.patterns.insert(at, (segments, pattern, route));
                }
                // A spec that failed `RouteSpec::check` never gets here; a plain
                // path is looked up by its bytes.
                _ => self.exact.entry(exact.as_bytes()).push(route),
            },
            PathMatch::Prefix(prefix) => match canonical_prefix(prefix) {
                "" => self.root.push(route),
                prefix => self.prefixes.entry(prefix.as_bytes()).push(route),
            },
        }
    }

    /// Calls `visit` with each route whose path condition matches `path`, in
    /// precedence order: exact, then exact with named segments (most literal
    /// first), then prefixes longest first, then `/`; file order within each.
    /// Stops when `visit` breaks.
    pub(super) fn visit<B>(
        &self,
        path: &[u8],
        visit: &mut impl FnMut(usize) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        for &route in self.exact.get(path).into_iter().flatten() {
            visit(route)?;
        }
        if !self.patterns.is_empty() {
            let segments = path.iter().filter(|&&b| b == b'/').count();
            for (count, pattern, route) in &self.patterns {
                if *count == segments && pattern.matches(path) {
                    visit(*route)?;
                }
            }
        }
        if !self.prefixes.is_empty() {
            let mut end = path.len();
            loop {
                for &route in self.prefixes.get(&path[..end]).into_iter().flatten() {
                    visit(route)?;
                }
                match path[..end].iter().rposition(|&b| b == b'/') {
                    Some(slash) if slash > 0 => end = slash,
                    _ => break,
                }
            }
        }
        for &route in &self.root {
            visit(route)?;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(paths: &[PathMatch]) -> PathIndex {
        let mut index = PathIndex::default();
        for (route, path) in paths.iter().enumerate() {
            index.insert(path, route);
        }
        index
    }

    fn matches(index: &PathIndex, path: &str) -> Vec<usize> {
        let mut found = Vec::new();
        let _ = index.visit::<()>(path.as_bytes(), &mut |route| {
            found.push(route);
            ControlFlow::Continue(())
        });
        found
    }

    #[test]
    fn prefixes_are_segment_aware() {
        let index = index(&[PathMatch::Prefix("/api".into())]);
        assert_eq!(matches(&index, "/api"), [0]);
        assert_eq!(matches(&index, "/api/"), [0]);
        assert_eq!(matches(&index, "/api/x/y"), [0]);
        assert!(matches(&index, "/apix").is_empty());
        assert!(matches(&index, "/ap").is_empty());
        assert!(matches(&index, "/").is_empty());
    }

    #[test]
    fn a_trailing_slash_in_a_prefix_is_the_same_prefix() {
        let index = index(&[
            PathMatch::Prefix("/api/".into()),
            PathMatch::Prefix("/api".into()),
        ]);
        assert_eq!(matches(&index, "/api"), [0, 1]);
        assert_eq!(matches(&index, "/api/x"), [0, 1]);
        assert!(matches(&index, "/apix").is_empty());
    }

    #[test]
    fn exact_then_longest_prefix_then_root() {
        let index = index(&[
            PathMatch::Prefix("/".into()),
            PathMatch::Prefix("/a".into()),
            PathMatch::Prefix("/a/b".into()),
            PathMatch::Exact("/a/b".into()),
            PathMatch::Exact("/a/b/".into()),
        ]);
        assert_eq!(matches(&index, "/a/b"), [3, 2, 1, 0]);
        assert_eq!(matches(&index, "/a/b/"), [4, 2, 1, 0]);
        assert_eq!(matches(&index, "/a/b/c"), [2, 1, 0]);
        assert_eq!(matches(&index, "/a/bc"), [1, 0]);
        assert_eq!(matches(&index, "/z"), [0]);
    }

    #[test]
    fn named_segments_come_after_exact_and_before_prefixes() {
        let index = index(&[
            PathMatch::Prefix("/a".into()),
            PathMatch::Exact("/a/{x}/c".into()),
            PathMatch::Exact("/a/b/{y}".into()),
            PathMatch::Exact("/a/b/c".into()),
            PathMatch::Exact("/a/{z}".into()),
        ]);
        assert_eq!(matches(&index, "/a/b/c"), [3, 2, 1, 0]);
        assert_eq!(matches(&index, "/a/q/c"), [1, 0]);
        assert_eq!(matches(&index, "/a/q"), [4, 0]);
        assert_eq!(matches(&index, "/a/q/"), [0]);
    }

    #[test]
    fn after_prefix_respects_segments() {
        assert_eq!(after_prefix("/api", "/api"), Some(""));
        assert_eq!(after_prefix("/api", "/api/x"), Some("/x"));
        assert_eq!(after_prefix("/api", "/apix"), None);
        assert_eq!(after_prefix("", "/x"), Some("/x"));
    }
}
