//! HTTP/2 and h2c upstreams, and the translation between HTTP/1.1 and HTTP/2 both
//! ways, with real peers: nginx 1.22 as an h2c upstream (`listen … http2` on a
//! plaintext port) and as an h2 upstream over TLS, a second gateway as an h2c
//! upstream in front of HTTP/1.1 services, curl, and the Python h2 client; and the
//! drain with requests open on both sides of the gateway.

mod common;

use std::process::Command;
use std::time::Duration;

use common::json_upstream::{JsonUpstream, Reply};
use common::nginx::Nginx;
use common::peers::{curl, h2_client};
use common::pki::Pki;
use common::{Gateway, LoadPlan, Upstream};

/// A gateway whose one route goes to `endpoints` of an upstream with `upstream`
/// keys (`protocol`, `tls`, …), and `server` keys in `[server]`.
fn gateway_to(endpoints: &[String], upstream: &str, server: &str) -> Gateway {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
{server}
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "stdout"
[[upstream]]
name = "svc"
endpoints = [{}]
{upstream}
[[route]]
name = "svc"
path_prefix = "/"
upstream = "svc"
"#,
        endpoints.join(", ")
    ))
}

fn nginx_h2c(extra: &str) -> Option<Nginx> {
    Nginx::start(&format!(
        "listen 127.0.0.1:{{port}} http2; {extra} location / {{ return 200 \"nginx $server_protocol $request_uri\\n\"; }}"
    ))
}

#[test]
fn http1_clients_share_few_h2c_connections_and_survive_goaway() {
    // nginx says GOAWAY after 50 requests on a connection.
    let Some(nginx) = nginx_h2c("keepalive_requests 50;") else {
        eprintln!("skipped: nginx is not installed (scripts/test installs it)");
        return;
    };
    let gw = gateway_to(&[nginx.addr()], "protocol = \"h2c\"", "");
    let mut c = gw.client();
    for i in 0..120 {
        let r = c.get(&format!("/one/{i}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("nginx HTTP/2.0 /one/{i}\n"));
    }
    // Many HTTP/1.1 connections at once, pipelining.
    let mut plan = LoadPlan::new(&[gw.port]);
    plan.connections = 8;
    plan.total = Some(2000);
    plan.duration = Duration::from_secs(30);
    plan.path = "/many".into();
    let result = common::load::run(&plan);
    assert_eq!(result.ok, 2000, "{result:?}");
    assert_eq!(result.other, 0, "{result:?}");
    let connects = gw.stat("upstream_connects");
    // One connection per 50 requests (nginx's GOAWAY), a few more for requests
    // arriving while one was opening: far fewer than one per client connection's
    // requests.
    assert!(
        (2120 / 50..=2120 / 50 + 16).contains(&connects),
        "{connects} upstream connections"
    );
    assert_eq!(gw.stat("responses_5xx"), 0);
}

#[test]
fn bodies_and_trailers_of_unknown_length_translate_both_ways() {
    // client HTTP/1.1 → gateway A → h2c → gateway B → HTTP/1.1 services.
    let chunked =
        JsonUpstream::start(|r| Reply::text(&format!("chunked answer to {}", r.path())).chunked());
    let echo = Upstream::echo();
    let b = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
h2c = true
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[[upstream]]
name = "chunked"
endpoints = ["{}"]
[[upstream]]
name = "echo"
endpoints = ["{}"]
[[route]]
name = "chunked"
path_prefix = "/chunked"
upstream = "chunked"
[[route]]
name = "echo"
path_prefix = "/echo"
upstream = "echo"
"#,
        chunked.addr(),
        echo.addr()
    ));
    let a = gateway_to(&[format!("127.0.0.1:{}", b.port)], "protocol = \"h2c\"", "");

    // A chunked upload reaches the echo service whole (as chunks again: B got
    // DATA without content-length).
    let mut c = a.client();
    c.send(b"POST /echo/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    let r = c.response().expect("answer");
    assert_eq!(r.status, 200);
    let echoed = r.json();
    assert_eq!(echoed["body"], "hello world");
    let te = echoed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "transfer-encoding")
        .map(|h| h[1].as_str().unwrap().to_string());
    assert_eq!(te.as_deref(), Some("chunked"), "{echoed}");

    // A chunked answer (no length) comes back chunked to HTTP/1.1 ...
    let r = c.get("/chunked/down");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "chunked answer to /chunked/down");
    // ... and close-delimited to HTTP/1.0.
    let mut old = a.client();
    old.send(b"GET /chunked/old HTTP/1.0\r\nHost: x\r\n\r\n");
    let raw = common::procs::read_all(&mut old.stream, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(
        text.ends_with("\r\n\r\nchunked answer to /chunked/old"),
        "{text}"
    );
    // HEAD keeps its length, sends no body.
    let mut h = a.client();
    h.send(b"HEAD /echo/head HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = h.read_response(true).expect("head answer");
    assert_eq!(r.status, 200);
    assert!(r.header("content-length").is_some());
    assert!(r.body.is_empty());
}

#[test]
fn h2_clients_reach_http1_services_with_bodies_of_unknown_length() {
    let echo = Upstream::echo();
    let gw = gateway_to(&[echo.addr()], "", "h2c = true");
    let report = h2_client(gw.port, &["post", "30000", "--path", "/up"]);
    assert_eq!(report["statuses"], serde_json::json!([200]), "{report}");
    let echoed: serde_json::Value =
        serde_json::from_str(report["bodies"][0].as_str().unwrap()).expect("echo json");
    assert_eq!(echoed["body_bytes"], 30000);
    let expected: String = (0..30000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    assert_eq!(echoed["body"], expected);
    let headers = echoed["headers"].as_array().unwrap();
    assert!(
        headers
            .iter()
            .any(|h| h[0] == "transfer-encoding" && h[1] == "chunked"),
        "{echoed}"
    );
    // Several cookie fields of an HTTP/2 request reach HTTP/1.1 as one.
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-H",
            "cookie: a=1",
            "-H",
            "cookie: b=2",
        ])
        .arg(format!("http://127.0.0.1:{}/cookies", gw.port))
        .output()
        .unwrap();
    let echoed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("echo json");
    let cookies: Vec<&str> = echoed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "cookie")
        .map(|h| h[1].as_str().unwrap())
        .collect();
    assert_eq!(cookies, vec!["a=1; b=2"]);
}

#[test]
fn an_h2_upstream_over_tls_is_reached_with_alpn() {
    let pki = Pki::new("h2up");
    let leaf = pki.server("svc", &["localhost"]);
    let tls = format!(
        "ssl_certificate {}; ssl_certificate_key {};",
        leaf.cert.display(),
        leaf.key.display()
    );
    let Some(h2) = Nginx::start(&format!(
        "listen 127.0.0.1:{{port}} ssl http2; {tls} location / {{ return 200 \"tls $server_protocol\\n\"; }}"
    )) else {
        eprintln!("skipped: nginx is not installed");
        return;
    };
    let h1 = Nginx::start(&format!(
        "listen 127.0.0.1:{{port}} ssl; {tls} location / {{ return 200 \"tls $server_protocol\\n\"; }}"
    ))
    .expect("nginx");
    let upstream = |port: u16| {
        gateway_to(
            &[format!("localhost:{port}")],
            &format!(
                "protocol = \"h2\"\ntls = {{ ca = \"{}\" }}",
                pki.ca.display()
            ),
            "",
        )
    };
    let gw = upstream(h2.port);
    let mut c = gw.client();
    for _ in 0..3 {
        let r = c.get("/x");
        assert_eq!((r.status, r.text().as_str()), (200, "tls HTTP/2.0\n"));
    }
    assert_eq!(gw.stat("upstream_connects"), 1);
    // An endpoint that does not offer h2 is not spoken to in HTTP/1.1 by mistake
    // (nginx refuses the handshake: no application protocol in common).
    let gw = upstream(h1.port);
    let r = gw.client().get("/x");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("NoApplicationProtocol"), "{}", r.text());
}

#[test]
fn dead_h2c_endpoints_fail_over_and_are_ejected() {
    let Some(nginx) = nginx_h2c("") else {
        eprintln!("skipped: nginx is not installed");
        return;
    };
    let dead = format!("127.0.0.1:{}", common::free_port());
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[[upstream]]
name = "svc"
endpoints = ["{dead}", "{}"]
protocol = "h2c"
outlier = {{ consecutive_gateway_failures = 1, base_ejection_ms = 30000 }}
[[route]]
name = "svc"
path_prefix = "/"
upstream = "svc"
retry = {{ attempts = 2, on = ["connect-failure"] }}
"#,
        nginx.addr()
    ));
    let mut c = gw.client();
    for _ in 0..20 {
        assert_eq!(c.get("/x").status, 200);
    }
    assert_eq!(gw.stat("outlier_ejections"), 1);
    assert_eq!(gw.stat("upstream_connect_failures"), 1);
    // Alone and dead: 502.
    let gw = gateway_to(&[dead], "protocol = \"h2c\"", "");
    let r = gw.client().get("/x");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("connect failed"), "{}", r.text());
}

#[test]
fn check_refuses_protocols_that_do_not_fit() {
    let checked = common::procs::portico_check(
        "bad.toml",
        r#"[server]
listen = ["127.0.0.1:1"]
[[upstream]]
name = "a"
endpoints = ["127.0.0.1:2"]
protocol = "h2"
[[upstream]]
name = "b"
endpoints = ["127.0.0.1:3"]
protocol = "spdy"
[[upstream]]
name = "c"
endpoints = ["127.0.0.1:4"]
max_concurrent_streams = 8
"#,
    );
    assert_eq!(checked.code, Some(1));
    let err = checked.stderr;
    assert!(
        err.contains("bad.toml:6:12: protocol = \"h2\" is HTTP/2 over TLS"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:10:12: protocol \"spdy\" must be"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:14:26: max_concurrent_streams is for HTTP/2"),
        "{err}"
    );
}

#[test]
fn health_checks_speak_http2_to_h2c_upstreams() {
    let Some(nginx) = nginx_h2c("") else {
        eprintln!("skipped: nginx is not installed");
        return;
    };
    let gw = gateway_to(
        &[nginx.addr()],
        "protocol = \"h2c\"\nhealth_check = { path = \"/health\", interval_ms = 100, timeout_ms = 100 }",
        "",
    );
    std::thread::sleep(Duration::from_millis(600));
    assert!(gw.stat("health_checks") >= 3);
    assert_eq!(gw.stat("health_check_failures"), 0);
    assert_eq!(gw.client().get("/after").status, 200);
}

#[test]
fn the_drain_finishes_streams_open_on_both_sides() {
    // h2 client and HTTP/1.1 client → gateway A → h2c (one multiplexed connection)
    // → gateway B → a slow HTTP/1.1 service. A drains while both requests are open
    // on its client side and as streams of its upstream connection.
    let slow = Upstream::start(&["--delay-ms", "1500"]);
    let b = gateway_to(&[slow.addr()], "", "h2c = true");
    let mut a = gateway_to(
        &[format!("127.0.0.1:{}", b.port)],
        "protocol = \"h2c\"",
        "h2c = true\ndrain_timeout_ms = 8000",
    );
    let h2_url = format!("http://127.0.0.1:{}/slow/h2", a.port);
    let h1_url = format!("http://127.0.0.1:{}/slow/h1", a.port);
    let h2 = std::thread::spawn(move || curl(&["--http2-prior-knowledge", &h2_url]));
    let h1 = std::thread::spawn(move || curl(&["--http1.1", &h1_url]));
    // Both requests reached B as streams of A's upstream connection.
    let started = std::time::Instant::now();
    while b.stat("h2_streams") < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "requests never reached B"
        );
    }
    a.proc.signal(libc::SIGTERM);
    let (version, status, body) = h2.join().expect("curl h2");
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    let (version, status, body) = h1.join().expect("curl h1");
    assert_eq!((version.as_str(), status), ("1.1", 200), "{body}");
    assert_eq!(a.proc.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        b.stat("h2_connections"),
        1,
        "one upstream connection carried both"
    );
}

#[test]
fn header_rules_apply_to_http2_responses() {
    let Some(nginx) = nginx_h2c("add_header x-internal secret;") else {
        eprintln!("skipped: nginx is not installed (scripts/test installs it)");
        return;
    };
    let gw = gateway_to(
        &[nginx.addr()],
        "protocol = \"h2c\"\nresponse_headers = { set = { \"x-rule\" = \"{upstream}\" }, remove = [\"x-internal\"] }",
        "h2c = true",
    );
    // An HTTP/1.1 client and an h2 client both see the upstream's HTTP/2 answer
    // with the field removed and the rule's field added.
    let r = gw.client().get("/rules");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-internal"), None);
    assert_eq!(r.header("x-rule"), Some("svc"));
    let out = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--http2-prior-knowledge",
        ])
        .arg(format!("http://127.0.0.1:{}/rules", gw.port))
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(head.contains("x-rule: svc\r\n"), "{head}");
    assert!(!head.contains("x-internal"), "{head}");
}
