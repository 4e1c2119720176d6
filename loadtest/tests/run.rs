//! Integration tests of `portico-load run` and `plot`: real processes on 127.0.0.1,
//! with `portico-load serve` (or a tiny misbehaving server) as the target. The runs
//! are short (1–4 s); nothing here asserts a speed, only what the numbers mean.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{assert_bad_input, portico_load, Upstream};

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("portico-load-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `portico-load run ARGS --json FILE`; asserts success and returns the JSON.
fn run_json(args: &[&str]) -> Value {
    let scratch =
        Scratch::new(&format!("json-{:?}", thread::current().id()).replace(['(', ')'], ""));
    let json = scratch.path("out.json");
    common::run_json(json.to_str().expect("utf-8 path"), args).0
}

fn us(v: &Value, key: &str) -> u64 {
    v["latency_us"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("latency_us.{key} in {v}"))
}

#[test]
fn latency_is_the_known_server_delay() {
    let upstream = Upstream::start(&["--delay-ms", "50"]);
    let url = upstream.url("/");

    // Closed loop: 4 connections, each ~20 requests a second.
    let v = run_json(&[&url, "-c", "4", "-d", "2s"]);
    assert!(us(&v, "min") >= 50_000, "{v}");
    assert!((50_000..70_000).contains(&us(&v, "p50")), "{v}");
    let requests = v["requests"].as_u64().unwrap();
    assert!(
        (100..=170).contains(&requests),
        "4 × 2 s / 50 ms ≈ 160: {v}"
    );
    assert_eq!(v["mode"], "closed");

    // Open loop well under capacity: 40/s over 8 connections, one every 200 ms each,
    // so nothing queues and the latency is the delay again.
    let v = run_json(&[&url, "-c", "8", "-d", "2s", "--rate", "40"]);
    assert_eq!(v["requests"], 80, "{v}");
    assert!(us(&v, "min") >= 50_000, "{v}");
    assert!((50_000..70_000).contains(&us(&v, "p50")), "{v}");
    assert_eq!(v["schedule"]["sent_late_busy"], 0, "{v}");
}

#[test]
fn open_loop_achieves_the_target_rate() {
    let upstream = Upstream::start(&[]);
    let v = run_json(&[
        &upstream.url("/"),
        "-c",
        "8",
        "-d",
        "3s",
        "--warmup",
        "500ms",
        "--rate",
        "1000",
    ]);
    let achieved = v["achieved_rate"].as_f64().unwrap();
    assert!(
        (990.0..=1010.0).contains(&achieved),
        "within 1% of 1000/s: {v}"
    );
    let requests = v["requests"].as_u64().unwrap();
    assert!((2970..=3030).contains(&requests), "{v}");
    assert_eq!(v["statuses"]["200"].as_u64(), Some(requests));
    assert_eq!(v["schedule"]["unsent"], 0, "{v}");
}

/// Every 200th request of the upstream stalls 300 ms. A closed loop waits politely for
/// it and sends nothing meanwhile, so only 1 request in 200 is slow and p99 looks
/// fine; an open loop at 200/s keeps scheduling, and the ~60 requests meant for the
/// stalled interval are late by up to 300 ms, which the tail must show.
#[test]
fn coordinated_omission_shows_in_open_loop_and_hides_in_closed_loop() {
    let upstream = Upstream::start(&["--stall-every", "200", "--stall-ms", "300"]);
    let url = upstream.url("/");

    let closed = run_json(&[&url, "-c", "1", "-d", "3s"]);
    assert!(
        us(&closed, "max") >= 300_000,
        "the stall happened: {closed}"
    );
    assert!(
        us(&closed, "p99") < 50_000,
        "closed loop hides it: {closed}"
    );

    let open = run_json(&[&url, "-c", "1", "-d", "4s", "--rate", "200"]);
    assert!(us(&open, "max") >= 300_000, "{open}");
    assert!(us(&open, "p99") >= 250_000, "open loop shows it: {open}");
    assert!(
        us(&open, "p90") >= 50_000,
        "~30% of requests waited: {open}"
    );
    let late = open["schedule"]["sent_late_busy"].as_u64().unwrap();
    assert!(late >= 100, "requests held behind the stalls: {open}");
    let achieved = open["achieved_rate"].as_f64().unwrap();
    assert!(achieved >= 190.0, "the schedule is kept: {open}");
}

/// The server's own count (`/__hits`) equals what the tool reports: nothing is lost
/// or counted twice. Without warm-up every request the tool sends is measured.
#[test]
fn every_request_sent_is_counted_once() {
    let upstream = Upstream::start(&[]);
    let hits = || -> u64 {
        let mut stream = std::net::TcpStream::connect(upstream.addr).unwrap();
        stream
            .write_all(b"GET /__hits HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let body = text.split("\r\n\r\n").nth(1).expect("a body");
        serde_json::from_str::<Value>(body).unwrap()["requests"]
            .as_u64()
            .unwrap()
    };
    let v = run_json(&[&upstream.url("/"), "-c", "4", "-d", "1s"]);
    let closed = v["requests"].as_u64().unwrap();
    assert!(closed > 0);
    assert_eq!(hits(), closed, "{v}");
    let v = run_json(&[&upstream.url("/"), "-c", "4", "-d", "1s", "--rate", "500"]);
    assert_eq!(v["requests"], 500, "{v}");
    assert_eq!(hits(), closed + 500, "{v}");
}

/// An open loop that cannot be delivered says so: one connection cannot carry a
/// million requests a second, so most are held back, the backlog left after the
/// window's `--timeout` grace is counted as never sent, and a warning names the cause.
#[test]
fn an_undeliverable_rate_is_reported() {
    let upstream = Upstream::start(&[]);
    let v = run_json(&[
        &upstream.url("/"),
        "-c",
        "1",
        "-d",
        "1s",
        "--rate",
        "1000000",
        "--timeout",
        "500ms",
    ]);
    let achieved = v["achieved_rate"].as_f64().unwrap();
    assert!(achieved < 990_000.0, "{v}");
    assert!(v["schedule"]["unsent"].as_u64().unwrap() > 0, "{v}");
    assert!(v["schedule"]["sent_late_busy"].as_u64().unwrap() > 0, "{v}");
    let warning = v["load_warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("busy connections"), "{v}");
}

#[test]
fn statuses_round_robin_urls_headers_and_bodies() {
    let upstream = Upstream::start(&["--echo"]);
    let scratch = Scratch::new("inputs");
    let keys = scratch.path("keys.txt");
    let keys_text: String = (0..1000).map(|i| format!("X-Api-Key: key-{i}\n")).collect();
    std::fs::write(&keys, keys_text + "\n").unwrap();
    let body = scratch.path("body.json");
    std::fs::write(&body, br#"{"hello": "world"}"#).unwrap();
    let v = run_json(&[
        &upstream.url("/ok"),
        &upstream.url("/limited?status=429"),
        &upstream.url("/broken?status=503"),
        "-c",
        "3",
        "-d",
        "1s",
        "--method",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--header-file",
        keys.to_str().unwrap(),
        "--body-file",
        body.to_str().unwrap(),
    ]);
    let count = |code: &str| v["statuses"][code].as_u64().unwrap_or(0);
    let total = v["requests"].as_u64().unwrap();
    assert!(total > 30, "{v}");
    assert_eq!(count("200") + count("429") + count("503"), total, "{v}");
    // Connection j sends j, j+3, …: each connection sticks to one URL, a third each.
    for code in ["200", "429", "503"] {
        assert!(count(code) * 4 > total, "{code}: {v}");
    }
    assert_eq!(v["errors"]["parse"], 0, "{v}");
}

#[test]
fn timeouts_resets_and_garbage_are_counted_by_kind() {
    let slow = Upstream::start(&["--delay-ms", "2000"]);
    let v = run_json(&[&slow.url("/"), "-c", "2", "-d", "1s", "--timeout", "300ms"]);
    assert!(v["errors"]["timeout"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["requests"], 0, "{v}");

    let reset = misbehaving_server(b"");
    let v = run_json(&[&format!("http://{reset}/"), "-c", "1", "-d", "1s"]);
    assert!(v["errors"]["reset"].as_u64().unwrap() >= 1, "{v}");

    let garbage = misbehaving_server(b"SPDY/9 what\r\n\r\n");
    let v = run_json(&[&format!("http://{garbage}/"), "-c", "1", "-d", "1s"]);
    assert!(v["errors"]["parse"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["requests"], 0, "{v}");
}

/// A server on 127.0.0.1 that reads a request, writes `answer` and closes, for as long
/// as the test process lives (a detached thread; the OS closes it at exit).
fn misbehaving_server(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(answer);
        }
    });
    addr
}

#[test]
fn hgrm_files_plot_as_one_line_each() {
    let upstream = Upstream::start(&[]);
    let scratch = Scratch::new("plot");
    let (a, b) = (scratch.path("closed-8.hgrm"), scratch.path("open-500.hgrm"));
    let url = upstream.url("/");
    run_json(&[&url, "-c", "8", "-d", "1s", "--hgrm", a.to_str().unwrap()]);
    run_json(&[
        &url,
        "-c",
        "8",
        "-d",
        "1s",
        "--rate",
        "500",
        "--hgrm",
        b.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&a).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    assert!(text.contains("#[Max     = "));

    let svg = scratch.path("latency.svg");
    let out = portico_load(&[
        "plot",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg "));
    assert_eq!(chart.matches("<polyline").count(), 2);
    assert!(chart.contains(">closed-8</text>") && chart.contains(">open-500</text>"));
}

#[test]
fn bad_input_is_one_line_and_exit_status_2() {
    let upstream = Upstream::start(&[]);
    let url = upstream.url("/");
    let scratch = Scratch::new("bad");
    let not_hgrm = scratch.path("notes.hgrm");
    std::fs::write(&not_hgrm, "hello\n").unwrap();
    let bad_headers = scratch.path("headers.txt");
    std::fs::write(&bad_headers, "X-Ok: 1\nno colon here\n").unwrap();
    // A port nothing listens on: bind one, note it, close it.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["run".into(), format!("http://{closed}/")],
            "cannot connect",
        ),
        (
            vec!["run".into(), url.clone(), "--rate".into(), "0".into()],
            "rate",
        ),
        (
            vec!["run".into(), url.clone(), "-H".into(), "no colon".into()],
            "header",
        ),
        (
            vec!["run".into(), url.clone(), "-H".into(), "Bad Name: x".into()],
            "header name",
        ),
        (
            vec![
                "run".into(),
                url.clone(),
                "--header-file".into(),
                bad_headers.display().to_string(),
            ],
            "headers.txt:2",
        ),
        (vec!["run".into(), "not-a-url".into()], "not a URL"),
        (
            vec!["run".into(), url.clone(), "-d".into(), "ten".into()],
            "duration",
        ),
        (
            vec!["run".into(), url.clone(), "-c".into(), "0".into()],
            "connections",
        ),
        (
            vec!["run".into(), url.clone(), "--cpus".into(), "100000".into()],
            "cpu 100000",
        ),
        (
            vec![
                "run".into(),
                url.clone(),
                "--body-file".into(),
                "/nonexistent/body".into(),
            ],
            "body-file",
        ),
        (
            vec![
                "plot".into(),
                not_hgrm.display().to_string(),
                "-o".into(),
                scratch.path("x.svg").display().to_string(),
            ],
            "not a percentile row",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_bad_input(&args, expected);
    }
}
