//! Active health checks: one prober for the process, a side thread with its own
//! small monoio runtime, that sends `GET path` to every endpoint of every upstream
//! with `health_check = { ... }` every `interval_ms` — through the same exchange
//! the workers forward with ([`Exchanger::exchange`]), over its own keep-alive
//! pools — and publishes each change of verdict on the [`EndpointBoard`]. Workers
//! apply the verdicts on their tick: nothing is locked or shared on the request
//! path.
//!
//! An endpoint starts healthy; `unhealthy_threshold` failing probes in a row make
//! it unhealthy, `healthy_threshold` passing ones healthy again. A probe passes
//! when a complete response with an `expected_status` arrives within `timeout_ms`.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::Runtime;
use monoio::time::Instant;

use crate::config::{Endpoint, HealthCheck, Snapshot, Upstream};
use crate::downstream::{BodyError, BodySource, Piece};
use crate::http::BodyFraming;
use crate::observe::{Counters, PublishedCounters};

use super::board::EndpointBoard;
use super::exchange::Exchanger;
use super::h2::H2Pools;
use super::outbound::OutboundRequest;
use super::pool::UpstreamPools;

/// How often the prober publishes its counters and looks at its stop flag.
const PROBER_TICK: Duration = Duration::from_millis(100);

/// The running prober.
pub struct Prober {
    stop: Arc<AtomicBool>,
    /// The prober's counters (`health_*`), summed into `/stats`.
    pub counters: Arc<PublishedCounters>,
}

impl Prober {
    /// Starts the prober thread for the probe targets of `board` (endpoints of
    /// `snapshot`'s upstreams with `health_check`); `None` when there are none.
    pub fn start(
        snapshot: Arc<Snapshot>,
        board: Arc<EndpointBoard>,
    ) -> Result<Option<Prober>, String> {
        if board.targets().is_empty() {
            return Ok(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(PublishedCounters::default());
        let (seen_stop, published) = (stop.clone(), counters.clone());
        std::thread::Builder::new()
            .name("portico-health".into())
            .spawn(move || {
                let probing = run(snapshot, board, seen_stop, published);
                match crate::runtime::build(256) {
                    Ok(Runtime::Uring(mut rt)) => rt.block_on(probing),
                    Ok(Runtime::Epoll(mut rt, _)) => rt.block_on(probing),
                    Err(e) => tracing::error!("health checks cannot start a runtime: {e}"),
                }
            })
            .map_err(|e| format!("cannot start the health-check thread: {e}"))?;
        Ok(Some(Prober { stop, counters }))
    }

    /// Stops probing (within [`PROBER_TICK`]).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The prober's state on its thread.
struct ProberState {
    board: Arc<EndpointBoard>,
    pools: UpstreamPools,
    h2: H2Pools,
    /// What the exchange counts (connections, failures): kept apart from the
    /// workers' data-plane counters.
    exchange_counters: Counters,
    /// What `/stats` shows of the prober: `health_*`.
    counters: Counters,
}

async fn run(
    snapshot: Arc<Snapshot>,
    board: Arc<EndpointBoard>,
    stop: Arc<AtomicBool>,
    published: Arc<PublishedCounters>,
) {
    let state = Rc::new(ProberState {
        board: board.clone(),
        pools: UpstreamPools::new(),
        h2: H2Pools::new(),
        exchange_counters: Counters::default(),
        counters: Counters::default(),
    });
    let targets = board.targets().len();
    for (i, target) in board.targets().iter().enumerate() {
        let Some(upstream) = snapshot.upstreams.get(target.upstream) else {
            continue;
        };
        if upstream.endpoints.get(target.endpoint).is_none() || upstream.health_check.is_none() {
            continue;
        }
        monoio::spawn(probe_loop(
            state.clone(),
            snapshot.clone(),
            i,
            targets,
            stop.clone(),
        ));
    }
    while !stop.load(Ordering::Relaxed) {
        monoio::time::sleep(PROBER_TICK).await;
        state.pools.sweep();
        state.h2.sweep();
        state.counters.publish(&published);
    }
    state.pools.close();
    state.h2.close();
}

/// Probes target `i` (of `targets`) until stopped, publishing verdict changes.
async fn probe_loop(
    state: Rc<ProberState>,
    snapshot: Arc<Snapshot>,
    i: usize,
    targets: usize,
    stop: Arc<AtomicBool>,
) {
    let Some(target) = state.board.targets().get(i) else {
        return;
    };
    let Some(upstream) = snapshot.upstreams.get(target.upstream) else {
        return;
    };
    let (Some(endpoint), Some(check)) = (
        upstream.endpoints.get(target.endpoint),
        upstream.health_check.as_ref(),
    ) else {
        return;
    };
    // Spread the targets' first probes over one interval, so they do not go out
    // in a burst every interval.
    let offset = check.interval.mul_f64(i as f64 / targets.max(1) as f64);
    monoio::time::sleep(offset).await;
    let mut healthy = true;
    let (mut passes, mut fails) = (0u32, 0u32);
    let mut head = Vec::with_capacity(256);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let passed = probe(&state, upstream, endpoint, check, &mut head).await;
        Counters::bump(&state.counters.health_checks);
        if passed {
            passes += 1;
            fails = 0;
            if !healthy && passes >= check.healthy_threshold {
                healthy = true;
                state.board.set_healthy(i, true);
                Counters::bump(&state.counters.health_marked_healthy);
            }
        } else {
            Counters::bump(&state.counters.health_check_failures);
            fails += 1;
            passes = 0;
            if healthy && fails >= check.unhealthy_threshold {
                healthy = false;
                state.board.set_healthy(i, false);
                Counters::bump(&state.counters.health_marked_unhealthy);
            }
        }
        monoio::time::sleep_until(started + check.interval).await;
    }
}

/// One probe: `GET path` within `timeout`, body read to its end; true if it passed.
async fn probe(
    state: &ProberState,
    upstream: &Upstream,
    endpoint: &Endpoint,
    check: &HealthCheck,
    head: &mut Vec<u8>,
) -> bool {
    head.clear();
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(check.path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(endpoint.authority.as_bytes());
    head.extend_from_slice(b"\r\nuser-agent: portico-health-check\r\n\r\n");
    let exchanger = Exchanger {
        pools: &state.pools,
        h2: &state.h2,
        counters: &state.exchange_counters,
    };
    let deadline = Instant::now() + check.timeout;
    let mut replayed = false;
    let mut response = loop {
        let request = OutboundRequest {
            upgrade: false,
            head,
            is_head: false,
            idempotent: true,
            deadline,
            breaker: None,
        };
        match exchanger
            .exchange(upstream, endpoint, request, &mut NoBody)
            .await
        {
            Ok(r) => break r,
            // An idle connection the endpoint closed meanwhile: once more, fresh.
            Err(e) if e.is_stale_connection() && !replayed => replayed = true,
            Err(e) => {
                tracing::debug!(upstream = %upstream.name, endpoint = %endpoint.addr, "health check failed: {}", e.message);
                return false;
            }
        }
    };
    let status = response.status();
    response.set_read_timeout(deadline.saturating_duration_since(Instant::now()));
    if response.early_body().is_err() {
        return false;
    }
    loop {
        match response.next_piece().await {
            Ok(Some(piece)) => response.give_back(piece),
            Ok(None) => break,
            Err(_) => return false,
        }
    }
    response.finish(&state.pools);
    let passed = check.expected_status.contains(status);
    if !passed {
        tracing::debug!(upstream = %upstream.name, endpoint = %endpoint.addr, status, "health check failed: unexpected status");
    }
    passed
}

/// A probe has no body.
struct NoBody;

impl BodySource for NoBody {
    fn body_framing(&self) -> BodyFraming {
        BodyFraming::None
    }

    fn is_complete(&self) -> bool {
        true
    }

    fn take_buffered(&mut self, _out: &mut Vec<u8>) -> Result<(), BodyError> {
        Ok(())
    }

    async fn next_piece(&mut self) -> Result<Option<Piece>, BodyError> {
        Ok(None)
    }

    fn give_back(&mut self, _piece: Piece) {}
}
