//! The route table: routes compiled once per config snapshot, and `find`, the
//! per-request lookup.
//!
//! Routes are grouped by host: a map of exact hosts, a map of wildcard suffixes,
//! and the any-host group; each group is a [`PathIndex`]. A lookup walks the
//! candidates whose host and path match, in precedence order —
//! exact host, wildcard hosts by longest suffix, any host; within a group exact
//! path, exact path with named segments (`/users/{id}`), prefixes longest first,
//! `/`; file order within each — and takes the
//! first whose headers and method match. Its cost depends on the Host's labels
//! and the path's depth, not on the number of routes, and it does not allocate
//! unless the answer is 405.

use std::ops::ControlFlow;

use crate::http::HeaderLookup;

use super::host::{request_host, wildcard_suffixes, HostPattern, MAX_HOST_LEN};
use super::key_map::KeyMap;
use super::path_index::PathIndex;
use super::spec::{HeaderMatch, RouteSpec};

/// The answer of [`RouteTable::find`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// The index of the matching route in the `RouteSpec` slice.
    Found(usize),
    /// Some route matched host, path and headers, but none allowed the method:
    /// 405 with this `Allow` value (sorted, unique, e.g. `"GET, HEAD, POST"`).
    MethodNotAllowed { allow: String },
    /// 404.
    NotFound,
}

/// Compiled, immutable routes; built once per config snapshot off the hot path.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Method and header conditions, by route index.
    conditions: Vec<Conditions>,
    /// Lowercase host → its routes.
    exact_hosts: KeyMap<PathIndex>,
    /// Wildcard suffix (`.example.com` for `*.example.com`) → its routes.
    wildcard_hosts: KeyMap<PathIndex>,
    /// Routes without a host condition.
    any_host: PathIndex,
}

#[derive(Debug)]
struct Conditions {
    /// `None` = any method. `HEAD` is added wherever `GET` is listed.
    methods: Option<Box<[Box<str>]>>,
    headers: Box<[(Box<[u8]>, HeaderMatch)]>,
}

impl Conditions {
    fn compile(spec: &RouteSpec) -> Conditions {
        let methods = spec.methods.as_ref().map(|methods| {
            let mut methods: Vec<Box<str>> = methods.iter().map(|m| m.as_str().into()).collect();
            if methods.iter().any(|m| &**m == "GET") && !methods.iter().any(|m| &**m == "HEAD") {
                methods.push("HEAD".into());
            }
            methods.into_boxed_slice()
        });
        let headers = spec
            .headers
            .iter()
            .map(|(name, condition)| {
                (
                    name.to_ascii_lowercase().into_bytes().into(),
                    condition.clone(),
                )
            })
            .collect();
        Conditions { methods, headers }
    }

    fn allows(&self, method: &[u8]) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m.as_bytes() == method))
    }

    fn headers_match(&self, headers: &dyn HeaderLookup) -> bool {
        self.headers
            .iter()
            .all(|(name, condition)| match (condition, headers.get(name)) {
                (_, None) => false,
                (HeaderMatch::Present, Some(_)) => true,
                (HeaderMatch::Equals(want), Some(value)) => value == want.as_slice(),
            })
    }
}

impl RouteTable {
    /// Compiles `routes`; a route's index is its position in the slice. Specs
    /// are expected to have passed [`RouteSpec::check`].
    pub fn new(routes: &[RouteSpec]) -> RouteTable {
        let mut table = RouteTable::default();
        for (route, spec) in routes.iter().enumerate() {
            table.conditions.push(Conditions::compile(spec));
            let group = match HostPattern::parse(spec.host.as_deref()) {
                HostPattern::Any => &mut table.any_host,
                HostPattern::Exact(host) => table.exact_hosts.entry(host.as_bytes()),
                HostPattern::Suffix(suffix) => table.wildcard_hosts.entry(suffix.as_bytes()),
            };
            group.insert(&spec.path, route);
        }
        table
    }

    /// The route for a request.
    ///
    /// - `host`: the request's Host (absolute-form authority if there was one),
    ///   as received: a port, letter case and one trailing dot are ignored;
    ///   `None` matches only routes without a host.
    /// - `path`: the normalized path ([`normalize_path`](super::normalize_path)), no query.
    /// - `method`: the method token, case-sensitive.
    pub fn find(
        &self,
        host: Option<&[u8]>,
        path: &[u8],
        method: &[u8],
        headers: &dyn HeaderLookup,
    ) -> RouteMatch {
        let mut buf = [0u8; MAX_HOST_LEN];
        let host = host.and_then(|raw| request_host(raw, &mut buf));
        let mut wrong_method = false;
        let found = self.visit(host, path, headers, &mut |route| {
            if self.conditions[route].allows(method) {
                return ControlFlow::Break(route);
            }
            wrong_method = true;
            ControlFlow::Continue(())
        });
        match found {
            ControlFlow::Break(route) => RouteMatch::Found(route),
            ControlFlow::Continue(()) if wrong_method => RouteMatch::MethodNotAllowed {
                allow: self.allow(host, path, headers),
            },
            ControlFlow::Continue(()) => RouteMatch::NotFound,
        }
    }

    /// The `Allow` value when no candidate allowed the method: the union of
    /// the candidates' methods, sorted and unique.
    fn allow(&self, host: Option<&[u8]>, path: &[u8], headers: &dyn HeaderLookup) -> String {
        let mut allow: Vec<&str> = Vec::new();
        let _ = self.visit::<()>(host, path, headers, &mut |route| {
            let methods = self.conditions[route]
                .methods
                .as_deref()
                .unwrap_or_default();
            allow.extend(methods.iter().map(|m| &**m));
            ControlFlow::Continue(())
        });
        allow.sort_unstable();
        allow.dedup();
        allow.join(", ")
    }

    /// Calls `visit` with each route whose host, path and headers match, in
    /// precedence order (see the module doc). Stops when `visit` breaks.
    fn visit<B>(
        &self,
        host: Option<&[u8]>,
        path: &[u8],
        headers: &dyn HeaderLookup,
        visit: &mut impl FnMut(usize) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let mut visit_matching = |route: usize| {
            if self.conditions[route].headers_match(headers) {
                visit(route)
            } else {
                ControlFlow::Continue(())
            }
        };
        if let Some(host) = host {
            if let Some(group) = self.exact_hosts.get(host) {
                group.visit(path, &mut visit_matching)?;
            }
            if !self.wildcard_hosts.is_empty() {
                for suffix in wildcard_suffixes(host) {
                    if let Some(group) = self.wildcard_hosts.get(suffix) {
                        group.visit(path, &mut visit_matching)?;
                    }
                }
            }
        }
        self.any_host.visit(path, &mut visit_matching)
    }
}

#[cfg(test)]
mod tests {
    use super::super::spec::PathMatch;
    use super::*;

    struct Headers<'a>(&'a [(&'a str, &'a str)]);

    impl HeaderLookup for Headers<'_> {
        fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(name, _)| name.as_bytes() == lowercase_name)
                .map(|(_, value)| value.as_bytes())
        }
        fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
            for (name, value) in self.0.iter() {
                f(name.as_bytes(), value.as_bytes());
            }
        }
    }

    const NO_HEADERS: Headers<'static> = Headers(&[]);

    fn route(host: Option<&str>, path: PathMatch) -> RouteSpec {
        RouteSpec {
            name: String::new(),
            host: host.map(str::to_owned),
            path,
            methods: None,
            headers: Vec::new(),
        }
    }

    fn exact(path: &str) -> PathMatch {
        PathMatch::Exact(path.to_owned())
    }

    fn prefix(path: &str) -> PathMatch {
        PathMatch::Prefix(path.to_owned())
    }

    fn methods(mut spec: RouteSpec, methods: &[&str]) -> RouteSpec {
        spec.methods = Some(methods.iter().map(|m| m.to_string()).collect());
        spec
    }

    fn header(mut spec: RouteSpec, name: &str, condition: HeaderMatch) -> RouteSpec {
        spec.headers.push((name.to_owned(), condition));
        spec
    }

    fn find(table: &RouteTable, host: Option<&str>, path: &str) -> RouteMatch {
        table.find(
            host.map(str::as_bytes),
            path.as_bytes(),
            b"GET",
            &NO_HEADERS,
        )
    }

    #[test]
    fn exact_host_before_wildcard_before_any_host() {
        let table = RouteTable::new(&[
            route(None, prefix("/")),
            route(Some("*.example.com"), prefix("/")),
            route(Some("api.example.com"), prefix("/")),
        ]);
        assert_eq!(
            find(&table, Some("api.example.com"), "/x"),
            RouteMatch::Found(2)
        );
        assert_eq!(
            find(&table, Some("www.example.com"), "/x"),
            RouteMatch::Found(1)
        );
        assert_eq!(
            find(&table, Some("example.org"), "/x"),
            RouteMatch::Found(0)
        );
        assert_eq!(find(&table, None, "/x"), RouteMatch::Found(0));
    }

    #[test]
    fn host_precedence_outranks_path_precedence() {
        let table = RouteTable::new(&[
            route(None, exact("/users/7")),
            route(Some("api.example.com"), prefix("/")),
        ]);
        assert_eq!(
            find(&table, Some("api.example.com"), "/users/7"),
            RouteMatch::Found(1)
        );
        assert_eq!(
            find(&table, Some("other.example.com"), "/users/7"),
            RouteMatch::Found(0)
        );
    }

    #[test]
    fn longer_wildcard_suffix_before_shorter() {
        let table = RouteTable::new(&[
            route(Some("*.example.com"), prefix("/")),
            route(Some("*.eu.example.com"), prefix("/")),
        ]);
        assert_eq!(
            find(&table, Some("a.eu.example.com"), "/"),
            RouteMatch::Found(1)
        );
        assert_eq!(
            find(&table, Some("x.a.eu.example.com"), "/"),
            RouteMatch::Found(1)
        );
        assert_eq!(
            find(&table, Some("eu.example.com"), "/"),
            RouteMatch::Found(0)
        );
        assert_eq!(
            find(&table, Some("a.us.example.com"), "/"),
            RouteMatch::Found(0)
        );
    }

    #[test]
    fn wildcard_matches_many_labels_but_not_the_apex() {
        let table = RouteTable::new(&[route(Some("*.example.com"), prefix("/"))]);
        assert_eq!(
            find(&table, Some("a.example.com"), "/"),
            RouteMatch::Found(0)
        );
        assert_eq!(
            find(&table, Some("a.b.example.com"), "/"),
            RouteMatch::Found(0)
        );
        assert_eq!(find(&table, Some("example.com"), "/"), RouteMatch::NotFound);
        assert_eq!(
            find(&table, Some("badexample.com"), "/"),
            RouteMatch::NotFound
        );
        assert_eq!(find(&table, None, "/"), RouteMatch::NotFound);
    }

    #[test]
    fn host_with_port_mixed_case_and_trailing_dot() {
        let table = RouteTable::new(&[
            route(Some("API.Example.com"), prefix("/")),
            route(Some("*.Example.org"), prefix("/")),
            route(Some("[::1]"), prefix("/")),
        ]);
        for host in [
            "api.example.com",
            "API.EXAMPLE.COM:8080",
            "Api.Example.Com.",
            "api.example.com.:443",
        ] {
            assert_eq!(
                find(&table, Some(host), "/"),
                RouteMatch::Found(0),
                "{host}"
            );
        }
        assert_eq!(
            find(&table, Some("WWW.example.ORG:80"), "/"),
            RouteMatch::Found(1)
        );
        assert_eq!(find(&table, Some("[::1]:8080"), "/"), RouteMatch::Found(2));
        assert_eq!(
            find(&table, Some("api.example.com.evil"), "/"),
            RouteMatch::NotFound
        );
    }

    #[test]
    fn exact_path_before_longer_prefix_before_shorter_prefix() {
        let table = RouteTable::new(&[
            route(None, prefix("/")),
            route(None, prefix("/api")),
            route(None, prefix("/api/v1")),
            route(None, exact("/api/v1/health")),
        ]);
        assert_eq!(find(&table, None, "/api/v1/health"), RouteMatch::Found(3));
        assert_eq!(find(&table, None, "/api/v1/health/x"), RouteMatch::Found(2));
        assert_eq!(find(&table, None, "/api/v1"), RouteMatch::Found(2));
        assert_eq!(find(&table, None, "/api/v2"), RouteMatch::Found(1));
        assert_eq!(find(&table, None, "/other"), RouteMatch::Found(0));
    }

    #[test]
    fn exact_path_is_exact() {
        let table = RouteTable::new(&[route(None, exact("/login"))]);
        assert_eq!(find(&table, None, "/login"), RouteMatch::Found(0));
        assert_eq!(find(&table, None, "/login/"), RouteMatch::NotFound);
        assert_eq!(find(&table, None, "/login/x"), RouteMatch::NotFound);
    }

    #[test]
    fn prefix_is_segment_aware() {
        let table = RouteTable::new(&[route(None, prefix("/api")), route(None, prefix("/shop/"))]);
        assert_eq!(find(&table, None, "/api"), RouteMatch::Found(0));
        assert_eq!(find(&table, None, "/api/"), RouteMatch::Found(0));
        assert_eq!(find(&table, None, "/api/x"), RouteMatch::Found(0));
        assert_eq!(find(&table, None, "/apix"), RouteMatch::NotFound);
        // a prefix written with a trailing slash also matches the bare path
        assert_eq!(find(&table, None, "/shop"), RouteMatch::Found(1));
        assert_eq!(find(&table, None, "/shop/cart"), RouteMatch::Found(1));
        assert_eq!(find(&table, None, "/shopping"), RouteMatch::NotFound);
    }

    #[test]
    fn file_order_breaks_ties() {
        let table = RouteTable::new(&[
            route(None, prefix("/a")),
            route(None, prefix("/a/")),
            route(None, exact("/b")),
            route(None, exact("/b")),
        ]);
        assert_eq!(find(&table, None, "/a/x"), RouteMatch::Found(0));
        assert_eq!(find(&table, None, "/b"), RouteMatch::Found(2));
    }

    #[test]
    fn header_mismatch_skips_to_the_next_candidate() {
        let table = RouteTable::new(&[
            header(
                route(Some("api.example.com"), exact("/v")),
                "x-version",
                HeaderMatch::Equals(b"2".to_vec()),
            ),
            header(route(None, prefix("/v")), "x-canary", HeaderMatch::Present),
            route(None, prefix("/")),
        ]);
        let find_with = |headers: &[(&str, &str)]| {
            table.find(Some(b"api.example.com"), b"/v", b"GET", &Headers(headers))
        };
        assert_eq!(find_with(&[("x-version", "2")]), RouteMatch::Found(0));
        assert_eq!(find_with(&[("x-version", "3")]), RouteMatch::Found(2));
        assert_eq!(find_with(&[("x-canary", "")]), RouteMatch::Found(1));
        assert_eq!(
            find_with(&[("x-version", "3"), ("x-canary", "yes")]),
            RouteMatch::Found(1)
        );
        assert_eq!(find_with(&[]), RouteMatch::Found(2));
    }

    #[test]
    fn header_values_are_case_sensitive_and_all_must_match() {
        let spec = header(
            header(
                route(None, prefix("/")),
                "x-env",
                HeaderMatch::Equals(b"Prod".to_vec()),
            ),
            "X-Team",
            HeaderMatch::Present,
        );
        let table = RouteTable::new(&[spec]);
        let find_with =
            |headers: &[(&str, &str)]| table.find(None, b"/", b"GET", &Headers(headers));
        assert_eq!(
            find_with(&[("x-env", "Prod"), ("x-team", "a")]),
            RouteMatch::Found(0)
        );
        assert_eq!(
            find_with(&[("x-env", "prod"), ("x-team", "a")]),
            RouteMatch::NotFound
        );
        assert_eq!(find_with(&[("x-env", "Prod")]), RouteMatch::NotFound);
    }

    #[test]
    fn not_found_versus_method_not_allowed() {
        let table = RouteTable::new(&[
            methods(route(None, prefix("/users")), &["POST", "DELETE"]),
            methods(route(None, exact("/users/me")), &["GET"]),
            methods(route(None, prefix("/users")), &["POST", "PUT"]),
        ]);
        let find_method = |path: &str, method: &str| {
            table.find(None, path.as_bytes(), method.as_bytes(), &NO_HEADERS)
        };
        assert_eq!(find_method("/users/me", "GET"), RouteMatch::Found(1));
        assert_eq!(find_method("/users/me", "POST"), RouteMatch::Found(0));
        assert_eq!(find_method("/users/me", "PUT"), RouteMatch::Found(2));
        assert_eq!(
            find_method("/users/me", "PATCH"),
            RouteMatch::MethodNotAllowed {
                allow: "DELETE, GET, HEAD, POST, PUT".into()
            }
        );
        assert_eq!(
            find_method("/users/7", "GET"),
            RouteMatch::MethodNotAllowed {
                allow: "DELETE, POST, PUT".into()
            }
        );
        assert_eq!(find_method("/orders", "GET"), RouteMatch::NotFound);
    }

    #[test]
    fn get_admits_head() {
        let table = RouteTable::new(&[
            methods(route(None, exact("/a")), &["GET"]),
            methods(route(None, exact("/b")), &["POST"]),
        ]);
        let find_method = |path: &str, method: &str| {
            table.find(None, path.as_bytes(), method.as_bytes(), &NO_HEADERS)
        };
        assert_eq!(find_method("/a", "HEAD"), RouteMatch::Found(0));
        assert_eq!(
            find_method("/a", "POST"),
            RouteMatch::MethodNotAllowed {
                allow: "GET, HEAD".into()
            }
        );
        assert_eq!(
            find_method("/b", "HEAD"),
            RouteMatch::MethodNotAllowed {
                allow: "POST".into()
            }
        );
        assert_eq!(
            find_method("/a", "get"),
            RouteMatch::MethodNotAllowed {
                allow: "GET, HEAD".into()
            }
        );
    }

    #[test]
    fn a_later_route_that_allows_the_method_beats_405() {
        let table = RouteTable::new(&[
            methods(route(Some("api.example.com"), exact("/users")), &["GET"]),
            route(None, prefix("/")),
        ]);
        let found = table.find(Some(b"api.example.com"), b"/users", b"DELETE", &NO_HEADERS);
        assert_eq!(found, RouteMatch::Found(1));
    }

    #[test]
    fn allow_only_counts_routes_whose_headers_match() {
        let table = RouteTable::new(&[
            header(
                methods(route(None, prefix("/")), &["PUT"]),
                "x-admin",
                HeaderMatch::Present,
            ),
            methods(route(None, prefix("/")), &["GET"]),
        ]);
        let found = table.find(None, b"/x", b"POST", &NO_HEADERS);
        assert_eq!(
            found,
            RouteMatch::MethodNotAllowed {
                allow: "GET, HEAD".into()
            }
        );
        let found = table.find(None, b"/x", b"POST", &Headers(&[("x-admin", "1")]));
        assert_eq!(
            found,
            RouteMatch::MethodNotAllowed {
                allow: "GET, HEAD, PUT".into()
            }
        );
    }

    /// The worked example of docs/routing.md, row by row.
    #[test]
    fn worked_example_in_the_docs() {
        let table = RouteTable::new(&[
            route(None, prefix("/")),
            route(None, prefix("/api/v1")),
            header(
                route(None, prefix("/api/v1")),
                "x-canary",
                HeaderMatch::Equals(b"1".to_vec()),
            ),
            methods(route(None, exact("/api/v1/health")), &["GET"]),
            route(Some("*.example.com"), prefix("/api")),
            methods(
                route(Some("admin.example.com"), prefix("/")),
                &["GET", "POST"],
            ),
        ]);
        let canary = Headers(&[("x-canary", "1")]);
        let find = |method: &str, path: &str, host: &str, headers: &Headers| {
            table.find(
                Some(host.as_bytes()),
                path.as_bytes(),
                method.as_bytes(),
                headers,
            )
        };
        let rows = [
            ("GET", "/api/v1/health", "localhost", &NO_HEADERS, 3),
            ("POST", "/api/v1/health", "localhost", &NO_HEADERS, 1),
            ("GET", "/api/v1/users", "localhost", &canary, 1),
            ("GET", "/api/v12", "localhost", &NO_HEADERS, 0),
            ("GET", "/api/v1/users", "acme.example.com", &NO_HEADERS, 4),
            ("GET", "/anything", "ADMIN.example.com:443", &NO_HEADERS, 5),
            ("DELETE", "/x", "admin.example.com", &NO_HEADERS, 0),
        ];
        for (method, path, host, headers, want) in rows {
            let found = find(method, path, host, headers);
            assert_eq!(found, RouteMatch::Found(want), "{method} {path} {host}");
        }
    }

    #[test]
    fn empty_table_finds_nothing() {
        let table = RouteTable::new(&[]);
        assert_eq!(
            find(&table, Some("a.example.com"), "/"),
            RouteMatch::NotFound
        );
    }
}
