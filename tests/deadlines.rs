//! Nothing waits forever: a client that stops reading a download (plaintext and
//! TLS), an upstream that never reads an upload, a client too slow for the route's
//! timeout, and idle keep-alive connections that release their buffers after the hot
//! window, still serve (io_uring and epoll) and still follow the drain's rules. Real
//! gateway processes, raw-socket and rustls peers on loopback, small timeouts so the
//! tests are short.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{tls_client, Client, Gateway, Upstream};

/// A gateway with one upstream at `upstream` (host:port) and one route to it.
fn gateway(upstream: &str, server: &str, upstream_extra: &str, env: &[(&str, &str)]) -> Gateway {
    Gateway::start_with(
        &format!(
            r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
{server}
[log]
access_log = "off"
[[upstream]]
name = "app"
endpoints = ["{upstream}"]
{upstream_extra}
[[route]]
name = "app"
path_prefix = "/"
upstream = "app"
"#
        ),
        env,
        None,
    )
}

/// Sockets the process has open (listeners, clients, upstream connections).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .map(|l| l.to_string_lossy().starts_with("socket:"))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Reads a request head from `s` (until the empty line).
fn read_head(s: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
}

/// How the download upstream's connection ended: bytes of body written and when
/// its write failed.
struct Sent {
    body_bytes: u64,
    failed_at: Instant,
}

/// An upstream that answers one request with a 200 MiB body, writing until the
/// gateway goes away.
fn download_upstream(body: u64) -> (String, mpsc::Receiver<Sent>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        read_head(&mut s);
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {body}\r\n\r\n");
        if s.write_all(head.as_bytes()).is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0u64;
        while sent < body {
            match s.write(&chunk) {
                Ok(n) if n > 0 => sent += n as u64,
                _ => break,
            }
        }
        let _ = tx.send(Sent {
            body_bytes: sent,
            failed_at: Instant::now(),
        });
    });
    (addr, rx)
}

/// A client stream, plaintext or TLS.
trait ClientStream: Read + Write {}
impl<T: Read + Write> ClientStream for T {}

/// A client that reads 20 MiB of a 200 MiB download, then stops reading: the
/// gateway closes it after its send timeout (1 s), and the upstream connection too.
fn client_that_stops_reading_a_download(tls: bool) {
    const BODY: u64 = 200 * 1024 * 1024;
    const READ_FIRST: usize = 20 * 1024 * 1024;
    let (addr, sent) = download_upstream(BODY);
    let pki = Pki::new("download");
    let leaf = pki.server("download", &["api.example.com"]);
    // A TLS listener on {port2} beside the plaintext one.
    let server = format!(
        "send_timeout_ms = 1000\n[[server.tls]]\nlisten = \"127.0.0.1:{{port2}}\"\n\
         [[server.tls.cert]]\nname = \"api\"\nsni = [\"api.example.com\"]\n\
         cert = \"{}\"\nkey = \"{}\"\n",
        leaf.cert.display(),
        leaf.key.display()
    );
    // The route's timeout (30 s) bounds each read from the upstream, never hit here:
    // only the send timeout can end this download.
    let gw = gateway(&addr, &server, "request_timeout_ms = 30000", &[]);
    // The start-up probe's connection is gone once the count settles.
    std::thread::sleep(Duration::from_millis(300));
    let idle_sockets = open_sockets(gw.proc.pid());

    let mut client: Box<dyn ClientStream> = if tls {
        Box::new(tls_client::connect(gw.port2, &pki.ca, "api.example.com").expect("handshake"))
    } else {
        let s = TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Box::new(s)
    };
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("send");
    client.flush().expect("send");
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    while got < READ_FIRST {
        match client.read(&mut buf) {
            Ok(n) if n > 0 => got += n,
            other => panic!("download ended after {got} bytes: {other:?}"),
        }
    }
    // Stop reading: the socket buffers fill, the gateway's write stalls.
    let stopped = Instant::now();
    assert_eq!(open_sockets(gw.proc.pid()), idle_sockets + 2);

    // The gateway closes its upstream connection (the upstream's write fails)...
    let end = sent
        .recv_timeout(Duration::from_secs(20))
        .expect("the upstream connection is still open 20 s after the client stopped reading");
    let after = end.failed_at.duration_since(stopped);
    assert!(
        after < Duration::from_millis(1000 + 4000),
        "upstream closed {after:?} after the client stopped reading (send_timeout 1 s)"
    );
    assert!(end.body_bytes < BODY, "the whole body went through");
    // ... and the client connection.
    assert!(
        wait_until(Duration::from_secs(3), || open_sockets(gw.proc.pid())
            == idle_sockets),
        "the gateway still holds {} sockets (idle: {idle_sockets})",
        open_sockets(gw.proc.pid())
    );
    // What was already in the socket buffers drains, then the stream ends (over TLS
    // without close_notify: the gateway does not wait on a stalled peer for it).
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                ) =>
            {
                break
            }
            Err(e) => panic!("the client connection did not end: {e}"),
        }
    }
    assert!((got as u64) < BODY, "the client got the whole body");
}

#[test]
fn a_client_that_stops_reading_a_download_is_closed_after_the_send_timeout() {
    client_that_stops_reading_a_download(false);
}

#[test]
fn a_tls_client_that_stops_reading_a_download_is_closed_after_the_send_timeout() {
    client_that_stops_reading_a_download(true);
}

/// An upstream that accepts connections and never reads from them.
fn deaf_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(_) => return,
            }
        }
    });
    addr
}

/// POSTs `len` bytes from a writer thread; returns the response and how long it took.
fn post_to(port: u16, len: usize) -> (common::Response, Duration) {
    let mut c = Client::connect(port);
    let started = Instant::now();
    c.send(format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n").as_bytes());
    let mut writer = c.stream.try_clone().expect("clone");
    std::thread::spawn(move || {
        let chunk = vec![b'u'; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            if writer.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
    });
    let r = c.response().expect("an answer");
    (r, started.elapsed())
}

#[test]
fn an_upstream_that_never_reads_gets_504_within_the_route_timeout() {
    let up = deaf_upstream();
    // The upstream's send timeout (60 s) is far: only the route's timeout can answer.
    let gw = gateway(
        &up,
        "max_body_bytes = 104857600",
        "request_timeout_ms = 2000\nsend_timeout_ms = 60000",
        &[],
    );
    // 64 KiB fits the socket buffers (the head wait times out); 50 MiB does not
    // (the body write stalls): both end at the route's timeout.
    for len in [64 * 1024, 50 * 1024 * 1024] {
        let (r, took) = post_to(gw.port, len);
        assert_eq!(r.status, 504, "{len} bytes: {}", r.text());
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_millis(2000 + 3000),
            "{len} bytes: 504 after {took:?} (route timeout 2 s)"
        );
    }
}

#[test]
fn an_upstream_that_stops_reading_gets_504_after_its_send_timeout() {
    let up = deaf_upstream();
    let gw = gateway(
        &up,
        "max_body_bytes = 104857600",
        "request_timeout_ms = 30000\nsend_timeout_ms = 1000",
        &[],
    );
    let (r, took) = post_to(gw.port, 50 * 1024 * 1024);
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.text().contains("did not take the request in time"),
        "{}",
        r.text()
    );
    assert!(
        took < Duration::from_millis(1000 + 3000),
        "504 after {took:?} (upstream send timeout 1 s, route timeout 30 s)"
    );
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn a_client_slower_than_the_route_timeout_gets_408_and_the_endpoint_stays_usable() {
    let up = Upstream::echo();
    // The body timeout (30 s) is far: only the route's timeout (1 s), which covers
    // waiting for the client's body bytes, can end this request.
    let gw = gateway(
        &up.addr(),
        "body_read_timeout_ms = 30000",
        "request_timeout_ms = 1000",
        &[],
    );
    let mut c = gw.client();
    let started = Instant::now();
    c.send(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789");
    let r = c.response().expect("an answer");
    let took = started.elapsed();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1000 + 3000),
        "408 after {took:?} (route timeout 1 s)"
    );
    assert_eq!(r.header("connection"), Some("close"));
    // The client's slowness is not the endpoint's failure: it serves the next one.
    let mut c = gw.client();
    c.send(b"POST /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.response().expect("an answer").status, 200);
}

#[test]
fn the_drain_closes_idle_connections_and_answers_a_late_first_request() {
    let mut gw = Gateway::start(
        r#"
[server]
listen = ["127.0.0.1:{port}"]
workers = 1
drain_timeout_ms = 5000
[log]
access_log = "off"
[[route]]
name = "static"
respond = { status = 200, body = "hi" }
"#,
    );
    let mut kept = gw.client();
    assert_eq!(kept.get("/").text(), "hi");
    // A connection that has not sent its first request yet.
    let mut silent = gw.client();
    // Both wait past the hot window, holding no buffer.
    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    assert!(
        kept.is_closed(Duration::from_secs(2)),
        "an idle keep-alive connection closes when the drain begins"
    );
    // The silent one gets its request answered, and closed after it.
    std::thread::sleep(Duration::from_millis(300));
    silent.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = silent
        .response()
        .expect("the first request is answered during the drain");
    assert_eq!(r.text(), "hi");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(gw.proc.wait_exit(Duration::from_secs(6)), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(5 + 1));
}

/// Two requests on one connection with a pause past the hot window between them,
/// then the idle timeout closes it (on the worker's tick).
fn idle_connection_serves_after_the_hot_window(env: &[(&str, &str)]) {
    let gw = Gateway::start_with(
        r#"
[server]
listen = ["127.0.0.1:{port}"]
workers = 1
idle_timeout_ms = 2500
[log]
access_log = "off"
[[route]]
name = "static"
respond = { status = 200, body = "hi" }
"#,
        env,
        None,
    );
    let mut c = gw.client();
    assert_eq!(c.get("/").text(), "hi");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.get("/").text(), "hi", "after 1.5 s idle");
    // Pipelined requests after the release arrive in one read and are served in order.
    std::thread::sleep(Duration::from_millis(1500));
    c.send(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n");
    for _ in 0..2 {
        assert_eq!(c.response().expect("pipelined").status, 200);
    }
    let idle_from = Instant::now();
    assert!(c.is_closed(Duration::from_secs(5)), "idle timeout");
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(2400) && idle < Duration::from_millis(2500 + 1500),
        "closed after {idle:?} idle (idle_timeout 2.5 s)"
    );
}

#[test]
fn an_idle_connection_releases_its_buffers_and_still_serves_on_io_uring() {
    idle_connection_serves_after_the_hot_window(&[]);
}

#[test]
fn an_idle_connection_releases_its_buffers_and_still_serves_on_epoll() {
    idle_connection_serves_after_the_hot_window(&[("MONOIO_FORCE_LEGACY_DRIVER", "1")]);
}

#[test]
fn a_partial_head_that_pauses_past_the_hot_window_is_still_read_whole() {
    let gw = Gateway::start(
        r#"
[server]
listen = ["127.0.0.1:{port}"]
workers = 1
header_read_timeout_ms = 5000
[log]
access_log = "off"
[[route]]
name = "static"
respond = { status = 200, body = "hi" }
"#,
    );
    let mut c = gw.client();
    c.send(b"GET / HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(1500));
    c.send(b"Host: a\r\n\r\n");
    assert_eq!(c.response().expect("answer").text(), "hi");
}
