//! Integration tests of `portico-load run --http2` against nginx (Debian's, with its
//! HTTP/2 module): h2c with prior knowledge on plaintext ports, h2 over TLS with ALPN
//! and a certificate made here by rcgen. nginx's access log is the server's own account
//! of what arrived: which connection carried each request, when it started and ended,
//! the protocol, the `:authority`, the body length and a header. Runs are 1–2 s;
//! nothing asserts a speed, only counts, concurrency and verdicts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{assert_bad_input, count, Pki, Upstream};

const NGINX: &str = "/usr/sbin/nginx";

/// nginx on free ports of 127.0.0.1, killed by PID when dropped:
/// - `h2c`: h2c with prior knowledge (`listen … http2`), `keepalive_requests` as given;
/// - `h2c_limited`: the same with `http2_max_concurrent_streams 4`;
/// - `h2`: TLS with ALPN h2 (and http/1.1);
/// - `h1`: plain HTTP/1.1 only; `h1_tls`: TLS without HTTP/2.
///
/// Every port answers `/` with 200, `/teapot` with 418, and proxies `/slow` to a
/// `portico-load serve --delay-ms 100` it starts.
struct Nginx {
    child: Child,
    _backend: Upstream,
    pki: Pki,
    h2c: SocketAddr,
    h2c_limited: SocketAddr,
    h2: SocketAddr,
    h1: SocketAddr,
    h1_tls: SocketAddr,
}

impl Nginx {
    fn start(name: &str, keepalive_requests: u32) -> Nginx {
        let pki = Pki::new(&format!("h2-{name}"));
        let backend = Upstream::start(&["--delay-ms", "100"]);
        let [h2c, h2c_limited, h2, h1, h1_tls] = free_addrs();
        let d = pki.dir.display();
        let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
        let locations = format!(
            "location / {{ return 200 \"hello\\n\"; }}\n\
             location /teapot {{ return 418; }}\n\
             location /slow {{ proxy_pass http://{}; }}\n",
            backend.addr
        );
        let conf = format!(
            "daemon off; master_process off; worker_processes 1;\n\
             error_log {d}/error.log warn; pid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               log_format c '$connection $connection_requests $msec $request_time $status $server_protocol $host $content_length $http_x_key';\n\
               access_log {d}/access.log c;\n\
               keepalive_requests {keepalive_requests};\n\
               client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
               ssl_certificate {cert}; ssl_certificate_key {key};\n\
               server {{ listen {h2c} http2; listen {h2} ssl http2; listen {h1}; listen {h1_tls} ssl;\n{locations} }}\n\
               server {{ listen {h2c_limited} http2; http2_max_concurrent_streams 4;\n{locations} }}\n\
             }}\n"
        );
        let conf_path = pki.dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let child = Command::new(NGINX)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&pki.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx {
            child,
            _backend: backend,
            pki,
            h2c,
            h2c_limited,
            h2,
            h1,
            h1_tls,
        };
        for addr in [h2c, h2c_limited, h2, h1, h1_tls] {
            wait_for(addr);
        }
        nginx
    }

    fn ca(&self) -> String {
        self.pki.path("ca.pem")
    }

    /// The access log so far, one entry per request.
    fn log(&self) -> Vec<Logged> {
        let text = std::fs::read_to_string(self.pki.dir.join("access.log")).unwrap_or_default();
        text.lines().map(Logged::parse).collect()
    }

    /// Empties the access log (between runs of one test).
    fn clear_log(&self) {
        std::fs::write(self.pki.dir.join("access.log"), "").expect("truncate access.log");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One access-log line.
#[derive(Debug)]
struct Logged {
    connection: u64,
    /// When the request started and ended, seconds (ms resolution).
    start: f64,
    end: f64,
    status: u16,
    protocol: String,
    host: String,
    content_length: String,
    x_key: String,
}

impl Logged {
    fn parse(line: &str) -> Logged {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 9, "log line {line:?}");
        let end: f64 = f[2].parse().unwrap();
        let took: f64 = f[3].parse().unwrap();
        Logged {
            connection: f[0].parse().unwrap(),
            start: end - took,
            end,
            status: f[4].parse().unwrap(),
            protocol: f[5].to_string(),
            host: f[6].to_string(),
            content_length: f[7].to_string(),
            x_key: f[8].to_string(),
        }
    }
}

/// The most requests one connection had in flight at once: for each request, how
/// many requests of its connection were in flight at its midpoint.
fn max_concurrency_per_connection(log: &[Logged]) -> BTreeMap<u64, usize> {
    let mut most = BTreeMap::new();
    for r in log {
        let mid = (r.start + r.end) / 2.0;
        let n = log
            .iter()
            .filter(|o| o.connection == r.connection && o.start <= mid && mid <= o.end)
            .count();
        let m = most.entry(r.connection).or_insert(0);
        *m = (*m).max(n);
    }
    most
}

fn connections(log: &[Logged]) -> BTreeSet<u64> {
    log.iter().map(|r| r.connection).collect()
}

fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap())
}

fn wait_for(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nginx does not listen on {addr}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// `portico-load run ARGS --json FILE`; asserts success and returns the JSON.
fn run_json(nginx: &Nginx, args: &[&str]) -> Value {
    let json = nginx.pki.dir.join("out.json");
    common::run_json(json.to_str().expect("utf-8 path"), args).0
}

fn assert_no_errors(v: &Value) {
    for kind in ["connect", "timeout", "reset", "parse", "tls"] {
        assert_eq!(v["errors"][kind], 0, "{kind}: {v}");
    }
}

fn url(scheme: &str, addr: SocketAddr, path: &str) -> String {
    format!("{scheme}://{addr}{path}")
}

/// h2c with prior knowledge: statuses counted per URL as over HTTP/1.1, every request
/// nginx logged arrived over HTTP/2 on one of the run's 2 connections (the check
/// before the run sends a PING, no request), `-H Host` became the `:authority`, and
/// the header file's lines were sent in turn.
#[test]
fn h2c_counts_requests_and_statuses() {
    let nginx = Nginx::start("h2c", 1_000_000);
    let keys = nginx.pki.dir.join("keys.txt");
    std::fs::write(&keys, "X-Key: k0\nX-Key: k1\nX-Key: k2\n").unwrap();
    let v = run_json(
        &nginx,
        &[
            &url("http", nginx.h2c, "/"),
            &url("http", nginx.h2c, "/teapot"),
            "--http2",
            "-c",
            "2",
            "--streams",
            "4",
            "-d",
            "1s",
            "-H",
            "Host: api.example.test",
            "--header-file",
            keys.to_str().unwrap(),
        ],
    );
    assert_no_errors(&v);
    assert_eq!(v["protocol"], "h2c", "{v}");
    assert_eq!(count(&v, "/streams"), 4, "{v}");
    assert_eq!(count(&v, "/connections"), 2, "{v}");
    let requests = count(&v, "/requests");
    let (ok, teapot) = (count(&v, "/statuses/200"), count(&v, "/statuses/418"));
    assert!(ok > 0 && teapot > 0, "{v}");
    assert_eq!(ok + teapot, requests, "{v}");

    let log = nginx.log();
    // Requests still in flight when the window ended were sent but not measured.
    assert!(
        (requests as usize..=requests as usize + 8).contains(&log.len()),
        "{} logged, {requests} measured",
        log.len()
    );
    assert_eq!(connections(&log).len(), 2, "{log:?}");
    assert!(log.iter().all(|r| r.protocol == "HTTP/2.0"), "{log:?}");
    assert!(log.iter().all(|r| r.host == "api.example.test"), "{log:?}");
    for key in ["k0", "k1", "k2"] {
        let n = log.iter().filter(|r| r.x_key == key).count();
        assert!(
            n * 3 + 3 >= log.len() && n * 3 <= log.len() + 3,
            "{key}: {n}"
        );
    }
    let logged_418 = log.iter().filter(|r| r.status == 418).count() as u64;
    assert!(logged_418 >= teapot && logged_418 <= teapot + 8, "{log:?}");
}

/// `--streams 8`: each of the 2 connections carries 8 requests at once (nginx's log
/// of a 100 ms `/slow` shows 8 in flight per connection, never more); a server that
/// allows 4 concurrent streams gets at most 4 at once, and the rest wait in the tool
/// without errors.
#[test]
fn streams_multiplex_on_each_connection() {
    let nginx = Nginx::start("streams", 1_000_000);
    // The most requests in flight on each connection nginx saw.
    let most_in_flight = |addr: SocketAddr| {
        nginx.clear_log();
        let url = url("http", addr, "/slow");
        let v = run_json(
            &nginx,
            &[&url, "--http2", "-c", "2", "--streams", "8", "-d", "1s"],
        );
        assert_no_errors(&v);
        let log = nginx.log();
        assert!(log.iter().all(|r| r.status == 200), "{log:?}");
        let most = max_concurrency_per_connection(&log);
        assert_eq!(most.len(), 2, "two connections: {most:?}");
        most.into_values().collect::<Vec<_>>()
    };
    assert_eq!(most_in_flight(nginx.h2c), [8, 8], "8 in flight on each");
    assert_eq!(
        most_in_flight(nginx.h2c_limited),
        [4, 4],
        "the server's limit"
    );
}

/// h2 over TLS: ALPN h2, the certificate verified against the test CA, one handshake
/// per connection; a POST body arrives whole with its Content-Length; open loop keeps
/// its rate over connections × streams lanes.
#[test]
fn h2_over_tls_posts_and_keeps_an_open_loop_rate() {
    let nginx = Nginx::start("tls", 1_000_000);
    let body = nginx.pki.dir.join("body.bin");
    std::fs::write(&body, vec![b'x'; 3000]).unwrap();
    let ca = nginx.ca();
    let v = run_json(
        &nginx,
        &[
            &url("https", nginx.h2, "/"),
            "--http2",
            "--cacert",
            &ca,
            "-c",
            "2",
            "--streams",
            "2",
            "-d",
            "2s",
            "--rate",
            "200",
            "--method",
            "POST",
            "--body-file",
            body.to_str().unwrap(),
        ],
    );
    assert_no_errors(&v);
    assert_eq!(v["protocol"], "h2", "{v}");
    assert_eq!(count(&v, "/requests"), 400, "{v}");
    assert_eq!(count(&v, "/statuses/200"), 400, "{v}");
    assert_eq!(count(&v, "/tls/handshakes"), 2, "one per connection: {v}");
    let log = nginx.log();
    assert_eq!(log.len(), 400, "{log:?}");
    assert_eq!(connections(&log).len(), 2);
    assert!(log.iter().all(|r| r.protocol == "HTTP/2.0"), "{log:?}");
    assert!(log.iter().all(|r| r.content_length == "3000"), "{log:?}");
}

/// `--new-connection`: every request on its own connection (and, over TLS, its own
/// handshake, resumed after the first).
#[test]
fn a_new_connection_per_request() {
    let nginx = Nginx::start("new", 1_000_000);
    let ca = nginx.ca();
    let v = run_json(
        &nginx,
        &[
            &url("https", nginx.h2, "/"),
            "--http2",
            "--new-connection",
            "--cacert",
            &ca,
            "-c",
            "2",
            "-d",
            "1s",
        ],
    );
    assert_no_errors(&v);
    let requests = count(&v, "/requests");
    assert!(requests > 2, "{v}");
    assert_eq!(count(&v, "/tls/handshakes"), requests, "{v}");
    assert_eq!(v["new_connection"], true, "{v}");
    let log = nginx.log();
    assert_eq!(
        connections(&log).len(),
        log.len(),
        "one request each: {log:?}"
    );
}

/// nginx sends GOAWAY after `keepalive_requests` (here 50) requests on a connection:
/// the run goes on over new connections. Requests that were already sent above the
/// GOAWAY's last stream id count as `reset` (as h2load counts them); nothing hangs or
/// fails otherwise.
#[test]
fn goaway_moves_the_load_to_new_connections() {
    let nginx = Nginx::start("goaway", 50);
    let v = run_json(
        &nginx,
        &[
            &url("http", nginx.h2c, "/"),
            "--http2",
            "-c",
            "2",
            "--streams",
            "4",
            "-d",
            "1s",
        ],
    );
    let requests = count(&v, "/requests");
    let log = nginx.log();
    assert!(
        connections(&log).len() as u64 >= requests / 50,
        "{} connections for {requests} requests",
        connections(&log).len()
    );
    for kind in ["connect", "timeout", "parse"] {
        assert_eq!(v["errors"][kind], 0, "{kind}: {v}");
    }
    let reset = count(&v, "/errors/reset");
    assert!(reset * 10 <= requests, "{reset} reset of {requests}: {v}");
}

/// A server that does not speak HTTP/2 stops the run before it starts, with one line
/// and exit status 2: a plaintext port without h2c, a TLS port without ALPN h2, and
/// portico-load's own HTTP/1.1 server.
#[test]
fn a_server_without_http2_is_refused_before_the_run() {
    let nginx = Nginx::start("refused", 1_000_000);
    let ca = nginx.ca();
    let serve = Upstream::start(&[]);
    let h1 = url("http", nginx.h1, "/");
    let h1_tls = url("https", nginx.h1_tls, "/");
    let serve_url = url("http", serve.addr, "/");
    let cases: [(Vec<&str>, &str); 3] = [
        (vec![&h1], "does the server speak h2c"),
        (vec![&h1_tls, "--cacert", &ca], "ALPN"),
        (vec![&serve_url], "does the server speak h2c"),
    ];
    for (args, expected) in cases {
        assert_bad_input(
            &[&["run", "--http2", "-d", "1s"], &args[..]].concat(),
            expected,
        );
    }
    // The HTTP/1.1 port answers the preface (`PRI * HTTP/2.0`) as a bad request;
    // nothing was served.
    let log = nginx.log();
    assert!(log.iter().all(|r| r.status == 400), "{log:?}");
}

/// Options that make no sense together are one line and exit status 2.
#[test]
fn bad_http2_input_is_one_line_and_exit_status_2() {
    let nginx = Nginx::start("bad", 1_000_000);
    let h2c = url("http", nginx.h2c, "/");
    let cases: [(Vec<&str>, &str); 5] = [
        (vec![&h2c, "--streams", "2"], "--streams needs --http2"),
        (
            vec![&h2c, "--http2", "--new-connection", "--streams", "2"],
            "--new-connection",
        ),
        (
            vec![&h2c, "--http2", "-H", "Connection: close"],
            "connection-specific",
        ),
        (
            vec![&h2c, "--http2", "-H", "TE: gzip"],
            "connection-specific",
        ),
        (vec![&h2c, "--http2", "--streams", "0"], "--streams"),
    ];
    for (args, expected) in cases {
        assert_bad_input(&[&["run", "-d", "1s"], &args[..]].concat(), expected);
    }
}
