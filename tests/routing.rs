//! Route matching through the real gateway: precedence, 404/405, normalization,
//! and the path sent upstream.

mod common;

use common::{Client, Gateway, Upstream};

/// Each route answers with its own name, so a response says which route matched.
fn named(name: &str, matcher: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\n{matcher}\nrespond = {{ status = 200, body = \"{name}\" }}\n")
}

fn gateway(routes: &[String]) -> Gateway {
    Gateway::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:{{port}}\"]\nworkers = 1\n[log]\naccess_log = \"off\"\n{}",
        routes.join("\n")
    ))
}

fn matched(c: &mut Client, method: &str, host: &str, path: &str, extra: &str) -> (u16, String) {
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").as_bytes());
    let r = c.response().expect("response");
    (r.status, r.text())
}

#[test]
fn exact_host_beats_wildcard_host_beats_any_host() {
    let gw = gateway(&[
        named("any", "path_prefix = \"/\""),
        named("wild", "host = \"*.example.com\"\npath_prefix = \"/\""),
        named("exact", "host = \"api.example.com\"\npath_prefix = \"/\""),
    ]);
    let mut c = gw.client();
    assert_eq!(
        matched(&mut c, "GET", "api.example.com", "/", "").1,
        "exact"
    );
    assert_eq!(
        matched(&mut c, "GET", "API.Example.COM:8080", "/", "").1,
        "exact"
    );
    assert_eq!(matched(&mut c, "GET", "www.example.com", "/", "").1, "wild");
    assert_eq!(matched(&mut c, "GET", "other.org", "/", "").1, "any");
}

#[test]
fn exact_path_beats_longer_prefix_beats_shorter_prefix() {
    let gw = gateway(&[
        named("short", "path_prefix = \"/api\""),
        named("long", "path_prefix = \"/api/v1\""),
        named("exact", "path = \"/api/v1/status\""),
    ]);
    let mut c = gw.client();
    assert_eq!(matched(&mut c, "GET", "h", "/api/v1/status", "").1, "exact");
    assert_eq!(
        matched(&mut c, "GET", "h", "/api/v1/status/x", "").1,
        "long"
    );
    assert_eq!(matched(&mut c, "GET", "h", "/api/v1", "").1, "long");
    assert_eq!(matched(&mut c, "GET", "h", "/api/v2", "").1, "short");
    assert_eq!(matched(&mut c, "GET", "h", "/api", "").1, "short");
}

#[test]
fn prefixes_are_segment_aware() {
    let gw = gateway(&[named("api", "path_prefix = \"/api\"")]);
    let mut c = gw.client();
    assert_eq!(matched(&mut c, "GET", "h", "/api/x", "").0, 200);
    assert_eq!(matched(&mut c, "GET", "h", "/api", "").0, 200);
    assert_eq!(matched(&mut c, "GET", "h", "/apix", "").0, 404);
}

#[test]
fn ties_go_to_the_first_route_in_the_file_and_headers_can_decide() {
    let gw = gateway(&[
        named(
            "v2",
            "path_prefix = \"/svc\"\nheaders = { \"x-version\" = \"2\" }",
        ),
        named(
            "beta",
            "path_prefix = \"/svc\"\nheaders = { \"x-beta\" = \"*\" }",
        ),
        named("first", "path_prefix = \"/svc\""),
        named("second", "path_prefix = \"/svc\""),
    ]);
    let mut c = gw.client();
    assert_eq!(
        matched(&mut c, "GET", "h", "/svc", "X-Version: 2\r\n").1,
        "v2"
    );
    assert_eq!(
        matched(&mut c, "GET", "h", "/svc", "X-Version: 3\r\n").1,
        "first"
    );
    assert_eq!(
        matched(&mut c, "GET", "h", "/svc", "X-Beta: anything\r\n").1,
        "beta"
    );
    assert_eq!(matched(&mut c, "GET", "h", "/svc", "").1, "first");
}

#[test]
fn no_route_is_404_and_wrong_method_is_405_with_allow() {
    let gw = gateway(&[
        named("read", "path_prefix = \"/items\"\nmethods = [\"GET\"]"),
        named(
            "write",
            "path_prefix = \"/items\"\nmethods = [\"POST\", \"PUT\"]",
        ),
    ]);
    let mut c = gw.client();
    assert_eq!(
        matched(&mut c, "POST", "h", "/items", "Content-Length: 0\r\n").1,
        "write"
    );
    assert_eq!(matched(&mut c, "GET", "h", "/items", "").1, "read");
    c.send(b"DELETE /items/1 HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response().unwrap();
    assert_eq!(r.status, 405);
    let allow = r.header("allow").expect("Allow").to_string();
    for m in ["GET", "POST", "PUT"] {
        assert!(allow.contains(m), "{allow}");
    }
    assert!(!allow.contains("DELETE"));
    c.send(b"GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response().unwrap();
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
}

#[test]
fn paths_are_normalized_before_matching_and_forwarding() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[log]
access_log = "off"
[[upstream]]
name = "echo"
endpoints = ["{}"]
[[route]]
name = "api"
path_prefix = "/api"
upstream = "echo"
[[route]]
name = "secret"
path_prefix = "/secret"
respond = {{ status = 403, body = "no" }}
"#,
        up.addr()
    ));
    let mut c = gw.client();
    for (raw, forwarded) in [
        ("/api//x///y", "/api/x/y"),
        ("/api/./x/../y", "/api/y"),
        ("/api/%7Euser/%41", "/api/~user/A"),
        ("/secret/../api/z?q=a%20b", "/api/z?q=a%20b"),
        ("/%61pi/w", "/api/w"),
    ] {
        let (status, body) = matched(&mut c, "GET", "h", raw, "");
        assert_eq!(status, 200, "{raw}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["path"], forwarded, "{raw}");
    }
    // Dot segments cannot climb above the root into another route's space.
    let (status, body) = matched(&mut c, "GET", "h", "/api/../../secret/x", "");
    assert_eq!((status, body.as_str()), (403, "no"));
}

#[test]
fn strip_and_rewrite_prefix_change_the_upstream_path() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[log]
access_log = "off"
[[upstream]]
name = "echo"
endpoints = ["{0}"]
[[route]]
name = "strip"
path_prefix = "/strip"
strip_prefix = true
upstream = "echo"
[[route]]
name = "rewrite"
path_prefix = "/old"
rewrite_prefix = "/v2/new"
upstream = "echo"
"#,
        up.addr()
    ));
    let mut c = gw.client();
    let path = |c: &mut Client, p: &str| -> String {
        let (_, body) = matched(c, "GET", "h", p, "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["path"].as_str().unwrap().to_string()
    };
    assert_eq!(path(&mut c, "/strip/a/b?x=1"), "/a/b?x=1");
    assert_eq!(path(&mut c, "/strip"), "/");
    assert_eq!(path(&mut c, "/old/thing"), "/v2/new/thing");
}
