//! Shutdown in every configuration (issue 9, kind 1): a SIGTERM ends the process
//! with exit code 0 within the drain timeout, whether it is idle or has requests in
//! flight (which complete), whatever side threads and worker tasks it runs.
//!
//! The features are those that start threads or worker tasks: the access log
//! (off, stdout, a file) × the rate-limit scope (none, worker, instance, fleet with
//! a real redis-server) × a TLS listener × a remote JWKS × the admin listener ×
//! active health checks (a prober thread probing the slow upstream every 500 ms; a
//! probe takes 300 ms of it, so one is often in flight at shutdown). The remote JWKS has three states: off, a
//! server that answers, and one that answers only after 3 s, so that a fetch is in
//! progress at shutdown (the fetcher cannot stop before it ends; the process must
//! exit without it).
//!
//! The test runs the full cross product (3 × 4 × 2 × 3 × 2 × 2 = 288 combinations),
//! each idle and with requests in flight, eight gateways at a time: about 35 s on
//! two cores. `PORTICO_SHUTDOWN_MATRIX=pairwise` runs a quick subset instead: every
//! *pair* of feature values at least once (a greedy pairwise covering) plus all
//! features on and all off: 16 combinations, 3 s.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use common::jwt::{JwksServer, SigningKey};
use common::pki::{path_str, Leaf, Pki};
use common::{tls_client, Client, Gateway, RedisServer, Upstream};

/// The drain timeout of every gateway here (long enough for the in-flight requests
/// on a loaded machine; an idle gateway does not wait for it).
const DRAIN: Duration = Duration::from_millis(5000);
/// The documented bound past the drain timeout (docs/operations.md, "Shutdown").
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long the upstream takes to answer the in-flight requests.
const SLOW_MS: u64 = 300;
/// Gateways tested at the same time.
const PARALLEL: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AccessLog {
    Off,
    Stdout,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Jwks {
    Off,
    Answering,
    /// The JWKS server answers after 3 s: a fetch is in progress at shutdown.
    Stuck,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Features {
    log: AccessLog,
    /// `None`: no rate limit; else the policy's scope.
    scope: Option<&'static str>,
    tls: bool,
    jwks: Jwks,
    admin: bool,
    health_checks: bool,
}

const LOGS: [AccessLog; 3] = [AccessLog::Off, AccessLog::Stdout, AccessLog::File];
const SCOPES: [Option<&str>; 4] = [None, Some("worker"), Some("instance"), Some("fleet")];
const JWKS: [Jwks; 3] = [Jwks::Off, Jwks::Answering, Jwks::Stuck];

impl Features {
    /// The value index of each feature, for the pairwise covering.
    fn levels(&self) -> [usize; 6] {
        [
            LOGS.iter().position(|l| *l == self.log).unwrap_or(0),
            SCOPES.iter().position(|s| *s == self.scope).unwrap_or(0),
            usize::from(self.tls),
            JWKS.iter().position(|j| *j == self.jwks).unwrap_or(0),
            usize::from(self.admin),
            usize::from(self.health_checks),
        ]
    }
}

fn full_product() -> Vec<Features> {
    let mut all = Vec::new();
    for log in LOGS {
        for scope in SCOPES {
            for tls in [false, true] {
                for jwks in JWKS {
                    for admin in [false, true] {
                        for health_checks in [false, true] {
                            all.push(Features {
                                log,
                                scope,
                                tls,
                                jwks,
                                admin,
                                health_checks,
                            });
                        }
                    }
                }
            }
        }
    }
    all
}

/// Greedy pairwise covering (AETG-style): repeatedly take the combination that
/// covers the most (feature, value, feature, value) pairs not yet covered.
fn pairwise(all: &[Features]) -> Vec<Features> {
    let pairs = |f: &Features| {
        let l = f.levels();
        let mut out = Vec::new();
        for a in 0..l.len() {
            for b in a + 1..l.len() {
                out.push((a, l[a], b, l[b]));
            }
        }
        out
    };
    let mut uncovered: std::collections::HashSet<_> = all.iter().flat_map(pairs).collect();
    let mut chosen = Vec::new();
    while !uncovered.is_empty() {
        let best = all
            .iter()
            .max_by_key(|f| pairs(f).iter().filter(|p| uncovered.contains(p)).count())
            .copied()
            .expect("combinations");
        for p in pairs(&best) {
            uncovered.remove(&p);
        }
        chosen.push(best);
    }
    chosen
}

fn combinations() -> Vec<Features> {
    let all = full_product();
    if std::env::var("PORTICO_SHUTDOWN_MATRIX").as_deref() == Ok("pairwise") {
        return pairwise_with_extremes(&all);
    }
    all
}

/// The pairwise covering plus all features on and all off.
fn pairwise_with_extremes(all: &[Features]) -> Vec<Features> {
    let mut chosen = pairwise(all);
    let all_off = Features {
        log: AccessLog::Off,
        scope: None,
        tls: false,
        jwks: Jwks::Off,
        admin: false,
        health_checks: false,
    };
    let all_on = Features {
        log: AccessLog::File,
        scope: Some("fleet"),
        tls: true,
        jwks: Jwks::Stuck,
        admin: true,
        health_checks: true,
    };
    for f in [all_off, all_on] {
        if !chosen.contains(&f) {
            chosen.push(f);
        }
    }
    chosen
}

/// What every gateway of the matrix shares.
struct Shared {
    slow: Upstream,
    redis: RedisServer,
    jwks: JwksServer,
    stuck_jwks: JwksServer,
    pki: Pki,
    leaf: Leaf,
    dir: PathBuf,
}

impl Shared {
    fn start() -> Shared {
        let key = SigningKey::p256();
        let jwks = JwksServer::start(json!({"keys": [key.jwk("k1")]}));
        let stuck_jwks = JwksServer::start(json!({"keys": [key.jwk("k1")]}));
        stuck_jwks.set_delay(Duration::from_secs(3));
        let pki = Pki::new("shutdown");
        let leaf = pki.server("gw", &["localhost"]);
        let dir = std::env::temp_dir().join(format!("portico-shutdown-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        Shared {
            slow: Upstream::start(&["--delay-ms", &SLOW_MS.to_string()]),
            redis: RedisServer::start(),
            jwks,
            stuck_jwks,
            pki,
            leaf,
            dir,
        }
    }
}

/// The configuration of one combination; `run` names its access-log file.
fn config(f: &Features, shared: &Shared, run: &str) -> String {
    let mut c = format!(
        "[server]\nlisten = [\"127.0.0.1:{{port}}\"]\nworkers = 2\ndrain_timeout_ms = {}\n",
        DRAIN.as_millis()
    );
    if f.tls {
        c += &format!(
            "[[server.tls]]\nlisten = \"127.0.0.1:{{port2}}\"\ndefault_cert = \"gw\"\n\
             [[server.tls.cert]]\nname = \"gw\"\nsni = [\"localhost\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            path_str(&shared.leaf.cert),
            path_str(&shared.leaf.key)
        );
    }
    if f.admin {
        c += "[admin]\nlisten = \"127.0.0.1:{admin}\"\n";
    }
    let log = match f.log {
        AccessLog::Off => "off".to_string(),
        AccessLog::Stdout => "stdout".to_string(),
        AccessLog::File => path_str(&shared.dir.join(format!("{run}.log"))).to_string(),
    };
    c += &format!("[log]\naccess_log = \"{log}\"\n");
    c += &format!(
        "[[upstream]]\nname = \"slow\"\nendpoints = [\"{}\"]\n",
        shared.slow.addr()
    );
    if f.health_checks {
        c += "health_check = { path = \"/\", interval_ms = 500, timeout_ms = 500 }\n";
    }
    let limits = match f.scope {
        Some(scope) => {
            c += &format!(
                "[[rate_limit]]\nname = \"p\"\nkey = \"header:x-key\"\nrate = 100000\nburst = 100000\nscope = \"{scope}\"\n"
            );
            if scope == "fleet" {
                c += &format!("[fleet]\nredis = \"{}\"\n", shared.redis.url());
            }
            "rate_limits = [\"p\"]\n"
        }
        None => "",
    };
    c += &format!("[[route]]\nname = \"hi\"\npath = \"/hi\"\nrespond = {{ status = 200, body = \"hi\" }}\n{limits}");
    c += &format!(
        "[[route]]\nname = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"slow\"\n{limits}"
    );
    let jwks = match f.jwks {
        Jwks::Off => None,
        Jwks::Answering => Some(&shared.jwks),
        Jwks::Stuck => Some(&shared.stuck_jwks),
    };
    if let Some(jwks) = jwks {
        c += &format!(
            "[auth.jwt.main]\nissuer = \"https://id.test/\"\nalgorithms = [\"ES256\"]\njwks_url = \"{}\"\n\
             [[route]]\nname = \"authed\"\npath_prefix = \"/authed\"\nupstream = \"slow\"\nauth = \"main\"\n",
            jwks.url()
        );
    }
    c
}

/// Waits for the exit after a SIGTERM sent at `signalled`: it must be exit code 0.
/// That also proves the bound: the watchdog, armed when the signal arrives, ends the
/// process with exit code 1 at `drain_timeout_ms + 1 s`. The wait here is longer
/// only so that a loaded machine's scheduling delays cannot fail the test; a hang
/// (the bug) never exits at all.
fn expect_clean_exit(gw: &mut Gateway, signalled: Instant) -> Result<(), String> {
    let code = gw
        .proc
        .wait_exit(DRAIN + STOP_GRACE + Duration::from_secs(10));
    match code {
        Some(0) => Ok(()),
        other => Err(format!(
            "exit {other:?} after {:?}; stderr:\n{}",
            signalled.elapsed(),
            gw.proc.stderr_text()
        )),
    }
}

/// Idle: one quick request, then SIGTERM.
fn idle(f: &Features, shared: &Shared, run: &str) -> Result<(), String> {
    let mut gw = Gateway::start(&config(f, shared, run));
    let r = gw.client().get("/hi");
    if r.status != 200 {
        return Err(format!("GET /hi answered {}", r.status));
    }
    let signalled = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    expect_clean_exit(&mut gw, signalled)
}

/// Requests in flight to the slow upstream (and one over TLS) when SIGTERM comes:
/// they complete, and the process exits 0. Each request has its own rate-limit key,
/// so that every one is admitted (the first request of a key always is).
fn in_flight(f: &Features, shared: &Shared, run: &str) -> Result<(), String> {
    let mut gw = Gateway::start(&config(f, shared, run));
    let (port, port2, ca) = (gw.port, gw.port2, shared.pki.ca.clone());
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let mut clients = Vec::new();
    for i in 0..4 {
        let tls = i == 3;
        if tls && !f.tls {
            break;
        }
        let (sent, ca) = (sent_tx.clone(), ca.clone());
        let request = format!(
            "GET /slow HTTP/1.1\r\nHost: a\r\nx-key: {run}-{i}\r\nConnection: close\r\n\r\n"
        );
        clients.push(std::thread::spawn(move || -> Result<u16, String> {
            let mut answer = Vec::new();
            if tls {
                let mut s = tls_client::connect(port2, &ca, "localhost").ok_or("TLS connect")?;
                s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
                let _ = sent.send(());
                let _ = s.read_to_end(&mut answer);
            } else {
                let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .map_err(|e| e.to_string())?;
                s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
                let _ = sent.send(());
                let _ = s.read_to_end(&mut answer);
            }
            let text = String::from_utf8_lossy(&answer);
            text.strip_prefix("HTTP/1.1 ")
                .and_then(|t| t.get(..3))
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("no answer: {text:?}"))
        }));
    }
    // Every request is written before the signal; the upstream takes SLOW_MS.
    for _ in 0..clients.len() {
        if sent_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            return Err("a request was not sent".to_string());
        }
    }
    std::thread::sleep(Duration::from_millis(SLOW_MS / 3));
    let signalled = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    for (i, c) in clients.into_iter().enumerate() {
        match c.join().map_err(|_| "client thread panicked")? {
            Ok(200) => {}
            Ok(status) => return Err(format!("in-flight request {i} got {status}")),
            Err(e) => {
                return Err(format!(
                    "in-flight request {i}: {e}; stderr:\n{}",
                    gw.proc.stderr_text()
                ))
            }
        }
    }
    expect_clean_exit(&mut gw, signalled)
}

#[test]
fn sigterm_exits_zero_within_the_drain_timeout_in_every_configuration() {
    let shared = Shared::start();
    let combos = combinations();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(f) = combos.get(i) else { break };
                for (name, scenario) in [
                    (
                        "idle",
                        idle as fn(&Features, &Shared, &str) -> Result<(), String>,
                    ),
                    ("in flight", in_flight),
                ] {
                    if let Err(e) = scenario(f, &shared, &format!("{i}-{}", name.replace(' ', "-")))
                    {
                        failures.lock().unwrap().push(format!("{f:?} {name}: {e}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "{} combinations × 2 scenarios in {:?}",
        combos.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_pairwise_selection_covers_every_pair_of_feature_values() {
    let all = full_product();
    let chosen = pairwise_with_extremes(&all);
    for a in &all {
        let la = a.levels();
        for i in 0..6 {
            for j in i + 1..6 {
                assert!(
                    chosen.iter().any(|c| {
                        let lc = c.levels();
                        lc[i] == la[i] && lc[j] == la[j]
                    }),
                    "pair ({i}={}, {j}={}) not covered",
                    la[i],
                    la[j]
                );
            }
        }
    }
    assert!(
        chosen.len() < all.len() / 4,
        "{} combinations",
        chosen.len()
    );
}

/// The access log goes to a stdout pipe nobody reads: once it is full the writer
/// thread blocks for good. The process still exits 0 (within the bound, or the
/// watchdog would have made it 1), says which
/// thread it left behind, and `/healthz` goes from 200 to 503 `stopping` (while the
/// side threads stop) to refused — never back to 200.
#[test]
fn a_stuck_access_log_writer_does_not_hold_the_exit_and_healthz_says_stopping() {
    let mut gw = Gateway::start_customized(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:{{port}}\"]\nworkers = 1\ndrain_timeout_ms = {}\n\
             [admin]\nlisten = \"127.0.0.1:{{admin}}\"\n[log]\naccess_log = \"stdout\"\n\
             [[route]]\nname = \"hi\"\nrespond = {{ status = 200, body = \"hi\" }}\n",
            DRAIN.as_millis()
        ),
        &[],
        None,
        &|cmd| {
            cmd.stdout(std::process::Stdio::piped());
        },
    );
    // About 120 bytes a line: 2000 lines overfill the 64 KiB pipe.
    let mut c = gw.client();
    for _ in 0..2000 {
        assert_eq!(c.get("/hi").status, 200);
    }
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    let admin = gw.admin_port;
    let signalled = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    let mut answers: Vec<String> = Vec::new();
    let exit = loop {
        if let Ok(Some(status)) = gw.proc.child.try_wait() {
            break status.code();
        }
        let answer = match std::net::TcpStream::connect(("127.0.0.1", admin)) {
            Err(_) => "refused".to_string(),
            Ok(s) => {
                let mut c = Client::from_stream(s);
                c.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
                c.response().map_or("closed".to_string(), |r| {
                    format!("{} {}", r.status, r.text().trim())
                })
            }
        };
        if answers.last() != Some(&answer) {
            answers.push(answer);
        }
        assert!(
            signalled.elapsed() < DRAIN + STOP_GRACE + Duration::from_secs(10),
            "no exit: {answers:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // Exit code 0: the watchdog (exit code 1 at the bound) did not have to act.
    assert_eq!(exit, Some(0), "{answers:?}\n{}", gw.proc.stderr_text());
    assert!(
        answers.contains(&"503 stopping".to_string()),
        "/healthz answers after SIGTERM: {answers:?}"
    );
    let first_503 = answers.iter().position(|a| a != "200 ok").unwrap_or(0);
    assert!(
        !answers[first_503..].contains(&"200 ok".to_string()),
        "/healthz went back to 200: {answers:?}"
    );
    assert!(
        gw.proc
            .stderr_text()
            .contains("the access-log writer did not stop in time"),
        "{}",
        gw.proc.stderr_text()
    );
}
