//! gRPC through the gateway with Python grpcio (Debian's python3-grpcio and
//! python3-grpc-tools) as server and client (tests/grpc/peer.py, stubs generated
//! from tests/grpc/echo.proto into a temporary folder): unary calls with trailers,
//! statuses the service sets, the three kinds of streaming call (a bidirectional
//! one that needs each answer before it sends the next message), the call's
//! deadline bounding the upstream timeout, and the gateway's own errors seen by
//! the client as the right gRPC status.

mod common;

use std::process::Command;
use std::time::Duration;

use common::peers::{python_json, PythonServer};
use common::Gateway;

/// The Echo service (python grpcio) on a free port; stopped when dropped.
fn echo_service() -> PythonServer {
    PythonServer::start("tests/grpc/peer.py", &["server"], "the gRPC server")
}

/// Runs one client case against `port`; its JSON report.
fn call(port: u16, case: &str, extra: &[&str]) -> serde_json::Value {
    let port = port.to_string();
    python_json(
        "tests/grpc/peer.py",
        &[&["client", port.as_str(), case], extra].concat(),
    )
}

#[test]
fn grpc_calls_of_every_kind_pass_through_with_their_trailers() {
    let service = echo_service();
    // Knows nothing of gRPC deadlines: only the gateway can end a call in time.
    let slow = common::Upstream::start(&["--delay-ms", "3000"]);
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
h2c = true
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "stdout"
[[upstream]]
name = "grpc"
endpoints = ["127.0.0.1:{}"]
protocol = "h2c"
[[upstream]]
name = "slow"
endpoints = ["{}"]
[[route]]
name = "echo"
path_prefix = "/portico.test.Echo"
upstream = "grpc"
timeout_ms = 10000
[[route]]
name = "slow"
path_prefix = "/slow"
upstream = "slow"
timeout_ms = 10000
"#,
        service.port,
        slow.addr()
    ));
    let r = call(gw.port, "unary", &[]);
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(r["reply"], "hello");
    assert_eq!(
        r["trailers"]["x-served-by"], "python-grpc",
        "trailers relayed: {r}"
    );

    let r = call(gw.port, "error", &[]);
    assert_eq!(r["code"], "NOT_FOUND", "grpc-status preserved: {r}");
    assert_eq!(
        r["details"], "no such thing here",
        "grpc-message preserved: {r}"
    );

    let r = call(gw.port, "server_stream", &[]);
    assert_eq!(r["values"], serde_json::json!([1, 2, 3, 4, 5]), "{r}");
    let r = call(gw.port, "client_stream", &[]);
    assert_eq!(r["sum"], 5050, "{r}");
    let r = call(gw.port, "bidi", &["--timeout", "20"]);
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(
        r["answers"],
        serde_json::json!(["echo: m0", "echo: m1", "echo: m2", "echo: m3", "echo: m4"])
    );

    // The call's own deadline (grpc-timeout) bounds the exchange, not the route's
    // 10 s: the gateway gives up and answers DEADLINE_EXCEEDED. (curl sends the
    // call and the upstream knows no deadlines, so nobody else ends it first.)
    let frame = std::env::temp_dir().join(format!("portico-grpc-frame-{}", std::process::id()));
    // Text { text: "slow", delay_ms: 3000 }, length-prefixed.
    let message = [0x0a, 0x04, b's', b'l', b'o', b'w', 0x10, 0xb8, 0x17];
    let mut framed = vec![0, 0, 0, 0, message.len() as u8];
    framed.extend_from_slice(&message);
    std::fs::write(&frame, framed).unwrap();
    let started = std::time::Instant::now();
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-D",
            "-",
            "-o",
            "/dev/null",
        ])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["-H", "grpc-timeout: 400m", "--data-binary"])
        .arg(format!("@{}", frame.display()))
        .arg(format!(
            "http://127.0.0.1:{}/slow/portico.test.Echo/Say",
            gw.port
        ))
        .output()
        .expect("curl runs");
    let elapsed = started.elapsed();
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(
        head.contains("grpc-status: 4\r\n"),
        "DEADLINE_EXCEEDED: {head}"
    );
    assert!(head.contains("grpc-message: upstream timed out"), "{head}");
    assert!(
        elapsed < Duration::from_millis(2500),
        "gave up after {elapsed:?}"
    );
    assert_eq!(gw.stat("upstream_timeouts"), 1);
    // An HTTP/1.1 client gets the trailers in the chunked trailer section when it
    // says `TE: trailers`, and none otherwise.
    let hello = [0x0a, 0x05, b'h', b'e', b'l', b'l', b'o'];
    let mut call_body = vec![0, 0, 0, 0, hello.len() as u8];
    call_body.extend_from_slice(&hello);
    for (te, expect_trailers) in [("te: trailers\r\n", true), ("", false)] {
        let mut c = gw.client();
        c.send(
            format!(
                "POST /portico.test.Echo/Say HTTP/1.1\r\nhost: x\r\ncontent-type: application/grpc\r\n{te}content-length: {}\r\nconnection: close\r\n\r\n",
                call_body.len()
            )
            .as_bytes(),
        );
        c.send(&call_body);
        let raw = common::procs::read_all(&mut c.stream, Duration::from_secs(5));
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert!(text.contains("hello"), "{text}");
        assert_eq!(
            text.contains("\r\n0\r\ngrpc-status: 0\r\n"),
            expect_trailers,
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
    // A client with its own deadline sees DEADLINE_EXCEEDED either way.
    let r = call(gw.port, "slow", &["--timeout", "0.5"]);
    assert_eq!(r["code"], "DEADLINE_EXCEEDED", "{r}");
}

#[test]
fn the_gateways_own_errors_reach_grpc_clients_as_grpc_statuses() {
    let service = echo_service();
    let secret = std::env::temp_dir().join(format!("portico-grpc-secret-{}", std::process::id()));
    std::fs::write(&secret, b"a secret of thirty-two bytes or more!!").unwrap();
    let dead = common::free_port();
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
h2c = true
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[auth.jwt.main]
algorithms = ["HS256"]
hmac_secret_file = "{secret}"
[[rate_limit]]
name = "one"
key = "global"
rate = "1/m"
burst = 1
scope = "worker"
[[upstream]]
name = "grpc"
endpoints = ["127.0.0.1:{port}"]
protocol = "h2c"
[[upstream]]
name = "dead"
endpoints = ["127.0.0.1:{dead}"]
protocol = "h2c"
[[route]]
name = "say"
path = "/portico.test.Echo/Say"
upstream = "grpc"
rate_limits = ["one"]
[[route]]
name = "count"
path = "/portico.test.Echo/Count"
upstream = "grpc"
auth = "main"
[[route]]
name = "sum"
path = "/portico.test.Echo/Sum"
upstream = "dead"
"#,
        secret = secret.display(),
        port = service.port,
    ));
    // 401 → UNAUTHENTICATED
    let r = call(gw.port, "server_stream", &[]);
    assert_eq!(r["code"], "UNAUTHENTICATED", "{r}");
    // 502 (upstream down) → UNAVAILABLE, with the gateway's message.
    let r = call(gw.port, "client_stream", &[]);
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");
    assert!(
        r["details"].as_str().unwrap().contains("connect failed"),
        "{r}"
    );
    // No route → UNIMPLEMENTED.
    let r = call(gw.port, "bidi", &[]);
    assert_eq!(r["code"], "UNIMPLEMENTED", "{r}");
    assert_eq!(r["details"], "no route");
    // 429 → UNAVAILABLE (after the one call the limit allows).
    assert_eq!(call(gw.port, "unary", &[])["code"], "OK");
    let r = call(gw.port, "unary", &[]);
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");
    assert_eq!(r["details"], "Too Many Requests");
    assert_eq!(gw.stat("ratelimit_denied"), 1);
}
