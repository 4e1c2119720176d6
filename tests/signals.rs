//! Signals are never lost (issue 9, kind 6): a burst of SIGHUPs while a certificate
//! changes ends with every worker on the newest certificate (each SIGHUP reloads
//! the whole configuration, certificates included; the newest supersedes a canary
//! in progress), and a stop signal right after the burst still drains and exits 0.

mod common;

use std::time::{Duration, Instant};

use common::pki::{path_str, Pki};
use common::{tls_client, Gateway};

/// Handshakes with the gateway on `port` and returns the served certificate's CN.
fn served_cn(port: u16, ca: &std::path::Path) -> String {
    tls_client::connect(port, ca, "api.example.com")
        .map(|s| tls_client::peer_cn(&s))
        .unwrap_or_default()
}

#[test]
fn a_sighup_burst_while_the_certificate_changes_leaves_every_worker_on_the_newest() {
    let pki = Pki::new("sighup");
    let old = pki.server("old", &["old.example.com", "api.example.com"]);
    let new = pki.server("new", &["new.example.com", "api.example.com"]);
    let live = pki.server("live", &["old.example.com", "api.example.com"]);
    std::fs::copy(&old.cert, &live.cert).expect("copy");
    std::fs::copy(&old.key, &live.key).expect("copy");
    let mut gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port2}}"]
workers = 2
drain_timeout_ms = 2000
[[server.tls]]
listen = "127.0.0.1:{{port}}"
default_cert = "api"
[[server.tls.cert]]
name = "api"
sni = ["api.example.com"]
cert = "{}"
key = "{}"
[log]
access_log = "off"
[reload]
canary_ms = 200
[[route]]
name = "r"
respond = {{ status = 200 }}
"#,
        path_str(&live.cert),
        path_str(&live.key)
    ));
    assert_eq!(served_cn(gw.port, &pki.ca), "old.example.com");

    // 100 SIGHUPs, the new files, 100 more, 200 µs apart (closer ones merge into one
    // pending signal): dozens of reloads within one worker tick. The reloads in the
    // middle may read a new certificate with the old key (refused and logged).
    for i in 0..200 {
        if i == 100 {
            std::fs::copy(&new.cert, &live.cert).expect("copy");
            std::fs::copy(&new.key, &live.key).expect("copy");
        }
        gw.proc.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_micros(200));
    }
    // Many new connections (spread over both workers by SO_REUSEPORT) must all see
    // the new certificate; workers install what was posted within their tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    let seen = loop {
        let seen: Vec<String> = (0..64).map(|_| served_cn(gw.port, &pki.ca)).collect();
        if seen.iter().all(|cn| cn == "new.example.com") || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = gw.proc.stderr_text();
    assert!(
        seen.iter().all(|cn| cn == "new.example.com"),
        "some connections still get another certificate: {seen:?}\n{log}"
    );
    assert!(!log.contains("queue is full"), "{log}");
    assert!(log.contains("serves on every worker"), "{log}");

    // A stop signal right behind a burst is not lost either.
    for _ in 0..50 {
        gw.proc.signal(libc::SIGHUP);
    }
    gw.proc.signal(libc::SIGTERM);
    assert_eq!(gw.proc.wait_exit(Duration::from_secs(5)), Some(0));
}
