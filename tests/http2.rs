//! HTTP/2 towards clients, with real peers: curl (`--http2` over TLS with ALPN,
//! `--http2-prior-knowledge` on an h2c listener: one request per curl, since curl
//! 7.88 cannot reuse an h2c connection), h2load (many streams on few connections),
//! and a Python `h2` client (tests/h2/floods.py) that floods the gateway with each
//! kind of frame it guards against, waits for idle GOAWAYs and drains.

mod common;

use std::process::Command;
use std::time::Duration;

use common::peers::{curl, h2_client};
use common::pki::{Leaf, Pki};
use common::{Gateway, Upstream};

/// A gateway with an h2c plaintext listener (`{port}`), a TLS listener
/// (`{port2}`), a static route and a route to `up`; `extra` goes into `[server]`.
fn gateway(up: &Upstream, leaf: &Leaf, extra: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
h2c = true
{extra}
[[server.tls]]
listen = "127.0.0.1:{{port2}}"
default_cert = "local"
[[server.tls.cert]]
name = "local"
sni = ["localhost"]
cert = "{cert}"
key = "{key}"
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "stdout"
[[upstream]]
name = "echo"
endpoints = ["{up}"]
[[route]]
name = "hello"
path = "/hello"
respond = {{ status = 200, body = "hello over h2\n", headers = {{ "content-type" = "text/plain" }} }}
[[route]]
name = "echo"
path_prefix = "/echo"
upstream = "echo"
"#,
        cert = leaf.cert.display(),
        key = leaf.key.display(),
        up = up.addr(),
    ))
}

fn tls_url(gw: &Gateway, path: &str) -> Vec<String> {
    vec![
        "--resolve".into(),
        format!("localhost:{}:127.0.0.1", gw.port2),
        format!("https://localhost:{}{path}", gw.port2),
    ]
}

/// Waits (up to 5 s) for a counter of the gateway's `/stats` to reach `value`.
fn stat_reaches(gw: &Gateway, name: &str, value: u64) {
    let mut seen = 0;
    for _ in 0..40 {
        seen = gw.stat(name);
        if seen >= value {
            break;
        }
    }
    assert_eq!(seen, value, "{name}");
}

#[test]
fn curl_speaks_h2_over_tls_and_h2c_and_http1_still_works() {
    let pki = Pki::new("h2curl");
    let leaf = pki.server("gw", &["localhost"]);
    let up = Upstream::echo();
    let gw = gateway(&up, &leaf, "");
    let ca = pki.ca.to_str().unwrap().to_string();

    // TLS with ALPN h2.
    let mut args = vec!["--http2", "--cacert", &ca];
    let url = tls_url(&gw, "/hello");
    args.extend(url.iter().map(String::as_str));
    let (version, status, body) = curl(&args);
    assert_eq!((version.as_str(), status), ("2", 200));
    assert_eq!(body, "hello over h2\n");

    // A body through to the upstream and back, over TLS h2.
    let mut args = vec!["--http2", "--cacert", &ca, "-d", "a body for the echo"];
    let url = tls_url(&gw, "/echo/post?x=1");
    args.extend(url.iter().map(String::as_str));
    let (version, status, body) = curl(&args);
    assert_eq!((version.as_str(), status), ("2", 200));
    let echoed: serde_json::Value = serde_json::from_str(&body).expect("echo json");
    assert_eq!(echoed["body"], "a body for the echo");
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/echo/post?x=1");

    // h2c with prior knowledge, and HTTP/1.1 on the same plaintext port.
    let plain = format!("http://127.0.0.1:{}/echo/h2c", gw.port);
    let (version, status, body) = curl(&["--http2-prior-knowledge", "-d", "h2c body", &plain]);
    assert_eq!((version.as_str(), status), ("2", 200));
    assert!(body.contains("\"h2c body\""), "{body}");
    let (version, status, _) = curl(&["--http1.1", &plain]);
    assert_eq!((version.as_str(), status), ("1.1", 200));

    std::thread::sleep(Duration::from_millis(200));
    let log = gw.proc.stdout_text();
    assert!(log.contains("\"POST /echo/h2c HTTP/2.0\" 200"), "{log}");
    assert!(log.contains("\"GET /echo/h2c HTTP/1.1\" 200"), "{log}");
    assert!(gw.stat("h2_connections") >= 3);
    assert_eq!(gw.stat("h2_streams"), 3);
}

#[test]
fn http2_off_offers_only_http1_over_tls() {
    let pki = Pki::new("h2off");
    let leaf = pki.server("gw", &["localhost"]);
    let up = Upstream::echo();
    let gw = gateway(&up, &leaf, "http2 = false");
    let ca = pki.ca.to_str().unwrap().to_string();
    let mut args = vec!["--http2", "--cacert", &ca];
    let url = tls_url(&gw, "/hello");
    args.extend(url.iter().map(String::as_str));
    let (version, status, _) = curl(&args);
    assert_eq!((version.as_str(), status), ("1.1", 200));
}

#[test]
fn h2load_runs_many_streams_on_few_connections() {
    let pki = Pki::new("h2load");
    let leaf = pki.server("gw", &["localhost"]);
    let up = Upstream::echo();
    let gw = gateway(&up, &leaf, "http2_max_concurrent_streams = 16");
    for url in [
        format!("http://127.0.0.1:{}/echo/load", gw.port),
        format!("https://127.0.0.1:{}/echo/load", gw.port2),
    ] {
        let out = Command::new("h2load")
            .args(["-n", "400", "-c", "2", "-m", "16", &url])
            .output()
            .expect("h2load runs (scripts/test installs nghttp2-client)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("400 succeeded, 0 failed, 0 errored"),
            "{url}: {text}"
        );
        assert!(text.contains("status codes: 400 2xx"), "{text}");
    }
    stat_reaches(&gw, "h2_streams", 800);
    assert_eq!(gw.stat("h2_streams_refused"), 0);
    assert_eq!(gw.stat("responses_2xx"), 800);
}

#[test]
fn floods_get_goaway_enhance_your_calm_and_others_stay_served() {
    let pki = Pki::new("h2flood");
    let leaf = pki.server("gw", &["localhost"]);
    let up = Upstream::echo();
    let gw = gateway(
        &up,
        &leaf,
        "http2_max_resets = 20\nhttp2_max_pings = 20\nhttp2_max_settings = 20\nhttp2_max_empty_data_frames = 10\nhttp2_max_continuation_frames = 3",
    );
    // A well-behaved client keeps loading the gateway meanwhile.
    let url = format!("http://127.0.0.1:{}/echo/steady", gw.port);
    let steady = std::thread::spawn(move || {
        Command::new("h2load")
            .args(["-n", "3000", "-c", "1", "-m", "4", &url])
            .output()
            .expect("h2load runs")
    });
    let floods = [
        ("resets", "200", "h2_flood_resets"),
        ("pings", "200", "h2_flood_pings"),
        ("settings", "200", "h2_flood_settings"),
        ("empty_data", "100", "h2_flood_empty_data"),
        ("continuation", "20", "h2_flood_continuation"),
    ];
    for (kind, count, counter) in floods {
        let report = h2_client(gw.port, &[kind, count]);
        assert_eq!(
            report["goaway"], 11,
            "{kind}: GOAWAY ENHANCE_YOUR_CALM: {report}"
        );
        stat_reaches(&gw, counter, 1);
        // Over TLS too.
        let report = h2_client(gw.port2, &[kind, count, "--tls"]);
        assert_eq!(report["goaway"], 11, "{kind} over TLS: {report}");
        stat_reaches(&gw, counter, 2);
        let ok = h2_client(gw.port, &["requests", "3", "--path", "/hello"]);
        assert_eq!(
            ok["statuses"],
            serde_json::json!([200, 200, 200]),
            "after {kind}"
        );
    }
    // Within the limits nothing happens: a few pings and resets are fine.
    let report = h2_client(gw.port, &["pings", "5"]);
    assert!(report["goaway"].is_null(), "{report}");
    let out = steady.join().expect("h2load thread");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3000 succeeded, 0 failed"), "{text}");
    assert_eq!(gw.stat("h2_protocol_errors"), 0);
}

#[test]
fn header_lists_and_paths_over_the_limits_are_refused() {
    let pki = Pki::new("h2limits");
    let leaf = pki.server("gw", &["localhost"]);
    let up = Upstream::echo();
    let gw = gateway(
        &up,
        &leaf,
        "http2_max_header_list_bytes = 8192\nmax_uri_bytes = 2048",
    );
    let fits = h2_client(gw.port, &["big_headers", "7000", "--path", "/hello"]);
    assert_eq!(fits["statuses"], serde_json::json!([200]), "{fits}");
    let over = h2_client(gw.port, &["big_headers", "9000", "--path", "/hello"]);
    assert_eq!(over["statuses"], serde_json::json!([431]), "{over}");
    assert!(over["bodies"][0]
        .as_str()
        .unwrap()
        .contains("header list too large"));
    // Past twice the limit h2 itself answers 431 without reading the list.
    let way_over = h2_client(gw.port, &["big_headers", "20000", "--path", "/hello"]);
    assert_eq!(way_over["statuses"], serde_json::json!([431]), "{way_over}");
    let long = format!("/echo/{}", "p".repeat(3000));
    let report = h2_client(gw.port, &["requests", "1", "--path", &long]);
    assert_eq!(report["statuses"], serde_json::json!([414]), "{report}");
    stat_reaches(&gw, "requests_malformed", 2);
}

#[test]
fn streams_past_the_limit_are_refused_and_a_stalled_body_times_out() {
    let pki = Pki::new("h2streams");
    let leaf = pki.server("gw", &["localhost"]);
    let slow = Upstream::start(&["--delay-ms", "800"]);
    let gw = gateway(
        &slow,
        &leaf,
        "http2_max_concurrent_streams = 4\nbody_read_timeout_ms = 500",
    );
    // Ten streams at once, sent before the client saw SETTINGS: four are served,
    // six refused unprocessed (REFUSED_STREAM, RFC 9113 §8.7: safe to retry).
    let report = h2_client(gw.port, &["streams", "10", "--path", "/echo/slow"]);
    assert_eq!(
        report["statuses"],
        serde_json::json!([200, 200, 200, 200]),
        "{report}"
    );
    let resets = report["reset_streams"].as_object().unwrap();
    assert_eq!(resets.len(), 6, "{report}");
    assert!(
        resets.values().all(|code| code == 7),
        "REFUSED_STREAM: {report}"
    );
    assert!(report["goaway"].is_null(), "{report}");
    stat_reaches(&gw, "h2_streams_refused", 6);
    // The connection and the gateway are fine afterwards.
    let ok = h2_client(gw.port, &["requests", "2", "--path", "/hello"]);
    assert_eq!(ok["statuses"], serde_json::json!([200, 200]), "{ok}");
    // A body that stops arriving fails its stream after body_read_timeout_ms.
    let report = h2_client(gw.port, &["stall", "1000", "--path", "/echo/stall"]);
    let seconds = report["seconds"].as_f64().unwrap();
    assert!(
        (0.4..5.0).contains(&seconds),
        "ended after {seconds} s: {report}"
    );
    assert_eq!(report["statuses"], serde_json::json!([408]), "{report}");
    assert!(report["goaway"].is_null(), "only the stream ends: {report}");
}

#[test]
fn an_idle_connection_gets_goaway_no_error() {
    let pki = Pki::new("h2idle");
    let leaf = pki.server("gw", &["localhost"]);
    let up = Upstream::echo();
    let gw = gateway(&up, &leaf, "idle_timeout_ms = 400");
    let report = h2_client(
        gw.port,
        &["requests", "1", "--path", "/hello", "--wait-close"],
    );
    assert_eq!(report["statuses"], serde_json::json!([200]));
    assert_eq!(report["goaway"], 0, "GOAWAY NO_ERROR: {report}");
    assert!(report["closed"].as_bool().unwrap(), "{report}");
    let seconds = report["seconds"].as_f64().unwrap();
    assert!((0.3..5.0).contains(&seconds), "closed after {seconds} s");
    stat_reaches(&gw, "h2_idle_closed", 1);
}

#[test]
fn drain_lets_open_streams_finish_after_goaway() {
    // curl, not the Python client: python-h2 takes the graceful GOAWAY (sent with
    // the highest stream id, then a PING) as the connection's end.
    let pki = Pki::new("h2drain");
    let leaf = pki.server("gw", &["localhost"]);
    let slow = Upstream::start(&["--delay-ms", "1200"]);
    let mut gw = gateway(&slow, &leaf, "drain_timeout_ms = 5000");
    let url = format!("http://127.0.0.1:{}/echo/slow", gw.port);
    let client = std::thread::spawn(move || curl(&["--http2-prior-knowledge", &url]));
    std::thread::sleep(Duration::from_millis(400));
    gw.proc.signal(libc::SIGTERM);
    let (version, status, body) = client.join().expect("curl");
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    assert_eq!(gw.proc.wait_exit(Duration::from_secs(8)), Some(0));
}

#[test]
fn check_names_a_bad_http2_setting_with_its_place() {
    let dir = std::env::temp_dir().join(format!("portico-h2check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:1\"]\nhttp2_max_concurrent_streams = 0\nhttp2_initial_stream_window_bytes = 100\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:3:32: 0 is out of range"), "{err}");
    assert!(err.contains("bad.toml:4:37: 100 is out of range"), "{err}");
}
