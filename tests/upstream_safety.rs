//! One request, one meaning, on the upstream side (issue 11, kinds 6–8), through the
//! real gateway to scripted raw-socket upstreams:
//! - a pooled connection carries no leftovers (late bytes after a HEAD answer);
//! - what may have been applied is never replayed (a POST on a reused connection
//!   that the upstream reads and closes), while an idempotent GET still is;
//! - answers in the client's version (no 100-continue to HTTP/1.0, chunked
//!   de-chunked for an HTTP/1.0 client).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::raw_upstream::{read_and_report, Script, Scripted};
use common::{Client, Gateway};

fn gateway(upstream_port: u16) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[[upstream]]
name = "app"
endpoints = ["127.0.0.1:{upstream_port}"]
request_timeout_ms = 3000
[[route]]
name = "app"
path_prefix = "/"
upstream = "app"
"#
    ))
}

#[test]
fn late_bytes_after_a_head_answer_never_reach_the_next_client() {
    // Connection 1: answer HEAD with a length but no body, then, late, bytes that
    // look like a response. Connection 2: the honest answer to the next request.
    let up = Scripted::start(vec![
        Box::new(|mut s, tx| {
            read_and_report(&mut s, tx);
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 59\r\n\r\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nx-poison: 1\r\n\r\npoisoned!!!\n",
            );
            std::thread::sleep(Duration::from_millis(1500));
        }),
        Box::new(|mut s, tx| {
            read_and_report(&mut s, tx);
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhonest")
                .unwrap();
            std::thread::sleep(Duration::from_millis(500));
        }),
    ]);
    let gw = gateway(up.port);
    let mut a = gw.client();
    a.send(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = a.read_response(true).expect("HEAD answer");
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(300));

    // An unrelated client on the same (only) worker.
    let mut b = gw.client();
    let r = b.get("/b");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "hones",
        "the late bytes were not taken as this answer"
    );
    assert!(r.header("x-poison").is_none());
    assert_eq!(gw.stat("upstream_pool_discarded"), 1);
    assert_eq!(up.requests(Duration::from_millis(200)).len(), 2);
}

/// Connection 1 answers a first GET and keeps the connection; then it reads the
/// second request, "applies" it, and closes without answering.
fn read_then_close() -> Script {
    Box::new(|mut s, tx| {
        read_and_report(&mut s, tx);
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .unwrap();
        read_and_report(&mut s, tx);
    })
}

fn answer_once() -> Script {
    Box::new(|mut s, tx| {
        if read_and_report(&mut s, tx).is_some() {
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nfresh!")
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

#[test]
fn a_post_the_upstream_may_have_applied_is_not_sent_twice() {
    let up = Scripted::start(vec![read_then_close(), answer_once()]);
    let gw = gateway(up.port);
    let mut c = gw.client();
    assert_eq!(c.get("/first").status, 200);
    c.send(b"POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\namount");
    let r = c.response().expect("an answer");
    assert_eq!(r.status, 502, "{}", r.text());
    let seen = up.requests(Duration::from_millis(500));
    let posts = seen.iter().filter(|r| r.starts_with("POST /pay ")).count();
    assert_eq!(
        posts, 1,
        "the upstream saw the POST {posts} times: {seen:?}"
    );
}

#[test]
fn an_idempotent_request_is_replayed_on_a_fresh_connection() {
    let up = Scripted::start(vec![read_then_close(), answer_once()]);
    let gw = gateway(up.port);
    let mut c = gw.client();
    assert_eq!(c.get("/first").status, 200);
    let r = c.get("/again");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "fresh!");
    let seen = up.requests(Duration::from_millis(300));
    let gets = seen.iter().filter(|r| r.starts_with("GET /again ")).count();
    assert_eq!(gets, 2, "once on the stale connection, once on a fresh one");
}

#[test]
fn an_http10_client_gets_no_interim_response() {
    let up = Scripted::start(vec![answer_once()]);
    let gw = gateway(up.port);
    let mut c = gw.client();
    c.send(b"POST /up HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    c.stream
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut early = [0u8; 64];
    let got = c.stream.read(&mut early).unwrap_or(0);
    assert_eq!(
        got,
        0,
        "nothing before the body: {:?}",
        String::from_utf8_lossy(&early[..got])
    );
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    c.send(b"hello");
    let r = c.response().expect("final answer");
    assert_eq!(r.status, 200);
}

#[test]
fn an_http10_client_gets_a_chunked_answer_de_chunked_and_close_delimited() {
    // An upstream that answers chunked whatever the request's version.
    let up = Scripted::start(vec![Box::new(|mut s, tx| {
        read_and_report(&mut s, tx);
        s.write_all(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    })]);
    let gw = gateway(up.port);
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.write_all(b"GET /c HTTP/1.0\r\n\r\n").unwrap();
    let raw = common::procs::read_all(&mut s, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert!(lower.contains("connection: close"), "{head}");
    assert_eq!(body, "hello world");
    let upstream_saw = up.requests(Duration::from_millis(200));
    assert!(upstream_saw[0].starts_with("GET /c HTTP/1.0\r\n"));
    let _ = Client::connect(gw.port);
}
