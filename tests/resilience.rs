//! Resilience with real processes: a killed endpoint, a black hole, outlier
//! ejection limits, circuit breakers, load shedding, retries with their budget and
//! backoff, and an endpoint's return once it recovers (docs/upstreams.md).

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::procs::{load_binary, spawn, wait_for_port, Proc};
use common::{free_port, load, Gateway, LoadPlan, Upstream};

/// A gateway with `workers` workers, an admin listener and no access log, `server`
/// added to `[server]`, then `rest` (upstreams and routes).
fn gateway(workers: usize, server: &str, rest: &str) -> Gateway {
    Gateway::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:{{port}}\"]\nworkers = {workers}\n{server}\n\
         [admin]\nlisten = \"127.0.0.1:{{admin}}\"\n[log]\naccess_log = \"off\"\n{rest}"
    ))
}

/// A one-worker gateway whose only route goes to two ports nothing listens on,
/// with `retry` (the route's retry line).
fn dead_ends(retry: &str) -> Gateway {
    gateway(
        1,
        "",
        &format!(
            "[[upstream]]\nname = \"dead\"\nendpoints = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n\
             [[route]]\nname = \"dead\"\nupstream = \"dead\"\n{retry}\n",
            free_port(),
            free_port()
        ),
    )
}

/// The admin `/stats` document, after the workers' next tick published it.
fn stats(gw: &Gateway) -> serde_json::Value {
    std::thread::sleep(Duration::from_millis(120));
    let r = common::Client::connect(gw.admin_port).get("/stats");
    serde_json::from_slice(&r.body).expect("stats json")
}

/// One endpoint's entry of `/stats`.
fn endpoint(stats: &serde_json::Value, upstream: &str, port: u16) -> serde_json::Value {
    let addr = format!("127.0.0.1:{port}");
    stats["endpoints"]
        .as_array()
        .expect("endpoints list")
        .iter()
        .find(|e| e["upstream"] == upstream && e["endpoint"] == addr.as_str())
        .unwrap_or_else(|| panic!("no endpoint {upstream} {addr} in {stats}"))
        .clone()
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// `portico-load serve` on a given port (to bring a killed endpoint back).
fn serve_on(port: u16, args: &[&str]) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec!["serve", "--listen", &listen];
    all.extend_from_slice(args);
    let proc = spawn(
        &load_binary(),
        &all,
        &[],
        &format!("serve-{port}-again"),
        None,
    );
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "serve did not listen"
    );
    proc
}

/// A listener that accepts connections and never answers (nor reads).
fn black_hole() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// An upstream that reads each request (head and `Content-Length` body), keeps
/// it, and closes the connection without answering.
struct Closer {
    port: u16,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Closer {
    fn start() -> Closer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_string());
                // Dropped: closed without an answer.
            }
        });
        Closer { port, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn send(gw: &Gateway, request: &str) -> (common::Response, Duration) {
    let mut c = gw.client();
    let started = Instant::now();
    c.send(request.as_bytes());
    let r = c.response().expect("an answer");
    (r, started.elapsed())
}

/// Runs `n` copies of `request` at the same time, each on its own connection.
fn concurrently(gw: &Gateway, request: &'static str, n: usize) -> Vec<common::Response> {
    let port = gw.port;
    let threads: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = common::Client::connect(port);
                c.send(request.as_bytes());
                c.response().expect("an answer")
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect()
}

#[test]
fn a_killed_endpoint_gets_no_requests_until_it_recovers() {
    let a = Upstream::start(&[]);
    let b = Upstream::start(&[]);
    let gw = gateway(
        2,
        "",
        &format!(
            r#"
[[upstream]]
name = "app"
endpoints = ["{}", "{}"]
# Generous probe timeouts: probes of the healthy endpoint that are slow on a busy
# machine must not make both endpoints unhealthy (then panic mode uses both).
health_check = {{ path = "/health", interval_ms = 500, timeout_ms = 500, healthy_threshold = 2, unhealthy_threshold = 2 }}
outlier = {{ consecutive_gateway_failures = 3, base_ejection_ms = 30000 }}
# The tries in flight when the endpoint dies fail together: more than the default
# budget's floor of 3 retries per worker (see the budget test); allow them all.
retry_budget = {{ min_concurrency = 8 }}
[[route]]
name = "app"
upstream = "app"
retry = {{ attempts = 2, on = ["connect-failure", "reset"], backoff_base_ms = 1 }}
"#,
            a.addr(),
            b.addr()
        ),
    );
    let (b_port, mut b) = (b.port, b);
    let plan = LoadPlan {
        connections: 8,
        duration: Duration::from_millis(5000),
        batch: 1,
        path: "/x".to_string(),
        ..LoadPlan::new(&[gw.port])
    };
    let running = std::thread::spawn(move || load::run(&plan));
    std::thread::sleep(Duration::from_millis(800));
    b.proc.signal(libc::SIGKILL);
    assert!(b.proc.wait_exit(Duration::from_secs(5)).is_some());
    // Wait until every worker has taken it out (ejected, or unhealthy by the
    // health checks), then give in-flight tries a moment to end.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = endpoint(&stats(&gw), "app", b_port);
        if num(&e, "ejected_workers") == 2 || e["healthy"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead endpoint stayed in: {e}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let down = stats(&gw);
    let b_down = endpoint(&down, "app", b_port);
    std::thread::sleep(Duration::from_millis(600));
    let later = stats(&gw);
    let still = endpoint(&later, "app", b_port);
    assert!(
        num(&later, "requests") > num(&down, "requests") + 10,
        "no load in the window: {later}"
    );
    assert_eq!(
        num(&still, "requests"),
        num(&b_down, "requests"),
        "tries reached the dead endpoint: {b_down} then {still}\n{later}"
    );
    // Bring it back once the health checks have seen it down.
    loop {
        let e = endpoint(&stats(&gw), "app", b_port);
        if e["healthy"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "never marked unhealthy: {e}");
    }
    let _b_again = serve_on(b_port, &[]);
    let result = running.join().expect("load");
    // Back after recovery: the health checks see it, and tries reach it again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = gw.client();
    let after = loop {
        assert_eq!(c.get("/x").status, 200);
        let s = stats(&gw);
        let e = endpoint(&s, "app", b_port);
        if e["healthy"] == true && num(&e, "requests") > num(&still, "requests") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the endpoint did not come back: {e}"
        );
    };
    let b_after = endpoint(&after, "app", b_port);

    // With retries on connect-failure, the client saw no failure at all.
    assert!(result.ok > 0, "{result:?}");
    assert_eq!((result.other, result.errors), (0, 0), "{result:?}\n{after}");
    // The failed tries to the dead endpoint: each worker learns on its own, so
    // about workers × consecutive_gateway_failures, plus the tries in flight.
    let failed = num(&b_after, "failures");
    let ejections = num(&after, "outlier_ejections");
    let marked = num(&after, "health_marked_unhealthy");
    eprintln!(
        "killed endpoint: {failed} failed tries ({} connect failures), {ejections} ejection(s) over 2 workers, \
         marked unhealthy {marked} time(s); client: {} ok, {} failed",
        num(&after, "upstream_connect_failures"),
        result.ok,
        result.other + result.errors
    );
    assert!(failed <= 2 * 3 + 8, "{failed} failed tries");
    assert!(ejections + marked >= 1, "{after}");
    assert!(ejections <= 2, "one ejection per worker at most: {after}");
    assert_eq!(b_after["ejected_workers"], 0, "{b_after}");
}

#[test]
fn a_black_hole_is_ejected_and_other_routes_do_not_notice() {
    let good = Upstream::start(&[]);
    let other = Upstream::start(&[]);
    let hole = black_hole();
    let gw = gateway(
        2,
        "",
        &format!(
            r#"
[[upstream]]
name = "mixed"
endpoints = ["{}", "127.0.0.1:{hole}"]
outlier = {{ consecutive_gateway_failures = 2, base_ejection_ms = 30000 }}
[[upstream]]
name = "other"
endpoints = ["{}"]
[[route]]
name = "mixed"
path_prefix = "/mixed"
upstream = "mixed"
timeout_ms = 3000
retry = {{ attempts = 2, on = ["timeout"], per_try_timeout_ms = 200, backoff_base_ms = 1 }}
[[route]]
name = "other"
path_prefix = "/other"
upstream = "other"
"#,
            good.addr(),
            other.addr()
        ),
    );
    let mixed_plan = LoadPlan {
        connections: 8,
        duration: Duration::from_millis(2000),
        batch: 1,
        path: "/mixed".to_string(),
        ..LoadPlan::new(&[gw.port])
    };
    let other_plan = LoadPlan {
        connections: 2,
        path: "/other".to_string(),
        ..mixed_plan.clone()
    };
    let mixed = std::thread::spawn(move || load::run(&mixed_plan));
    let other = load::run(&other_plan);
    let mixed = mixed.join().expect("load");
    let s = stats(&gw);
    let hole_state = endpoint(&s, "mixed", hole);
    eprintln!(
        "black hole: /other {} ok, {} failed, slowest {:?}; /mixed {} ok, {} failed (retry budget), \
         slowest {:?}; the hole took {} tries, ejected on {} worker(s)",
        other.ok,
        other.other + other.errors,
        other.max_latency,
        mixed.ok,
        mixed.other + mixed.errors,
        mixed.max_latency,
        num(&hole_state, "requests"),
        hole_state["ejected_workers"]
    );
    assert!(other.ok > 0, "{other:?}");
    assert_eq!((other.other, other.errors), (0, 0), "{other:?}");
    // Tries that timed out were sent again to the good endpoint, as far as the
    // default retry budget allowed: the tries stuck in the hole time out together,
    // more of them on a worker than the budget's floor of 3 retries in flight.
    let refused = num(&s, "upstream_retry_budget_exhausted");
    assert!(mixed.ok > 0, "{mixed:?}");
    assert_eq!(mixed.errors, 0, "{mixed:?}");
    assert!(mixed.other <= refused && refused <= 8, "{mixed:?}\n{s}");
    assert!(num(&hole_state, "ejected_workers") >= 1, "{hole_state}");
    assert!(
        num(&hole_state, "requests") <= 2 * 2 + 8,
        "the black hole kept getting tries: {hole_state}"
    );
}

#[test]
fn max_ejection_percent_is_exact_and_a_lone_endpoint_stays_unless_allowed() {
    let dead: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let gw = gateway(
        1,
        "",
        &format!(
            r#"
[[upstream]]
name = "three"
endpoints = ["127.0.0.1:{}", "127.0.0.1:{}", "127.0.0.1:{}"]
outlier = {{ consecutive_gateway_failures = 1, max_ejection_percent = 50 }}
[[upstream]]
name = "one"
endpoints = ["127.0.0.1:{}"]
outlier = {{ consecutive_gateway_failures = 1, max_ejection_percent = 100 }}
[[upstream]]
name = "one-allowed"
endpoints = ["127.0.0.1:{}"]
outlier = {{ consecutive_gateway_failures = 1, max_ejection_percent = 100, min_hosts = 1 }}
[[route]]
name = "three"
path_prefix = "/three"
upstream = "three"
[[route]]
name = "one"
path_prefix = "/one"
upstream = "one"
[[route]]
name = "one-allowed"
path_prefix = "/allowed"
upstream = "one-allowed"
"#,
            dead[0], dead[1], dead[2], dead[3], dead[4]
        ),
    );
    let mut c = gw.client();
    for path in ["/three"; 12]
        .iter()
        .chain(&["/one"; 4])
        .chain(&["/allowed"; 4])
    {
        assert_eq!(c.get(path).status, 502, "{path}");
    }
    let s = stats(&gw);
    let ejected = |upstream: &str, ports: &[u16]| -> u64 {
        ports
            .iter()
            .map(|&p| num(&endpoint(&s, upstream, p), "ejected_workers"))
            .sum()
    };
    // 50% of 3 is 1, never 2.
    assert_eq!(ejected("three", &dead[..3]), 1, "{s}");
    // min_hosts = 2 (the default) keeps a lone endpoint in, even at 100%.
    assert_eq!(ejected("one", &dead[3..4]), 0, "{s}");
    // ... unless the operator allows it (and then panic mode still sends to it).
    assert_eq!(ejected("one-allowed", &dead[4..5]), 1, "{s}");
    assert_eq!(num(&s, "outlier_ejections"), 2, "{s}");
    assert!(num(&s, "outlier_ejections_refused") >= 2, "{s}");
    assert!(num(&s, "upstream_panic") >= 1, "{s}");
}

#[test]
fn breakers_answer_503_at_once_naming_the_limit() {
    let slow = Upstream::start(&["--delay-ms", "400"]);
    let slow2 = Upstream::start(&["--delay-ms", "400"]);
    let gw = gateway(
        1,
        "",
        &format!(
            r#"
[[upstream]]
name = "requests"
endpoints = ["{0}"]
max_requests = 2
[[upstream]]
name = "connections"
endpoints = ["{1}"]
max_connections = 1
max_pending = 1
[[route]]
name = "requests"
path_prefix = "/r"
upstream = "requests"
[[route]]
name = "connections"
path_prefix = "/c"
upstream = "connections"
"#,
            slow.addr(),
            slow2.addr()
        ),
    );
    let answers = concurrently(&gw, "GET /r HTTP/1.1\r\nHost: x\r\n\r\n", 4);
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    assert_eq!((ok, refused.len()), (2, 2), "{answers:?}");
    for r in &refused {
        assert_eq!(r.header("x-portico-overflow"), Some("max_requests"));
        assert_eq!(r.json()["error"], "upstream overflow: max_requests");
    }
    assert_eq!(gw.stat("upstream_overflow_requests"), 2);

    // One connection: one request uses it, one waits for it, one is refused.
    let answers = concurrently(&gw, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n", 3);
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    assert_eq!((ok, refused.len()), (2, 1), "{answers:?}");
    assert_eq!(refused[0].header("x-portico-overflow"), Some("max_pending"));
    assert_eq!(gw.stat("upstream_overflow_pending"), 1);
}

#[test]
fn a_worker_past_max_in_flight_sheds_with_retry_after() {
    let slow = Upstream::start(&["--delay-ms", "400"]);
    let gw = gateway(
        1,
        "max_in_flight_per_worker = 2",
        &format!(
            r#"
[[upstream]]
name = "slow"
endpoints = ["{}"]
[[route]]
name = "slow"
upstream = "slow"
"#,
            slow.addr()
        ),
    );
    let answers = concurrently(&gw, "GET /s HTTP/1.1\r\nHost: x\r\n\r\n", 4);
    let shed: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    assert_eq!(shed.len(), 2, "{answers:?}");
    for r in &shed {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(
            r.header("x-portico-overflow"),
            Some("max_in_flight_per_worker")
        );
    }
    assert_eq!(gw.stat("requests_shed"), 2);
    assert_eq!(slow.hits(), 2, "shed requests never reached the upstream");
}

#[test]
fn the_retry_budget_holds_retries_to_its_share_when_every_endpoint_fails() {
    let gw = dead_ends(
        r#"retry = { attempts = 5, on = ["connect-failure"], backoff_base_ms = 20, backoff_max_ms = 40 }"#,
    );
    // Alone, a request gets all its tries: the budget's minimum is 3 retries in flight.
    let (r, _) = send(&gw, "GET /alone HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-portico-attempts"), Some("5"));
    let before = stats(&gw);

    let result = load::run(&LoadPlan {
        connections: 20,
        duration: Duration::from_millis(1500),
        batch: 1,
        path: "/storm".to_string(),
        ..LoadPlan::new(&[gw.port])
    });
    let after = stats(&gw);
    let requests = num(&after, "requests") - num(&before, "requests");
    let retries = num(&after, "upstream_retries") - num(&before, "upstream_retries");
    let exhausted = num(&after, "upstream_retry_budget_exhausted");
    eprintln!(
        "retry storm: {requests} requests, {retries} retries ({:.2} per request; 4 without a budget), \
         {exhausted} refused by the budget",
        retries as f64 / requests.max(1) as f64
    );
    assert!(result.other > 0 && result.ok == 0, "{result:?}");
    assert!(retries > 0, "{after}");
    assert!(exhausted > 0, "{after}");
    // 20 requests in flight allow 4 retries in flight; without the budget every
    // request would make 4.
    assert!(
        retries * 2 <= requests,
        "{retries} retries for {requests} requests"
    );
}

#[test]
fn a_post_is_retried_only_when_the_route_allows_it_or_it_was_never_sent() {
    let closer = Closer::start();
    let live = Upstream::echo();
    let dead = free_port();
    let gw = gateway(
        1,
        "",
        &format!(
            r#"
[[upstream]]
name = "closer"
endpoints = ["127.0.0.1:{}"]
[[upstream]]
name = "half"
endpoints = ["127.0.0.1:{dead}", "{}"]
[[route]]
name = "strict"
path_prefix = "/strict"
upstream = "closer"
retry = {{ attempts = 3, on = ["reset"], backoff_base_ms = 1 }}
[[route]]
name = "lenient"
path_prefix = "/lenient"
upstream = "closer"
retry = {{ attempts = 3, on = ["reset"], backoff_base_ms = 1 }}
retry_non_idempotent = true
[[route]]
name = "half"
path_prefix = "/half"
upstream = "half"
retry = {{ attempts = 2, on = ["connect-failure"], backoff_base_ms = 1 }}
"#,
            closer.port,
            live.addr()
        ),
    );
    let count = |prefix: &str| {
        closer
            .requests()
            .iter()
            .filter(|r| r.starts_with(prefix))
            .count()
    };

    let (r, _) = send(&gw, "GET /strict/a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-portico-attempts"), Some("3"));
    assert_eq!(count("GET /strict/a "), 3);

    let (r, _) = send(
        &gw,
        "POST /strict/pay HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-portico-attempts"), None);
    assert_eq!(count("POST /strict/pay "), 1, "a POST was sent twice");

    let (r, _) = send(
        &gw,
        "POST /lenient/pay HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-portico-attempts"), Some("3"));
    let posts: Vec<String> = closer
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("POST /lenient/pay "))
        .collect();
    assert_eq!(posts.len(), 3);
    assert!(
        posts.iter().all(|p| p.ends_with("\r\n\r\nhello")),
        "{posts:?}"
    );

    // A connect failure means the POST never left: it goes to the other endpoint.
    for _ in 0..4 {
        let (r, _) = send(
            &gw,
            "POST /half/pay HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["body_bytes"], 5);
    }
}

#[test]
fn retries_back_off_within_their_bounds() {
    let gw = dead_ends(
        r#"retry = { attempts = 3, on = ["connect-failure"], backoff_base_ms = 200, backoff_max_ms = 1000 }"#,
    );
    // Retry 1 waits 100-200 ms, retry 2 200-400 ms.
    for _ in 0..2 {
        let (r, took) = send(&gw, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 502);
        assert_eq!(r.header("x-portico-attempts"), Some("3"));
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(600 + 1500), "{took:?}");
    }
    assert_eq!(gw.stat("upstream_retries"), 4);
}

#[test]
fn unchecked_config_keys_are_refused_with_their_place() {
    let checked = common::procs::portico_check(
        "bad.toml",
        r#"[server]
listen = ["127.0.0.1:1"]
max_in_flight_per_worker = 0
[[upstream]]
name = "a"
endpoints = ["127.0.0.1:9"]
health_check = { path = "health", timeout_ms = 900, interval_ms = 500 }
outlier = { max_ejection_percent = 150 }
[[route]]
name = "a"
upstream = "a"
retry = { attempts = 11, on = ["5xx"] }
[[route]]
name = "b"
respond = { status = 200 }
retry_non_idempotent = true
"#,
    );
    let text = checked.stderr + &checked.stdout;
    assert_ne!(checked.code, Some(0), "{text}");
    for expected in [
        "bad.toml:3:28: must be greater than 0",
        "bad.toml:7:25: health_check path \"health\" must start with '/'",
        "bad.toml:7:48: health_check timeout_ms (900) must not exceed interval_ms (500)",
        "bad.toml:8:36: 150 is out of range: must be from 0 to 100",
        "bad.toml:12:22: 11 is out of range: must be from 1 to 10",
        "bad.toml:12:32: retry on \"5xx\" is not one of",
        "bad.toml:16:24: retry_non_idempotent needs retry",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
