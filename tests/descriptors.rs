//! File descriptors running out (issue 9, kind 5): with a low `ulimit -n` and its
//! descriptors held by idle keep-alive clients, every new client gets an answer
//! (served, or refused with 503) or a clear refusal of the connection, none is left
//! hanging in the accept queue, and the log stays small.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::procs::limit_descriptors;
use common::{Gateway, Upstream};

const CLIENTS: usize = 600;
/// Idle keep-alive connections opened first: more than the limit allows.
const HOLDERS: usize = 200;
/// The gateway's descriptor limit (soft and hard, so it cannot raise it).
const NOFILE: u64 = 128;
/// Longer than any answer may take here; a client still waiting then hangs.
const CLIENT_PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// An HTTP answer with this status.
    Answered(u16),
    /// The connection was refused, reset or closed without an answer.
    Refused,
    /// Nothing within `CLIENT_PATIENCE`.
    Hung,
}

/// Connects, sends one request and reads until the gateway closes or answers.
fn one_client(port: u16) -> Outcome {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return Outcome::Refused;
    };
    let _ = s.set_read_timeout(Some(CLIENT_PATIENCE));
    if s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return Outcome::Refused;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Outcome::Hung
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&got);
    match text.strip_prefix("HTTP/1.1 ").and_then(|t| t.get(..3)) {
        Some(code) => code.parse().map_or(Outcome::Refused, Outcome::Answered),
        None => Outcome::Refused,
    }
}

#[test]
fn with_a_low_descriptor_limit_every_client_gets_an_answer_and_the_log_stays_small() {
    let up = Upstream::start(&["--delay-ms", "500"]);
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 2
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[[upstream]]
name = "slow"
endpoints = ["{}"]
[[route]]
name = "hi"
path = "/hi"
respond = {{ status = 200, body = "hi" }}
[[route]]
name = "slow"
upstream = "slow"
"#,
        up.addr()
    );
    let gw = Gateway::start_customized(&config, &[], None, &|cmd| limit_descriptors(cmd, NOFILE));
    let port = gw.port;
    // Idle keep-alive clients take the descriptors (those past the limit are
    // refused); they stay open until the end.
    let holders: Vec<TcpStream> = (0..HOLDERS)
        .filter_map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(b"GET /hi HTTP/1.1\r\nHost: a\r\n\r\n").ok()?;
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).ok()?;
            buf[..n].starts_with(b"HTTP/1.1 200").then_some(s)
        })
        .collect();
    assert!(
        holders.len() < HOLDERS,
        "the limit holds fewer than {HOLDERS}"
    );
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| std::thread::spawn(move || one_client(port)))
        .collect();
    let outcomes: Vec<Outcome> = clients
        .into_iter()
        .map(|c| c.join().unwrap_or(Outcome::Hung))
        .collect();
    let count = |o: &Outcome| outcomes.iter().filter(|x| *x == o).count();
    let (ok, refused_503, bad_gateway, closed, hung) = (
        count(&Outcome::Answered(200)),
        count(&Outcome::Answered(503)),
        count(&Outcome::Answered(502)),
        count(&Outcome::Refused),
        count(&Outcome::Hung),
    );
    let log = gw.proc.stderr_text();
    let summary = format!(
        "{CLIENTS} clients in {:?}: {ok} served, {refused_503} refused with 503, {bad_gateway} got 502 \
         (no descriptor for the upstream connection), {closed} closed, {hung} hung, {} other; {} log lines",
        started.elapsed(),
        CLIENTS - ok - refused_503 - bad_gateway - closed - hung,
        log.lines().count()
    );
    eprintln!("{summary}");
    assert_eq!(hung, 0, "{summary}");
    assert!(refused_503 > 0, "{summary}");
    assert!(log.lines().count() < 40, "{summary}\n{log}");
    assert!(log.contains("accept failed"), "{log}");
    // Descriptors are back once the idle clients leave: it serves normally again
    // (the admin listener too: it has no spare descriptor).
    drop(holders);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(gw.client().get("/slow").status, 200);
    assert!(gw.stat("accept_fd_exhausted") > 0);
    assert!(gw.stat("connections_rejected") >= refused_503 as u64);
}
