//! Rate limiting with real processes: the gateway, a load generator in this
//! process, and a private `redis-server` for fleet policies.
//!
//! Accuracy is measured as admitted requests against `rate × elapsed + burst`,
//! with the elapsed time the load actually took, so a slow machine changes the
//! expectation rather than failing the test. The load-heavy tests take a lock so
//! they never run at the same time. Each prints its figures (`--nocapture`
//! shows them); docs/rate-limiting.md records them.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{load, Client, Gateway, LoadPlan, RedisServer};

/// One load-heavy test at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A gateway with `workers` workers, one `respond` route using `limits`, and the
/// given extra sections (policies, `[fleet]`, headers).
fn config(workers: usize, limits: &str, sections: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = {workers}
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[[route]]
name = "api"
path_prefix = "/"
respond = {{ status = 200, body = "ok" }}
rate_limits = [{limits}]
{sections}
"#
    )
}

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= expected * tolerance
}

// ------------------------------------------------------------------ test 1

/// The AWS example on one instance with 2 workers: rate 1000, burst 5000. A
/// blast of 6000 admits the burst plus what refilled during it; then a 3x
/// overload for 10 s admits 1000/s within 3%.
#[test]
fn aws_example_burst_then_sustained_rate_on_one_instance() {
    let _heavy = heavy();
    let gw = Gateway::start(&config(
        2,
        r#""aws""#,
        r#"
[[rate_limit]]
name = "aws"
key = "global"
rate = 1000
burst = 5000
scope = "instance"
"#,
    ));

    let mut blast = LoadPlan::new(&[gw.port]);
    blast.connections = 8;
    blast.batch = 32;
    blast.total = Some(6000);
    blast.duration = Duration::from_secs(20);
    let b = load::run(&blast);
    let blast_end = Instant::now();
    let expected = 5000.0 + 1000.0 * b.elapsed;
    eprintln!(
        "test 1 burst: {} of 6000 admitted in {:.3} s; expected about {:.0} (5000 + refill)",
        b.ok, b.elapsed, expected
    );
    assert_eq!(b.ok + b.limited, 6000, "{b:?}");
    assert!(
        b.ok as f64 >= 5000.0 * 0.97 && b.ok as f64 <= expected * 1.03,
        "burst phase admitted {} (expected 5000..{expected:.0})",
        b.ok
    );

    let mut sustained = LoadPlan::new(&[gw.port]);
    sustained.connections = 6;
    sustained.batch = 4;
    sustained.rate = Some(3000.0);
    sustained.duration = Duration::from_secs(10);
    let s = load::run(&sustained);
    // The blast left the bucket empty; what refilled between the phases is in it.
    let gap = s.started.map_or(0.0, |t| {
        t.saturating_duration_since(blast_end).as_secs_f64()
    });
    let expected = 1000.0 * (s.elapsed + gap);
    eprintln!(
        "test 1 sustained: offered {} in {:.3} s ({:.0}/s), admitted {} = {:.1}/s; expected {:.0} ({:+.2}%)",
        s.sent,
        s.elapsed,
        s.sent as f64 / s.elapsed,
        s.ok,
        s.ok as f64 / s.elapsed,
        expected,
        (s.ok as f64 / expected - 1.0) * 100.0
    );
    assert!(
        s.sent as f64 >= 2.0 * expected,
        "the load generator did not overload ({} sent)",
        s.sent
    );
    assert!(
        within(s.ok as f64, expected, 0.03),
        "sustained phase admitted {} (expected {expected:.0} ± 3%)",
        s.ok
    );
}
