//! The transform stage through the real gateway: header rules in both directions
//! with templates (what the echo upstream received, what the client got), rules
//! `portico check` refuses at their place, and CORS at the door — preflights
//! answered without a token and without reaching the upstream (its hit counter
//! unchanged), the CORS fields of actual requests, disallowed origins, credentials.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::json_upstream::{JsonUpstream, Reply};
use common::jwt::{self, claims, header};
use common::{Client, Gateway, Response, Upstream};
use serde_json::json;

/// A JWKS file with the shared RSA key as `k1`, for `[auth.jwt.main]`: written
/// once per test process (tests run in parallel; rewriting it while another
/// test's gateway reads it gave that gateway an empty file).
fn jwks_file() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("portico-transform-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        let jwks = json!({"keys": [jwt::shared_rsa().jwk("k1")]});
        std::fs::write(&path, jwks.to_string()).unwrap();
        path
    })
    .clone()
}

fn token(sub: &str) -> String {
    jwt::shared_rsa().sign(&header("RS256", Some("k1")), &claims(sub))
}

/// A gateway on `routes`, with `upstreams` and `[auth.jwt.main]`.
fn gateway(upstreams: &str, routes: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[auth.jwt.main]
issuer = "https://id.test/"
audiences = ["api"]
algorithms = ["RS256"]
jwks_file = "{}"
claims_to_headers = {{ sub = "x-user-id" }}
{upstreams}
{routes}
"#,
        jwks_file().display()
    ))
}

fn send(c: &mut Client, head: &str) -> Response {
    c.send(format!("{head}\r\n").as_bytes());
    c.response().expect("a response")
}

/// Header values the echo upstream received under `name`.
fn seen(r: &Response, name: &str) -> Vec<String> {
    r.json()["headers"]
        .as_array()
        .expect("echo headers")
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}

/// Every value of the response field `name`, in order.
fn all(r: &Response, name: &str) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The response's CORS fields (`Access-Control-*`).
fn cors_fields(r: &Response) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-"))
        .cloned()
        .collect()
}

#[test]
fn request_rules_set_add_and_remove_with_templates_over_the_upstream_defaults() {
    let up = Upstream::echo();
    let gw = gateway(
        &format!(
            r#"[[upstream]]
name = "app"
endpoints = ["{}"]
request_headers = {{ set = {{ "x-env" = "prod", "x-team" = "core" }}, remove = ["x-debug"] }}"#,
            up.addr()
        ),
        r#"[[route]]
name = "api"
path_prefix = "/api"
upstream = "app"
auth = { provider = "main", optional = true }
request_headers = { set = { "x-user" = "{claim.sub}", "x-tag" = "{route}/{upstream}/{request_id}", "x-ip" = "{client_ip}", "x-trace" = "{trace_id}" }, add = { "x-multi" = "b", "x-team" = "edge" }, remove = ["x-internal"] }

[[route]]
name = "plain"
path_prefix = "/plain"
upstream = "app""#,
    );
    let mut c = gw.client();
    let r = send(
        &mut c,
        &format!(
            "GET /api/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nx-debug: 1\r\nx-env: dev\r\nx-multi: a\r\nx-user: mallory\r\nx-internal: secret\r\nx-team: client\r\nx-trace: forged\r\n",
            token("alice")
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("x-request-id").expect("request id").to_string();
    // The upstream's defaults: set replaces the client's, remove drops.
    assert_eq!(seen(&r, "x-env"), ["prod"]);
    assert!(seen(&r, "x-debug").is_empty());
    // The route's: add appends after the client's value, set replaces it.
    assert_eq!(seen(&r, "x-multi"), ["a", "b"]);
    assert_eq!(seen(&r, "x-user"), ["alice"]);
    assert_eq!(seen(&r, "x-tag"), [format!("api/app/{id}")]);
    assert_eq!(seen(&r, "x-ip"), ["127.0.0.1"]);
    assert!(seen(&r, "x-internal").is_empty());
    // The route names x-team (add), so the upstream's set of it does not apply.
    assert_eq!(seen(&r, "x-team"), ["client", "edge"]);
    // No trace context yet: {trace_id} renders empty, and set still drops the
    // client's value.
    assert!(seen(&r, "x-trace").is_empty());
    // The gateway's own fields are untouched.
    assert_eq!(seen(&r, "x-user-id"), ["alice"]);
    assert_eq!(seen(&r, "x-request-id"), [id]);

    // Anonymous: {claim.sub} is empty, and the client's x-user never passes.
    let r = send(
        &mut c,
        "GET /api/x HTTP/1.1\r\nHost: t\r\nx-user: mallory\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(seen(&r, "x-user").is_empty());

    // A route without rules of its own still gets its upstream's defaults.
    let r = send(
        &mut c,
        "GET /plain HTTP/1.1\r\nHost: t\r\nx-env: dev\r\nx-debug: 1\r\nx-multi: a\r\n",
    );
    assert_eq!(seen(&r, "x-env"), ["prod"]);
    assert_eq!(seen(&r, "x-team"), ["core"]);
    assert!(seen(&r, "x-debug").is_empty());
    assert_eq!(seen(&r, "x-multi"), ["a"]);
}

#[test]
fn response_rules_edit_what_the_client_gets() {
    let up = JsonUpstream::start(|_| {
        Reply::json("{\"ok\": true}")
            .header("server", "upstream/1.0")
            .header("x-powered-by", "php")
            .header("cache-control", "public, max-age=60")
            .header("x-keep", "1")
    });
    let gw = gateway(
        &format!(
            r#"[[upstream]]
name = "app"
endpoints = ["{}"]
response_headers = {{ remove = ["server"], add = {{ "x-default" = "yes" }} }}"#,
            up.addr()
        ),
        r#"[[route]]
name = "api"
path_prefix = "/"
upstream = "app"
auth = { provider = "main", optional = true }
response_headers = { set = { "cache-control" = "no-store" }, add = { "x-served-by" = "{upstream} via {route}", "x-req" = "{request_id}", "x-user" = "{claim.sub}" }, remove = ["x-powered-by"] }"#,
    );
    let mut c = gw.client();
    let r = send(
        &mut c,
        &format!(
            "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n",
            token("bob")
        ),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ok"], true);
    assert_eq!(all(&r, "cache-control"), ["no-store"]);
    assert!(all(&r, "server").is_empty());
    assert!(all(&r, "x-powered-by").is_empty());
    assert_eq!(all(&r, "x-keep"), ["1"]);
    assert_eq!(all(&r, "x-default"), ["yes"]);
    assert_eq!(all(&r, "x-served-by"), ["app via api"]);
    assert_eq!(all(&r, "x-user"), ["bob"]);
    assert_eq!(
        all(&r, "x-req"),
        [r.header("x-request-id").unwrap().to_string()]
    );
    assert_eq!(all(&r, "content-type"), ["application/json"]);
    // Anonymous: the claim is empty, so the field is not sent.
    let r = send(&mut c, "GET /x HTTP/1.1\r\nHost: t\r\n");
    assert!(all(&r, "x-user").is_empty());
    assert_eq!(all(&r, "cache-control"), ["no-store"]);
}

/// The routes of the CORS tests: `/api` needs a token and takes GET and PUT,
/// `/open` allows any origin without credentials.
fn cors_gateway(upstream: &str) -> Gateway {
    gateway(
        &format!("[[upstream]]\nname = \"app\"\nendpoints = [\"{upstream}\"]"),
        r#"[[route]]
name = "api"
path_prefix = "/api"
methods = ["GET", "PUT"]
upstream = "app"
auth = "main"
cors = { allow_origins = ["https://app.test", "https://*.example.com"], allow_headers = ["authorization", "content-type"], expose_headers = ["x-total"], allow_credentials = true, max_age_s = 600 }

[[route]]
name = "open"
path_prefix = "/open"
upstream = "app"
cors = { allow_origins = ["*"], allow_methods = ["GET", "DELETE"] }"#,
    )
}

fn preflight(c: &mut Client, path: &str, origin: &str, method: &str, headers: &str) -> Response {
    let requested = if headers.is_empty() {
        String::new()
    } else {
        format!("Access-Control-Request-Headers: {headers}\r\n")
    };
    send(
        c,
        &format!("OPTIONS {path} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n{requested}"),
    )
}

#[test]
fn preflights_are_answered_at_the_door_without_a_token_or_an_upstream_hit() {
    let up = Upstream::echo();
    let gw = cors_gateway(&up.addr());
    let mut c = gw.client();
    let before = up.hits();
    // The route takes GET and PUT, not OPTIONS: the preflight is matched with the
    // method it asks about, and needs no token.
    let r = preflight(
        &mut c,
        "/api/items",
        "https://app.test",
        "PUT",
        "Authorization, Content-Type",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(r.header("vary").unwrap().starts_with("Origin"));
    // A subdomain of the wildcard, on the same keep-alive connection.
    let r = preflight(&mut c, "/api/items", "https://a.b.example.com", "GET", "");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://a.b.example.com")
    );
    // An any-origin policy without credentials answers `*`.
    let r = preflight(&mut c, "/open", "https://whoever.test", "DELETE", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert_eq!(up.hits(), before, "a preflight must not reach the upstream");

    // Refused preflights: 403, no CORS fields, nothing upstream either.
    for (origin, method, headers) in [
        ("https://evil.test", "PUT", ""),
        ("https://example.com", "PUT", ""),
        ("http://app.example.com", "PUT", ""),
        ("https://app.test", "PUT", "x-secret"),
    ] {
        let r = preflight(&mut c, "/api/items", origin, method, headers);
        assert_eq!(r.status, 403, "{origin} {method} {headers}");
        assert!(cors_fields(&r).is_empty(), "{:?}", r.headers);
        assert!(r.header("vary").unwrap().contains("Origin"));
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("CORS preflight refused"));
    }
    let r = preflight(&mut c, "/open", "https://x.test", "PATCH", "");
    assert_eq!(r.status, 403);
    assert_eq!(up.hits(), before);

    // An OPTIONS that is not a preflight is an ordinary request: here a 405 (the
    // route does not take OPTIONS).
    let r = send(
        &mut c,
        "OPTIONS /api/items HTTP/1.1\r\nHost: t\r\nOrigin: https://app.test\r\n",
    );
    assert_eq!(r.status, 405);
}

#[test]
fn actual_requests_get_cors_fields_only_for_allowed_origins() {
    // The upstream sends CORS fields of its own: on a route with cors, the gateway's
    // answer replaces them.
    let up = JsonUpstream::start(|_| {
        Reply::json("{}")
            .header("access-control-allow-origin", "*")
            .header("vary", "Accept-Encoding")
            .header("x-total", "3")
    });
    let gw = cors_gateway(&up.addr());
    let mut c = gw.client();
    let auth = format!("Authorization: Bearer {}\r\n", token("carol"));
    let r = send(
        &mut c,
        &format!("GET /api/items HTTP/1.1\r\nHost: t\r\nOrigin: https://app.test\r\n{auth}"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        cors_fields(&r),
        [
            (
                "access-control-allow-origin".to_string(),
                "https://app.test".to_string()
            ),
            (
                "access-control-allow-credentials".to_string(),
                "true".to_string()
            ),
            (
                "access-control-expose-headers".to_string(),
                "x-total".to_string()
            ),
        ]
    );
    assert_eq!(all(&r, "vary"), ["Accept-Encoding", "Origin"]);

    // A disallowed origin: the request is served (CORS is not access control), with
    // no CORS fields, so the browser does not hand the answer to the page.
    let r = send(
        &mut c,
        &format!("GET /api/items HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.test\r\n{auth}"),
    );
    assert_eq!(r.status, 200);
    assert!(cors_fields(&r).is_empty(), "{:?}", r.headers);
    assert!(all(&r, "vary").contains(&"Origin".to_string()));

    // No Origin (not a browser's cross-origin call): no CORS fields, still Vary.
    let r = send(
        &mut c,
        &format!("GET /api/items HTTP/1.1\r\nHost: t\r\n{auth}"),
    );
    assert!(cors_fields(&r).is_empty());
    assert!(all(&r, "vary").contains(&"Origin".to_string()));

    // The gateway's own refusals carry them too, so the page can read its 401.
    let requests = up.requests().len();
    let r = send(
        &mut c,
        "PUT /api/items HTTP/1.1\r\nHost: t\r\nOrigin: https://app.test\r\nContent-Length: 0\r\n",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(up.requests().len(), requests);

    // Any origin without credentials: `*`, never the credentials field.
    let r = send(
        &mut c,
        "GET /open HTTP/1.1\r\nHost: t\r\nOrigin: https://whoever.test\r\n",
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert_eq!(all(&r, "access-control-allow-origin").len(), 1);
}

/// Runs `portico check` on `text`; its exit code, the file's path and stderr.
fn check(text: &str) -> (Option<i32>, String, String) {
    let c = common::procs::portico_check("check.toml", text);
    (c.code, c.path, c.stderr)
}

#[test]
fn check_refuses_rules_on_protected_fields_and_bad_cors_at_their_place() {
    let text = format!(
        r#"[server]
listen = ["127.0.0.1:9"]
[auth.jwt.main]
jwks_file = "{jwks}"
claims_to_headers = {{ sub = "x-user-id" }}
[[upstream]]
name = "app"
endpoints = ["127.0.0.1:9"]
request_headers = {{ set = {{ "Transfer-Encoding" = "chunked" }} }}
[[route]]
name = "api"
path_prefix = "/api"
upstream = "app"
auth = {{ provider = "main", cors_preflight = "bypass" }}
request_headers = {{ set = {{ "content-length" = "1", "host" = "x", "x-user-id" = "a" }}, add = {{ "x-ok" = "{{nope}}", "x-bad" = "a\u0001b" }}, remove = ["x-forwarded-for", "x-request-id", "x-portico-attempts", "te"] }}
response_headers = {{ set = {{ "access-control-allow-origin" = "*" }}, remove = ["connection", "bad name"] }}
cors = {{ allow_origins = ["*"], allow_credentials = true }}
[[route]]
name = "other"
path = "/other"
upstream = "app"
cors = {{ allow_origins = ["https://app.test/", "app.test", "https://*.*.test"], max_age_s = 100000 }}
[[route]]
name = "static"
path = "/static"
respond = {{ status = 200 }}
response_headers = {{ add = {{ "x-a" = "1" }} }}
"#,
        jwks = jwks_file().display()
    );
    let (code, file, err) = check(&text);
    assert_eq!(code, Some(1), "{err}");
    let expect = [
        (9, 29, "request_headers cannot touch \"transfer-encoding\""),
        (14, 8, "cors_preflight has no effect on a route with cors"),
        (15, 29, "request_headers cannot touch \"content-length\""),
        (15, 53, "request_headers cannot touch \"host\""),
        (15, 67, "request_headers cannot touch \"x-user-id\""),
        (15, 105, "unknown placeholder {nope}"),
        (15, 125, "control character"),
        (15, 149, "request_headers cannot touch \"x-forwarded-for\""),
        (15, 168, "request_headers cannot touch \"x-request-id\""),
        (
            15,
            184,
            "request_headers cannot touch \"x-portico-attempts\"",
        ),
        (15, 206, "request_headers cannot touch \"te\""),
        (
            16,
            30,
            "response_headers cannot touch \"access-control-allow-origin\"",
        ),
        (16, 79, "response_headers cannot touch \"connection\""),
        (16, 93, "\"bad name\" is not a valid header name"),
        (17, 27, "cannot be used with allow_credentials = true"),
        (22, 27, "without a path"),
        (22, 48, "needs a scheme"),
        (22, 60, "only allowed as the first label"),
        (22, 93, "max_age_s must be at most 86400"),
        (27, 20, "applies to a route that forwards to an upstream"),
    ];
    for (line, col, what) in expect {
        let at = format!("{file}:{line}:{col}: ");
        assert!(
            err.lines().any(|l| l.starts_with(&at) && l.contains(what)),
            "no `{at}…{what}` in:\n{err}"
        );
    }
    assert_eq!(err.lines().count(), expect.len(), "{err}");
}
