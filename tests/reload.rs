//! Hot reload of the whole configuration (issue 15): real gateways on loopback,
//! reloaded by `POST /config/reload`, SIGHUP, `portico reload` and the file watch.
//!
//! - a route, an upstream, a rate limit and a certificate changed by one reload are
//!   seen by new connections while an old keep-alive connection keeps its route;
//!   an unchanged rate-limit policy keeps its spent buckets;
//! - an invalid file is refused with its `file:line:col` and the old configuration
//!   serves on; an oversized one is refused by `[config_limits]`;
//! - a configuration that routes to a dead upstream is rolled back by the canary,
//!   a healthy one promoted, both visible in `GET /config`;
//! - panics: one while serving closes only its connection, a dead worker is
//!   restarted, a canary that panics is rolled back;
//! - the file watch sees an editor's atomic rename and a ConfigMap symlink swap;
//! - the admin token guards the mutating calls;
//! - health checks follow reloads: an added upstream's endpoints are probed (an
//!   unhealthy one gets no traffic), a verdict survives an unrelated reload, a
//!   removed upstream's endpoints are no longer probed, and an endpoint whose
//!   upstream drops its `health_check` takes traffic again; an ejected endpoint
//!   stays ejected across a reload that keeps it.
//!
//! Canary windows are short (100–600 ms) so the file runs in a few seconds.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::json_upstream::{JsonUpstream, Reply, Request};
use common::pki::{path_str, Pki};
use common::{tls_client, Gateway, Upstream};

/// Writes `text` (with the gateway's ports filled in) to its config file the way
/// an editor saves: a new file renamed over the old one.
fn rewrite(gw: &Gateway, text: &str) {
    write_atomically(&gw.config, &fill(gw, text));
}

fn fill(gw: &Gateway, text: &str) -> String {
    text.replace("{port}", &gw.port.to_string())
        .replace("{port2}", &gw.port2.to_string())
        .replace("{admin}", &gw.admin_port.to_string())
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// `line:col` (1-based) of the first `needle` in `text`.
fn place(text: &str, needle: &str) -> String {
    let at = text.find(needle).expect("needle");
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{col}")
}

/// One call to the admin listener: `(status, body)`.
fn admin(gw: &Gateway, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", gw.admin_port)).expect("admin");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let request = format!("{method} {path} HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n{auth}\r\n");
    s.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// `POST /config/reload?wait=1`: the answer once the attempt is decided.
fn reload(gw: &Gateway) -> (u16, serde_json::Value) {
    let (status, body) = admin(gw, "POST", "/config/reload?wait=1", None);
    let v = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (status, v)
}

fn config(gw: &Gateway) -> serde_json::Value {
    let (status, body) = admin(gw, "GET", "/config", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

/// One request on a new connection: `(status, body)`, or `None` if the connection
/// ended without an answer.
fn fresh(port: u16, path: &str) -> Option<(u16, String)> {
    let mut c = common::Client::connect(port);
    c.send(format!("GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").as_bytes());
    c.response().map(|r| (r.status, r.text()))
}

/// Calls `f` until it is true, at most `timeout`.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// New connections to `path`, as fast as they go, until `stop` is set: the canary
/// only sees connections accepted during its window.
fn churn(
    port: u16,
    path: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<u16>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            seen.push(fresh(port, path).map_or(0, |(s, _)| s));
        }
        seen
    })
}

fn with_churn<T>(port: u16, path: &'static str, during: impl FnOnce() -> T) -> (T, Vec<u16>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = churn(port, path, stop.clone());
    let out = during();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, load.join().expect("churn"))
}

const HEAD: &str = r#"
[server]
listen = ["127.0.0.1:{port}"]
workers = 2
drain_timeout_ms = 1000
[admin]
listen = "127.0.0.1:{admin}"
[log]
access_log = "off"
"#;

#[test]
fn route_upstream_limit_and_certificate_change_for_new_connections_only() {
    let pki = Pki::new("reload");
    let first = pki.server("first", &["api.example.com"]);
    let second = pki.server("second", &["api.example.com"]);
    let (a, b) = (Upstream::echo(), Upstream::echo());
    let text = |body: &str, up: &Upstream, burst: u32, leaf: &common::pki::Leaf| {
        format!(
            r#"{HEAD}
[reload]
canary_ms = 100
watch = false
[[server.tls]]
listen = "127.0.0.1:{{port2}}"
default_cert = "api"
[[server.tls.cert]]
name = "api"
sni = ["api.example.com"]
cert = "{cert}"
key = "{key}"
[[upstream]]
name = "api"
endpoints = ["{up}"]
[[route]]
name = "text"
path = "/text"
respond = {{ status = 200, body = "{body}" }}
[[route]]
name = "api"
path_prefix = "/api"
upstream = "api"
[[route]]
name = "limited"
path = "/limited"
respond = {{ status = 200 }}
rate_limits = ["per-ip"]
[[rate_limit]]
name = "per-ip"
key = "ip"
rate = "1/h"
burst = {burst}
scope = "instance"
"#,
            cert = path_str(&leaf.cert),
            key = path_str(&leaf.key),
            up = up.addr(),
        )
    };
    let gw = Gateway::start(&text("v1", &a, 2, &first));
    let mut kept = gw.client();
    assert_eq!(kept.get("/text").text(), "v1");
    assert_eq!(fresh(gw.port, "/api/x").map(|r| r.0), Some(200));
    let hits_a = a.hits();
    // The limit (burst 2, rate 1/h; the workers may admit a few more before the
    // limiter answers, docs/rate-limiting.md) runs dry: 429s.
    let statuses: Vec<u16> = (0..8)
        .map(|_| fresh(gw.port, "/limited").map_or(0, |r| r.0))
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let cn = |port| {
        tls_client::connect(port, &pki.ca, "api.example.com").map(|s| tls_client::peer_cn(&s))
    };
    assert_eq!(cn(gw.port2).as_deref(), Some("api.example.com"));
    let served_first = std::fs::read(&first.cert).expect("cert");

    // Version 2 also listens on a second plaintext address.
    let extra = common::free_port();
    let both = format!("listen = [\"127.0.0.1:{{port}}\", \"127.0.0.1:{extra}\"]");
    let v2 = text("v2", &b, 50, &second).replacen("listen = [\"127.0.0.1:{port}\"]", &both, 1);
    rewrite(&gw, &v2);
    let (status, answer) = reload(&gw);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "promoted", "{answer}");
    assert_eq!(answer["version"], 2);

    // New connections see the new route, upstream, limit and certificate...
    assert_eq!(fresh(gw.port, "/text").map(|r| r.1).as_deref(), Some("v2"));
    assert_eq!(fresh(gw.port, "/api/y").map(|r| r.0), Some(200));
    assert_eq!(a.hits(), hits_a, "the old upstream gets nothing new");
    assert!(b.hits() >= 1, "the new upstream serves");
    // The policy changed (burst 50): its buckets start afresh (the old one, dry,
    // would refuse nearly all of ten more). All ten pass even when the limiter
    // thread is slow: a worker may run ahead by its share of the bucket (12 here),
    // not by one lease of one token (src/limit/lease.rs, on_grant).
    let after: Vec<u16> = (0..10)
        .map(|_| fresh(gw.port, "/limited").map_or(0, |r| r.0))
        .collect();
    assert!(after.iter().all(|s| *s == 200), "{after:?}");
    let tls = tls_client::connect(gw.port2, &pki.ca, "api.example.com").expect("handshake");
    let presented = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a cert")
        .to_vec();
    assert_ne!(
        pem_der(&served_first),
        presented,
        "the new certificate is presented"
    );
    // ...while the connection opened before the reload keeps its own.
    assert_eq!(kept.get("/text").text(), "v1");

    let view = config(&gw);
    assert_eq!(view["running"]["version"], 2, "{view}");
    assert_eq!(view["attempts"][0]["outcome"], "promoted", "{view}");
    assert!(
        view["attempts"][0]["applied_ms"].as_u64().is_some(),
        "{view}"
    );
    assert_eq!(gw.stat("config_reloads_promoted"), 1);
    assert_eq!(
        fresh(extra, "/text").map(|r| r.1).as_deref(),
        Some("v2"),
        "the new listener serves"
    );

    // Version 3 drops the TLS listener and the second address: they stop accepting,
    // the connections they accepted finish.
    let mut on_extra = common::Client::connect(extra);
    assert_eq!(on_extra.get("/text").text(), "v2");
    let tls_block = v2.find("[[server.tls]]").expect("tls");
    let upstream_block = v2.find("[[upstream]]").expect("upstream");
    let v3 = format!("{}{}", &v2[..tls_block], &v2[upstream_block..])
        .replace(&both, "listen = [\"127.0.0.1:{port}\"]");
    // This one comes by SIGHUP: it reloads the whole file too.
    rewrite(&gw, &v3.replace("v2", "v3"));
    gw.proc.signal(libc::SIGHUP);
    wait_for_version(&gw, 3);
    assert_eq!(config(&gw)["attempts"][0]["trigger"], "SIGHUP");
    eventually(
        "the removed listeners to close",
        Duration::from_secs(5),
        || {
            TcpStream::connect(("127.0.0.1", extra)).is_err()
                && TcpStream::connect(("127.0.0.1", gw.port2)).is_err()
        },
    );
    assert_eq!(fresh(gw.port, "/text").map(|r| r.1).as_deref(), Some("v3"));
    assert_eq!(
        on_extra.get("/text").text(),
        "v2",
        "a connection from a closed listener finishes"
    );
    assert_eq!(kept.get("/text").text(), "v1");
}

#[test]
fn an_unchanged_rate_limit_keeps_its_spent_buckets_across_a_reload() {
    let text = |body: &str| {
        format!(
            r#"{HEAD}
[reload]
canary = false
watch = false
[[route]]
name = "kept"
path = "/kept"
respond = {{ status = 200, body = "{body}" }}
rate_limits = ["global"]
[[route]]
name = "other"
path = "/other"
respond = {{ status = 200 }}
rate_limits = ["per-ip"]
[[rate_limit]]
name = "global"
key = "global"
rate = "1/h"
burst = 3
scope = "instance"
[[rate_limit]]
name = "per-ip"
key = "ip"
rate = "1/h"
burst = {burst}
scope = "instance"
"#,
            burst = if body == "one" { 1 } else { 100 }
        )
    };
    // One worker: every request meets the same worker tables and limiter thread.
    let gw = Gateway::start(&text("one").replace("workers = 2", "workers = 1"));
    // Requests admitted out of `n`, 50 ms apart: past the provisional allowance a
    // worker admits only once the limiter's lease arrived (a few ticks; longer on a
    // loaded machine), and the bucket must be seen spent, not merely unleased.
    let admitted = |path, n| {
        (0..n)
            .filter(|_| {
                let ok = fresh(gw.port, path).map(|r| r.0) == Some(200);
                std::thread::sleep(Duration::from_millis(50));
                ok
            })
            .count()
    };
    // "global": burst 3 at 1 token an hour; one worker may admit one more on its
    // provisional allowance before the limiter answers (docs/rate-limiting.md), so
    // the bucket admits at most 4, ever. "per-ip": burst 1 (at most 2).
    let before = admitted("/kept", 8);
    assert!((3..=4).contains(&before), "{before}");
    assert!(admitted("/other", 6) <= 2);
    rewrite(&gw, &text("two").replace("workers = 2", "workers = 1"));
    assert_eq!(reload(&gw).1["outcome"], "promoted");
    // Unchanged, "global" keeps its spent bucket: still at most 4 in all. Fresh
    // buckets would admit 3 more.
    let after = admitted("/kept", 6);
    assert!(
        before + after <= 4,
        "admitted {before} before the reload, {after} after"
    );
    // "per-ip" changed (burst 100): it starts afresh.
    assert_eq!(admitted("/other", 6), 6, "the changed policy starts afresh");
}

/// The DER of the first certificate in a PEM file.
fn pem_der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem)
        .expect("pem")
        .to_vec()
}

#[test]
fn invalid_and_oversized_files_are_refused_and_the_old_configuration_serves_on() {
    let v1 = format!(
        "{HEAD}[reload]\nwatch = false\n[[route]]\nname = \"r\"\npath = \"/r\"\nrespond = {{ status = 200, body = \"v1\" }}\n"
    );
    let gw = Gateway::start(&v1);
    let bad =
        format!("{v1}[[route]]\nname = \"bad\"\npath = \"/bad\"\nrespond = {{ status = \"x\" }}\n");
    rewrite(&gw, &bad);
    let (status, answer) = reload(&gw);
    assert_eq!(status, 422, "{answer}");
    let error = answer["errors"][0].as_str().expect("an error").to_string();
    let at = format!("{}:{}:", gw.config.display(), place(&bad, "\"x\""));
    assert!(error.starts_with(&at), "{error} (expected {at})");
    assert_eq!(fresh(gw.port, "/r").map(|r| r.1).as_deref(), Some("v1"));
    let view = config(&gw);
    assert_eq!(view["attempts"][0]["outcome"], "refused", "{view}");
    assert!(
        view["attempts"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with(&at),
        "{view}"
    );
    assert_eq!(view["running"]["version"], 1);

    // Oversized: more routes than [config_limits] allows, refused at the first one over.
    let mut big = format!("{v1}[config_limits]\nmax_routes = 3\n");
    for i in 0..5 {
        big.push_str(&format!(
            "[[route]]\nname = \"r{i}\"\npath = \"/r{i}\"\nrespond = {{ status = 200 }}\n"
        ));
    }
    rewrite(&gw, &big);
    let (status, answer) = reload(&gw);
    assert_eq!(status, 422, "{answer}");
    let error = answer["errors"][0].as_str().unwrap_or("");
    assert!(
        error.contains("6 routes, more than [config_limits] max_routes = 3"),
        "{error}"
    );
    let fourth = format!(":{}:", place(&big, "\"r2\""));
    assert!(
        error.contains(&fourth),
        "at the fourth route's name ({fourth}): {error}"
    );
    assert_eq!(fresh(gw.port, "/r").map(|r| r.1).as_deref(), Some("v1"));

    // A new listen address another process holds is refused, as at start-up.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = squatter.local_addr().expect("addr");
    rewrite(
        &gw,
        &v1.replacen(
            "listen = [\"127.0.0.1:{port}\"]",
            &format!("listen = [\"127.0.0.1:{{port}}\", \"{taken}\"]"),
            1,
        ),
    );
    let (status, answer) = reload(&gw);
    assert_eq!(status, 422, "{answer}");
    let error = answer["errors"][0].as_str().unwrap_or("");
    assert!(
        error.contains(&format!(
            "cannot listen on {taken}: another process already listens there"
        )),
        "{error}"
    );
    assert_eq!(fresh(gw.port, "/r").map(|r| r.1).as_deref(), Some("v1"));
    assert_eq!(gw.stat("config_reloads_refused"), 3);
    assert!(gw
        .proc
        .stderr_text()
        .contains("reload refused (POST /config/reload)"));
}

#[test]
fn the_canary_rolls_back_a_dead_upstream_and_promotes_a_healthy_one() {
    let (live, other) = (Upstream::echo(), Upstream::echo());
    let dead = common::free_port();
    let text = |endpoint: &str| {
        format!(
            "{HEAD}[reload]\ncanary_ms = 600\nwatch = false\n[[upstream]]\nname = \"api\"\nendpoints = [\"{endpoint}\"]\n[[route]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"api\"\n"
        )
    };
    let gw = Gateway::start(&text(&live.addr()));
    rewrite(&gw, &text(&format!("127.0.0.1:{dead}")));
    let ((status, answer), seen) = with_churn(gw.port, "/api/x", || reload(&gw));
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["outcome"], "rolled_back", "{answer}");
    let reason = answer["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.starts_with("gateway-made 5xx"), "{reason}");
    assert!(
        seen.contains(&502) && seen.contains(&200),
        "the canary failed, the others served: {seen:?}"
    );
    assert_eq!(fresh(gw.port, "/api/x").map(|r| r.0), Some(200));
    let view = config(&gw);
    assert_eq!(view["running"]["version"], 1, "{view}");
    assert_eq!(view["attempts"][0]["outcome"], "rolled_back", "{view}");
    assert_eq!(view["attempts"][0]["reason"], reason.as_str());

    rewrite(&gw, &text(&other.addr()));
    let ((status, answer), seen) = with_churn(gw.port, "/api/x", || reload(&gw));
    assert_eq!(
        (status, &answer["outcome"]),
        (200, &"promoted".into()),
        "{answer}"
    );
    assert!(seen.iter().all(|s| *s == 200), "{seen:?}");
    let view = config(&gw);
    assert_eq!(view["running"]["version"], 3, "{view}");
    assert!(
        view["attempts"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("the canary served"),
        "{view}"
    );
    let workers = view["workers"].as_array().expect("workers");
    assert!(workers.iter().all(|w| w["version"] == 3), "{view}");
    assert_eq!(gw.stat("config_reloads_rolled_back"), 1);
}

#[test]
fn panics_close_one_connection_a_dead_worker_restarts_and_a_panicking_canary_rolls_back() {
    let routes = "[[route]]\nname = \"ok\"\npath = \"/ok\"\nrespond = { status = 200 }\n\
                  [[route]]\nname = \"test-panic-connection\"\npath = \"/boom\"\nrespond = { status = 200 }\n\
                  [[route]]\nname = \"test-panic-worker\"\npath = \"/die\"\nrespond = { status = 200 }\n";
    let v1 = format!("{HEAD}[reload]\ncanary_ms = 400\nwatch = false\n{routes}");
    let mut gw = Gateway::start_with(&v1, &[("PORTICO_TEST_PANICS", "1")], None);

    // A panic while serving: that connection closes unanswered, the rest go on.
    let mut other = gw.client();
    assert_eq!(other.get("/ok").status, 200);
    assert_eq!(fresh(gw.port, "/boom"), None);
    assert_eq!(
        other.get("/ok").status,
        200,
        "a connection on the same worker lives on"
    );
    assert!(gw.stat("worker_panics") >= 1);

    // A panic outside any connection ends its worker: it is restarted, and every
    // new connection is served (none lands on a dead worker's listener).
    assert_eq!(fresh(gw.port, "/die").map(|r| r.0), Some(200));
    eventually("the restart", Duration::from_secs(5), || {
        gw.proc.stderr_text().contains("restarted on version 1")
    });
    for _ in 0..40 {
        assert_eq!(fresh(gw.port, "/ok").map(|r| r.0), Some(200));
    }
    assert_eq!(gw.stat("worker_restarts"), 1);

    // A configuration whose new route panics is rolled back by the canary.
    let v2 = format!("{v1}[[route]]\nname = \"test-panic-connection\"\npath = \"/new\"\nrespond = {{ status = 200 }}\n")
        .replace("name = \"test-panic-connection\"\npath = \"/boom\"", "name = \"boom\"\npath = \"/boom\"");
    rewrite(&gw, &v2);
    let ((status, answer), _) = with_churn(gw.port, "/new", || reload(&gw));
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["reason"].as_str().unwrap_or("").contains("panicked"),
        "{answer}"
    );
    assert_eq!(fresh(gw.port, "/ok").map(|r| r.0), Some(200));

    // A configuration whose generation panics while a worker builds it: the
    // canary rolls it back; and with `canary = false` (every worker builds it at
    // once) none of them dies: the running configuration goes back to all.
    let bad = format!("{v1}[[route]]\nname = \"test-panic-install\"\npath = \"/x\"\nrespond = {{ status = 200 }}\n");
    rewrite(&gw, &bad);
    let (status, answer) = reload(&gw);
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap_or("")
            .contains("installing it on worker 0 panicked"),
        "{answer}"
    );
    let at_once = v1.replace("canary_ms = 400", "canary = false");
    rewrite(&gw, &at_once);
    assert_eq!(reload(&gw).0, 200);
    rewrite(&gw, &format!("{at_once}[[route]]\nname = \"test-panic-install\"\npath = \"/x\"\nrespond = {{ status = 200 }}\n"));
    let (status, answer) = reload(&gw);
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["reason"].as_str().unwrap_or("").contains("panicked"),
        "{answer}"
    );
    let view = config(&gw);
    assert_eq!(
        view["running"]["version"], 4,
        "the one before is back: {view}"
    );
    assert!(
        view["workers"]
            .as_array()
            .is_some_and(|w| w.iter().all(|w| w["version"] == 4)),
        "{view}"
    );
    assert_eq!(fresh(gw.port, "/ok").map(|r| r.0), Some(200));
    assert_eq!(
        gw.proc.wait_exit(Duration::ZERO),
        None,
        "the process is still up"
    );
}

/// Waits until `/config` says `version` runs on every worker.
fn wait_for_version(gw: &Gateway, version: u64) {
    eventually(
        &format!("version {version}"),
        Duration::from_secs(10),
        || {
            let v = config(gw);
            v["running"]["version"] == version
                && v["workers"]
                    .as_array()
                    .is_some_and(|w| w.iter().all(|w| w["version"] == version))
        },
    );
}

#[test]
fn the_file_watch_sees_an_atomic_rename_and_a_configmap_symlink_swap() {
    let settings = "[reload]\ncanary_ms = 50\nwatch_debounce_ms = 50\n";
    let route = |body: &str| {
        format!("{HEAD}{settings}[[route]]\nname = \"r\"\npath = \"/r\"\nrespond = {{ status = 200, body = \"{body}\" }}\n")
    };
    // An editor's save: a new file renamed over the old one.
    let gw = Gateway::start(&route("one"));
    rewrite(&gw, &route("two"));
    wait_for_version(&gw, 2);
    assert_eq!(fresh(gw.port, "/r").map(|r| r.1).as_deref(), Some("two"));
    assert_eq!(config(&gw)["running"]["trigger"], "file change");
    drop(gw);

    // A ConfigMap volume: portico.toml -> ..data/portico.toml, ..data -> ..v1;
    // an update writes ..v2 and renames a new ..data link over the old one.
    let dir = std::env::temp_dir().join(format!("portico-configmap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("..v1")).expect("dir");
    let (port, admin_port) = (common::free_port(), common::free_port());
    let filled = |text: String| {
        text.replace("{port}", &port.to_string())
            .replace("{admin}", &admin_port.to_string())
    };
    std::fs::write(dir.join("..v1/portico.toml"), filled(route("one"))).expect("write");
    symlink("..v1", &dir.join("..data"));
    symlink("..data/portico.toml", &dir.join("portico.toml"));
    let config_path = dir.join("portico.toml");
    let mut gw = Gateway {
        port,
        admin_port,
        port2: 0,
        config: config_path.clone(),
        proc: common::procs::spawn(
            Path::new(env!("CARGO_BIN_EXE_portico")),
            &["run", "--config", path_str(&config_path)],
            &[],
            "configmap",
            None,
        ),
    };
    assert!(
        common::procs::wait_for_port(admin_port, Duration::from_secs(10)),
        "{}",
        gw.proc.stderr_text()
    );
    std::fs::create_dir_all(dir.join("..v2")).expect("dir");
    std::fs::write(dir.join("..v2/portico.toml"), filled(route("two"))).expect("write");
    symlink("..v2", &dir.join("..data_tmp"));
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
    wait_for_version(&gw, 2);
    assert_eq!(fresh(port, "/r").map(|r| r.1).as_deref(), Some("two"));
    // And the next swap too (the watch follows the link to its new directory).
    std::fs::create_dir_all(dir.join("..v3")).expect("dir");
    std::fs::write(dir.join("..v3/portico.toml"), filled(route("three"))).expect("write");
    symlink("..v3", &dir.join("..data_tmp"));
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
    std::fs::remove_dir_all(dir.join("..v1")).expect("old version gone");
    wait_for_version(&gw, 3);
    assert_eq!(fresh(port, "/r").map(|r| r.1).as_deref(), Some("three"));
    gw.proc.signal(libc::SIGTERM);
    assert_eq!(gw.proc.wait_exit(Duration::from_secs(5)), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

#[test]
fn the_admin_token_guards_the_mutating_calls() {
    let text = format!(
        "{HEAD}[reload]\ncanary = false\nwatch = false\n[[route]]\nname = \"r\"\nrespond = {{ status = 200 }}\n"
    )
    .replace("listen = \"127.0.0.1:{admin}\"", "listen = \"127.0.0.1:{admin}\"\ntoken_env = \"PORTICO_TEST_ADMIN_TOKEN\"");
    let gw = Gateway::start_with(&text, &[("PORTICO_TEST_ADMIN_TOKEN", "s3cret-token")], None);
    for token in [None, Some("wrong"), Some("s3cret-toke")] {
        let (status, body) = admin(&gw, "POST", "/config/reload", token);
        assert_eq!(status, 401, "{token:?}: {body}");
    }
    assert_eq!(admin(&gw, "POST", "/config/promote", None).0, 401);
    assert_eq!(
        admin(&gw, "GET", "/config", None).0,
        200,
        "reading needs no token"
    );
    let (status, body) = admin(&gw, "POST", "/config/reload?wait=1", Some("s3cret-token"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        admin(&gw, "POST", "/config/rollback", Some("s3cret-token")).0,
        409,
        "no canary"
    );

    // `portico reload` finds the address and the token's variable in the file.
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["reload", "--wait", "--config", path_str(&gw.config)])
        .env("PORTICO_TEST_ADMIN_TOKEN", "s3cret-token")
        .output()
        .expect("portico reload");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("\"outcome\":\"promoted\""), "{said}");
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["reload", "--config", path_str(&gw.config)])
        .env_remove("PORTICO_TEST_ADMIN_TOKEN")
        .output()
        .expect("portico reload");
    assert!(!out.status.success(), "without the token");

    // A gateway that names a token never runs without one, and an admin listener
    // off loopback needs one.
    let dir = std::env::temp_dir().join(format!("portico-admin-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let unset = dir.join("unset.toml");
    let elsewhere = text
        .replace("{port}", &common::free_port().to_string())
        .replace("{admin}", &common::free_port().to_string());
    std::fs::write(&unset, elsewhere).expect("write");
    let run = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["run", "--config", path_str(&unset)])
        .env_remove("PORTICO_TEST_ADMIN_TOKEN")
        .output()
        .expect("portico run");
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        said.contains("PORTICO_TEST_ADMIN_TOKEN, which is not set or empty"),
        "{said}"
    );
    let open = dir.join("open.toml");
    std::fs::write(
        &open,
        "[admin]\nlisten = \"0.0.0.0:9901\"\n[[route]]\nname = \"r\"\nrespond = { status = 200 }\n",
    )
    .expect("write");
    let check = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["check", "--config", path_str(&open)])
        .output()
        .expect("portico check");
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(
        said.contains(&format!(
            "{}:2:10: the admin listener on 0.0.0.0:9901 is not on a loopback address",
            open.display()
        )),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
}

/// An upstream that records every request and answers `/health` with `health`,
/// everything else with 200 `name`.
fn probed(name: &'static str, health: u16) -> JsonUpstream {
    JsonUpstream::start(move |r: &Request| match r.path() {
        "/health" => Reply::text("health").status(health),
        _ => Reply::text(name),
    })
}

/// `(probes, other requests)` an upstream has had.
fn seen(u: &JsonUpstream) -> (usize, usize) {
    let requests = u.requests();
    let probes = requests.iter().filter(|r| r.path() == "/health").count();
    (probes, requests.len() - probes)
}

/// Whether `/stats` lists endpoint `addr` of `upstream`, and as healthy.
fn endpoint_health(gw: &Gateway, upstream: &str, addr: &str) -> Option<bool> {
    let r = common::Client::connect(gw.admin_port).get("/stats");
    let stats: serde_json::Value = serde_json::from_slice(&r.body).expect("stats json");
    stats["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["upstream"] == upstream && e["endpoint"] == addr)
        .and_then(|e| e["healthy"].as_bool())
}

/// `n` requests to `path` on new connections: the bodies.
fn bodies(port: u16, path: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| fresh(port, path).map_or_else(|| "no answer".into(), |r| r.1))
        .collect()
}

#[test]
fn health_checks_follow_reloads_added_endpoints_probed_removed_ones_not() {
    let (good, bad, gone) = (probed("good", 200), probed("bad", 503), probed("gone", 200));
    let check = "health_check = { path = \"/health\", interval_ms = 200, timeout_ms = 200, \
                 healthy_threshold = 2, unhealthy_threshold = 2 }";
    let base = format!(
        "{HEAD}[reload]\ncanary_ms = 200\nwatch = false\n\
         [[route]]\nname = \"keep\"\npath = \"/keep\"\nrespond = {{ status = 200 }}\n"
    );
    // Version 1 has no health checks: no prober runs until a reload brings one.
    let gw = Gateway::start(&base);
    let late = |check: &str, extra: &str| {
        format!(
            "{base}[[upstream]]\nname = \"late\"\nendpoints = [\"{}\", \"{}\"]\n{check}\n\
             [[route]]\nname = \"late\"\npath = \"/late\"\nupstream = \"late\"\n{extra}",
            good.addr(),
            bad.addr()
        )
    };
    let gone_upstream = format!(
        "[[upstream]]\nname = \"gone\"\nendpoints = [\"{}\"]\n{check}\n\
         [[route]]\nname = \"gone\"\npath = \"/gone\"\nupstream = \"gone\"\n",
        gone.addr()
    );
    let promoted = |gw: &Gateway| {
        let (status, answer) = reload(gw);
        assert_eq!(
            (status, &answer["outcome"]),
            (200, &"promoted".into()),
            "{answer}"
        );
    };

    // Version 2 adds two health-checked upstreams: every endpoint gets probed, the
    // failing one is marked unhealthy and gets no request.
    rewrite(&gw, &late(check, &gone_upstream));
    promoted(&gw);
    eventually(
        "the bad endpoint marked unhealthy",
        Duration::from_secs(10),
        || endpoint_health(&gw, "late", &bad.addr()) == Some(false),
    );
    eventually("every new endpoint probed", Duration::from_secs(5), || {
        seen(&good).0 > 0 && seen(&gone).0 > 0
    });
    assert_eq!(endpoint_health(&gw, "late", &good.addr()), Some(true));
    assert_eq!(endpoint_health(&gw, "gone", &gone.addr()), Some(true));
    let answered = bodies(gw.port, "/late", 20);
    assert!(answered.iter().all(|b| b == "good"), "{answered:?}");
    assert_eq!(seen(&bad).1, 0, "the unhealthy endpoint got requests");

    // Version 3 changes something else: the verdict carries over (the bad endpoint
    // gets nothing right after the reload, before any new probe could judge it),
    // and probing goes on.
    let probes_before = seen(&bad).0;
    rewrite(
        &gw,
        &late(
            check,
            &format!(
                "{gone_upstream}[[route]]\nname = \"more\"\npath = \"/more\"\n\
                 respond = {{ status = 200 }}\n"
            ),
        ),
    );
    promoted(&gw);
    let answered = bodies(gw.port, "/late", 20);
    assert!(answered.iter().all(|b| b == "good"), "{answered:?}");
    assert_eq!(seen(&bad).1, 0, "the verdict was lost by the reload");
    eventually("the bad endpoint probed on", Duration::from_secs(5), || {
        seen(&bad).0 > probes_before
    });

    // Version 4 removes `gone` and drops `late`'s health check: none of them is
    // probed any more, and the endpoint once unhealthy takes requests again.
    rewrite(&gw, &late("", ""));
    promoted(&gw);
    // A probe under way when the reload landed may still end (one tick and one
    // probe timeout).
    std::thread::sleep(Duration::from_millis(400));
    let counts = [seen(&good).0, seen(&bad).0, seen(&gone).0];
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        [seen(&good).0, seen(&bad).0, seen(&gone).0],
        counts,
        "endpoints probed after their health check went away"
    );
    eventually(
        "the once unhealthy endpoint serving",
        Duration::from_secs(5),
        || bodies(gw.port, "/late", 4).iter().any(|b| b == "bad"),
    );
    assert_eq!(endpoint_health(&gw, "gone", &gone.addr()), None);
    assert_eq!(fresh(gw.port, "/gone").map(|r| r.0), Some(404));
}

/// `/stats`' `ejected_workers` for endpoint `addr` of `upstream` (0 if unlisted).
fn ejected_workers(gw: &Gateway, upstream: &str, addr: &str) -> u64 {
    let r = common::Client::connect(gw.admin_port).get("/stats");
    let stats: serde_json::Value = serde_json::from_slice(&r.body).expect("stats json");
    stats["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["upstream"] == upstream && e["endpoint"] == addr)
        .and_then(|e| e["ejected_workers"].as_u64())
        .unwrap_or(0)
}

#[test]
fn an_ejected_endpoint_stays_ejected_across_a_reload_that_keeps_it() {
    let (ok, failing) = (
        probed("ok", 200),
        JsonUpstream::start(|_: &Request| Reply::text("err").status(500)),
    );
    let text = |extra: &str| {
        format!(
            "{HEAD}[reload]\ncanary_ms = 200\nwatch = false\n\
             [[upstream]]\nname = \"flaky\"\nendpoints = [\"{}\", \"{}\"]\n\
             outlier = {{ consecutive_failures = 2, base_ejection_ms = 60000 }}\n\
             [[route]]\nname = \"flaky\"\npath = \"/flaky\"\nupstream = \"flaky\"\n{extra}",
            ok.addr(),
            failing.addr()
        )
    };
    let gw = Gateway::start(&text(""));
    eventually(
        "the failing endpoint ejected on both workers",
        Duration::from_secs(15),
        || {
            bodies(gw.port, "/flaky", 4);
            ejected_workers(&gw, "flaky", &failing.addr()) == 2
        },
    );
    let before = failing.requests().len();
    rewrite(
        &gw,
        &text("[[route]]\nname = \"more\"\npath = \"/more\"\nrespond = { status = 200 }\n"),
    );
    let (status, answer) = reload(&gw);
    assert_eq!(
        (status, &answer["outcome"]),
        (200, &"promoted".into()),
        "{answer}"
    );
    let answered = bodies(gw.port, "/flaky", 20);
    assert!(answered.iter().all(|b| b == "ok"), "{answered:?}");
    assert_eq!(
        failing.requests().len(),
        before,
        "the ejection was lost by the reload"
    );
    assert_eq!(ejected_workers(&gw, "flaky", &failing.addr()), 2);
}
