//! Integration tests of HTTPS: `portico-load run https://…` against `portico-load
//! serve --tls`, real processes on 127.0.0.1, with a CA and a server certificate made
//! here by rcgen. Runs are 1 s; nothing asserts a speed, only counts and verdicts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rcgen::KeyPair;
use serde_json::Value;

mod common;

use common::{assert_bad_input, count, portico_load, Pki, Upstream};

/// `portico-load run ARGS --json FILE` over TLS; asserts success and the report's TLS
/// lines, and returns the JSON.
fn run_json(pki: &Pki, args: &[&str]) -> Value {
    let (v, stdout) = common::run_json(&pki.path("out.json"), args);
    assert!(stdout.contains("\n  tls        TLS 1."), "{stdout}");
    assert!(stdout.contains("\n  handshakes "), "{stdout}");
    v
}

/// With the CA given, the run verifies the certificate against the URL's IP address
/// (no SNI for an IP) and counts statuses as over plain HTTP; responses of several
/// TLS records (a 200 KB chunked body) are read whole. Keep-alive: one handshake per
/// connection.
#[test]
fn a_closed_loop_verified_with_cacert_counts_statuses() {
    let pki = Pki::new("closed");
    let upstream = Upstream::start_tls(&pki, &[]);
    let v = run_json(
        &pki,
        &[
            &upstream.url("/ok"),
            &upstream.url("/limited?status=429"),
            &upstream.url("/big?bytes=200000&chunked=1"),
            "-c",
            "3",
            "-d",
            "1s",
            "--cacert",
            &pki.path("ca.pem"),
        ],
    );
    let total = count(&v, "/requests");
    let status = |code: &str| v["statuses"][code].as_u64().unwrap_or(0);
    assert!(total > 3, "{v}");
    assert_eq!(status("200") + status("429"), total, "{v}");
    assert!(status("200") > 0 && status("429") > 0, "{v}");
    for kind in ["connect", "timeout", "reset", "parse", "tls"] {
        assert_eq!(v["errors"][kind], 0, "{kind}: {v}");
    }
    let tls = &v["tls"];
    assert_eq!(tls["verify"], "cacert", "{v}");
    assert_eq!(tls["server_name"], "127.0.0.1", "{v}");
    assert_eq!(tls["sni"], Value::Null, "{v}");
    assert_eq!(count(&v, "/tls/handshakes"), 3, "one per connection: {v}");
    assert_eq!(count(&v, "/tls/versions/1.3"), 3, "{v}");
    assert!(count(&v, "/tls/handshake_us/p99") > 0, "{v}");
    assert_eq!(v["new_connection"], false);
}

/// Without --cacert the system roots do not know the test CA: the handshake before
/// the run fails, and the run does not start (exit status 2, one line saying why).
/// A name the certificate does not cover fails the same way.
#[test]
fn an_unverifiable_certificate_stops_the_run_before_it_starts() {
    let pki = Pki::new("untrusted");
    let upstream = Upstream::start_tls(&pki, &[]);
    let url = upstream.url("/");
    let ca = pki.path("ca.pem");
    let cases: [(Vec<&str>, &str); 2] = [
        (vec!["run", &url, "-d", "1s"], "--cacert"),
        (
            vec!["run", &url, "--sni", "other.test", "--cacert", &ca],
            "not valid for name \"other.test\"",
        ),
    ];
    for (args, expected) in cases {
        assert_bad_input(&args, expected);
    }
}

/// --insecure takes any certificate for any name.
#[test]
fn insecure_skips_verification() {
    let pki = Pki::new("insecure");
    let upstream = Upstream::start_tls(&pki, &[]);
    let v = run_json(
        &pki,
        &[
            &upstream.url("/"),
            "-c",
            "2",
            "-d",
            "1s",
            "--insecure",
            "--sni",
            "not-on-the-certificate.test",
        ],
    );
    assert!(count(&v, "/requests") > 0, "{v}");
    assert_eq!(v["errors"]["tls"], 0, "{v}");
    assert_eq!(v["tls"]["verify"], "insecure", "{v}");
    assert_eq!(v["tls"]["sni"], "not-on-the-certificate.test", "{v}");
}

/// --new-connection: one handshake per request. Resumed after each connection's first
/// (TLS 1.3 and 1.2 alike); with --no-resume every handshake is full.
#[test]
fn a_new_connection_per_request_is_a_handshake_per_request() {
    let pki = Pki::new("new-connection");
    let upstream = Upstream::start_tls(&pki, &[]);
    let url = upstream.url("/");
    let ca = pki.path("ca.pem");
    let base = [
        &url,
        "-c",
        "2",
        "-d",
        "1s",
        "--new-connection",
        "--cacert",
        &ca,
    ];

    for version in ["1.3", "1.2"] {
        let v = run_json(&pki, &[&base[..], &["--tls-version", version]].concat());
        let requests = count(&v, "/requests");
        assert!(requests > 2, "{v}");
        assert_eq!(count(&v, "/tls/handshakes"), requests, "{v}");
        assert_eq!(count(&v, &format!("/tls/versions/{version}")), requests);
        assert!(
            count(&v, "/tls/full") <= 2,
            "only each connection's first: {v}"
        );
        assert_eq!(v["tls"]["version_pinned"], version, "{v}");
        assert_eq!(v["new_connection"], true);
        assert_eq!(count(&v, "/statuses/200"), requests, "{v}");
    }

    let v = run_json(&pki, &[&base[..], &["--no-resume"]].concat());
    let requests = count(&v, "/requests");
    assert_eq!(count(&v, "/tls/handshakes"), requests, "{v}");
    assert_eq!(count(&v, "/tls/full"), requests, "{v}");
    assert_eq!(count(&v, "/tls/resumed"), 0, "{v}");
    assert_eq!(v["tls"]["resumption"], false, "{v}");
}

/// The ClientHello carries `--sni`, or the URL's host name; an IP address is not sent.
/// It offers ALPN http/1.1.
/// Seen by a listener that records the first TLS record and hangs up (so the run
/// itself stops with exit status 2).
#[test]
fn sni_is_the_sni_option_and_no_ip_address() {
    let hello = |extra: &[&str]| -> Vec<u8> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut record = vec![0u8; 5];
                if stream.read_exact(&mut record).is_ok() {
                    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
                    record.resize(5 + len, 0);
                    let _ = stream.read_exact(&mut record[5..]);
                }
                let _ = tx.send(record);
            }
        });
        let url = format!("https://{addr}/");
        let out = portico_load(&[&["run", url.as_str(), "--insecure"], extra].concat());
        assert_eq!(out.status.code(), Some(2));
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a ClientHello")
    };
    let record = hello(&[]);
    assert_eq!(client_hello_sni(&record), None);
    let alpn = client_hello_extensions(&record)
        .into_iter()
        .find(|(kind, _)| *kind == 16)
        .map(|(_, data)| data.to_vec());
    assert_eq!(alpn.as_deref(), Some(&b"\x00\x09\x08http/1.1"[..]), "ALPN");
    let record = hello(&["--sni", "api.example.test"]);
    assert_eq!(
        client_hello_sni(&record).as_deref(),
        Some("api.example.test")
    );
}

/// The extensions of the ClientHello in `record`, as (type, data); panics on a
/// record that is not one.
fn client_hello_extensions(record: &[u8]) -> Vec<(u16, &[u8])> {
    assert_eq!(record.first(), Some(&22), "a handshake record");
    let body = &record[5..]; // record header
    assert_eq!(body.first(), Some(&1), "a ClientHello");
    let number = |at: usize, bytes: usize| -> usize {
        body[at..at + bytes]
            .iter()
            .fold(0, |n, &b| n << 8 | usize::from(b))
    };
    let mut at = 4 + 2 + 32; // handshake header, legacy version, random
    for len_bytes in [1, 2, 1] {
        // session id, cipher suites, compression methods
        at += len_bytes + number(at, len_bytes);
    }
    let end = at + 2 + number(at, 2);
    at += 2;
    let mut extensions = Vec::new();
    while at < end {
        let (kind, len) = (number(at, 2) as u16, number(at + 2, 2));
        extensions.push((kind, &body[at + 4..at + 4 + len]));
        at += 4 + len;
    }
    extensions
}

/// The host name of a ClientHello's server_name extension, if it has one.
fn client_hello_sni(record: &[u8]) -> Option<String> {
    let (_, data) = client_hello_extensions(record)
        .into_iter()
        .find(|(kind, _)| *kind == 0)?;
    // server_name_list length (2), name type (1), host name length (2), host name.
    Some(String::from_utf8_lossy(&data[5..]).into_owned())
}

/// Bad TLS input, in `run` and in `serve`, is one line and exit status 2.
#[test]
fn bad_tls_input_is_one_line_and_exit_status_2() {
    let pki = Pki::new("bad");
    let upstream = Upstream::start_tls(&pki, &[]);
    let url = upstream.url("/");
    let plain = upstream.url("/").replacen("https", "http", 1);
    let not_pem = pki.path("server.key");
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("server.pem"),
        pki.path("server.key"),
    );
    let other_key = pki.dir.join("other.key");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let other_key = path_str(&other_key);
    let http_only = format!("https://{}/", http_only_server());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", &url, "--cacert", "/nonexistent/ca.pem"],
            "cannot read --cacert /nonexistent/ca.pem",
        ),
        (
            vec!["run", &url, "--cacert", &not_pem],
            "no PEM certificate",
        ),
        (
            vec!["run", &url, "--cacert", &ca, "--insecure"],
            "cannot be used with",
        ),
        (vec!["run", &url, "--tls-version", "1.1"], "--tls-version"),
        (
            vec!["run", &url, "--sni", "no spaces please", "--insecure"],
            "not a valid TLS server name",
        ),
        (vec!["run", &plain, "--insecure"], "need https URLs"),
        (vec!["run", &url, &plain, "--insecure"], "cannot be mixed"),
        (
            vec!["run", &http_only, "--insecure"],
            "does the server speak TLS on this port?",
        ),
        (
            vec!["serve", "--tls", "--cert", &cert, "--key", other_key],
            "--cert",
        ),
        (
            vec![
                "serve",
                "--tls",
                "--cert",
                "/nonexistent.pem",
                "--key",
                &key,
            ],
            "cannot read --cert /nonexistent.pem",
        ),
        (vec!["serve", "--tls", "--cert", &cert], "--key"),
        (vec!["serve", "--cert", &cert, "--key", &key], "--tls"),
    ];
    for (args, expected) in cases {
        assert_bad_input(&args, expected);
    }
}

/// A server on 127.0.0.1 that answers anything with a plain HTTP 400, for as long as
/// the test process lives.
fn http_only_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    addr
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
