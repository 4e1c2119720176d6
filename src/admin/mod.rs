//! The admin listener: health and readiness for orchestrators, the workers'
//! published counters and metrics. It runs on its own thread with blocking I/O
//! and is never served by a worker, so a busy data plane cannot starve a health
//! check.
//!
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /ready`: 200 while serving; 503 before that (e.g. a remote JWKS not yet
//!   fetched) and once draining (load balancers stop sending).
//! - `GET /stats`: counters summed over workers and side threads (the rate
//!   limiter, the health prober), as JSON, with an `endpoints` list: each
//!   upstream endpoint's health, ejections and tries over all workers.
//! - `GET /metrics`: Prometheus metrics (text format 0.0.4, or OpenMetrics when
//!   `Accept` asks for it); `metrics.rs`, names in docs/observability.md.

mod metrics;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::observe::metrics::PublishedMetrics;
use crate::observe::PublishedCounters;
use crate::upstream::EndpointBoard;

/// Asked by `/ready`: `Some(reason)` while the gateway is not ready to serve.
pub type Readiness = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The running admin listener.
pub struct Admin {
    draining: Arc<AtomicBool>,
}

impl Admin {
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Binds `addr` and serves admin requests on a background thread. `side` are the
/// counters of threads other than workers; they are summed in but not counted as
/// workers. `metrics` are the workers' published metric series; `endpoints` holds
/// the workers' published view of the endpoints.
pub fn start(
    addr: SocketAddr,
    workers: Vec<Arc<PublishedCounters>>,
    side: Vec<Arc<PublishedCounters>>,
    metrics: Vec<Arc<PublishedMetrics>>,
    readiness: Readiness,
    endpoints: Arc<EndpointBoard>,
) -> std::io::Result<Admin> {
    let listener = TcpListener::bind(addr)?;
    let draining = Arc::new(AtomicBool::new(false));
    let flag = draining.clone();
    std::thread::Builder::new()
        .name("portico-admin".into())
        .spawn(move || {
            let sources = metrics::Sources {
                metrics: &metrics,
                workers: &workers,
                side: &side,
                endpoints: &endpoints,
            };
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &flag, &sources, &readiness);
            }
        })?;
    Ok(Admin { draining })
}

fn answer(
    mut stream: TcpStream,
    draining: &AtomicBool,
    sources: &metrics::Sources<'_>,
    readiness: &Readiness,
) -> std::io::Result<()> {
    let (workers, side, endpoints) = (sources.workers, sources.side, sources.endpoints);
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    let (path, accept) = loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let accept = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("accept"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(str::to_string);
                break (req.path.unwrap_or("").to_string(), accept);
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => return respond(&mut stream, 400, "text/plain", "bad request\n"),
        }
    };
    match path.as_str() {
        "/healthz" => respond(&mut stream, 200, "text/plain", "ok\n"),
        "/ready" if draining.load(Ordering::Relaxed) => {
            respond(&mut stream, 503, "text/plain", "draining\n")
        }
        "/ready" => match readiness() {
            Some(reason) => respond(&mut stream, 503, "text/plain", &format!("{reason}\n")),
            None => respond(&mut stream, 200, "text/plain", "ready\n"),
        },
        "/stats" => respond(
            &mut stream,
            200,
            "application/json",
            &stats_json(workers, side, endpoints),
        ),
        "/metrics" => {
            let (content_type, body) = metrics::scrape(sources, accept.as_deref());
            respond(&mut stream, 200, content_type, &body)
        }
        _ => respond(&mut stream, 404, "text/plain", "not found\n"),
    }
}

fn stats_json(
    workers: &[Arc<PublishedCounters>],
    side: &[Arc<PublishedCounters>],
    endpoints: &EndpointBoard,
) -> String {
    let totals = PublishedCounters::totals(workers.iter().chain(side).map(|c| &**c));
    let fields: Vec<String> = totals
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!(
        "{{\"workers\": {}, {}, \"endpoints\": {}}}\n",
        workers.len(),
        fields.join(", "),
        endpoints_json(endpoints)
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
