//! The process as an operator sees it: `check`, start-up, worker layout and drivers,
//! graceful drain on SIGTERM.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::procs::write_config;
use common::{Gateway, Upstream};

fn portico() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portico"))
}

#[test]
fn check_accepts_the_bundled_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = portico()
        .args(["check", "--config", &format!("{root}/config/portico.toml")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_every_problem_with_file_line_and_column() {
    let path = write_config(
        "bad.toml",
        r#"[server]
listen = ["not-an-address"]
wrokers = 2

[[upstream]]
name = "a"
endpoints = ["127.0.0.1:9001"]

[[upstream]]
name = "a"
endpoints = ["127.0.0.1:9002"]

[[route]]
name = "r"
upstream = "missing"

[[route]]
name = "s"
path_prefix = "/x"
upstream = "a"
balance = "fastest"
"#,
    );
    let out = portico()
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.to_str().unwrap();
    // Unknown key in [server] (the section stops there), duplicate upstream name,
    // unknown upstream, unknown key in a route.
    assert!(
        err.contains(&format!("{file}:3:1:")) && err.contains("wrokers"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:10:8: duplicate upstream name \"a\"")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:15:12: route \"r\" names unknown upstream \"missing\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:21:1:")) && err.contains("balance"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 4, "{err}");
}

#[test]
fn check_reports_bad_addresses_and_values() {
    let path = write_config(
        "bad2.toml",
        r#"[server]
listen = ["127.0.0.1:80800"]
workers = 0
max_uri_bytes = 0

[[upstream]]
name = "a"
endpoints = ["no-port-here"]
balance = "round_robin"
hash_on = "client_ip"

[[route]]
name = "r"
path = "/a/../b"
upstream = "a"
"#,
    );
    let out = portico()
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [":2:11:", ":3:11:", ":8:14:", ":10:11:", ":14:8:"] {
        assert!(err.contains(expected), "missing {expected} in:\n{err}");
    }
}

#[test]
fn a_taken_port_fails_start_up_with_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let path = write_config(
        "taken.toml",
        &format!("[server]\nlisten = [\"127.0.0.1:{port}\"]\nworkers = 1\n[[route]]\nname = \"r\"\nrespond = {{ status = 200 }}\n"),
    );
    let out = portico()
        .args(["run", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

const STATIC: &str = r#"
[server]
listen = ["127.0.0.1:{port}"]
workers = WORKERS
[[route]]
name = "root"
respond = { status = 200, body = "hi" }
[log]
access_log = "off"
"#;

#[test]
fn each_worker_logs_its_core_and_io_uring_driver() {
    let gw = Gateway::start(&STATIC.replace("WORKERS", "2"));
    let mut c = gw.client();
    assert_eq!(c.get("/").text(), "hi");
    let log = gw.proc.stderr_text();
    assert!(log.contains("worker 0 on core"), "{log}");
    assert!(log.contains("worker 1 on core"), "{log}");
}

#[test]
fn forced_epoll_fallback_serves_requests() {
    let gw = Gateway::start_with(
        &STATIC.replace("WORKERS", "1"),
        &[("MONOIO_FORCE_LEGACY_DRIVER", "1")],
        None,
    );
    let mut c = gw.client();
    for _ in 0..3 {
        assert_eq!(c.get("/").text(), "hi");
    }
    let log = gw.proc.stderr_text();
    assert!(log.contains("driver epoll"), "{log}");
    assert!(!log.contains("driver io_uring"), "{log}");
}

#[test]
fn pinning_follows_the_cpu_set_the_process_started_with() {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cores < 2 || Command::new("taskset").arg("-V").output().is_err() {
        eprintln!("skipped: needs 2 cores and taskset");
        return;
    }
    let gw = Gateway::start_with(&STATIC.replace("WORKERS", "\"auto\""), &[], Some("1"));
    let mut c = gw.client();
    assert_eq!(c.get("/").text(), "hi");
    let log = gw.proc.stderr_text();
    assert!(log.contains("worker 0 on core 1,"), "{log}");
    assert!(
        !log.contains("worker 1"),
        "auto on one allowed core is one worker: {log}"
    );
}

#[test]
fn sigterm_drains_an_in_flight_slow_request_then_exits_zero() {
    let up = Upstream::start(&["--delay-ms", "1000"]);
    let (mut gw, slow) = draining_gateway(&up, 5000);
    let port = gw.port;
    let signalled = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    // New connections are refused while the slow request is still running.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting during drain"
    );
    let r = slow
        .join()
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let code = gw.proc.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(4));
}

#[test]
fn drain_gives_up_after_the_drain_timeout() {
    let up = Upstream::start(&["--delay-ms", "10000"]);
    let (mut gw, _slow) = draining_gateway(&up, 500);
    let signalled = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    assert_eq!(gw.proc.wait_exit(Duration::from_secs(5)), Some(0));
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn admin_health_and_readiness() {
    let gw = Gateway::start(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[[route]]\nname = \"r\"\nrespond = { status = 204 }\n",
    );
    let mut c = common::Client::connect(gw.admin_port);
    let r = c.get("/healthz");
    assert_eq!(r.status, 200);
    let mut c = common::Client::connect(gw.admin_port);
    assert_eq!(c.get("/ready").status, 200);
    // The data plane does not serve admin paths.
    let mut c = gw.client();
    assert_eq!(c.get("/healthz").status, 204);
}

#[test]
fn access_log_lines_go_to_the_configured_file() {
    let dir = std::env::temp_dir().join(format!("portico-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let _ = std::fs::remove_file(&log);
    let gw = Gateway::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:{{port}}\"]\nworkers = 1\n[log]\naccess_log = \"{}\"\n[[route]]\nname = \"hello\"\nrespond = {{ status = 201, body = \"hi\" }}\n",
        log.display()
    ));
    let mut c = gw.client();
    c.send(b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\nX-Request-Id: trace-me\r\n\r\n");
    assert_eq!(c.response().unwrap().status, 201);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains("trace-me") {
        std::thread::sleep(Duration::from_millis(50));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    let line = text
        .lines()
        .find(|l| l.contains("trace-me"))
        .unwrap_or_else(|| panic!("no line in {text:?}"));
    let fields: Vec<&str> = line.split(' ').collect();
    assert!(
        fields[0].ends_with('Z') && fields[0].contains('T'),
        "{line}"
    );
    assert_eq!(fields[1], "127.0.0.1");
    assert!(line.contains("\"GET /a?b=1 HTTP/1.1\" 201 "), "{line}");
    // ... route, endpoint, request ID, attempts, trace ID (none without [tracing]).
    assert!(line.ends_with(" hello - trace-me 0 -"), "{line}");
}

/// A gateway in front of `up` (a slow upstream) with one request in flight to it.
fn draining_gateway(
    up: &Upstream,
    drain_timeout_ms: u64,
) -> (Gateway, std::thread::JoinHandle<Option<common::Response>>) {
    let gw = Gateway::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:{{port}}\"]\nworkers = 1\ndrain_timeout_ms = {drain_timeout_ms}\n[log]\naccess_log = \"off\"\n\
         [[upstream]]\nname = \"slow\"\nendpoints = [\"{}\"]\n[[route]]\nname = \"slow\"\nupstream = \"slow\"\n",
        up.addr()
    ));
    let port = gw.port;
    let slow = std::thread::spawn(move || {
        let mut c = common::Client::connect(port);
        c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
        c.response()
    });
    std::thread::sleep(Duration::from_millis(300));
    (gw, slow)
}

#[test]
fn a_different_stop_signal_during_the_drain_lets_it_finish() {
    let up = Upstream::start(&["--delay-ms", "1000"]);
    let (mut gw, slow) = draining_gateway(&up, 5000);
    gw.proc.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(100));
    gw.proc.signal(libc::SIGTERM);
    let r = slow
        .join()
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(r.status, 200);
    assert_eq!(gw.proc.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn the_same_stop_signal_twice_exits_at_once() {
    let up = Upstream::start(&["--delay-ms", "3000"]);
    let (mut gw, _slow) = draining_gateway(&up, 5000);
    gw.proc.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(100));
    let second = Instant::now();
    gw.proc.signal(libc::SIGINT);
    assert_eq!(gw.proc.wait_exit(Duration::from_secs(2)), Some(1));
    assert!(second.elapsed() < Duration::from_secs(1));
}
