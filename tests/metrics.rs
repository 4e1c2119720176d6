//! `GET /metrics` through the real gateway (two workers, so the series of both are
//! merged): after a known sequence of requests the text exposition passes
//! `promtool check metrics` and holds the exact counts by route, method and code,
//! upstream endpoint, auth provider and rate-limit policy; every histogram's
//! buckets rise to its count; OpenMetrics is served when asked for (and parsed by
//! the Prometheus Python client's strict parser); the JSON access-log lines of the
//! same requests parse and carry their fields. Totals never go backwards when a
//! worker dies and is restarted, and a reload raises `portico_config_version`.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::jwt::{claims, header, SigningKey};
use common::{free_port, Client, Gateway, Response, Upstream};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portico-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn gateway(up: &Upstream, dead: &str, secret: &Path, log: &Path) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 2
pin_workers = false
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "{log}"
access_log_format = "json"
[auth.jwt.main]
issuer = "https://id.test/"
audiences = ["api"]
algorithms = ["HS256"]
hmac_secret_file = "{secret}"
[[rate_limit]]
name = "burst2"
key = "ip"
rate = "1/m"
burst = 2
scope = "worker"
[[upstream]]
name = "echo"
endpoints = ["{up}"]
[[upstream]]
name = "dead"
endpoints = ["{dead}"]
[[route]]
name = "echo"
path_prefix = "/echo"
upstream = "echo"
[[route]]
name = "dead"
path_prefix = "/dead"
upstream = "dead"
[[route]]
name = "api"
path_prefix = "/api"
upstream = "echo"
auth = "main"
[[route]]
name = "limited"
path = "/limited"
respond = {{ status = 200, body = "ok" }}
rate_limits = ["burst2"]
[[route]]
name = "root"
path = "/"
respond = {{ status = 200, body = "root" }}
"#,
        log = log.display(),
        secret = secret.display(),
        up = up.addr(),
    ))
}

/// One request on a new connection (so the two workers share the load).
fn once(gw: &Gateway, request: &str) -> Response {
    let mut c = Client::connect(gw.port);
    c.send(request.as_bytes());
    c.response().expect("a response")
}

/// `/metrics` after the workers published: the response (with `accept`).
fn scrape(gw: &Gateway, accept: Option<&str>) -> Response {
    std::thread::sleep(Duration::from_millis(150));
    let mut c = Client::connect(gw.admin_port);
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    c.send(format!("GET /metrics HTTP/1.1\r\nHost: a\r\n{accept}\r\n").as_bytes());
    c.response().expect("a /metrics response")
}

/// The samples of a text exposition: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn promtool() -> &'static str {
    ["promtool", "/usr/bin/promtool"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("promtool (Debian package prometheus) is installed; scripts/test installs it")
}

/// `promtool check metrics` on `text`: no problem, no lint.
fn promtool_check(text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
}

#[test]
fn metrics_count_a_known_sequence_exactly() {
    let up = Upstream::echo();
    let key = SigningKey::hmac();
    let secret = scratch("hs.secret");
    std::fs::write(&secret, key.secret()).unwrap();
    let log = scratch("access.json");
    let _ = std::fs::remove_file(&log);
    let dead = format!("127.0.0.1:{}", free_port());
    let gw = gateway(&up, &dead, &secret, &log);
    let token = key.sign(&header("HS256", None), &claims("alice"));

    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    for _ in 0..3 {
        assert_eq!(once(&gw, &get("/echo/a")).status, 200);
    }
    let post = "POST /echo/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(once(&gw, post).status, 200);
    for _ in 0..2 {
        assert_eq!(once(&gw, &get("/nope")).status, 404);
    }
    assert_eq!(once(&gw, &get("/dead/x")).status, 502);
    let with_token =
        format!("GET /api/me HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\n\r\n");
    assert_eq!(once(&gw, &with_token).status, 200);
    assert_eq!(once(&gw, &get("/api/me")).status, 401);
    let bad = "GET /api/me HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer a.b.c\r\n\r\n";
    assert_eq!(once(&gw, bad).status, 401);
    // One connection, so one worker's bucket: two pass, the third is refused.
    let mut c = Client::connect(gw.port);
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            c.send(get("/limited").as_bytes());
            c.response().expect("a response").status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(
        once(&gw, "DELETE / HTTP/1.1\r\nHost: gw.test\r\n\r\n").status,
        200
    );

    let r = scrape(&gw, None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    promtool_check(&text);
    names_are_documented_and_dashboarded(&text);
    let s = samples(&text);
    let want = |series: &str, value: f64| {
        assert_eq!(s.get(series).copied(), Some(value), "{series} in\n{text}");
    };
    want(
        r#"portico_requests_total{route="echo",method="GET",code="200"}"#,
        3.0,
    );
    want(
        r#"portico_requests_total{route="echo",method="POST",code="200"}"#,
        1.0,
    );
    want(
        r#"portico_requests_total{route="",method="GET",code="404"}"#,
        2.0,
    );
    want(
        r#"portico_requests_total{route="dead",method="GET",code="502"}"#,
        1.0,
    );
    want(
        r#"portico_requests_total{route="api",method="GET",code="200"}"#,
        1.0,
    );
    want(
        r#"portico_requests_total{route="api",method="GET",code="401"}"#,
        2.0,
    );
    want(
        r#"portico_requests_total{route="limited",method="GET",code="200"}"#,
        2.0,
    );
    want(
        r#"portico_requests_total{route="limited",method="GET",code="429"}"#,
        1.0,
    );
    want(
        r#"portico_requests_total{route="root",method="DELETE",code="200"}"#,
        1.0,
    );
    let requests: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("portico_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(requests, 14.0, "no other request series");

    let echo = format!(r#"{{upstream="echo",endpoint="{}"}}"#, up.addr());
    let dead_ep = format!(r#"{{upstream="dead",endpoint="{dead}"}}"#);
    want(&format!("portico_upstream_requests_total{echo}"), 5.0);
    want(
        &format!("portico_upstream_connect_failures_total{echo}"),
        0.0,
    );
    want(&format!("portico_upstream_requests_total{dead_ep}"), 1.0);
    want(
        &format!("portico_upstream_connect_failures_total{dead_ep}"),
        1.0,
    );
    want(&format!("portico_upstream_endpoint_healthy{dead_ep}"), 1.0);
    want(
        r#"portico_upstream_request_duration_seconds_count{upstream="echo"}"#,
        5.0,
    );
    want(
        r#"portico_upstream_overflows_total{upstream="echo",limit="max_requests"}"#,
        0.0,
    );
    want(
        r#"portico_auth_decisions_total{provider="main",result="allowed"}"#,
        1.0,
    );
    want(
        r#"portico_auth_decisions_total{provider="main",result="missing"}"#,
        1.0,
    );
    want(
        r#"portico_auth_decisions_total{provider="main",result="invalid_token"}"#,
        1.0,
    );
    want(r#"portico_auth_verifications_total"#, 1.0);
    want(
        r#"portico_ratelimit_decisions_total{policy="burst2",result="allowed"}"#,
        2.0,
    );
    want(
        r#"portico_ratelimit_decisions_total{policy="burst2",result="denied"}"#,
        1.0,
    );
    want("portico_workers", 2.0);
    want("portico_config_version", 1.0);
    // Twelve clients, and the harness's probe that waited for the port.
    want("portico_connections_accepted_total", 13.0);
    want("portico_requests_in_flight", 0.0);
    assert!(s.contains_key(r#"portico_build_info{version="0.1.0"}"#));

    // Every histogram: buckets never fall and the +Inf bucket is the count.
    let routes = [
        ("echo", 4.0),
        ("", 2.0),
        ("dead", 1.0),
        ("api", 3.0),
        ("limited", 3.0),
        ("root", 1.0),
    ];
    for (route, count) in routes {
        let label = format!(r#"route="{route}""#);
        want(
            &format!("portico_request_duration_seconds_count{{{label}}}"),
            count,
        );
        let mut buckets: Vec<(f64, f64)> = s
            .iter()
            .filter(|(k, _)| {
                k.starts_with("portico_request_duration_seconds_bucket{") && k.contains(&label)
            })
            .map(|(k, v)| {
                let le = k.rsplit_once("le=\"").unwrap().1.trim_end_matches("\"}");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, *v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(buckets.len(), 17, "{route}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{route}: {buckets:?}"
        );
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count), "{route}");
    }
    let checked = histograms_add_up(&s);
    assert!(
        checked
            .iter()
            .any(|h| h.starts_with("portico_upstream_request_duration_seconds_count{")),
        "{checked:?}"
    );

    // OpenMetrics when asked for, as Prometheus asks.
    let r = scrape(
        &gw,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let open = r.text();
    assert!(open.ends_with("# EOF\n"));
    assert!(open.contains("# TYPE portico_requests counter\n"));
    assert!(open.contains("portico_requests_total{route=\"echo\",method=\"GET\",code=\"200\"} 3\n"));
    openmetrics_check(&open);

    // The JSON access log of the same requests.
    let deadline = Instant::now() + Duration::from_secs(3);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.len() >= 14 || Instant::now() >= deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(lines.len(), 14);
    let fields = [
        "time",
        "client",
        "method",
        "authority",
        "path",
        "protocol",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "route",
        "upstream",
        "endpoint",
        "upstream_connect_ms",
        "upstream_first_byte_ms",
        "attempts",
        "failure",
        "request_id",
        "trace_id",
        "auth_subject",
        "ratelimit_policy",
        "ratelimit",
    ];
    for l in &lines {
        let keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), fields.len(), "{l}");
        for f in fields {
            assert!(keys.contains(&f), "{f} missing in {l}");
        }
    }
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        lines
            .iter()
            .find(|l| pred(l))
            .unwrap_or_else(|| panic!("no such line in {lines:?}"))
            .clone()
    };
    let posted = find(&|l| l["method"] == "POST");
    assert_eq!(posted["route"], "echo");
    assert_eq!(posted["upstream"], "echo");
    assert_eq!(posted["endpoint"], up.addr());
    assert_eq!(posted["authority"], "gw.test");
    assert_eq!(posted["path"], "/echo/a");
    assert_eq!(posted["protocol"], "HTTP/1.1");
    assert_eq!(posted["attempts"], 1);
    assert!(
        posted["bytes_in"].as_u64().unwrap() > 5,
        "head and body: {posted}"
    );
    assert!(posted["bytes_out"].as_u64().unwrap() > 0);
    assert!(posted["upstream_first_byte_ms"].as_f64().is_some());
    assert!(posted["upstream_connect_ms"].as_f64().is_some());
    assert_eq!(posted["trace_id"], serde_json::Value::Null);
    let alice = find(&|l| l["status"] == 200 && l["route"] == "api");
    assert_eq!(alice["auth_subject"], "alice");
    let denied = find(&|l| l["status"] == 429);
    assert_eq!(denied["ratelimit_policy"], "burst2");
    assert_eq!(denied["ratelimit"], "denied");
    let allowed = find(&|l| l["status"] == 200 && l["route"] == "limited");
    assert_eq!(allowed["ratelimit"], "allowed");
    let failed = find(&|l| l["status"] == 502);
    assert_eq!(failed["failure"], "connect");
    let missing = find(&|l| l["status"] == 404);
    assert_eq!(missing["route"], serde_json::Value::Null);
    assert_eq!(missing["upstream"], serde_json::Value::Null);
}

/// Every histogram series of `s` (whatever its family): its buckets never fall as
/// `le` rises, and its `+Inf` bucket equals its `_count`. Returns the `_count`
/// series checked.
fn histograms_add_up(s: &HashMap<String, f64>) -> Vec<String> {
    let mut series: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    for (k, v) in s {
        let Some((family, labels)) = k.split_once("_bucket{") else {
            continue;
        };
        let (others, le) = labels
            .rsplit_once("le=\"")
            .unwrap_or_else(|| panic!("a bucket without le: {k}"));
        let le = le.trim_end_matches("\"}");
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or_else(|e| panic!("{e}: {k}"))
        };
        let others = others.trim_end_matches(',');
        let count = if others.is_empty() {
            format!("{family}_count")
        } else {
            format!("{family}_count{{{others}}}")
        };
        series.entry(count).or_default().push((le, *v));
    }
    assert!(!series.is_empty(), "no histogram at all");
    for (count, buckets) in &mut series {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{count}: {buckets:?}"
        );
        let inf = buckets.last().copied();
        assert_eq!(
            inf.map(|b| b.0),
            Some(f64::INFINITY),
            "{count}: no +Inf bucket"
        );
        assert_eq!(inf.map(|b| b.1), s.get(count.as_str()).copied(), "{count}");
    }
    series.into_keys().collect()
}

/// Every metric family of `text` is in docs/observability.md, and every metric the
/// Grafana dashboard queries is one of them.
fn names_are_documented_and_dashboarded(text: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let docs = std::fs::read_to_string(root.join("docs/observability.md")).unwrap();
    for f in &families {
        assert!(
            docs.contains(&format!("`{f}")),
            "{f} is not in docs/observability.md"
        );
    }
    let dashboard =
        std::fs::read_to_string(root.join("docs/deploy/grafana-dashboard.json")).unwrap();
    let queried: Vec<&str> = dashboard
        .match_indices("portico_")
        .map(|(i, _)| {
            let rest = &dashboard[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| *name != "portico_")
        .collect();
    assert!(queried.len() > 20, "the dashboard queries the metrics");
    for q in queried {
        let family = q.strip_suffix("_bucket").unwrap_or(q);
        assert!(
            families.contains(&family),
            "the dashboard queries {q}, which /metrics lacks"
        );
    }
}

/// Parses an OpenMetrics exposition with the Prometheus Python client's strict
/// parser (Debian python3-prometheus-client, for Debian's /usr/bin/python3).
fn openmetrics_check(text: &str) {
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\nprint(len(list(p(sys.stdin.read()))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python ends");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_route_has_its_histogram_from_the_start_and_its_codes_as_they_come() {
    let gw = Gateway::start(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[log]\naccess_log = \"off\"\n[[route]]\nname = \"r\"\nrespond = { status = 204 }\n",
    );
    let text = scrape(&gw, None).text();
    promtool_check(&text);
    let s = samples(&text);
    assert_eq!(
        s.get(r#"portico_request_duration_seconds_count{route="r"}"#),
        Some(&0.0),
        "configured routes are there at 0, so rates work from the first scrape"
    );
    assert!(!text.contains("portico_requests_total{route=\"r\""));
    let mut c = gw.client();
    c.send(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.read_response(true).expect("a response").status, 204);
    let s = samples(&scrape(&gw, None).text());
    assert_eq!(
        s.get(r#"portico_requests_total{route="r",method="HEAD",code="204"}"#),
        Some(&1.0)
    );
}

/// One sample of `/metrics` (after the workers' next publication), if present.
fn sample(gw: &Gateway, series: &str) -> Option<f64> {
    samples(&scrape(gw, None).text()).get(series).copied()
}

/// Waits up to 10 s for `series` to read `value` on `/metrics`.
fn wait_for_sample(gw: &Gateway, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = sample(gw, series);
        if now == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now:?}, not {value}"
        );
    }
}

#[test]
fn totals_survive_a_worker_restart_and_a_reload_raises_the_config_version() {
    let config = "[server]\nlisten = [\"127.0.0.1:{port}\"]\nworkers = 1\n\
                  [admin]\nlisten = \"127.0.0.1:{admin}\"\n[log]\naccess_log = \"off\"\n\
                  [reload]\ncanary = false\nwatch = false\n\
                  [[route]]\nname = \"ok\"\npath = \"/ok\"\nrespond = { status = 200 }\n\
                  [[route]]\nname = \"test-panic-worker\"\npath = \"/die\"\nrespond = { status = 200 }\n";
    let gw = Gateway::start_with(config, &[("PORTICO_TEST_PANICS", "1")], None);
    let ok = r#"portico_requests_total{route="ok",method="GET",code="200"}"#;
    for _ in 0..5 {
        assert_eq!(gw.client().get("/ok").status, 200);
    }
    wait_for_sample(&gw, ok, 5.0);
    assert_eq!(sample(&gw, "portico_config_version"), Some(1.0));

    // The worker dies on its next tick and is started again: its new series
    // start at zero, what it counted before stays in the totals.
    assert_eq!(gw.client().get("/die").status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.proc.stderr_text().contains("restarted on version 1") {
        assert!(Instant::now() < deadline, "{}", gw.proc.stderr_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..2 {
        assert_eq!(gw.client().get("/ok").status, 200);
    }
    wait_for_sample(&gw, ok, 7.0);
    let text = scrape(&gw, None).text();
    promtool_check(&text);
    let s = samples(&text);
    assert_eq!(s.get("portico_workers"), Some(&1.0), "{text}");
    assert_eq!(
        s.get(r#"portico_request_duration_seconds_count{route="ok"}"#),
        Some(&7.0),
        "{text}"
    );
    histograms_add_up(&s);

    // A reload (SIGHUP, every worker at once) is version 2.
    let file = std::fs::read_to_string(&gw.config).expect("config");
    let more = format!(
        "{file}[[route]]\nname = \"more\"\npath = \"/more\"\nrespond = {{ status = 204 }}\n"
    );
    std::fs::write(&gw.config, more).expect("rewrite");
    gw.proc.signal(libc::SIGHUP);
    wait_for_sample(&gw, "portico_config_version", 2.0);
    assert_eq!(gw.client().get("/more").status, 204);
    wait_for_sample(&gw, ok, 7.0);
}
