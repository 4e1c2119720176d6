//! The admin listener: health and readiness for orchestrators, the workers'
//! published counters and metrics. It runs on its own thread with blocking I/O
//! and is never served by a worker, so a busy data plane cannot starve a health
//! check.
//!
//! - `GET /healthz`: 200 while the process serves or drains; 503 `stopping` once
//!   the workers are gone (the listener closes right after).
//! - `GET /ready`: 200 while serving; 503 before that (`starting`, or a remote JWKS
//!   not yet fetched) and once draining (load balancers stop sending).
//! - `GET /stats`: counters summed over workers and side threads (the rate
//!   limiter, the health prober, the control thread's reload counts), as JSON,
//!   with an `endpoints` list: each upstream endpoint's health, ejections and
//!   tries over all workers, and the composed routes' counters under `compose`,
//!   per route and part.
//! - `GET /metrics`: Prometheus metrics (text format 0.0.4, or OpenMetrics when
//!   `Accept` asks for it); `metrics.rs`, names in docs/observability.md.
//! - `GET /config` and `POST /config/reload|promote|rollback` ([`config_api`]).
//!
//! The thread looks at its stop flag at least every [`STOP_CHECK`], so after
//! [`Admin::stop`] the listener closes within that time, or after the request in
//! progress (bounded by 2 s read and write timeouts).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

mod metrics;

use crate::compose::PublishedCompose;
use crate::observe::metrics::PublishedMetrics;
use crate::observe::PublishedCounters;
use crate::upstream::EndpointBoard;

pub mod config_api;
pub mod reload_client;

pub use config_api::{ConfigApi, ConfigView, ControlAction, ControlReply, ControlRequest};

/// Asked by `/ready`: `Some(reason)` while the gateway is not ready to serve.
pub type Readiness = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How often the admin thread checks whether it must stop.
pub const STOP_CHECK: Duration = Duration::from_millis(100);

/// Where the gateway is in its life, as `/healthz` and `/ready` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// The data listeners are not bound yet.
    Starting = 0,
    Serving = 1,
    /// Stop signal received: requests in flight finish, new ones go elsewhere.
    Draining = 2,
    /// The workers are gone; the process is about to exit.
    Stopping = 3,
}

/// The running admin listener.
pub struct Admin {
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Admin {
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Asks the thread to stop (it closes the listener within [`STOP_CHECK`], or
    /// after the request it is answering); returns the thread to wait for.
    pub fn stop(self) -> JoinHandle<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
    }
}

/// What the admin listener shows, published by the threads that count it.
pub struct Sources {
    /// Each worker's counters.
    pub workers: Vec<Arc<PublishedCounters>>,
    /// The counters of threads other than workers: summed in, not counted as workers.
    pub side: Vec<Arc<PublishedCounters>>,
    /// Each worker's composition counters.
    pub compose: Vec<Arc<PublishedCompose>>,
    /// Each worker's metric series.
    pub metrics: Vec<Arc<PublishedMetrics>>,
    /// The workers' published view of the endpoints.
    pub endpoints: Arc<EndpointBoard>,
}

/// Serves admin requests on `listener` (bound by the caller) on a background
/// thread, starting in [`Phase::Starting`], from `sources`; `config` answers
/// `/config`.
pub fn start(
    listener: TcpListener,
    sources: Sources,
    readiness: Readiness,
    config: ConfigApi,
) -> std::io::Result<Admin> {
    // Accept without blocking, after a poll with a timeout: the stop flag is seen.
    listener.set_nonblocking(true)?;
    let phase = Arc::new(AtomicU8::new(Phase::Starting as u8));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen_phase, seen_stop) = (phase.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("portico-admin".into())
        .spawn(move || {
            while !seen_stop.load(Ordering::Relaxed) {
                if !wait_readable(&listener, STOP_CHECK) {
                    continue;
                }
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => {
                        // Out of descriptors, and the like: do not spin on it.
                        std::thread::sleep(STOP_CHECK / 10);
                        continue;
                    }
                };
                let phase = phase_of(seen_phase.load(Ordering::Relaxed));
                let counters = Counters {
                    workers: &sources.workers,
                    side: &sources.side,
                    compose: &sources.compose,
                    metrics: &sources.metrics,
                    endpoints: &sources.endpoints,
                };
                let _ = answer(stream, phase, &counters, &readiness, &config);
            }
            // The listener closes as it drops here.
        })?;
    Ok(Admin {
        phase,
        stop,
        thread,
    })
}

/// Waits up to `timeout` for a connection to accept.
fn wait_readable(listener: &TcpListener, timeout: Duration) -> bool {
    let mut fds = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut fds, 1, ms) > 0 }
}

fn phase_of(v: u8) -> Phase {
    match v {
        0 => Phase::Starting,
        1 => Phase::Serving,
        2 => Phase::Draining,
        _ => Phase::Stopping,
    }
}

/// Every published counter `/stats` and `/metrics` show.
struct Counters<'a> {
    workers: &'a [Arc<PublishedCounters>],
    side: &'a [Arc<PublishedCounters>],
    compose: &'a [Arc<PublishedCompose>],
    metrics: &'a [Arc<PublishedMetrics>],
    endpoints: &'a EndpointBoard,
}

fn answer(
    mut stream: TcpStream,
    phase: Phase,
    counters: &Counters<'_>,
    readiness: &Readiness,
    config: &ConfigApi,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    let (method, path, authorization, accept) = loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| h.value)
                };
                let authorization = header("authorization").map(<[u8]>::to_vec);
                let accept = header("accept")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_string);
                let method = req.method.unwrap_or("").to_string();
                break (
                    method,
                    req.path.unwrap_or("").to_string(),
                    authorization,
                    accept,
                );
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => return respond(&mut stream, 400, "text/plain", "bad request\n"),
        }
    };
    if path == "/config" || path.starts_with("/config/") || path.starts_with("/config?") {
        return config.answer(stream, &method, &path, authorization.as_deref());
    }
    match (path.as_str(), phase) {
        ("/healthz", Phase::Stopping) => respond(&mut stream, 503, "text/plain", "stopping\n"),
        ("/healthz", _) => respond(&mut stream, 200, "text/plain", "ok\n"),
        ("/ready", Phase::Starting) => respond(&mut stream, 503, "text/plain", "starting\n"),
        ("/ready", Phase::Draining) => respond(&mut stream, 503, "text/plain", "draining\n"),
        ("/ready", Phase::Stopping) => respond(&mut stream, 503, "text/plain", "stopping\n"),
        ("/ready", Phase::Serving) => match readiness() {
            Some(reason) => respond(&mut stream, 503, "text/plain", &format!("{reason}\n")),
            None => respond(&mut stream, 200, "text/plain", "ready\n"),
        },
        ("/stats", _) => respond(&mut stream, 200, "application/json", &stats_json(counters)),
        ("/metrics", _) => {
            let (content_type, body) = metrics::scrape(counters, accept.as_deref());
            respond(&mut stream, 200, content_type, &body)
        }
        _ => respond(&mut stream, 404, "text/plain", "not found\n"),
    }
}

fn stats_json(counters: &Counters<'_>) -> String {
    let (workers, side) = (counters.workers, counters.side);
    let totals = PublishedCounters::totals(workers.iter().chain(side).map(|c| &**c));
    let fields: Vec<String> = totals
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!(
        "{{\"workers\": {}, {}, \"endpoints\": {}, \"compose\": {}}}\n",
        workers.len(),
        fields.join(", "),
        endpoints_json(counters.endpoints),
        PublishedCompose::render(counters.compose)
    )
}

/// `[{"upstream": …, "endpoint": …, "healthy": …, "ejected_workers": …,
/// "ejections": …, "requests": …, "failures": …}, …]`, in configuration order.
fn endpoints_json(board: &EndpointBoard) -> String {
    let items: Vec<serde_json::Value> = board
        .report()
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "upstream": r.upstream,
                "endpoint": r.addr.to_string(),
                "healthy": r.healthy,
                "ejected_workers": r.ejected_workers,
                "ejections": r.ejections,
                "requests": r.requests,
                "failures": r.failures,
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    crate::http::write_simple_response(&mut out, status, content_type, body.as_bytes());
    stream.write_all(&out)
}
