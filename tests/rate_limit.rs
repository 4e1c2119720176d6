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

use common::{load, Gateway, LoadPlan, RedisServer};

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

/// The rate-limit counters of a gateway, for failure messages.
fn limiter_stats(gw: &Gateway) -> String {
    [
        "ratelimit_allowed",
        "ratelimit_denied",
        "ratelimit_provisional",
        "ratelimit_local",
        "ratelimit_channel_full",
        "ratelimit_lease_requests",
        "limiter_demands",
        "limiter_grants_dropped",
    ]
    .iter()
    .map(|n| format!("{n}={}", gw.stat(n)))
    .collect::<Vec<_>>()
    .join(" ")
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
    blast.connections = 4;
    blast.batch = 50;
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
    // "About": a worker that spends its lease before the limiter thread gets a
    // core refuses until the grant arrives, so a starved machine admits a little less.
    assert!(
        b.ok as f64 >= 5000.0 * 0.9 && b.ok as f64 <= expected * 1.03,
        "burst phase admitted {} (expected 5000..{expected:.0}); {}",
        b.ok,
        limiter_stats(&gw)
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

// ------------------------------------------------------------------ test 2

fn fleet_section(redis: &RedisServer, on_failure: &str) -> String {
    format!(
        r#"
[fleet]
redis = "{}"
sync_interval_ms = 10
redis_timeout_ms = 200
on_redis_failure = "{on_failure}"
"#,
        redis.url()
    )
}

/// Two gateway processes (2 workers each) share one Redis: rate 500/s, burst
/// 500, a 4x overload split over both for 10 s admits 500 × 10 + 500 within 5%.
#[test]
fn fleet_policy_holds_one_limit_across_two_gateways() {
    let _heavy = heavy();
    let redis = RedisServer::start();
    let text = config(
        2,
        r#""fleet""#,
        &format!(
            r#"
[[rate_limit]]
name = "fleet"
key = "global"
rate = 500
burst = 500
scope = "fleet"
{}"#,
            fleet_section(&redis, "instance")
        ),
    );
    let gws = Gateway::start_many(&text, 2);
    let ports: Vec<u16> = gws.iter().map(|g| g.port).collect();
    let mut plan = LoadPlan::new(&ports);
    plan.connections = 8;
    plan.batch = 4;
    plan.rate = Some(2000.0);
    plan.duration = Duration::from_secs(10);
    let r = load::run(&plan);
    let expected = 500.0 * r.elapsed + 500.0;
    eprintln!(
        "test 2 fleet: offered {} in {:.3} s over 2 gateways, admitted {}; expected {:.0} ({:+.2}%)",
        r.sent,
        r.elapsed,
        r.ok,
        expected,
        (r.ok as f64 / expected - 1.0) * 100.0
    );
    for g in &gws {
        assert_eq!(
            g.stat("fleet_redis_failures"),
            0,
            "{}",
            g.proc.stderr_text()
        );
        assert!(g.stat("fleet_syncs") > 0);
    }
    assert!(r.sent as f64 >= 3.0 * expected, "not an overload: {r:?}");
    assert!(
        within(r.ok as f64, expected, 0.05),
        "admitted {} (expected {expected:.0} ± 5%)",
        r.ok
    );
}

/// The same load with `scope = "worker"`: every worker of every gateway has its
/// own bucket, so the fleet admits up to 4x the limit. The figure is recorded.
#[test]
fn worker_scope_overshoots_by_the_number_of_buckets() {
    let _heavy = heavy();
    let text = config(
        2,
        r#""local""#,
        r#"
[[rate_limit]]
name = "local"
key = "global"
rate = 500
burst = 500
scope = "worker"
"#,
    );
    let gws = Gateway::start_many(&text, 2);
    let ports: Vec<u16> = gws.iter().map(|g| g.port).collect();
    let mut plan = LoadPlan::new(&ports);
    plan.connections = 8;
    plan.batch = 4;
    plan.rate = Some(2000.0);
    plan.duration = Duration::from_secs(5);
    let r = load::run(&plan);
    let limit = 500.0 * r.elapsed + 500.0;
    let overshoot = r.ok as f64 / limit;
    eprintln!(
        "test 2 worker scope: offered {} in {:.3} s over 2 gateways x 2 workers, admitted {} against a limit of {:.0}: {:.2}x",
        r.sent, r.elapsed, r.ok, limit, overshoot
    );
    assert!(
        overshoot > 1.5,
        "4 independent buckets should admit well over one limit ({overshoot:.2}x)"
    );
}

// ------------------------------------------------------------------ test 3

/// 1000 API keys, each limited to 5/s (burst 10), under mixed traffic over 2
/// workers: every key is admitted within 10% of its own limit, none starved.
/// The overload is offered by a debug build on a shared machine: 5/s per key
/// (5,000/s in all) leaves room for it to be at least 20% over the limit on a
/// slow spell (with 10/s per key, 12,000/s were needed and a slow machine
/// offered 11,213/s: the test failed on the machine's speed, not on fairness).
#[test]
fn per_key_fairness_with_a_thousand_keys() {
    let _heavy = heavy();
    let gw = Gateway::start(&config(
        2,
        r#""per-key""#,
        r#"
[[rate_limit]]
name = "per-key"
key = "header:x-api-key"
rate = 5
burst = 10
"#,
    ));
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i:04}")).collect();
    let mut plan = LoadPlan::new(&[gw.port]);
    plan.connections = 8;
    plan.batch = 25;
    plan.rate = Some(15_000.0);
    plan.duration = Duration::from_secs(8);
    plan.keys = keys;
    let r = load::run(&plan);
    let expected = 5.0 * r.elapsed + 10.0;
    let admitted: Vec<u64> = r.per_key.iter().map(|k| k[0]).collect();
    let min = admitted.iter().copied().min().unwrap_or(0);
    let max = admitted.iter().copied().max().unwrap_or(0);
    let mean = admitted.iter().sum::<u64>() as f64 / admitted.len() as f64;
    let outside = admitted
        .iter()
        .filter(|&&a| !within(a as f64, expected, 0.10))
        .count();
    eprintln!(
        "test 3 per key: offered {} in {:.3} s ({:.1}/s per key), admitted per key min {min} mean {mean:.1} max {max}; expected {expected:.1}; {outside} of 1000 keys outside ±10%",
        r.sent,
        r.elapsed,
        r.sent as f64 / r.elapsed / 1000.0
    );
    assert!(
        r.sent as f64 / r.elapsed >= 6_000.0,
        "the machine could not offer the overload: {:.0}/s",
        r.sent as f64 / r.elapsed
    );
    assert_eq!(
        outside, 0,
        "keys outside ±10% of {expected:.1}: min {min}, max {max}"
    );
}

// ------------------------------------------------------------------ test 4

/// Seconds into the run when Redis is frozen, killed, started again; and the end.
const FREEZE_AT: f64 = 1.5;
const KILL_AT: f64 = 2.3;
const RESTART_AT: f64 = 3.2;
const END_AT: f64 = 5.7;
/// When the outage is surely noticed (one Redis timeout after the freeze, and a tick).
const OUTAGE_FROM: f64 = FREEZE_AT + 0.4;
/// When the restarted Redis is surely in use again (a reconnect, a burst spent).
const RECOVERED_FROM: f64 = RESTART_AT + 1.0;
const RATE: f64 = 200.0;
const REDIS_TIMEOUT_MS: u64 = 200;

/// A fleet run at 3x the limit during which Redis is frozen (SIGSTOP: calls time
/// out), then killed (connections refused), then started again, empty.
fn run_through_redis_outage(on_failure: &str) -> (load::LoadResult, Gateway) {
    let mut redis = RedisServer::start();
    let text = config(
        2,
        r#""fleet""#,
        &format!(
            r#"
[[rate_limit]]
name = "fleet"
key = "global"
rate = {RATE}
burst = {RATE}
scope = "fleet"

[fleet]
redis = "{}"
sync_interval_ms = 10
redis_timeout_ms = {REDIS_TIMEOUT_MS}
on_redis_failure = "{on_failure}"
"#,
            redis.url()
        ),
    );
    let gw = Gateway::start(&text);
    let mut plan = LoadPlan::new(&[gw.port]);
    plan.connections = 4;
    plan.batch = 2;
    plan.rate = Some(3.0 * RATE);
    plan.duration = Duration::from_secs_f64(END_AT);
    let t0 = Instant::now();
    let runner = std::thread::spawn(move || load::run(&plan));
    let at = |s: f64| {
        std::thread::sleep(
            (t0 + Duration::from_secs_f64(s)).saturating_duration_since(Instant::now()),
        )
    };
    at(FREEZE_AT);
    redis.pause();
    at(KILL_AT);
    redis.stop();
    at(RESTART_AT);
    redis.restart();
    let r = runner.join().expect("load thread");
    let stderr = gw.proc.stderr_text();
    assert!(
        stderr.contains("fleet: redis at") && stderr.contains("failed"),
        "the failure is logged:\n{stderr}"
    );
    assert!(
        stderr.contains("answers again"),
        "the recovery is logged:\n{stderr}"
    );
    assert!(gw.stat("fleet_redis_failures") > 0);
    assert_eq!(gw.stat("fleet_redis_down"), 0, "Redis is back");
    assert!(
        r.max_latency < Duration::from_millis(REDIS_TIMEOUT_MS),
        "a request waited {:?} ({:.2} s into the run), longer than the Redis timeout",
        r.max_latency,
        r.max_latency_at
    );
    let [ok, _] = r.window(RECOVERED_FROM, END_AT - 0.1);
    let expected = RATE * (END_AT - 0.1 - RECOVERED_FROM);
    eprintln!(
        "test 4 {on_failure}: before {:?}, outage {:?}, after {:?} [ok, 429]; after recovery {ok} admitted, expected {expected:.0} ({:+.1}%); slowest response {:?}",
        r.window(0.5, FREEZE_AT),
        r.window(OUTAGE_FROM, RESTART_AT),
        r.window(RECOVERED_FROM, END_AT - 0.1),
        (ok as f64 / expected - 1.0) * 100.0,
        r.max_latency
    );
    assert!(
        within(ok as f64, expected, 0.15),
        "accuracy after Redis is back: {ok} admitted, expected {expected:.0} ± 15%"
    );
    (r, gw)
}

#[test]
fn redis_outage_falls_back_to_per_instance_limits() {
    let _heavy = heavy();
    let (r, _gw) = run_through_redis_outage("instance");
    let [ok, _] = r.window(OUTAGE_FROM, RESTART_AT);
    let expected = RATE * (RESTART_AT - OUTAGE_FROM);
    assert!(
        within(ok as f64, expected, 0.25),
        "during the outage this instance enforces the limit itself: {ok}, expected {expected:.0}"
    );
}

#[test]
fn redis_outage_with_open_admits_everything() {
    let _heavy = heavy();
    let (r, _gw) = run_through_redis_outage("open");
    let [ok, limited] = r.window(OUTAGE_FROM, RESTART_AT);
    assert!(
        limited * 20 <= ok + limited,
        "open: {limited} refused of {} during the outage",
        ok + limited
    );
}

#[test]
fn redis_outage_with_closed_refuses_everything() {
    let _heavy = heavy();
    let (r, _gw) = run_through_redis_outage("closed");
    let [ok, limited] = r.window(OUTAGE_FROM, RESTART_AT);
    assert!(
        ok * 20 <= ok + limited,
        "closed: {ok} admitted of {} during the outage",
        ok + limited
    );
}
