//! W3C trace context through the real gateway to an echo upstream (what the
//! upstream received for valid, invalid, future-version and missing
//! `traceparent`s), spans exported to an OTLP receiver built on the official
//! protobuf definitions (parent and child IDs across retries), the trace ID in the
//! JSON access log, and a collector that is down or slow costing nothing but a
//! counter.

mod common;

use std::time::{Duration, Instant};

use common::otlp::{OtlpReceiver, Received};
use common::{free_port, Client, Gateway, Response, Upstream};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

/// A gateway with one worker, an admin listener, the echo route `/echo` to
/// `endpoints` (a connect failure is retried once) and `tracing` as its
/// `[tracing]` section (none when empty); `log` is the `[log]` section's body.
fn gateway(endpoints: &[String], tracing: &str, log: &str) -> Gateway {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let tracing = if tracing.is_empty() {
        String::new()
    } else {
        format!("[tracing]\n{tracing}\n")
    };
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
{log}
{tracing}
[[upstream]]
name = "echo"
endpoints = [{}]
[[route]]
name = "echo"
path_prefix = "/echo"
upstream = "echo"
retry = {{ attempts = 2, on = ["connect-failure"], backoff_base_ms = 1 }}
"#,
        endpoints.join(", ")
    ))
}

/// GET /echo/x with `headers` (each a full header line) on a new connection.
fn get(gw: &Gateway, headers: &[&str]) -> Response {
    let mut c = Client::connect(gw.port);
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    c.send(format!("GET /echo/x HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
    let r = c.response().expect("a response");
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

/// Values the upstream received under `name`.
fn seen(r: &Response, name: &str) -> Vec<String> {
    r.json()["headers"]
        .as_array()
        .expect("echo headers")
        .iter()
        .filter(|p| p[0].as_str().unwrap_or("").eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap_or("").to_string())
        .collect()
}

/// The one `traceparent` the upstream received, as (trace ID, parent ID, flags);
/// it must be a well-formed version-00 value.
fn upstream_traceparent(r: &Response) -> (String, String, String) {
    let values = seen(r, "traceparent");
    assert_eq!(values.len(), 1, "one traceparent upstream: {values:?}");
    let v = &values[0];
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(v.len(), 55, "{v}");
    assert_eq!(parts.len(), 4, "{v}");
    assert_eq!(parts[0], "00", "{v}");
    for (p, len) in parts[1..].iter().zip([32, 16, 2]) {
        assert_eq!(p.len(), len, "{v}");
        assert!(
            p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{v}"
        );
    }
    assert_ne!(parts[1], "0".repeat(32));
    assert_ne!(parts[2], "0".repeat(16));
    (
        parts[1].to_string(),
        parts[2].to_string(),
        parts[3].to_string(),
    )
}

#[test]
fn the_upstream_gets_the_gateways_traceparent_for_every_case() {
    let up = Upstream::echo();
    let gw = gateway(&[up.addr()], "sample_ratio = 1.0", "access_log = \"off\"");
    let valid = format!("traceparent: 00-{TRACE}-{PARENT}-01");

    // Valid: continued, the gateway's own span as parent, tracestate kept.
    let r = get(&gw, &[&valid, "tracestate: a=1 , b=2", "tracestate: c=3"]);
    let (trace, parent, flags) = upstream_traceparent(&r);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"));
    assert_ne!(parent, PARENT, "the gateway is a participant");
    assert_eq!(seen(&r, "tracestate"), ["a=1,b=2,c=3"]);
    // Two requests with the same caller get different gateway spans.
    let (_, other_parent, _) = upstream_traceparent(&get(&gw, &[&valid]));
    assert_ne!(other_parent, parent);

    // The caller's decision not to sample is kept, whatever the ratio.
    let r = get(&gw, &[&format!("traceparent: 00-{TRACE}-{PARENT}-00")]);
    assert_eq!(upstream_traceparent(&r).2, "00");

    // A later version with extra fields is read by the version-00 rules and
    // forwarded as version 00.
    let r = get(
        &gw,
        &[&format!(
            "traceparent: cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"
        )],
    );
    assert_eq!(upstream_traceparent(&r).0, TRACE);

    // Invalid ones restart the trace and drop tracestate.
    let upper = format!("traceparent: 00-{}-{PARENT}-01", TRACE.to_uppercase());
    let zero_trace = format!("traceparent: 00-{}-{PARENT}-01", "0".repeat(32));
    let zero_parent = format!("traceparent: 00-{TRACE}-{}-01", "0".repeat(16));
    let version_ff = format!("traceparent: ff-{TRACE}-{PARENT}-01");
    let extra_in_00 = format!("traceparent: 00-{TRACE}-{PARENT}-01-extra");
    let future_bad = format!("traceparent: cc-{TRACE}-{PARENT}-01.extra");
    for bad in [
        &upper,
        &zero_trace,
        &zero_parent,
        &version_ff,
        &extra_in_00,
        &future_bad,
    ] {
        let r = get(&gw, &[bad, "tracestate: a=1"]);
        let (trace, _, flags) = upstream_traceparent(&r);
        assert_ne!(trace, TRACE, "{bad}");
        assert_ne!(trace, TRACE.to_uppercase(), "{bad}");
        assert_eq!(flags, "01", "a new trace is sampled at ratio 1.0: {bad}");
        assert!(seen(&r, "tracestate").is_empty(), "{bad}");
    }
    // Two traceparent fields are invalid too.
    let r = get(
        &gw,
        &[
            &valid,
            &format!("traceparent: 00-{}-{PARENT}-01", "1".repeat(32)),
        ],
    );
    let (trace, _, _) = upstream_traceparent(&r);
    assert!(trace != TRACE && trace != "1".repeat(32));

    // A valid traceparent with an invalid tracestate: continued, tracestate dropped.
    let r = get(&gw, &[&valid, "tracestate: a=1,B=2"]);
    assert_eq!(upstream_traceparent(&r).0, TRACE);
    assert!(seen(&r, "tracestate").is_empty());
    // A repeated key keeps its first entry.
    let r = get(&gw, &[&valid, "tracestate: a=1,b=2", "tracestate: a=3"]);
    assert_eq!(seen(&r, "tracestate"), ["a=1,b=2"]);

    // Missing: a new sampled trace, every time a new ID.
    let (first, _, flags) = upstream_traceparent(&get(&gw, &[]));
    let (second, _, _) = upstream_traceparent(&get(&gw, &["tracestate: a=1"]));
    assert_eq!(flags, "01");
    assert_ne!(first, second);
}

#[test]
fn new_traces_follow_the_sample_ratio_and_no_tracing_passes_fields_through() {
    let up = Upstream::echo();
    let never = gateway(&[up.addr()], "sample_ratio = 0.0", "access_log = \"off\"");
    let r = get(&never, &[]);
    assert_eq!(
        upstream_traceparent(&r).2,
        "00",
        "not sampled, still propagated"
    );

    let off = gateway(&[up.addr()], "", "access_log = \"off\"");
    let r = get(&off, &["traceparent: whatever", "tracestate: x=1"]);
    assert_eq!(seen(&r, "traceparent"), ["whatever"]);
    assert_eq!(seen(&r, "tracestate"), ["x=1"]);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind(s: &Received) -> i32 {
    s.span.kind
}

#[test]
fn spans_reach_the_collector_with_their_parents_and_the_log_has_the_trace() {
    let up = Upstream::echo();
    let collector = OtlpReceiver::start();
    let dead = format!("127.0.0.1:{}", free_port());
    let log = std::env::temp_dir().join(format!("portico-trace-log-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let gw = gateway(
        &[dead, up.addr()],
        &format!(
            "sample_ratio = 1.0\notlp_endpoint = \"{}\"\nservice_name = \"portico-test\"\nexport_interval_ms = 50",
            collector.endpoint()
        ),
        &format!("access_log = \"{}\"\naccess_log_format = \"json\"", log.display()),
    );
    // Round robin over [dead, live] on one worker: one of two requests tries the
    // dead endpoint first and is retried on the live one.
    let valid = format!("traceparent: 00-{TRACE}-{PARENT}-01");
    let retried = (0..4)
        .map(|_| get(&gw, &[&valid, "tracestate: a=1"]))
        .find(|r| r.header("x-portico-attempts") == Some("2"))
        .expect("a request tried twice");
    let (_, sent_parent, _) = upstream_traceparent(&retried);
    let request_id = retried
        .header("x-request-id")
        .expect("request id")
        .to_string();

    // Find that request's server span by its request ID, then its client spans.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (server, clients) = loop {
        let spans = collector.spans();
        let server = spans
            .iter()
            .find(|s| s.attr("portico.request_id").as_deref() == Some(request_id.as_str()))
            .cloned();
        if let Some(server) = server {
            let children: Vec<Received> = spans
                .iter()
                .filter(|s| s.span.parent_span_id == server.span.span_id)
                .cloned()
                .collect();
            if children.len() == 2 || Instant::now() >= deadline {
                break (server, children);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no server span for {request_id}: {spans:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(collector.bad_requests(), 0);
    assert_eq!(server.service, "portico-test");
    assert_eq!(hex(&server.span.trace_id), TRACE);
    assert_eq!(
        hex(&server.span.parent_span_id),
        PARENT,
        "the caller's span is the parent"
    );
    assert_eq!(kind(&server), 2, "SPAN_KIND_SERVER");
    assert_eq!(server.span.trace_state, "a=1");
    assert_eq!(server.span.name, "GET echo");
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(server.attr("portico.attempts").as_deref(), Some("2"));
    assert_eq!(
        server.span.flags & 0x3ff,
        0x301,
        "sampled, parent known to be remote"
    );

    assert_eq!(clients.len(), 2, "a client span per try");
    let mut clients = clients;
    clients.sort_by_key(|c| c.attr("portico.attempt"));
    let (first, second) = (&clients[0], &clients[1]);
    for c in [first, second] {
        assert_eq!(kind(c), 3, "SPAN_KIND_CLIENT");
        assert_eq!(hex(&c.span.trace_id), TRACE);
        assert_eq!(c.attr("portico.upstream").as_deref(), Some("echo"));
        assert!(c.span.start_time_unix_nano >= server.span.start_time_unix_nano);
        assert!(c.span.end_time_unix_nano <= server.span.end_time_unix_nano);
        assert!(c.span.start_time_unix_nano <= c.span.end_time_unix_nano);
    }
    assert_eq!(first.attr("portico.attempt").as_deref(), Some("1"));
    assert_eq!(first.attr("error.type").as_deref(), Some("connect"));
    assert!(
        first.span.status.as_ref().is_some_and(|s| s.code == 2),
        "the failed try is an error"
    );
    assert_eq!(second.attr("portico.attempt").as_deref(), Some("2"));
    assert_eq!(
        second.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        hex(&second.span.span_id),
        sent_parent,
        "the upstream's parent is the try's client span"
    );
    assert_ne!(first.span.span_id, second.span.span_id);

    // The JSON access-log line carries the trace ID.
    let deadline = Instant::now() + Duration::from_secs(3);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(&request_id)) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line for {request_id}: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["trace_id"], TRACE);
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["upstream"], "echo");
}

#[test]
fn a_collector_that_is_down_costs_only_a_counter() {
    let up = Upstream::echo();
    let down = format!("http://127.0.0.1:{}", free_port());
    let gw = gateway(
        &[up.addr()],
        &format!("sample_ratio = 1.0\notlp_endpoint = \"{down}\"\nexport_interval_ms = 50"),
        "access_log = \"off\"",
    );
    for _ in 0..20 {
        get(&gw, &[]);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.stat("trace_spans_failed") < 40 {
        assert!(Instant::now() < deadline, "spans not counted as failed");
    }
    assert!(gw.stat("trace_export_failures") >= 1);
    assert_eq!(gw.stat("trace_spans_exported"), 0);
    assert_eq!(gw.stat("trace_spans_dropped"), 0, "the queue never filled");
    // The same, as an operator's monitoring sees it.
    std::thread::sleep(Duration::from_millis(150));
    let metrics = Client::connect(gw.admin_port).get("/metrics").text();
    let sample = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert!(sample(r#"portico_trace_spans_dropped_total{reason="export_failed"}"#) >= 40.0);
    assert_eq!(
        sample(r#"portico_trace_spans_dropped_total{reason="queue_full"}"#),
        0.0
    );
    assert!(sample(r#"portico_trace_export_requests_total{result="failed"}"#) >= 1.0);
    assert_eq!(
        sample(r#"portico_trace_export_requests_total{result="ok"}"#),
        0.0
    );
    assert_eq!(sample("portico_trace_spans_exported_total"), 0.0);
    // Every request was answered as without tracing, and it still serves.
    assert_eq!(
        sample(r#"portico_requests_total{route="echo",method="GET",code="200"}"#),
        20.0
    );
    get(&gw, &[]);
}

#[test]
fn a_slow_collector_makes_workers_drop_spans_not_wait() {
    let up = Upstream::echo();
    let collector = OtlpReceiver::start();
    collector.set_delay(Duration::from_secs(3));
    let gw = gateway(
        &[up.addr()],
        &format!(
            "sample_ratio = 1.0\notlp_endpoint = \"{}\"\nexport_interval_ms = 10\nexport_timeout_ms = 2000\nexport_queue_spans = 4\nexport_batch_spans = 2",
            collector.endpoint()
        ),
        "access_log = \"off\"",
    );
    // Each request makes two spans; with the exporter stuck on its first POST the
    // queue (two batches) fills, and the rest is dropped on the worker.
    let mut c = Client::connect(gw.port);
    for _ in 0..100 {
        c.send(b"GET /echo/x HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response().expect("a response").status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.stat("trace_spans_dropped") == 0 {
        assert!(Instant::now() < deadline, "no span was dropped");
    }
    assert!(collector.requests() >= 1);
}

#[test]
fn check_names_each_bad_tracing_and_log_key_with_its_place() {
    let checked = common::procs::portico_check(
        "tracing-bad.toml",
        r#"[log]
access_log_format = "yaml"
[tracing]
sample_ratio = 1.5
otlp_endpoint = "https://collector:4318"
export_batch_spans = 0
[[route]]
name = "r"
respond = { status = 200 }
"#,
    );
    assert_eq!(checked.code, Some(1));
    let (err, file) = (checked.stderr, checked.path);
    for (place, says) in [
        ("2:21", "access_log_format must be \"text\" or \"json\""),
        ("4:16", "sample_ratio must be from 0.0 to 1.0"),
        ("5:17", "https is not supported"),
        ("6:22", "0 is out of range"),
    ] {
        assert!(
            err.contains(&format!("{file}:{place}: {says}")),
            "{place}: {err}"
        );
    }
    assert_eq!(err.lines().count(), 4, "{err}");
}

#[test]
fn each_composed_part_is_a_client_span_and_carries_its_own_parent() {
    let up = Upstream::echo();
    let collector = OtlpReceiver::start();
    // The cart part's upstream refuses connections: an optional part that fails.
    let dead = format!("127.0.0.1:{}", free_port());
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[tracing]
sample_ratio = 1.0
otlp_endpoint = "{}"
export_interval_ms = 50
[[upstream]]
name = "echo"
endpoints = ["{}"]
[[upstream]]
name = "carts"
endpoints = ["{dead}"]
[[route]]
name = "home"
path = "/home/{{id}}"
[route.compose]
merge = "nested"
on_part_failure = "partial"
[[route.compose.part]]
name = "user"
upstream = "echo"
path = "/users/{{path.id}}"
[[route.compose.part]]
name = "recs"
upstream = "echo"
method = "POST"
path = "/recs"
[[route.compose.part]]
name = "cart"
upstream = "carts"
path = "/carts/{{path.id}}"
required = false
"#,
        collector.endpoint(),
        up.addr()
    ));
    let mut c = Client::connect(gw.port);
    c.send(
        format!("GET /home/7 HTTP/1.1\r\nHost: t\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n\r\n")
            .as_bytes(),
    );
    let r = c.response().expect("a response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-portico-composition"), Some("partial"));
    assert_eq!(r.header("x-portico-partial"), Some("cart"));
    let body = r.json();
    // What each part's upstream received as its parent.
    let sent_parent = |part: &str| -> String {
        let headers = body[part]["headers"].as_array().expect("echo headers");
        let tp = headers
            .iter()
            .find(|h| h[0] == "traceparent")
            .and_then(|h| h[1].as_str())
            .unwrap_or_else(|| panic!("no traceparent sent to {part}: {body}"));
        assert!(tp.starts_with(&format!("00-{TRACE}-")), "{tp}");
        tp[36..52].to_string()
    };
    let (user_parent, recs_parent) = (sent_parent("user"), sent_parent("recs"));
    assert_ne!(user_parent, recs_parent);

    // One server span and one client span per part, all of the caller's trace.
    let spans = collector.wait_for(4, Duration::from_secs(5));
    assert_eq!(collector.bad_requests(), 0);
    assert_eq!(spans.len(), 4, "{spans:?}");
    let server = spans
        .iter()
        .find(|s| s.span.kind == 2)
        .expect("a server span");
    assert_eq!(hex(&server.span.parent_span_id), PARENT);
    assert_eq!(server.span.name, "GET home");
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(server.attr("portico.attempts").as_deref(), Some("3"));
    assert!(
        server.span.status.as_ref().is_none_or(|s| s.code != 2),
        "a partial answer is no error of the request"
    );
    let parts: Vec<&Received> = spans
        .iter()
        .filter(|s| s.span.kind == 3 && s.span.parent_span_id == server.span.span_id)
        .collect();
    assert_eq!(parts.len(), 3, "{spans:?}");
    let part = |name: &str| -> &Received {
        parts
            .iter()
            .find(|s| s.attr("portico.part").as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no span for the {name} part: {spans:?}"))
    };
    let (user, recs, cart) = (part("user"), part("recs"), part("cart"));
    for p in [user, recs, cart] {
        assert_eq!(hex(&p.span.trace_id), TRACE);
        assert_eq!(p.attr("portico.route").as_deref(), Some("home"));
        assert_eq!(p.attr("portico.attempt").as_deref(), Some("1"));
        assert!(p.span.start_time_unix_nano >= server.span.start_time_unix_nano);
        assert!(p.span.start_time_unix_nano <= p.span.end_time_unix_nano);
        assert!(p.span.end_time_unix_nano <= server.span.end_time_unix_nano);
    }
    assert_eq!(hex(&user.span.span_id), user_parent);
    assert_eq!(hex(&recs.span.span_id), recs_parent);
    assert_eq!(user.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(recs.attr("http.request.method").as_deref(), Some("POST"));
    assert_eq!(user.span.name, "GET echo");
    assert_eq!(recs.span.name, "POST echo");
    for ok in [user, recs] {
        assert_eq!(ok.attr("portico.upstream").as_deref(), Some("echo"));
        assert_eq!(
            ok.attr("http.response.status_code").as_deref(),
            Some("200"),
            "{ok:?}"
        );
        assert_eq!(ok.attr("error.type"), None);
        assert!(ok.span.status.as_ref().is_none_or(|s| s.code != 2));
    }
    // The failed part: an error span on its own upstream, no answer's status.
    assert_eq!(cart.span.name, "GET carts");
    assert_eq!(cart.attr("portico.upstream").as_deref(), Some("carts"));
    assert_eq!(
        cart.attr("server.port"),
        dead.rsplit(':').next().map(str::to_string)
    );
    assert_eq!(cart.attr("error.type").as_deref(), Some("connect"));
    assert_eq!(cart.attr("http.response.status_code"), None);
    assert!(
        cart.span.status.as_ref().is_some_and(|s| s.code == 2),
        "the failed part is an error: {cart:?}"
    );
    let ids: std::collections::HashSet<&[u8]> = spans.iter().map(|s| &s.span.span_id[..]).collect();
    assert_eq!(ids.len(), 4, "every span has its own ID");

    // The parts' exchanges count as tries of their endpoint.
    std::thread::sleep(Duration::from_millis(150));
    let mut admin = Client::connect(gw.admin_port);
    let metrics = admin.get("/metrics").text();
    let tries = format!(
        "portico_upstream_requests_total{{upstream=\"echo\",endpoint=\"{}\"}} 2\n",
        up.addr()
    );
    assert!(metrics.contains(&tries), "{metrics}");
    assert!(
        metrics.contains("portico_upstream_request_duration_seconds_count{upstream=\"echo\"} 2\n")
    );
}
