//! Composition (issue 12) through the real gateway, against real upstreams on
//! loopback: small JSON upstreams that answer, fail, hang, answer non-JSON or 4xx
//! (tests/common/json_upstream.rs), and `portico-load serve`.
//!
//! Merges in declared order whatever the arrival order, each failure policy,
//! fallbacks, deadlines and part timeouts (with the cancelled connection closed),
//! templates from path, query, header and claims, missing values, size limits, the
//! client's body to one part, the counters, and `portico check`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::json_upstream::{JsonUpstream, Reply, Request};
use common::jwt::{claims, header, SigningKey};
use common::{Client, Gateway, Response, Upstream};
use serde_json::{json, Value};

/// A gateway with one worker, `upstreams` as `(name, address)` and `rest` (routes
/// and any other sections) appended.
fn gateway(upstreams: &[(&str, String)], rest: &str) -> Gateway {
    let mut config = String::from(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[log]\naccess_log = \"off\"\n\n",
    );
    for (name, addr) in upstreams {
        config.push_str(&format!(
            "[[upstream]]\nname = \"{name}\"\nendpoints = [\"{addr}\"]\n\n"
        ));
    }
    config.push_str(rest);
    Gateway::start(&config)
}

/// GET `target` with extra header lines (each ending in `\r\n`).
fn get(gw: &Gateway, target: &str, headers: &str) -> Response {
    let mut c = gw.client();
    c.send(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n").as_bytes());
    c.response().expect("a response")
}

/// The admin `/stats` `compose` object, after the workers published it.
fn compose_stats(gw: &Gateway) -> Value {
    std::thread::sleep(Duration::from_millis(150));
    let r = Client::connect(gw.admin_port).get("/stats");
    r.json()["compose"].clone()
}

fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Three services in one upstream: `/a`, `/b`, `/c` answer objects sharing the key
/// `id`, each after the delay in its `d` query parameter (ms).
fn services() -> JsonUpstream {
    JsonUpstream::start(|r: &Request| {
        let delay = r.query("d").and_then(|d| d.parse().ok()).unwrap_or(0);
        let body = match r.path() {
            "/a" => r#"{"id": "a", "a": 1}"#,
            "/b" => r#"{"id": "b", "b": 2}"#,
            "/c" => r#"{"id": "c", "c": 3}"#,
            _ => r#"{}"#,
        };
        Reply::json(body).delay_ms(delay)
    })
}

fn three_parts(name: &str, merge: &str) -> String {
    format!(
        r#"
[[route]]
name = "{name}"
path = "/{name}"
[route.compose]
merge = "{merge}"
[[route.compose.part]]
name = "zeta"
upstream = "svc"
path = "/a?d={{query.da}}"
[[route.compose.part]]
name = "alpha"
upstream = "svc"
path = "/b?d={{query.db}}"
[[route.compose.part]]
name = "mid"
upstream = "svc"
path = "/c?d={{query.dc}}"
"#
    )
}

#[test]
fn merges_follow_the_declared_order_whatever_the_arrival_order() {
    let svc = services();
    let routes = three_parts("nested", "nested") + &three_parts("flat", "flat");
    let gw = gateway(&[("svc", svc.addr())], &routes);
    // Each part is the slowest once, and the fastest once.
    let delays = [(150, 0, 60), (0, 150, 60), (60, 0, 150), (0, 60, 150)];
    for (da, db, dc) in delays {
        let q = format!("?da={da}&db={db}&dc={dc}");
        let r = get(&gw, &format!("/nested{q}"), "");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-portico-composition"), Some("complete"));
        assert_eq!(r.header("x-portico-partial"), None);
        assert_eq!(
            r.text(),
            r#"{"zeta":{"id":"a","a":1},"alpha":{"id":"b","b":2},"mid":{"id":"c","c":3}}"#,
            "delays {q}"
        );
        let r = get(&gw, &format!("/flat{q}"), "");
        // The last declared part wins `id`; keys stay where they first appeared.
        assert_eq!(r.text(), r#"{"id":"c","a":1,"b":2,"c":3}"#, "delays {q}");
    }
}

#[test]
fn all_or_nothing_fails_at_the_first_failure_and_cancels_the_rest() {
    let hanging = JsonUpstream::start(|_: &Request| Reply::hang());
    let broken = JsonUpstream::start(|_: &Request| {
        Reply::json(r#"{"error": "boom"}"#).status(500).delay_ms(50)
    });
    let routes = r#"
[[route]]
name = "all"
path = "/all"
[route.compose]
on_part_failure = "fail"
deadline_ms = 5000
[[route.compose.part]]
name = "slow"
upstream = "hanging"
path = "/slow"
[[route.compose.part]]
name = "broken"
upstream = "broken"
path = "/broken"
"#;
    let gw = gateway(
        &[("hanging", hanging.addr()), ("broken", broken.addr())],
        routes,
    );
    let start = Instant::now();
    let r = get(&gw, "/all", "");
    let took = start.elapsed();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-portico-composition"), Some("failed"));
    let body = r.json();
    assert_eq!(body["part"], "broken");
    assert_eq!(body["reason"], "status");
    assert_eq!(body["upstream_status"], 500);
    assert!(body["error"].as_str().unwrap().contains("part \"broken\""));
    // Decided by the failure, not by the 5 s deadline.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // The hanging part was cancelled: its upstream sees the connection close.
    assert!(
        eventually(Duration::from_secs(3), || hanging.hung_closed() == 1),
        "the cancelled part's connection stayed open"
    );
    let stats = compose_stats(&gw);
    assert_eq!(stats["all"]["failed"], 1);
    assert_eq!(stats["all"]["parts"]["broken"]["failures"]["status"], 1);
    assert_eq!(stats["all"]["parts"]["slow"]["failures"]["cancelled"], 1);
}

#[test]
fn partial_answers_replace_or_leave_out_failed_optional_parts() {
    let svc = JsonUpstream::start(|r: &Request| match r.path() {
        "/user" => Reply::json(r#"{"id": 7}"#),
        "/cart" => Reply::json(r#"{"error": "down"}"#).status(503),
        "/recs" => Reply::text("not json"),
        "/missing" => Reply::json(r#"{"error": "no"}"#).status(404),
        "/down" => Reply::json("{}").status(503),
        _ => Reply::json("{}"),
    });
    let closed = common::free_port();
    let part = |name: &str, upstream: &str, path: &str, extra: &str| {
        format!("[[route.compose.part]]\nname = \"{name}\"\nupstream = \"{upstream}\"\npath = \"{path}\"\n{extra}\n")
    };
    let mut routes = String::from(
        "[[route]]\nname = \"home\"\npath = \"/home\"\n[route.compose]\non_part_failure = \"partial\"\n",
    );
    routes += &part("user", "svc", "/user", "");
    routes += &part(
        "cart",
        "svc",
        "/cart",
        "required = false\nfallback = { items = [] }",
    );
    routes += &part("recs", "svc", "/recs", "required = false");
    routes += &part("ads", "nowhere", "/ads", "required = false\nfallback = []");
    routes += &part("extra", "svc", "/missing", "required = false");
    routes += "[[route]]\nname = \"needs\"\npath = \"/needs\"\n[route.compose]\non_part_failure = \"partial\"\n";
    routes += &part("user", "svc", "/down", "");
    routes += &part("opt", "svc", "/user", "required = false");
    let gw = gateway(
        &[
            ("svc", svc.addr()),
            ("nowhere", format!("127.0.0.1:{closed}")),
        ],
        &routes,
    );
    let r = get(&gw, "/home", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-portico-composition"), Some("partial"));
    assert_eq!(r.header("x-portico-partial"), Some("cart,recs,ads,extra"));
    assert_eq!(
        r.text(),
        r#"{"user":{"id":7},"cart":{"items":[]},"ads":[]}"#
    );

    // A failed required part fails the call even with "partial".
    let r = get(&gw, "/needs", "");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["part"], "user");
    assert_eq!(r.json()["upstream_status"], 503);

    let stats = compose_stats(&gw);
    let parts = &stats["home"]["parts"];
    assert_eq!(stats["home"]["partial"], 1);
    assert_eq!(parts["user"]["ok"], 1);
    assert_eq!(parts["cart"]["fallback"], 1);
    assert_eq!(parts["cart"]["failures"]["status"], 1);
    assert_eq!(parts["recs"]["omitted"], 1);
    assert_eq!(parts["recs"]["failures"]["not_json"], 1);
    assert_eq!(parts["ads"]["failures"]["connect"], 1);
    assert_eq!(parts["extra"]["failures"]["status"], 1);
    assert_eq!(stats["needs"]["failed"], 1);
}

#[test]
fn the_deadline_cuts_slow_parts_and_closes_their_connections() {
    let svc = JsonUpstream::start(|r: &Request| match r.path() {
        "/fast" => Reply::json(r#"{"ok": true}"#),
        "/slow" => Reply::json(r#"{"late": true}"#).delay_ms(2000),
        _ => Reply::hang(),
    });
    let routes = r#"
[[route]]
name = "soft"
path = "/soft"
[route.compose]
on_part_failure = "partial"
deadline_ms = 300
[[route.compose.part]]
name = "fast"
upstream = "svc"
path = "/fast"
[[route.compose.part]]
name = "slow"
upstream = "svc"
path = "/slow"
required = false
fallback = "later"

[[route]]
name = "hard"
path = "/hard"
[route.compose]
deadline_ms = 300
[[route.compose.part]]
name = "fast"
upstream = "svc"
path = "/fast"
[[route.compose.part]]
name = "stuck"
upstream = "svc"
path = "/hang"

[[route]]
name = "own"
path = "/own"
[route.compose]
deadline_ms = 5000
[[route.compose.part]]
name = "stuck"
upstream = "svc"
path = "/hang"
timeout_ms = 100
"#;
    let gw = gateway(&[("svc", svc.addr())], routes);

    // A 2 s part under a 300 ms deadline: answered at the deadline, not after 2 s.
    let start = Instant::now();
    let r = get(&gw, "/soft", "");
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"fast":{"ok":true},"slow":"later"}"#);
    assert_eq!(r.header("x-portico-partial"), Some("slow"));
    assert!(took >= Duration::from_millis(290), "took {took:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");

    let start = Instant::now();
    let r = get(&gw, "/hard", "");
    let took = start.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["part"], "stuck");
    assert_eq!(r.json()["reason"], "deadline");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(
        eventually(Duration::from_secs(3), || svc.hung_closed() == 1),
        "the upstream did not see the cut part's connection close"
    );

    // The part's own timeout, well before the route's deadline.
    let start = Instant::now();
    let r = get(&gw, "/own", "");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["reason"], "timeout");
    assert!(start.elapsed() < Duration::from_millis(2500));
    assert!(eventually(Duration::from_secs(3), || svc.hung_closed() == 2));

    let stats = compose_stats(&gw);
    assert_eq!(stats["soft"]["parts"]["slow"]["failures"]["deadline"], 1);
    assert_eq!(stats["hard"]["parts"]["stuck"]["failures"]["deadline"], 1);
    assert_eq!(stats["own"]["parts"]["stuck"]["failures"]["timeout"], 1);
}

#[test]
fn parts_pass_the_upstreams_circuit_breakers() {
    let svc = JsonUpstream::start(|_: &Request| Reply::json("{}").delay_ms(200));
    let routes = r#"
[[route]]
name = "both"
path = "/both"
[route.compose]
[[route.compose.part]]
name = "first"
upstream = "tight"
path = "/1"
[[route.compose.part]]
name = "second"
upstream = "tight"
path = "/2"
"#;
    let mut config = String::from(
        "[[upstream]]\nname = \"tight\"\nendpoints = [\"ADDR\"]\nmax_requests = 1\n\n",
    )
    .replace("ADDR", &svc.addr());
    config.push_str(routes);
    let gw = gateway(&[], &config);
    let r = get(&gw, "/both", "");
    // Both parts start at once; the upstream takes one request in flight.
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["part"], "second");
    assert_eq!(r.json()["reason"], "overflow");
    assert_eq!(gw.stat("upstream_overflow_requests"), 1);
    let stats = compose_stats(&gw);
    assert_eq!(stats["both"]["parts"]["second"]["failures"]["overflow"], 1);
    assert_eq!(stats["both"]["parts"]["first"]["failures"]["cancelled"], 1);
}

#[test]
fn answers_are_shaped_and_4xx_can_be_data() {
    let svc = JsonUpstream::start(|r: &Request| match r.path() {
        "/user" => Reply::json(r#"{"data": {"id": 7, "name": "Ada", "secret": "x"}, "meta": {}}"#),
        "/gone" => Reply::json(r#"{"error": "no such order"}"#).status(404),
        "/chunked" => Reply::json(r#"{"items": [1, 2, 3]}"#).chunked(),
        "/empty" => Reply::json("").status(204),
        _ => Reply::json("{}"),
    });
    let routes = r#"
[[route]]
name = "shaped"
path = "/shaped"
[route.compose]
[[route.compose.part]]
name = "user"
upstream = "svc"
path = "/user"
select = "/data"
deny = ["secret"]
rename = { name = "display_name" }
[[route.compose.part]]
name = "order"
upstream = "svc"
path = "/gone"
on_4xx = "data"
[[route.compose.part]]
name = "list"
upstream = "svc"
path = "/chunked"
select = "/items/2"
[[route.compose.part]]
name = "nothing"
upstream = "svc"
path = "/empty"

[[route]]
name = "strict"
path = "/strict"
[route.compose]
[[route.compose.part]]
name = "order"
upstream = "svc"
path = "/gone"
"#;
    let gw = gateway(&[("svc", svc.addr())], routes);
    let r = get(&gw, "/shaped", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"user":{"id":7,"display_name":"Ada"},"order":{"error":"no such order"},"list":3,"nothing":null}"#
    );
    // By default a 4xx answer is a failure of the part.
    let r = get(&gw, "/strict", "");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["upstream_status"], 404);
}

/// HS256 secret file and a gateway whose `/screens/{user_id}` route composes with
/// values from the path, query, headers and claims.
#[test]
fn templates_read_path_query_headers_and_claims() {
    let svc = JsonUpstream::start(|_: &Request| Reply::json(r#"{"ok": 1}"#));
    let key = SigningKey::hmac();
    let dir = std::env::temp_dir().join(format!("portico-compose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret: PathBuf = dir.join("hs256.key");
    std::fs::write(&secret, key.secret()).unwrap();
    let routes = format!(
        r#"
[auth.jwt.main]
algorithms = ["HS256"]
hmac_secret_file = "{}"
claims_to_headers = {{ sub = "x-user-id" }}

[[route]]
name = "me"
path = "/screens/me"
respond = {{ status = 200, body = "literal" }}

[[route]]
name = "screen"
path = "/screens/{{user_id}}"
auth = "main"
[route.compose]
[[route.compose.part]]
name = "p"
upstream = "svc"
path = "/u/{{path.user_id}}/{{claim.sub}}?q={{query.q}}"
query = {{ lang = "{{header.x-lang}}", fixed = "a b" }}
headers = {{ "x-tenant" = "t-{{claim.tenant}}" }}
"#,
        secret.display()
    );
    let gw = gateway(&[("svc", svc.addr())], &routes);
    let mut c = claims("user/1");
    c["tenant"] = json!("acme");
    let token = key.sign(&header("HS256", None), &c);
    let auth = format!("Authorization: Bearer {token}\r\n");

    // A literal exact path wins over one with a named segment.
    assert_eq!(get(&gw, "/screens/me", &auth).text(), "literal");

    let r = get(
        &gw,
        "/screens/a%20b?q=x%2By+z&other=1",
        &format!("{auth}X-Lang: de\r\nCookie: session=secret\r\nX-Request-Id: req-12345678\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"p":{"ok":1}}"#);
    let seen = svc.requests();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!(up.method, "GET");
    assert_eq!(
        up.target,
        "/u/a%20b/user%2F1?q=x%2By%20z&fixed=a%20b&lang=de"
    );
    assert_eq!(up.header("x-tenant"), Some("t-acme"));
    assert_eq!(up.header("x-user-id"), Some("user/1"));
    assert_eq!(up.header("x-request-id"), Some("req-12345678"));
    assert_eq!(up.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(up.header("accept"), Some("application/json"));
    assert_eq!(
        up.header("authorization"),
        Some(&*format!("Bearer {token}"))
    );
    // Client fields are not copied to parts.
    assert_eq!(up.header("cookie"), None);
    assert_eq!(up.header("x-lang"), None);
    assert_eq!(up.header("host"), Some(&*svc.addr()));
}

#[test]
fn a_missing_template_value_is_a_400_before_any_part_is_sent() {
    let svc = JsonUpstream::start(|_: &Request| Reply::json("{}"));
    let routes = r#"
[[route]]
name = "r"
path = "/r/{id}"
[route.compose]
[[route.compose.part]]
name = "first"
upstream = "svc"
path = "/a/{path.id}"
[[route.compose.part]]
name = "second"
upstream = "svc"
path = "/b?for={query.for}"
headers = { "x-team" = "{header.x-team}" }
"#;
    let gw = gateway(&[("svc", svc.addr())], routes);
    let r = get(&gw, "/r/1", "X-Team: blue\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["value"], "query.for");
    assert_eq!(r.json()["part"], "second");
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("{query.for} is missing"));
    let r = get(&gw, "/r/1?for=", "X-Team: blue\r\n");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("empty"));
    let r = get(&gw, "/r/1?for=me", "");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["value"], "header.x-team");
    let r = get(&gw, "/r/..?for=..", "X-Team: blue\r\n");
    assert_eq!(r.status, 404, "a normalized path has no `..` segment");
    assert!(svc.requests().is_empty(), "a part was sent");
    assert_eq!(get(&gw, "/r/1?for=me", "X-Team: blue\r\n").status, 200);
    assert_eq!(compose_stats(&gw)["r"]["rejected"], 3);
}

#[test]
fn answers_over_the_size_limits_fail() {
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(200));
    let svc = JsonUpstream::start(move |r: &Request| match r.path() {
        "/big" => Reply::json(&big),
        "/bigchunked" => Reply::json(&big).chunked(),
        _ => Reply::json(r#"{"pad": "0123456789012345678901234567890123456789"}"#),
    });
    let routes = r#"
[compose]
max_part_bytes = 100

[[route]]
name = "big"
path = "/big"
[route.compose]
[[route.compose.part]]
name = "big"
upstream = "svc"
path = "/big"

[[route]]
name = "chunked"
path = "/chunked"
[route.compose]
[[route.compose.part]]
name = "big"
upstream = "svc"
path = "/bigchunked"

[[route]]
name = "merged"
path = "/merged"
[route.compose]
max_response_bytes = 80
[[route.compose.part]]
name = "one"
upstream = "svc"
path = "/small"
[[route.compose.part]]
name = "two"
upstream = "svc"
path = "/small"
"#;
    let gw = gateway(&[("svc", svc.addr())], routes);
    for path in ["/big", "/chunked"] {
        let r = get(&gw, path, "");
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert_eq!(r.json()["reason"], "too_large", "{path}");
    }
    let r = get(&gw, "/merged", "");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"], "composed answer too large");
    assert_eq!(r.json()["max_response_bytes"], 80);
}

#[test]
fn the_clients_body_goes_to_one_part_only() {
    let svc = JsonUpstream::start(|r: &Request| {
        Reply::json(&json!({"got": String::from_utf8_lossy(&r.body)}).to_string())
    });
    let routes = r#"
[[route]]
name = "order"
path = "/order"
methods = ["POST"]
[route.compose]
[[route.compose.part]]
name = "create"
upstream = "svc"
method = "POST"
path = "/orders"
body = "forward"
[[route.compose.part]]
name = "audit"
upstream = "svc"
path = "/audit"
"#;
    let gw = gateway(&[("svc", svc.addr())], routes);
    let mut c = gw.client();
    let body = r#"{"sku": 12}"#;
    c.send(
        format!(
            "POST /order HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = c.response().expect("a response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"create": {"got": body}, "audit": {"got": ""}})
    );
    let seen = svc.requests();
    let create = seen.iter().find(|r| r.path() == "/orders").expect("create");
    assert_eq!(create.method, "POST");
    assert_eq!(create.header("content-type"), Some("application/json"));
    let audit = seen.iter().find(|r| r.path() == "/audit").expect("audit");
    assert_eq!(audit.method, "GET");
    assert_eq!(audit.header("content-type"), None);
    assert_eq!(audit.header("content-length"), None);
    // The connection stays usable.
    assert_eq!(c.get("/order").status, 405);
}

#[test]
fn portico_load_serve_parts_take_the_slowest_not_the_sum() {
    let up = Upstream::start(&["--echo", "--delay-ms", "1000"]);
    let routes = r#"
[[route]]
name = "three"
path = "/three"
[route.compose]
merge = "nested"
[[route.compose.part]]
name = "a"
upstream = "echo"
path = "/a"
allow = ["path"]
[[route.compose.part]]
name = "b"
upstream = "echo"
path = "/b"
allow = ["path"]
[[route.compose.part]]
name = "c"
upstream = "echo"
path = "/c"
allow = ["path"]
"#;
    let gw = gateway(&[("echo", up.addr())], routes);
    let start = Instant::now();
    let r = get(&gw, "/three", "");
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"a":{"path":"/a"},"b":{"path":"/b"},"c":{"path":"/c"}}"#
    );
    // One after the other would take 3 s at least.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

/// Runs `portico check` on `text`; its exit code, the file's path and stderr.
fn check(text: &str) -> (Option<i32>, String, String) {
    let c = common::procs::portico_check("check.toml", text);
    (c.code, c.path, c.stderr)
}

#[test]
fn check_reports_composition_mistakes_at_their_place() {
    let (code, file, err) = check(
        r#"[[upstream]]
name = "svc"
endpoints = ["127.0.0.1:9"]

[[route]]
name = "home"
path = "/home/{id}"
[route.compose]
on_part_failure = "fail"
deadline_ms = 500
[[route.compose.part]]
name = "a"
upstream = "nope"
path = "/a/{path.user}"
[[route.compose.part]]
name = "a"
upstream = "svc"
path = "/b?x={claim.sub}"
timeout_ms = 900
[[route.compose.part]]
name = "c"
upstream = "svc"
path = "/c"
required = false
allow = ["x"]
deny = ["y"]
"#,
    );
    assert_eq!(code, Some(1), "{err}");
    let expect = [
        format!("{file}:13:12: part \"a\" names unknown upstream \"nope\""),
        format!("{file}:14:8: \"/a/{{path.user}}\": {{path.user}}: the route's path has no segment {{user}} (it has {{id}})"),
        format!("{file}:16:8: duplicate part name \"a\" in route \"home\""),
        format!("{file}:18:8: \"/b?x={{claim.sub}}\": {{claim.sub}}: claims are only known on a route that authenticates"),
        format!("{file}:19:14: timeout_ms 900 is not below the route's deadline_ms 500"),
        format!("{file}:24:12: required = false has no effect with on_part_failure = \"fail\""),
        format!("{file}:25:9: give either allow or deny, not both"),
    ];
    for e in &expect {
        assert!(err.contains(e.as_str()), "missing {e:?} in:\n{err}");
    }
    assert_eq!(err.lines().count(), expect.len(), "{err}");
}

#[test]
fn check_warns_once_about_flat_key_collisions_it_can_see() {
    let (code, file, err) = check(
        r#"[[upstream]]
name = "svc"
endpoints = ["127.0.0.1:9"]

[[route]]
name = "flat"
path = "/flat"
[route.compose]
merge = "flat"
[[route.compose.part]]
name = "one"
upstream = "svc"
path = "/1"
allow = ["id", "a"]
[[route.compose.part]]
name = "two"
upstream = "svc"
path = "/2"
allow = ["id", "b", "x"]
rename = { x = "a" }
[[route.compose.part]]
name = "three"
upstream = "svc"
path = "/3"
"#,
    );
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{file}:16:8: warning: route \"flat\": flat merge: key \"a\" can come from parts \"one\", \"two\"; the last declared, \"two\", wins"),
            format!("{file}:16:8: warning: route \"flat\": flat merge: key \"id\" can come from parts \"one\", \"two\"; the last declared, \"two\", wins"),
        ],
        "{err}"
    );
}
