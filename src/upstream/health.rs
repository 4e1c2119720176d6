//! Active health checks: one prober for the process, a side thread with its own
//! small monoio runtime, that sends `GET path` to every endpoint of every upstream
//! with `health_check = { ... }` every `interval_ms` — through the same exchange
//! the workers forward with ([`Exchanger::exchange`]), over its own keep-alive
//! pools — and publishes each change of verdict on the [`EndpointBoard`]. Workers
//! apply the verdicts on their tick: nothing is locked or shared on the request
//! path.
//!
//! An endpoint starts healthy (or as the board says, after a reload);
//! `unhealthy_threshold` failing probes in a row make it unhealthy,
//! `healthy_threshold` passing ones healthy again. A probe passes
//! when a complete response with an `expected_status` arrives within `timeout_ms`.
//!
//! A reload changes the board's targets ([`EndpointBoard::retarget`]); the prober
//! looks on every tick and follows: one probe loop per target identity (upstream
//! name and endpoint key), started for a new target, ended for one that is gone
//! (within one interval, without probing again), and left running for one that
//! stays, with its streaks and the settings of the newest configuration.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use monoio::time::Instant;

use crate::config::{Endpoint, HealthCheck, Upstream};
use crate::downstream::{BodyError, BodySource, Piece};
use crate::http::BodyFraming;
use crate::observe::{Counters, PublishedCounters};
use crate::runtime::Runtime;

use super::board::{EndpointBoard, ProbeSet, TargetId};
use super::exchange::Exchanger;
use super::h2::H2Pools;
use super::outbound::OutboundRequest;
use super::pool::UpstreamPools;

/// How often the prober publishes its counters, looks for new targets and at its
/// stop flag.
const PROBER_TICK: Duration = Duration::from_millis(100);

/// The running prober.
pub struct Prober {
    stop: Arc<AtomicBool>,
}

impl Prober {
    /// Starts the prober thread for the probe targets of `board` (endpoints with
    /// `health_check` of the configurations in use), now and after every
    /// [`EndpointBoard::retarget`]; `None` when there are none now (a reload that
    /// brings some starts it then). Its counters (`health_*`) go on from what
    /// `published` holds, and are published there.
    pub fn start(
        board: Arc<EndpointBoard>,
        published: Arc<PublishedCounters>,
    ) -> Result<Option<Prober>, String> {
        if board.probes().targets().is_empty() {
            return Ok(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let seen_stop = stop.clone();
        std::thread::Builder::new()
            .name("portico-health".into())
            .spawn(move || {
                let probing = run(board, seen_stop, published);
                match crate::runtime::build_small() {
                    Ok(Runtime::Uring(mut rt)) => rt.block_on(probing),
                    Ok(Runtime::Epoll(mut rt, _)) => rt.block_on(probing),
                    Err(e) => tracing::error!("health checks cannot start a runtime: {e}"),
                }
            })
            .map_err(|e| format!("cannot start the health-check thread: {e}"))?;
        Ok(Some(Prober { stop }))
    }

    /// Stops probing (within [`PROBER_TICK`]).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The prober's state on its thread.
struct ProberState {
    board: Arc<EndpointBoard>,
    stop: Arc<AtomicBool>,
    /// The targets a probe loop runs for.
    looping: RefCell<HashSet<TargetId>>,
    pools: UpstreamPools,
    h2: H2Pools,
    /// What the exchange counts (connections, failures): kept apart from the
    /// workers' data-plane counters.
    exchange_counters: Counters,
    /// What `/stats` shows of the prober: `health_*`.
    counters: Counters,
}

async fn run(board: Arc<EndpointBoard>, stop: Arc<AtomicBool>, published: Arc<PublishedCounters>) {
    let state = Rc::new(ProberState {
        board,
        stop,
        looping: RefCell::new(HashSet::new()),
        pools: UpstreamPools::new(),
        h2: H2Pools::new(),
        exchange_counters: Counters::default(),
        counters: Counters::resume(&published),
    });
    let mut followed: Option<Arc<ProbeSet>> = None;
    while !state.stop.load(Ordering::Relaxed) {
        let probes = state.board.probes();
        if !followed.as_ref().is_some_and(|f| Arc::ptr_eq(f, &probes)) {
            start_loops(&state, &probes);
            followed = Some(probes);
        }
        monoio::time::sleep(PROBER_TICK).await;
        state.pools.sweep();
        state.h2.sweep();
        state.counters.publish(&published);
    }
    state.pools.close();
    state.h2.close();
}

/// Starts a probe loop for each target of `probes` that has none, their first
/// probes spread over one interval (so they do not go out in a burst every
/// interval).
fn start_loops(state: &Rc<ProberState>, probes: &ProbeSet) {
    let targets = probes.targets();
    let mut looping = state.looping.borrow_mut();
    for (i, target) in targets.iter().enumerate() {
        let id = (target.upstream_name.clone(), target.key.clone());
        if looping.contains(&id) {
            continue;
        }
        let interval = target
            .snapshot
            .upstreams
            .get(target.upstream)
            .and_then(|u| u.health_check.as_ref())
            .map_or(Duration::ZERO, |c| c.interval);
        let offset = interval.mul_f64(i as f64 / targets.len().max(1) as f64);
        looping.insert(id.clone());
        monoio::spawn(probe_loop(state.clone(), id, offset));
    }
}

/// Probes target `id` while the board has it and the prober runs, publishing
/// verdict changes; each round takes the target's settings from the board's
/// current set (the newest configuration's).
async fn probe_loop(state: Rc<ProberState>, id: TargetId, offset: Duration) {
    monoio::time::sleep(offset).await;
    let (mut passes, mut fails) = (0u32, 0u32);
    let mut head = Vec::with_capacity(256);
    while !state.stop.load(Ordering::Relaxed) {
        let probes = state.board.probes();
        let Some(i) = probes.position(&id) else { break };
        let Some((upstream, endpoint, check)) = target(&probes, i) else {
            break;
        };
        let started = Instant::now();
        let passed = probe(&state, upstream, endpoint, check, &mut head).await;
        Counters::bump(&state.counters.health_checks);
        // The verdict goes to the set current now (a reload may have come meanwhile).
        let probes = state.board.probes();
        let Some(i) = probes.position(&id) else { break };
        let healthy = probes.is_healthy(i);
        if passed {
            passes += 1;
            fails = 0;
            if !healthy && passes >= check.healthy_threshold {
                state.board.set_healthy(&probes, i, true);
                Counters::bump(&state.counters.health_marked_healthy);
            }
        } else {
            Counters::bump(&state.counters.health_check_failures);
            fails += 1;
            passes = 0;
            if healthy && fails >= check.unhealthy_threshold {
                state.board.set_healthy(&probes, i, false);
                Counters::bump(&state.counters.health_marked_unhealthy);
            }
        }
        monoio::time::sleep_until(started + check.interval).await;
    }
    state.looping.borrow_mut().remove(&id);
}

/// Target `i` of `probes`: its upstream, endpoint and health check.
fn target(probes: &ProbeSet, i: usize) -> Option<(&Upstream, &Endpoint, &HealthCheck)> {
    let target = probes.targets().get(i)?;
    let upstream = target.snapshot.upstreams.get(target.upstream)?;
    let endpoint = upstream.endpoints.get(target.endpoint)?;
    Some((upstream, endpoint, upstream.health_check.as_ref()?))
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
            started: monoio::time::Instant::now(),
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
