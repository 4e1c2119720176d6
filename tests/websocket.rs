//! WebSocket through the gateway, with Python `websockets` (Debian's
//! python3-websockets) as the echo server and the client (tests/ws/peer.py): text
//! messages, a 4 MiB frame, ping/pong, the close handshake, the tunnel's idle
//! timeout, upgrades refused by authentication and by a rate limit, a route without
//! `websocket = true` (the upgrade stops at the gateway), the drain with a tunnel
//! open, and the tunnel behind a TLS listener (wss://).

mod common;

use std::path::Path;
use std::time::Duration;

use common::jwt::{self, SigningKey};
use common::peers::{python_json, PythonServer};
use common::Gateway;
use serde_json::json;

/// The echo server on a free port; stopped when dropped.
fn echo_server() -> PythonServer {
    PythonServer::start("tests/ws/peer.py", &["server"], "the WebSocket server")
}

/// Runs one client case against `port`; its JSON report.
fn client(port: u16, case: &str, extra: &[&str]) -> serde_json::Value {
    let port = port.to_string();
    python_json(
        "tests/ws/peer.py",
        &[&["client", port.as_str(), case], extra].concat(),
    )
}

/// A gateway with a `websocket = true` route `/ws` (tunnel idle timeout
/// `idle_ms`), a plain route `/plain`, an authenticated one `/private` and a
/// rate-limited one `/limited`, all to the echo server.
fn gateway(server: &PythonServer, idle_ms: u64, secret: &Path, extra: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
{extra}
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "stdout"
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
name = "ws"
endpoints = ["127.0.0.1:{port}"]
[[route]]
name = "ws"
path = "/ws"
upstream = "ws"
websocket = true
websocket_idle_timeout_ms = {idle_ms}
[[route]]
name = "private"
path = "/private"
upstream = "ws"
websocket = true
auth = "main"
[[route]]
name = "limited"
path = "/limited"
upstream = "ws"
websocket = true
rate_limits = ["one"]
[[route]]
name = "plain"
path = "/plain"
upstream = "ws"
"#,
        secret = secret.display(),
        port = server.port,
    ))
}

fn secret_file(key: &SigningKey) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "portico-ws-secret-{}-{}",
        std::process::id(),
        common::free_port()
    ));
    std::fs::write(&path, key.secret()).unwrap();
    path
}

#[test]
fn messages_large_frames_ping_and_close_pass_through_the_tunnel() {
    let server = echo_server();
    let key = SigningKey::hmac();
    let gw = gateway(&server, 60_000, &secret_file(&key), "");
    let r = client(gw.port, "echo", &[]);
    assert_eq!(r["status"], 101, "{r}");
    let expected: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    assert_eq!(r["answers"], json!(expected));
    let r = client(gw.port, "big", &[]);
    assert_eq!(r["same"], true, "{r}");
    assert_eq!(r["length"], 4 << 20);
    let r = client(gw.port, "ping", &[]);
    assert_eq!(r["pong"], true, "{r}");
    let r = client(gw.port, "close", &[]);
    assert_eq!(r["close_code"], 4001, "the server's close came back: {r}");
    assert_eq!(gw.stat("websocket_upgrades"), 4);
    assert_eq!(gw.stat("websocket_tunnels_open"), 0);
    let log = gw.proc.stdout_text();
    let big = log
        .lines()
        .filter(|l| l.contains("\"GET /ws HTTP/1.1\" 101 "))
        .map(|l| l.split_whitespace().nth(6).unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap_or(0);
    assert!(big > 4 << 20, "the tunnel's bytes are logged: {log}");
}

/// The same tunnel behind a TLS listener: the gateway's TLS stream reads and writes
/// at once (one direction each), a 4 MiB message each way included.
#[test]
fn messages_and_large_frames_pass_through_a_tls_tunnel() {
    let server = echo_server();
    let key = SigningKey::hmac();
    let pki = common::pki::Pki::new("wss");
    let leaf = pki.server("api", &["api.example.com"]);
    let tls = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:{{port2}}\"\n[[server.tls.cert]]\nname = \"api\"\n\
         sni = [\"api.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        leaf.cert.display(),
        leaf.key.display()
    );
    let gw = gateway(&server, 60_000, &secret_file(&key), &tls);
    let ca = pki.ca.to_str().unwrap();
    let r = client(gw.port2, "echo", &["--ca", ca]);
    assert_eq!(r["status"], 101, "{r}");
    let expected: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    assert_eq!(r["answers"], json!(expected));
    let r = client(gw.port2, "big", &["--ca", ca]);
    assert_eq!(r["same"], true, "{r}");
    assert_eq!(r["length"], 4 << 20);
    let r = client(gw.port2, "close", &["--ca", ca]);
    assert_eq!(r["close_code"], 4001, "the server's close came back: {r}");
    assert_eq!(gw.stat("websocket_upgrades"), 3);
    assert_eq!(gw.stat("websocket_tunnels_open"), 0);
}

#[test]
fn an_idle_tunnel_is_closed_after_its_timeout() {
    let server = echo_server();
    let key = SigningKey::hmac();
    let gw = gateway(&server, 600, &secret_file(&key), "");
    let r = client(gw.port, "idle", &[]);
    assert_eq!(r["first"], "first", "{r}");
    let after = r["closed_after"].as_f64().expect("closed");
    assert!((0.5..5.0).contains(&after), "closed after {after} s");
    assert_eq!(gw.stat("websocket_idle_closed"), 1);
}

#[test]
fn upgrades_pass_authentication_and_rate_limits_first() {
    let server = echo_server();
    let key = SigningKey::hmac();
    let gw = gateway(&server, 60_000, &secret_file(&key), "");
    // Refused before any upstream work: 401, no tunnel.
    let r = client(gw.port, "echo", &["--path", "/private"]);
    assert_eq!(r["status"], 401, "{r}");
    let token = key.sign(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &json!({"sub": "ws-user", "exp": jwt::now() + 600}),
    );
    let r = client(gw.port, "echo", &["--path", "/private", "--token", &token]);
    assert_eq!(r["status"], 101, "{r}");
    // One upgrade a minute on /limited: the second is 429.
    assert_eq!(
        client(gw.port, "ping", &["--path", "/limited"])["status"],
        101
    );
    assert_eq!(
        client(gw.port, "ping", &["--path", "/limited"])["status"],
        429
    );
    // Without `websocket = true` the Upgrade stops at the gateway: the server
    // sees a plain GET and refuses it (426).
    assert_eq!(
        client(gw.port, "echo", &["--path", "/plain"])["status"],
        426
    );
    assert_eq!(gw.stat("websocket_upgrades"), 2);
}

#[test]
fn the_drain_lets_a_busy_tunnel_finish_and_closes_it_once_quiet() {
    let server = echo_server();
    let key = SigningKey::hmac();
    let mut gw = gateway(
        &server,
        60_000,
        &secret_file(&key),
        "drain_timeout_ms = 10000",
    );
    let port = gw.port;
    let held = std::thread::spawn(move || client(port, "hold", &[]));
    // The drain starts once the tunnel is open (the client sends for 2 s more);
    // not after a fixed sleep: a loaded machine can take longer to start Python.
    let opened = std::time::Instant::now();
    while gw.stat("websocket_tunnels_open") == 0 {
        assert!(
            opened.elapsed() < Duration::from_secs(10),
            "the tunnel never opened"
        );
    }
    let started = std::time::Instant::now();
    gw.proc.signal(libc::SIGTERM);
    let r = held.join().expect("client");
    // Messages kept flowing during the drain; a quiet second later it closed.
    let expected: Vec<String> = (0..5).map(|i| format!("held {i}")).collect();
    assert_eq!(r["answers"], json!(expected), "{r}");
    assert!(r["closed_after"].is_number(), "{r}");
    assert_eq!(gw.proc.wait_exit(Duration::from_secs(8)), Some(0));
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn check_refuses_websocket_where_it_cannot_work() {
    let checked = common::procs::portico_check(
        "bad.toml",
        r#"[server]
listen = ["127.0.0.1:1"]
[[upstream]]
name = "h2"
endpoints = ["127.0.0.1:2"]
protocol = "h2c"
[[route]]
name = "a"
path = "/a"
upstream = "h2"
websocket = true
[[route]]
name = "b"
path = "/b"
respond = { status = 200 }
websocket = true
[[route]]
name = "c"
path = "/c"
upstream = "h2"
websocket_idle_timeout_ms = 5
"#,
    );
    assert_eq!(checked.code, Some(1));
    let err = checked.stderr;
    assert!(
        err.contains(
            "bad.toml:11:13: websocket = true needs an HTTP/1.1 upstream; \"h2\" speaks HTTP/2"
        ),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:16:13: websocket = true needs upstream"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:21:29: websocket_idle_timeout_ms needs websocket = true"),
        "{err}"
    );
}
