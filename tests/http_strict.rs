//! The codec as a client sees it: every request-smuggling shape and every limit of
//! `[server]`, sent as exact bytes over raw TCP. Each refused request gets its
//! status and a closed connection, and never reaches the upstream.

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, Upstream};

fn gateway(up: &Upstream, server_extra: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
{server_extra}
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[[upstream]]
name = "app"
endpoints = ["{}"]
[[route]]
name = "app"
upstream = "app"
"#,
        up.addr()
    ))
}

/// Sends `raw`, expects `status`, then a closed connection; the upstream saw nothing.
fn refused(gw: &Gateway, up: &Upstream, raw: &[u8], status: u16) {
    let (r, mut c) = gw.expect_refused(raw, status, || up.hits() as usize);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.json()["error"].is_string());
    assert!(
        c.is_closed(Duration::from_secs(2)),
        "connection left open after {status}"
    );
}

#[test]
fn request_smuggling_shapes_get_400_and_close() {
    let up = Upstream::echo();
    let gw = gateway(&up, "");
    let cases: &[&[u8]] = &[
        // Both Content-Length and Transfer-Encoding.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        // Differing or malformed Content-Length.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        // Transfer-Encoding whose last coding is not chunked.
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        // obs-fold, and whitespace before the colon.
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        // No Host on HTTP/1.1, two Hosts, bare LF inside a header value.
        b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
    ];
    for raw in cases {
        refused(&gw, &up, raw, 400);
    }
}

#[test]
fn bad_chunk_framing_gets_400_and_close() {
    let up = Upstream::echo();
    let gw = gateway(&up, "");
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
    ];
    for raw in cases {
        let before = up.hits();
        let mut c = gw.client();
        c.send(raw);
        let r = c.response().expect("a response");
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert!(c.is_closed(Duration::from_secs(2)));
        assert_eq!(
            up.hits(),
            before,
            "a broken chunked body was answered by the upstream"
        );
    }
}

#[test]
fn head_limits_give_431_and_414() {
    let up = Upstream::echo();
    let gw = gateway(
        &up,
        "max_header_bytes = 4096\nmax_uri_bytes = 1024\nmax_headers = 20",
    );
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    refused(&gw, &up, big_header.as_bytes(), 431);
    let many: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
    refused(
        &gw,
        &up,
        format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
        431,
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(2000));
    refused(&gw, &up, long_uri.as_bytes(), 414);
    // Just under the limits passes.
    let ok = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(1000));
    let mut c = gw.client();
    c.send(ok.as_bytes());
    assert_eq!(c.response().unwrap().status, 200);
}

#[test]
fn body_limit_gives_413_for_declared_and_for_chunked_bodies() {
    let up = Upstream::echo();
    let gw = gateway(&up, "max_body_bytes = 1000");
    refused(
        &gw,
        &up,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n",
        413,
    );
    // A chunked body is counted as it streams.
    let mut c = gw.client();
    let mut raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        raw.extend_from_slice(b"190\r\n");
        raw.extend_from_slice(&[b'x'; 400]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    c.send(&raw);
    let r = c.response().expect("response");
    assert_eq!(r.status, 413);
    assert!(c.is_closed(Duration::from_secs(2)));
    // Exactly at the limit is fine.
    let mut c = gw.client();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n");
    c.send(&[b'y'; 1000]);
    assert_eq!(c.response().unwrap().json()["body_bytes"], 1000);
}

#[test]
fn a_slow_head_gets_408_after_the_header_timeout() {
    let up = Upstream::echo();
    let gw = gateway(&up, "header_read_timeout_ms = 400");
    let mut c = gw.client();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n");
    let started = Instant::now();
    let r = c.response().expect("408");
    assert_eq!(r.status, 408);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(c.is_closed(Duration::from_secs(2)));
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let up = Upstream::echo();
    let gw = gateway(&up, "idle_timeout_ms = 300");
    let mut c = gw.client();
    assert_eq!(c.get("/").status, 200);
    let started = Instant::now();
    assert!(c.is_closed(Duration::from_secs(3)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn a_stalled_body_gets_408_after_the_body_timeout() {
    let up = Upstream::echo();
    let gw = gateway(&up, "body_read_timeout_ms = 400");
    let mut c = gw.client();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf");
    let r = c.response().expect("408");
    assert_eq!(r.status, 408);
    assert!(c.is_closed(Duration::from_secs(2)));
}

/// Past `max_connections_per_worker`, a new connection is answered with 503 and
/// closed at once; the connections already open keep working.
#[test]
fn connections_past_the_per_worker_cap_get_503() {
    let up = Upstream::echo();
    let gw = gateway(&up, "max_connections_per_worker = 3");
    // Let the readiness probe's connection finish closing.
    std::thread::sleep(Duration::from_millis(200));
    let mut open: Vec<_> = (0..3).map(|_| gw.client()).collect();
    for c in open.iter_mut() {
        assert_eq!(c.get("/").status, 200);
    }
    let mut extra = gw.client();
    let r = extra.response().expect("503 without sending anything");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(extra.is_closed(Duration::from_secs(2)));
    assert_eq!(open[0].get("/").status, 200);
    // Closing one makes room again.
    drop(open.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut again = gw.client();
    assert_eq!(again.get("/").status, 200);
    assert!(gw.stat("connections_rejected") >= 1);
}

#[test]
fn http_1_0_is_served_and_closed_unless_keep_alive_is_asked() {
    let up = Upstream::echo();
    let gw = gateway(&up, "");
    let mut c = gw.client();
    c.send(b"GET /old HTTP/1.0\r\n\r\n");
    let r = c.response().expect("response");
    assert_eq!(r.status, 200);
    assert!(c.is_closed(Duration::from_secs(2)));
    let mut c = gw.client();
    c.send(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response().expect("response");
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response().expect("second").status, 200);
}
