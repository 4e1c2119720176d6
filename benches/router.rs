//! Route stage micro benchmarks: `RouteTable::find` with 10 and 1,000 routes,
//! and `normalize_path`. Std only; prints `name: N ns/op` (best of 15 runs).
//! Also checks that `find` does not allocate unless it answers 405.
//!
//!     cargo bench --bench router

use std::hint::black_box;
use std::time::Instant;

use portico::http::HeaderLookup;
use portico::route::{
    normalize_path, HeaderMatch, PathMatch, PathParameters, RouteMatch, RouteSpec, RouteTable,
};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

/// Request headers as a parser would hand them over: a handful of pairs.
struct Headers(Vec<(&'static [u8], &'static [u8])>);

impl HeaderLookup for Headers {
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| *n == lowercase_name)
            .map(|(_, v)| *v)
    }

    fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
        for (n, v) in &self.0 {
            f(n, v);
        }
    }
}

fn typical_headers() -> Headers {
    Headers(vec![
        (b"host", b"api.example.com"),
        (b"user-agent", b"curl/8.5.0"),
        (b"accept", b"application/json"),
        (b"authorization", b"Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"),
        (b"x-request-id", b"0f8fad5b-d9cb-469f-a165-70867728950e"),
        (b"x-version", b"2"),
    ])
}

/// A realistic mix: 20% on one of 20 exact hosts, 5% on one of 10 wildcard
/// hosts, the rest on any host; a third exact paths (`/svcN/health`), the rest
/// prefixes (`/svcN/v1`); a quarter with a method list, 4% with a header.
fn routes(n: usize) -> Vec<RouteSpec> {
    (0..n)
        .map(|i| RouteSpec {
            name: format!("route{i}"),
            host: match i % 20 {
                0..=3 => Some(format!("svc{}.example.com", i % 20 + (i / 20) % 5 * 4)),
                4 => Some(format!("*.tenant{}.example.com", (i / 20) % 10)),
                _ => None,
            },
            path: if i % 3 == 0 {
                PathMatch::Exact(format!("/svc{i}/health"))
            } else {
                PathMatch::Prefix(format!("/svc{i}/v1"))
            },
            methods: (i % 4 == 0).then(|| vec!["GET".to_owned(), "POST".to_owned()]),
            headers: if i % 25 == 7 {
                vec![("x-version".to_owned(), HeaderMatch::Equals(b"2".to_vec()))]
            } else {
                Vec::new()
            },
        })
        .collect()
}

/// ns per call of `f`: the best of 15 runs of `iters` calls. The best run is
/// the one least disturbed by other work on the machine, so it is the most
/// repeatable figure for the code itself.
fn measure(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let best = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .fold(f64::INFINITY, f64::min);
    println!("{name}: {best:.1} ns/op");
}

struct Request {
    host: &'static [u8],
    path: &'static [u8],
    method: &'static [u8],
}

const fn req(host: &'static str, path: &'static str, method: &'static str) -> Request {
    Request {
        host: host.as_bytes(),
        path: path.as_bytes(),
        method: method.as_bytes(),
    }
}

fn bench_find(name: &str, table: &RouteTable, request: &Request, headers: &Headers) -> RouteMatch {
    let found = table.find(Some(request.host), request.path, request.method, headers);
    measure(name, 100_000, || {
        black_box(table.find(
            Some(black_box(request.host)),
            black_box(request.path),
            black_box(request.method),
            headers,
        ));
    });
    found
}

/// The naive router `find` replaces: compare every route, keep the best by
/// precedence. Reference figure only (no methods, headers or wildcards).
fn linear_find(specs: &[RouteSpec], host: &[u8], path: &[u8]) -> Option<usize> {
    let mut best: Option<((u8, usize), usize)> = None;
    for (i, spec) in specs.iter().enumerate() {
        let host_rank = match &spec.host {
            None => 0,
            Some(h) if h.as_bytes().eq_ignore_ascii_case(host) => 2,
            Some(_) => continue,
        };
        let path_rank = match &spec.path {
            PathMatch::Exact(p) if p.as_bytes() == path => usize::MAX,
            PathMatch::Prefix(p)
                if path.starts_with(p.as_bytes())
                    && matches!(path.get(p.len()), None | Some(b'/')) =>
            {
                p.len()
            }
            _ => continue,
        };
        let rank = (host_rank, path_rank);
        if best.is_none_or(|(b, _)| rank > b) {
            best = Some((rank, i));
        }
    }
    best.map(|(_, i)| i)
}

fn main() {
    let headers = typical_headers();
    let small_specs = routes(10);
    let small = RouteTable::new(&small_specs);
    let specs = routes(1000);
    let large = RouteTable::new(&specs);

    let prefix_hit = req("api.example.com", "/svc733/v1/users/42/orders", "GET");
    let exact_hit = req("api.example.com", "/svc510/health", "GET");
    let host_hit = req("svc7.example.com:8080", "/svc223/v1/items", "GET");
    let wildcard_hit = req("acme.tenant0.example.com", "/svc604/v1/x", "POST");
    let header_hit = req("api.example.com", "/svc757/v1/a", "GET");
    let not_found = req("api.example.com", "/unknown/v1/users/42", "GET");
    let not_allowed = req("api.example.com", "/svc8/v1/users", "DELETE");

    let small_hit = req("api.example.com", "/svc5/v1/users/42/orders", "GET");
    let results = [
        bench_find("find 10 routes, prefix hit", &small, &small_hit, &headers),
        bench_find(
            "find 1000 routes, prefix hit",
            &large,
            &prefix_hit,
            &headers,
        ),
        bench_find(
            "find 1000 routes, exact path hit",
            &large,
            &exact_hit,
            &headers,
        ),
        bench_find(
            "find 1000 routes, exact host + port",
            &large,
            &host_hit,
            &headers,
        ),
        bench_find(
            "find 1000 routes, wildcard host",
            &large,
            &wildcard_hit,
            &headers,
        ),
        bench_find(
            "find 1000 routes, header condition",
            &large,
            &header_hit,
            &headers,
        ),
        bench_find("find 1000 routes, 404", &large, &not_found, &headers),
    ];
    let expected = [
        RouteMatch::Found(5),
        RouteMatch::Found(733),
        RouteMatch::Found(510),
        RouteMatch::Found(223),
        RouteMatch::Found(604),
        RouteMatch::Found(757),
        RouteMatch::NotFound,
    ];
    assert_eq!(
        results, expected,
        "the bench's requests hit the routes meant"
    );

    let before = counting_alloc::allocations();
    for request in [
        &prefix_hit,
        &exact_hit,
        &host_hit,
        &wildcard_hit,
        &header_hit,
        &not_found,
    ] {
        black_box(large.find(Some(request.host), request.path, request.method, &headers));
    }
    let allocations = counting_alloc::allocations() - before;
    println!("find allocations for 6 Found/NotFound lookups: {allocations}");
    assert_eq!(
        allocations, 0,
        "find must not allocate unless it answers 405"
    );

    let allow = bench_find(
        "find 1000 routes, 405 (builds Allow)",
        &large,
        &not_allowed,
        &headers,
    );
    assert_eq!(
        allow,
        RouteMatch::MethodNotAllowed {
            allow: "GET, HEAD, POST".into()
        }
    );

    assert_eq!(
        linear_find(&specs, prefix_hit.host, prefix_hit.path),
        Some(733)
    );
    measure(
        "linear scan 1000 routes, prefix hit (reference)",
        20_000,
        || {
            black_box(linear_find(
                &specs,
                black_box(prefix_hit.host),
                black_box(prefix_hit.path),
            ));
        },
    );

    let typical = b"/svc123/v1/users/42/orders?limit=10&offset=20";
    let messy = b"/svc123/./v1//users/%7ebob/../42/orders/%e2%82%ac?limit=10";
    assert_eq!(
        normalize_path(messy, PathParameters::Reject)
            .map(|t| t.path)
            .as_deref(),
        Ok("/svc123/v1/users/42/orders/%E2%82%AC")
    );
    measure("normalize_path, typical path + query", 200_000, || {
        black_box(normalize_path(black_box(typical), PathParameters::Reject).ok());
    });
    measure("normalize_path, dots + slashes + escapes", 200_000, || {
        black_box(normalize_path(black_box(messy), PathParameters::Reject).ok());
    });
}
