//! Forwarding through the real gateway to a real `portico-load serve` upstream:
//! keep-alive, pipelining, header hygiene, bodies both ways, upstream failures.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Client, Gateway, Upstream};

fn gateway_for(upstreams: &[&Upstream], extra_route: &str, extra_upstream: &str) -> Gateway {
    gateway_with(upstreams, "", extra_route, extra_upstream)
}

fn gateway_with(
    upstreams: &[&Upstream],
    extra_server: &str,
    extra_route: &str,
    extra_upstream: &str,
) -> Gateway {
    gateway_timed(upstreams, extra_server, extra_route, extra_upstream, 2000)
}

/// As `gateway_with`, with the upstream's `request_timeout_ms`.
fn gateway_timed(
    upstreams: &[&Upstream],
    extra_server: &str,
    extra_route: &str,
    extra_upstream: &str,
    request_timeout_ms: u64,
) -> Gateway {
    let endpoints: Vec<String> = upstreams
        .iter()
        .map(|u| format!("\"{}\"", u.addr()))
        .collect();
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
{extra_server}
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[[upstream]]
name = "app"
endpoints = [{}]
request_timeout_ms = {request_timeout_ms}
{extra_upstream}
[[route]]
name = "app"
path_prefix = "/"
upstream = "app"
{extra_route}
"#,
        endpoints.join(", ")
    ))
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let up = Upstream::start(&["--body-bytes", "100"]);
    let gw = gateway_for(&[&up], "", "");
    let accepted_before = gw.stat("connections_accepted");
    let mut c = gw.client();
    for _ in 0..20 {
        let r = c.get("/hello");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 100);
        assert!(r.header("x-request-id").is_some());
    }
    assert_eq!(gw.stat("connections_accepted") - accepted_before, 1);
    assert_eq!(
        gw.stat("upstream_connects"),
        1,
        "the upstream connection is pooled"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::echo();
    let gw = gateway_for(&[&up], "", "");
    let mut c = gw.client();
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.extend_from_slice(format!("GET /p{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    }
    c.send(&batch);
    for i in 0..5 {
        let r = c.response().expect("response");
        assert_eq!(r.json()["path"], format!("/p{i}"));
    }
}

#[test]
fn header_hygiene_as_seen_by_the_upstream() {
    let up = Upstream::echo();
    let gw = gateway_for(&[&up], "", "");
    let mut c = gw.client();
    c.send(
        b"GET /h?q=1 HTTP/1.1\r\nHost: api.example.com\r\nConnection: keep-alive, X-Secret\r\n\
          X-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: x\r\nUpgrade: websocket\r\n\
          Proxy-Authorization: Basic abc\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\
          X-Request-Id: client-id-1\r\nX-Kept: yes\r\n\r\n",
    );
    let r = c.response().expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("client-id-1"));
    let v = r.json();
    let headers: Vec<(String, String)> = v["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_ascii_lowercase(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
    ] {
        assert_eq!(get(gone), None, "{gone} must not be forwarded");
    }
    assert_eq!(get("x-kept"), Some("yes"));
    assert_eq!(get("x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
    assert_eq!(get("x-forwarded-proto"), Some("http"));
    assert_eq!(get("x-forwarded-host"), Some("api.example.com"));
    assert_eq!(get("x-request-id"), Some("client-id-1"));
    assert_eq!(
        get("host"),
        Some(up.addr().as_str()),
        "Host is the upstream's by default"
    );
    assert_eq!(v["path"], "/h?q=1");
}

#[test]
fn a_fresh_request_id_is_generated_when_the_clients_is_missing_or_unsafe() {
    let up = Upstream::echo();
    let gw = gateway_for(&[&up], "", "");
    let mut c = gw.client();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: bad id with spaces\r\n\r\n");
    let r = c.response().expect("response");
    let id = r.header("x-request-id").expect("id").to_string();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(id.len(), 24);
    let forwarded = r.json()["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0].as_str().unwrap().eq_ignore_ascii_case("x-request-id"))
        .map(|p| p[1].as_str().unwrap().to_string());
    assert_eq!(forwarded.as_deref(), Some(id.as_str()));
}

#[test]
fn preserve_host_sends_the_clients_host() {
    let up = Upstream::echo();
    let gw = gateway_for(&[&up], "preserve_host = true", "");
    let mut c = gw.client();
    c.send(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    let v = c.response().unwrap().json();
    let host = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0].as_str().unwrap().eq_ignore_ascii_case("host"))
        .unwrap()[1]
        .clone();
    assert_eq!(host, "api.example.com");
}

#[test]
fn content_length_and_chunked_uploads_arrive_intact() {
    let up = Upstream::echo();
    let gw = gateway_for(&[&up], "", "");
    let mut c = gw.client();
    c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
    let v = c.response().unwrap().json();
    assert_eq!(v["body"], "hello world");
    c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    let v = c.response().unwrap().json();
    assert_eq!(v["body"], "hello world");
    assert_eq!(v["body_bytes"], 11);
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let up = Upstream::echo();
    let gw = gateway_for(&[&up], "", "");
    let mut c = gw.client();
    c.send(b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.response().expect("100 Continue");
    assert_eq!(interim.status, 100);
    c.send(b"ping");
    let r = c.response().expect("final");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "ping");
    let expect_forwarded = r.json()["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p[0].as_str().unwrap().eq_ignore_ascii_case("expect"));
    assert!(!expect_forwarded);
}

#[test]
fn head_responses_have_no_body_but_keep_their_length() {
    let up = Upstream::start(&["--body-bytes", "321"]);
    let gw = gateway_for(&[&up], "", "");
    let mut c = gw.client();
    c.send(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response(true).expect("head response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("321"));
    // The connection is still in step: the next response is the GET's.
    let r = c.get("/x");
    assert_eq!(r.body.len(), 321);
}

#[test]
fn chunked_download_is_relayed() {
    let up = Upstream::start(&[]);
    let gw = gateway_for(&[&up], "", "");
    let mut c = gw.client();
    let r = c.get("/d?bytes=200000&chunked=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), 200_000);
}

/// 50 MiB each way through the gateway; its memory must stay flat (the body is
/// streamed, never held whole).
#[test]
fn fifty_mib_up_and_down_with_flat_memory() {
    const SIZE: usize = 50 * 1024 * 1024;
    let up = Upstream::echo();
    // The route timeout covers sending the body too: give a slow (debug, loaded)
    // machine time for 50 MiB. What this test checks is memory, not speed.
    let gw = gateway_timed(&[&up], "max_body_bytes = 104857600", "", "", 60_000);
    let plain = Upstream::start(&[]);
    let gw_down = gateway_for(&[&plain], "", "");
    let before = gw.proc.rss_kib();
    let before_down = gw_down.proc.rss_kib();

    // Upload, chunked, in 64 KiB chunks; the echo upstream returns a checksum.
    let mut c = gw.client();
    c.send(b"POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut sent = 0;
    while sent < SIZE {
        c.send(format!("{:x}\r\n", chunk.len()).as_bytes());
        c.send(&chunk);
        c.send(b"\r\n");
        for &b in &chunk {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        sent += chunk.len();
    }
    c.send(b"0\r\n\r\n");
    let v = c.response().expect("upload answer").json();
    assert_eq!(v["body_bytes"], SIZE as u64);
    assert_eq!(v["body_fnv1a64"], format!("{hash:016x}"));

    let peak = gw.proc.peak_rss_kib();
    assert!(
        peak < before + 16 * 1024,
        "gateway memory grew from {before} KiB to a peak of {peak} KiB for a 50 MiB upload"
    );

    // Download, content-length framed, then chunked.
    for query in ["", "&chunked=1"] {
        let mut c = Client::connect(gw_down.port);
        c.send(format!("GET /big?bytes={SIZE}{query} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let r = c.response().expect("download");
        assert_eq!(r.body.len(), SIZE);
    }
    let peak = gw_down.proc.peak_rss_kib();
    assert!(
        peak < before_down + 16 * 1024,
        "gateway memory grew from {before_down} KiB to a peak of {peak} KiB for a 50 MiB download"
    );
}

#[test]
fn upstream_down_is_502_with_a_json_error() {
    let dead = common::free_port();
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[log]
access_log = "off"
[[upstream]]
name = "dead"
endpoints = ["127.0.0.1:{dead}"]
[[route]]
name = "dead"
upstream = "dead"
"#
    ));
    let mut c = gw.client();
    let r = c.get("/x");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(v["error"].as_str().unwrap().contains("connect"));
    assert_eq!(v["request_id"], r.header("x-request-id").unwrap());
    // The client connection survives a 502 for a body-less request.
    assert_eq!(c.get("/y").status, 502);
}

#[test]
fn slow_upstream_is_504_within_the_route_timeout() {
    let up = Upstream::start(&["--delay-ms", "3000"]);
    let gw = gateway_for(&[&up], "timeout_ms = 300", "");
    let mut c = gw.client();
    let started = Instant::now();
    let r = c.get("/slow");
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_millis(300),
        "answered after {took:?}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "answered after {took:?}"
    );
}

/// An upstream that promises 100 bytes, sends 10 and closes: the client must see
/// its connection closed, never a response that looks complete.
#[test]
fn truncated_upstream_response_closes_the_client_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        }
    });
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[log]
access_log = "off"
[[upstream]]
name = "liar"
endpoints = ["127.0.0.1:{port}"]
[[route]]
name = "liar"
upstream = "liar"
"#
    ));
    let mut c = gw.client();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let got = common::procs::read_all(&mut c.stream, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("0123456789"), "{text}");
    // read_all returned: the gateway closed the connection after 10 of 100 bytes.
}

#[test]
fn round_robin_spreads_over_endpoints() {
    let a = Upstream::start(&[]);
    let b = Upstream::start(&[]);
    let gw = gateway_for(&[&a, &b], "", "");
    let mut c = gw.client();
    for _ in 0..10 {
        assert_eq!(c.get("/").status, 200);
    }
    assert_eq!(a.hits(), 5);
    assert_eq!(b.hits(), 5);
}

#[test]
fn hash_on_header_sticks_to_one_endpoint() {
    let a = Upstream::start(&[]);
    let b = Upstream::start(&[]);
    let gw = gateway_for(
        &[&a, &b],
        "",
        "balance = \"hash\"\nhash_on = \"header:x-user\"",
    );
    for user in ["alice", "bob", "carol", "dave"] {
        let before = (a.hits(), b.hits());
        let mut c = gw.client();
        for _ in 0..5 {
            c.send(format!("GET / HTTP/1.1\r\nHost: a\r\nX-User: {user}\r\n\r\n").as_bytes());
            assert_eq!(c.response().unwrap().status, 200);
        }
        let after = (a.hits(), b.hits());
        let moved = (after.0 - before.0, after.1 - before.1);
        assert!(moved == (5, 0) || moved == (0, 5), "{user}: {moved:?}");
    }
}

#[test]
fn heads_larger_than_the_first_read_buffer_are_read_whole() {
    let up = Upstream::echo();
    let gw = gateway_for(&[&up], "", "");
    let mut c = gw.client();
    for size in [3_000, 5_000, 9_000, 15_000] {
        let value = "v".repeat(size);
        c.send(format!("GET /big HTTP/1.1\r\nHost: a\r\nX-Big: {value}\r\n\r\n").as_bytes());
        let r = c.response().expect("a response to a large head");
        assert_eq!(r.status, 200, "head of {size} bytes");
    }
}
