//! One request, one meaning (issue 11): inputs drawn from public bug reports
//! against nginx, Envoy, HAProxy, Traefik, Varnish, Pingora, Tomcat-fronting
//! proxies and JWT libraries, each sent as exact bytes through the real gateway.
//! Every case asserts the exact status and what the upstream received: the echo
//! upstream's view of the request, or the exact bytes a raw-socket upstream read.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use common::jwt::{b64, claims, hmac_sign, SigningKey};
use common::raw_upstream::body_of;
use common::{Gateway, RawUpstream, Response, Upstream};
use serde_json::json;

// ---------------------------------------------------------------- helpers

/// A gateway on one worker with `server` lines under `[server]` and `rest`
/// (upstreams, routes, providers) after it. `{port}`/`{admin}` are filled in.
fn gateway(server: &str, rest: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
{server}
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
{rest}
"#
    ))
}

/// One upstream `app` at `addr` and one catch-all route to it.
fn forward_all(addr: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "app"
endpoints = ["{addr}"]
request_timeout_ms = 3000
[[route]]
name = "all"
path_prefix = "/"
upstream = "app"
"#
    )
}

/// Sends `raw` on a new connection and reads one response.
fn send(gw: &Gateway, raw: &[u8]) -> Response {
    let mut c = gw.client();
    c.send(raw);
    c.response()
        .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(raw)))
}

/// The request line parts and headers the echo upstream saw, names lowercased.
struct Echoed {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Echoed {
    fn of(r: &Response) -> Echoed {
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        Echoed {
            path: v["path"].as_str().unwrap_or("").to_string(),
            headers: v["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_ascii_lowercase(),
                        p[1].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            body: v["body"].as_str().unwrap_or("").to_string(),
        }
    }

    /// Every value of header `name` (lowercase).
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} {} times: {all:?}", all.len());
        all.first().copied()
    }

    /// Header names as a CGI server reads them (`HTTP_X_USER_ID`).
    fn cgi_names(&self) -> Vec<String> {
        self.headers
            .iter()
            .map(|(n, _)| {
                let cgi: String = n
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_uppercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                format!("HTTP_{cgi}")
            })
            .collect()
    }
}

/// A refused request: `status`, and nothing upstream.
fn refused(gw: &Gateway, upstream_hits: impl Fn() -> usize, raw: &[u8], status: u16) {
    gw.expect_refused(raw, status, upstream_hits);
}

fn write_secret(key: &SigningKey) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portico-one-meaning-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("secret-{}", common::free_port()));
    std::fs::write(&path, key.secret()).unwrap();
    path
}

/// `[auth.jwt.main]`: HS256 with `key`, `sub` → `x-user-id`.
fn provider(key: &SigningKey) -> String {
    format!(
        r#"
[auth.jwt.main]
issuer = "https://id.test/"
audiences = ["api"]
algorithms = ["HS256"]
hmac_secret_file = "{}"
claims_to_headers = {{ sub = "x-user-id" }}
"#,
        write_secret(key).display()
    )
}

// ---------------------------------------------------------------- kind 1

/// Two host routes on one shared backend: admin needs a token, public does not;
/// both preserve the host (the issue's example).
fn two_hosts(up: &Upstream, key: &SigningKey, server: &str) -> Gateway {
    gateway(
        server,
        &format!(
            r#"
{}
[[upstream]]
name = "app"
endpoints = ["{}"]
[[route]]
name = "admin"
host = "admin.example.com"
path_prefix = "/"
upstream = "app"
auth = "main"
preserve_host = true
[[route]]
name = "public"
host = "public.example.com"
path_prefix = "/"
upstream = "app"
preserve_host = true
"#,
            provider(key),
            up.addr()
        ),
    )
}

#[test]
fn kind1_one_authority_per_request() {
    let up = Upstream::echo();
    let key = SigningKey::hmac();
    let gw = two_hosts(&up, &key, "");
    let hits = || up.hits() as usize;

    // The issue's example: absolute-form public + Host admin routes as public AND
    // reaches the backend as public.
    let r = send(
        &gw,
        b"GET http://public.example.com/account HTTP/1.1\r\nHost: admin.example.com\r\n\r\n",
    );
    let e = Echoed::of(&r);
    assert_eq!(e.path, "/account");
    assert_eq!(e.one("host"), Some("public.example.com"));
    assert_eq!(e.one("x-forwarded-host"), Some("public.example.com"));

    // The other way round needs the admin token, and without it nothing is forwarded.
    refused(
        &gw,
        hits,
        b"GET http://admin.example.com/account HTTP/1.1\r\nHost: public.example.com\r\n\r\n",
        401,
    );
    // A client's X-Forwarded-Host is no second opinion.
    let r = send(
        &gw,
        b"GET http://public.example.com/a HTTP/1.1\r\nHost: public.example.com\r\nX-Forwarded-Host: admin.example.com\r\n\r\n",
    );
    assert_eq!(
        Echoed::of(&r).one("x-forwarded-host"),
        Some("public.example.com")
    );
    // Spellings of the same host route the same, and are forwarded as received.
    for (raw, host) in [
        (
            &b"GET /a HTTP/1.1\r\nHost: PUBLIC.Example.com.:80\r\n\r\n"[..],
            "PUBLIC.Example.com.:80",
        ),
        (
            b"GET HTTP://public.example.com:8080/a HTTP/1.1\r\nHost: x\r\n\r\n",
            "public.example.com:8080",
        ),
        (
            b"GET http://public.example.com HTTP/1.0\r\n\r\n",
            "public.example.com",
        ),
    ] {
        let e = Echoed::of(&send(&gw, raw));
        assert_eq!(
            e.one("host"),
            Some(host),
            "{}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(e.one("x-forwarded-host"), Some(host));
    }

    // A Host (or authority) that URL parsers read differently is a 400, and the
    // upstream never sees it.
    let bad: &[&[u8]] = &[
        b"GET /account HTTP/1.1\r\nHost: public.example.com:@admin.example.com\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: public.example.com admin.example.com\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: public.example.com,admin.example.com\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: admin.example.com@public.example.com\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: public.example.com\tx\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: public.example.com/admin\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: public.example.com%2f\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: \r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: public.example.com:99999\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: [::1\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: 0x7f.1\r\n\r\n",
        b"GET /account HTTP/1.1\r\nHost: public.example.com\r\nHost: admin.example.com\r\n\r\n",
        b"GET http://admin.example.com@public.example.com/account HTTP/1.1\r\nHost: public.example.com\r\n\r\n",
        b"GET http://public.example.com:@admin.example.com/account HTTP/1.1\r\nHost: public.example.com\r\n\r\n",
        b"GET http://public.example.com/account HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET http:///account HTTP/1.1\r\nHost: public.example.com\r\n\r\n",
        b"GET ftp://public.example.com/account HTTP/1.1\r\nHost: public.example.com\r\n\r\n",
        b"GET public.example.com:80 HTTP/1.1\r\nHost: public.example.com\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: public.example.com\r\n\r\n",
    ];
    for raw in bad {
        refused(&gw, hits, raw, 400);
    }
}

#[test]
fn kind1_redirect_location_uses_the_authority() {
    let up = Upstream::echo();
    let gw = gateway("redirect_to_https = true", &forward_all(&up.addr()));
    for (raw, location) in [
        (
            &b"GET /a HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"[..],
            "https://[::1]/a",
        ),
        (
            b"GET /a?b=1 HTTP/1.1\r\nHost: api.example.com:8080\r\n\r\n",
            "https://api.example.com/a?b=1",
        ),
        (
            b"GET http://public.example.com/a?b HTTP/1.1\r\nHost: admin.example.com\r\n\r\n",
            "https://public.example.com/a?b",
        ),
        (
            b"GET http://public.example.com HTTP/1.1\r\nHost: admin.example.com\r\n\r\n",
            "https://public.example.com/",
        ),
    ] {
        let r = send(&gw, raw);
        assert_eq!(r.status, 308, "{}", String::from_utf8_lossy(raw));
        assert_eq!(r.header("location"), Some(location));
    }
    let r = send(&gw, b"GET /a HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(up.hits(), 0);
}

#[test]
fn kind1_rate_limit_keys_read_the_one_authority() {
    let up = Upstream::echo();
    let gw = gateway(
        "",
        &format!(
            r#"
[[upstream]]
name = "app"
endpoints = ["{}"]
[[rate_limit]]
name = "per-host"
key = "header:host"
rate = "1/m"
burst = 1
scope = "worker"
[[route]]
name = "all"
path_prefix = "/"
upstream = "app"
rate_limits = ["per-host"]
"#,
            up.addr()
        ),
    );
    // The first request spends public.example.com's one token through the
    // absolute-form target, although its Host header names another host.
    let r = send(
        &gw,
        b"GET http://public.example.com/ HTTP/1.1\r\nHost: other.example.com\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let r = send(&gw, b"GET / HTTP/1.1\r\nHost: public.example.com\r\n\r\n");
    assert_eq!(r.status, 429, "same authority, same bucket");
    let r = send(&gw, b"GET / HTTP/1.1\r\nHost: other.example.com\r\n\r\n");
    assert_eq!(
        r.status, 200,
        "the Host header of the first request was not its key"
    );
}

// ---------------------------------------------------------------- kind 2

/// `/admin` is a static 403 and `/` a catch-all to the upstream.
fn admin_forbidden(addr: &str, server: &str) -> Gateway {
    gateway(
        server,
        &format!(
            r#"
[[upstream]]
name = "app"
endpoints = ["{addr}"]
[[route]]
name = "admin"
path_prefix = "/admin"
respond = {{ status = 403, body = "forbidden" }}
[[route]]
name = "all"
path_prefix = "/"
upstream = "app"
"#
        ),
    )
}

/// Spellings Tomcat, Jetty or Spring (or a lenient decoder) read as under `/admin`.
const ADMIN_SPELLINGS: &[&str] = &[
    "/admin;x/secret",
    "/admin;/secret",
    "/admin;jsessionid=ABC/secret",
    "/admin;x",
    "/public/..;/admin",
    "/public/..;x/admin/secret",
    "/.;/admin",
    "/.;x/admin",
    "/;x/admin",
    "/public/%2e%2e;/admin",
    "/public;x/../admin",
];

#[test]
fn kind2_path_parameters_are_refused_by_default() {
    let up = Upstream::echo();
    let gw = admin_forbidden(&up.addr(), "");
    let hits = || up.hits() as usize;
    for path in ADMIN_SPELLINGS {
        refused(
            &gw,
            hits,
            format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            400,
        );
    }
    // Other spellings that a backend might read as /admin: escaped ';', escaped
    // controls a trimming matcher drops, overlong UTF-8 dots, encoded separators.
    for path in [
        "/admin%3bx/secret",
        "/admin%3B/secret",
        "/admin%09/secret",
        "/admin%20%0d/secret",
        "/%c0%ae%c0%ae/admin",
        "/x/%c0%ae%c0%ae/admin",
        "/public/..%2fadmin",
        "/public/..%5cadmin",
        "/public\\..\\admin",
        "/%2e%2e%2fadmin",
        "/%u002e%u002e/admin",
    ] {
        refused(
            &gw,
            hits,
            format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            400,
        );
    }
    // Spellings that resolve to /admin are routed as /admin.
    for path in [
        "/x/../admin",
        "/%61dmin/secret",
        "//admin",
        "/./admin/",
        "/public/%2e%2e/admin",
    ] {
        let r = send(
            &gw,
            format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 403, "{path}");
    }
    assert_eq!(up.hits(), 0);
    // A ';' in the query is the query's business.
    let e = Echoed::of(&send(&gw, b"GET /a?x=1;y=2 HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert_eq!(e.path, "/a?x=1;y=2");
}

#[test]
fn kind2_stripped_path_parameters_route_and_forward_as_the_servlet_reads_them() {
    let up = Upstream::echo();
    let gw = admin_forbidden(&up.addr(), r#"path_parameters = "strip""#);
    for path in ADMIN_SPELLINGS {
        let r = send(
            &gw,
            format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }
    assert_eq!(up.hits(), 0);
    // Elsewhere the parameters are removed from what is forwarded too.
    for (path, forwarded) in [
        ("/a;jsessionid=1/b", "/a/b"),
        ("/cars;color=red/1?q=1;2", "/cars/1?q=1;2"),
        ("/a/..;/b", "/b"),
    ] {
        let e = Echoed::of(&send(
            &gw,
            format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        ));
        assert_eq!(e.path, forwarded, "{path}");
    }
    let hits = || up.hits() as usize;
    refused(
        &gw,
        hits,
        b"GET /admin%3bx/secret HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
    );
}

// ---------------------------------------------------------------- kind 3

/// Identity headers, every spelling of every name the gateway owns, and a benign
/// underscore header.
const SPOOFED: &[u8] = b"GET /h HTTP/1.1\r\nHost: h.example\r\n\
    X-User-Id: admin\r\nX_User_Id: admin\r\nx-user_id: admin\r\nX_USER_ID: admin\r\n\
    X-Portico-Role: root\r\nX_Portico_Role: root\r\n\
    X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 10.0.0.1\r\nX_Forwarded_Host: evil.example\r\n\
    X_Forwarded_Proto: https\r\nX-Forwarded-Prefix: /evil\r\nX-Forwarded-Port: 1\r\n\
    X-Forwarded-Ssl: on\r\nX-Forwarded-Server: evil\r\n\
    Forwarded: for=6.6.6.6;proto=https;host=evil.example\r\nForwarded: for=7.7.7.7\r\n\
    X-Real-IP: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\n\
    X_Request_Id: spoofed\r\nTransfer_Encoding: chunked\r\nContent_Length: 5\r\n\
    X.User.Id: admin\r\nX.Forwarded.Host: evil.example\r\nTransfer.Encoding: chunked\r\n\
    X-Host: evil.example\r\nX-Original-Host: evil.example\r\nX-HTTP-Host-Override: evil.example\r\n\
    X-HTTP-Method-Override: DELETE\r\nX-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\n\
    X_Api_Key: k1\r\nX-Kept: yes\r\nX.Kept: yes\r\n\r\n";

fn spoof_gateway(up: &Upstream, key: &SigningKey, server: &str) -> Gateway {
    gateway(
        server,
        &format!("{}{}", provider(key), forward_all(&up.addr())),
    )
}

/// What every mode guarantees about the spoofed request.
fn assert_owned_names_are_the_gateways(e: &Echoed) {
    let cgi = e.cgi_names();
    for owned in [
        "HTTP_X_USER_ID",
        "HTTP_X_PORTICO_ROLE",
        "HTTP_X_FORWARDED_PREFIX",
        "HTTP_X_FORWARDED_PORT",
        "HTTP_X_FORWARDED_SSL",
        "HTTP_X_FORWARDED_SERVER",
        "HTTP_X_ORIGINAL_URL",
        "HTTP_X_REWRITE_URL",
        "HTTP_TRANSFER_ENCODING",
        "HTTP_CONTENT_LENGTH",
        "HTTP_X_HOST",
        "HTTP_X_ORIGINAL_HOST",
        "HTTP_X_HTTP_HOST_OVERRIDE",
        "HTTP_X_HTTP_METHOD_OVERRIDE",
        "HTTP_X_METHOD_OVERRIDE",
        "HTTP_X_HTTP_METHOD",
    ] {
        assert!(
            !cgi.contains(&owned.to_string()),
            "{owned} reached the upstream: {:?}",
            e.headers
        );
    }
    for once in [
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_REAL_IP",
        "HTTP_FORWARDED",
        "HTTP_HOST",
        "HTTP_X_REQUEST_ID",
    ] {
        assert_eq!(
            cgi.iter().filter(|n| *n == once).count(),
            1,
            "{once}: {:?}",
            e.headers
        );
    }
    assert_eq!(e.one("x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
    assert_eq!(e.one("x-forwarded-host"), Some("h.example"));
    assert_eq!(e.one("x-forwarded-proto"), Some("http"));
    assert_eq!(e.one("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(
        e.one("forwarded"),
        Some("for=127.0.0.1;proto=http;host=\"h.example\"")
    );
    assert_ne!(e.one("x-request-id"), Some("spoofed"));
    assert_eq!(e.one("x-kept"), Some("yes"));
}

#[test]
fn kind3_reserved_header_names_in_every_spelling() {
    let up = Upstream::echo();
    let key = SigningKey::hmac();

    // Default: every underscore name is dropped, as nginx does.
    let gw = spoof_gateway(&up, &key, "");
    let e = Echoed::of(&send(&gw, SPOOFED));
    assert_owned_names_are_the_gateways(&e);
    assert_eq!(e.one("x_api_key"), None);
    assert!(
        e.headers.iter().all(|(n, _)| !n.contains('_')),
        "{:?}",
        e.headers
    );
    assert_eq!(e.body, "", "Content_Length framed nothing");

    // "allow": benign underscore names pass; owned and hop-by-hop spellings do not.
    let gw = spoof_gateway(&up, &key, r#"headers_with_underscores = "allow""#);
    let e = Echoed::of(&send(&gw, SPOOFED));
    assert_owned_names_are_the_gateways(&e);
    assert_eq!(e.one("x_api_key"), Some("k1"));

    // "reject": 400, and nothing is forwarded.
    let gw = spoof_gateway(&up, &key, r#"headers_with_underscores = "reject""#);
    let hits = || up.hits() as usize;
    refused(
        &gw,
        hits,
        b"GET /h HTTP/1.1\r\nHost: h\r\nX_Api_Key: k1\r\n\r\n",
        400,
    );
    let e = Echoed::of(&send(
        &gw,
        b"GET /h HTTP/1.1\r\nHost: h\r\nX-Api-Key: k1\r\n\r\n",
    ));
    assert_eq!(e.one("x-api-key"), Some("k1"));
}

#[test]
fn kind3_forwarded_and_real_ip_follow_the_forwarded_for_rules() {
    let up = Upstream::echo();
    let gw = gateway("", &forward_all(&up.addr()));
    // Without a client copy, neither is invented.
    let e = Echoed::of(&send(&gw, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert_eq!(e.one("forwarded"), None);
    assert_eq!(e.one("x-real-ip"), None);
    // With one, each is the gateway's, whatever its spelling and however many.
    let e = Echoed::of(&send(
        &gw,
        b"GET http://[::1]:9/ HTTP/1.1\r\nHost: h\r\nFORWARDED: for=\"[2001:db8::1]\";proto=https\r\nforwarded: by=x\r\nx-real-ip: 1.2.3.4\r\n\r\n",
    ));
    assert_eq!(
        e.one("forwarded"),
        Some("for=127.0.0.1;proto=http;host=\"[::1]:9\"")
    );
    assert_eq!(e.one("x-real-ip"), Some("127.0.0.1"));
    // A hop-by-hop nomination cannot remove what the gateway adds.
    let e = Echoed::of(&send(
        &gw,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Forwarded-For, X-Real-IP, Forwarded\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n",
    ));
    assert_eq!(e.one("x-forwarded-for"), Some("127.0.0.1"));
}

// ---------------------------------------------------------------- kind 4

#[test]
fn kind4_request_trailers_never_reach_the_upstream() {
    let up = RawUpstream::ok();
    let key = SigningKey::hmac();
    let gw = gateway(
        "",
        &format!("{}{}", provider(&key), forward_all(&up.addr())),
    );
    let head = b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-User-Id\r\nTE: trailers\r\n\r\n";
    let body = b"5\r\nhello\r\n0\r\nX-User-Id: admin\r\nX-Portico-Role: root\r\nX_User_Id: admin\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\nHost: admin.example.com\r\n\r\n";

    // All at once.
    let mut raw = head.to_vec();
    raw.extend_from_slice(body);
    let r = send(&gw, &raw);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.only_request();
    assert_eq!(
        body_of(&got),
        b"5\r\nhello\r\n0\r\n\r\n",
        "{}",
        String::from_utf8_lossy(&got)
    );
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    for name in [
        "x-user-id",
        "x-portico-role",
        "x_user_id",
        "admin.example.com",
        "trailer",
        "te:",
    ] {
        assert!(!text.contains(name), "{name} reached the upstream:\n{text}");
    }

    // In pieces: the trailer section split inside a line and inside the final CRLF.
    let up = RawUpstream::ok();
    let gw = gateway(
        "",
        &format!("{}{}", provider(&key), forward_all(&up.addr())),
    );
    let mut c = gw.client();
    c.send(head);
    for piece in [
        &b"5\r\nhel"[..],
        b"lo\r\n0\r\nX-User-",
        b"Id: admin\r\nX-Portico-Role: ro",
        b"ot\r\n\r",
        b"\n",
    ] {
        std::thread::sleep(Duration::from_millis(30));
        c.send(piece);
    }
    assert_eq!(c.response().expect("response").status, 200);
    assert_eq!(body_of(&up.only_request()), b"5\r\nhello\r\n0\r\n\r\n");

    // A trailer section followed by a pipelined request: both served, in order.
    let up = Upstream::echo();
    let gw = gateway("", &forward_all(&up.addr()));
    let mut c = gw.client();
    let mut raw = head.to_vec();
    raw.extend_from_slice(
        b"3\r\nabc\r\n0\r\nX-User-Id: admin\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    c.send(&raw);
    let first = Echoed::of(&c.response().expect("first"));
    assert_eq!(first.body, "abc");
    assert!(first.one("x-user-id").is_none());
    assert_eq!(Echoed::of(&c.response().expect("second")).path, "/next");
}

#[test]
fn kind4_response_trailers_pass_to_the_client() {
    let up = RawUpstream::answering(|_| {
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nok\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n".to_vec()
    });
    let gw = gateway("", &forward_all(&up.addr()));
    let mut c = gw.client();
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let raw = common::procs::read_all(&mut c.stream, Duration::from_secs(3));
    assert!(
        raw.ends_with(b"2\r\nok\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

// ---------------------------------------------------------------- kind 5

#[test]
fn kind5_chunk_size_lines_follow_the_grammar() {
    let up = RawUpstream::ok();
    let gw = gateway("", &forward_all(&up.addr()));
    let hits = || up.requests().len();
    let head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "5 Z\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
        "5\t\r\nhello\r\n0\r\n\r\n",
        "5Z\r\nhello\r\n0\r\n\r\n",
        "5 5\r\nhello\r\n0\r\n\r\n",
        "5;\r\nhello\r\n0\r\n\r\n",
        "5 ;\r\nhello\r\n0\r\n\r\n",
        "5;a=\r\nhello\r\n0\r\n\r\n",
        "5;a b\r\nhello\r\n0\r\n\r\n",
        "5;a=b c\r\nhello\r\n0\r\n\r\n",
        "5;a=\"x\r\nhello\r\n0\r\n\r\n",
        "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",
        "5;a=b \r\nhello\r\n0\r\n\r\n",
        "5;a=@\r\nhello\r\n0\r\n\r\n",
        "5,6\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "+5\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "5\r\r\nhello\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhello\r\n0 Z\r\n\r\n",
        "5\r\nhello\r\n0\r\nno colon\r\n\r\n",
        "5\r\nhello\r\n0\r\n folded: x\r\n\r\n",
        "5\r\nhello\r\n0\r\n\n",
        "00000000000000005\r\nhello\r\n0\r\n\r\n",
    ] {
        refused(&gw, hits, format!("{head}{body}").as_bytes(), 400);
    }
    // What the grammar allows is accepted and forwarded byte for byte.
    let body = "5 ; a = \"x y\" ;b;c=d\r\nhello\r\n6;q=\"\\\"\"\r\n world\r\n0;last\r\n\r\n";
    let r = send(&gw, format!("{head}{body}").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(body_of(&up.only_request()), body.as_bytes());
}

#[test]
fn kind5_a_bad_chunk_line_from_the_upstream_is_a_502() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5 Z\r\nhello\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5;\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
    ] {
        let answer = answer.to_vec();
        let up = RawUpstream::answering(move |_| answer.clone());
        let gw = gateway("", &forward_all(&up.addr()));
        let r = send(&gw, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(!r.text().contains("hello"));
    }
}

// ---------------------------------------------------------------- kind 9

fn auth_gateway(up: &Upstream, key: &SigningKey) -> Gateway {
    gateway(
        "",
        &format!(
            r#"
{}
[[upstream]]
name = "app"
endpoints = ["{}"]
[[route]]
name = "api"
path_prefix = "/"
upstream = "app"
auth = "main"
"#,
            provider(key),
            up.addr()
        ),
    )
}

fn with_token(gw: &Gateway, token: &str) -> Response {
    send(
        gw,
        format!("GET /api HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes(),
    )
}

/// An HS256 token over `header` and `claims` JSON text, signed with `key`.
fn hs256(key: &SigningKey, header: &str, claims: &str) -> String {
    key.sign_input(
        "HS256",
        &format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes())),
    )
}

#[test]
fn kind9_jose_header_traps_are_refused() {
    let up = Upstream::echo();
    let key = SigningKey::hmac();
    let gw = auth_gateway(&up, &key);
    let good = claims("alice").to_string();
    let r = with_token(&gw, &hs256(&key, r#"{"alg":"HS256","typ":"JWT"}"#, &good));
    assert_eq!(Echoed::of(&r).one("x-user-id"), Some("alice"));

    let exp = common::jwt::now() + 300;
    let cases: Vec<(String, &str)> = vec![
        (
            hs256(
                &key,
                r#"{"alg":"HS256","crit":["urn:example:pop"],"urn:example:pop":{"jkt":"x"}}"#,
                &good,
            ),
            "unsupported critical header parameter",
        ),
        (
            hs256(&key, r#"{"alg":"HS256","crit":["exp"]}"#, &good),
            "unsupported critical header parameter",
        ),
        (
            hs256(&key, r#"{"alg":"HS256","crit":[]}"#, &good),
            "unsupported critical header parameter",
        ),
        (
            hs256(&key, r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#, &good),
            "unsupported critical header parameter",
        ),
        (
            hs256(&key, r#"{"alg":"HS256","b64":false}"#, &good),
            "unencoded payload (b64) not supported",
        ),
        (
            hs256(&key, r#"{"alg":"HS256","zip":"DEF"}"#, &good),
            "encrypted or compressed token not supported",
        ),
        (
            hs256(&key, r#"{"alg":"HS256","alg":"none"}"#, &good),
            "duplicate member name in token",
        ),
        (
            hs256(
                &key,
                r#"{"alg":"HS256"}"#,
                &format!(
                    r#"{{"iss":"https://id.test/","aud":"api","sub":"alice","sub":"admin","exp":{exp}}}"#
                ),
            ),
            "duplicate member name in token",
        ),
        (
            hs256(
                &key,
                r#"{"alg":"HS256"}"#,
                &format!(
                    r#"{{"iss":"https://id.test/","aud":"api","sub":"alice","s\u0075b":"admin","exp":{exp}}}"#
                ),
            ),
            "duplicate member name in token",
        ),
        (
            hs256(
                &key,
                r#"{"alg":"HS256"}"#,
                &format!(
                    r#"{{"iss":["https://id.test/","https://evil/"],"aud":"api","sub":"alice","exp":{exp}}}"#
                ),
            ),
            "registered claim of the wrong type",
        ),
        (
            hs256(
                &key,
                r#"{"alg":"HS256"}"#,
                &format!(
                    r#"{{"iss":"https://id.test/","aud":"api","sub":{{"id":"admin"}},"exp":{exp}}}"#
                ),
            ),
            "registered claim of the wrong type",
        ),
        (
            format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(good.as_bytes())),
            "algorithm not allowed",
        ),
        (
            format!("{}.{}.", b64(br#"{"alg":"NONE"}"#), b64(good.as_bytes())),
            "algorithm not allowed",
        ),
        (
            format!("{}.{}.", b64(br#"{"alg":"nOnE"}"#), b64(good.as_bytes())),
            "algorithm not allowed",
        ),
    ];
    for (token, description) in cases {
        let r = with_token(&gw, &token);
        assert_eq!(r.status, 401, "{token}: {}", r.text());
        let challenge = r.header("www-authenticate").unwrap_or("");
        assert!(
            challenge.contains(&format!("error_description=\"{description}\"")),
            "{token}: {challenge}"
        );
    }
    assert_eq!(up.hits(), 1, "only the good token was forwarded");
}

#[test]
fn kind9_keys_named_by_a_token_are_never_fetched_nor_trusted() {
    let up = Upstream::echo();
    let key = SigningKey::hmac();
    let gw = auth_gateway(&up, &key);
    // A listener the token points at: it must never see a connection.
    let lure = TcpListener::bind("127.0.0.1:0").unwrap();
    lure.set_nonblocking(true).unwrap();
    let lure_url = format!("http://{}/jwks.json", lure.local_addr().unwrap());
    let attacker = SigningKey::hmac();
    let good = claims("admin").to_string();
    let own_key = json!({"kty": "oct", "k": b64(attacker.secret())});
    for header in [
        json!({"alg": "HS256", "jku": lure_url}),
        json!({"alg": "HS256", "x5u": lure_url}),
        json!({"alg": "HS256", "jwk": own_key}),
        json!({"alg": "HS256", "kid": "attacker", "jku": lure_url, "jwk": own_key}),
    ] {
        let token = attacker.sign(&header, &serde_json::from_str(&good).unwrap());
        let r = with_token(&gw, &token);
        assert_eq!(r.status, 401, "{header}: {}", r.text());
    }
    // An HMAC of the attacker's key with the real key's kid fails too.
    let forged = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","jwk":{"kty":"oct","k":"AAAA"}}"#),
        b64(good.as_bytes())
    );
    let sig = hmac_sign("HS256", &[0, 0, 0], forged.as_bytes());
    let r = with_token(&gw, &format!("{forged}.{}", b64(&sig)));
    assert_eq!(r.status, 401);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        lure.accept().is_err(),
        "the gateway fetched a URL the token named"
    );
    assert_eq!(up.hits(), 0);
}

// ---------------------------------------------------------------- the seed corpus

/// The inputs of this file are seeds of the fuzz corpus too (`fuzz/seeds.py`
/// writes every literal of the test suite there): the issue's examples must be in it.
#[test]
fn fuzz_corpus_holds_this_files_inputs() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|target| std::fs::read_dir(target.ok()?.path()).ok())
        .flatten()
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect();
    for needle in [
        &b"GET http://public.example.com/account HTTP/1.1\r\nHost: admin.example.com\r\n\r\n"[..],
        b"Host: public.example.com:@admin.example.com",
        b"GET /admin;x/secret",
        b"X_User_Id: admin",
        b"5 Z\r\nhello\r\n0\r\n\r\n",
        b"X-Portico-Role: root\r\n\r\n",
    ] {
        assert!(
            seeds
                .iter()
                .any(|s| s.windows(needle.len()).any(|w| w == needle)),
            "no seed in {} holds {:?}",
            dir.display(),
            String::from_utf8_lossy(needle)
        );
    }
}
