//! Per-worker counters: plain `Cell`s bumped on the worker, copied into
//! single-writer atomics on a tick so the admin listener can read them without
//! touching the request path.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters of one worker, touched only by that worker.
        #[derive(Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: Cell<u64>,)*
        }

        /// The last published copy of one worker's counters.
        #[derive(Default)]
        pub struct PublishedCounters {
            $(pub $name: AtomicU64,)*
        }

        impl Counters {
            /// Copies every counter into `to` (the worker is the only writer).
            pub fn publish(&self, to: &PublishedCounters) {
                $(to.$name.store(self.$name.get(), Ordering::Relaxed);)*
            }

            /// Counters that go on from what `from` last published: a thread
            /// restarted in place of another (a worker after a panic, the health
            /// prober after a reload) never makes a total go backwards.
            pub fn resume(from: &PublishedCounters) -> Counters {
                Counters {
                    $($name: Cell::new(from.$name.load(Ordering::Relaxed)),)*
                }
            }
        }

        impl PublishedCounters {
            /// `(name, value)` pairs, for rendering.
            pub fn values(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }

            /// `(name, value)` pairs summed over `all` (workers and side threads).
            pub fn totals<'a>(all: impl IntoIterator<Item = &'a PublishedCounters>) -> Vec<(&'static str, u64)> {
                let mut totals = PublishedCounters::default().values();
                for p in all {
                    for (total, (_, v)) in totals.iter_mut().zip(p.values()) {
                        total.1 += v;
                    }
                }
                totals
            }
        }
    };
}

counters! {
    /// Connections accepted.
    connections_accepted,
    /// Connections refused (503 on plaintext, closed on TLS) because
    /// `max_connections_per_worker` was reached or the process was out of descriptors.
    connections_rejected,
    /// Accepts that failed because the process was out of file descriptors
    /// (`EMFILE`/`ENFILE`).
    accept_fd_exhausted,
    /// TLS handshakes completed on the TLS listeners.
    tls_handshakes,
    /// Of those, handshakes that resumed an earlier session (ticket or session ID).
    tls_resumed,
    /// TLS handshakes that failed or timed out.
    tls_handshake_failures,
    /// Requests whose head was read completely.
    requests,
    /// Requests refused by the codec (400, 413, 414, 431, ...).
    requests_malformed,
    /// HTTP/2 client connections past the preface and SETTINGS (h2, h2c).
    h2_connections,
    /// HTTP/2 connections whose preface or SETTINGS did not arrive (in time, or at all).
    h2_handshake_failures,
    /// HTTP/2 streams accepted (each request is also counted in `requests`).
    h2_streams,
    /// Streams refused unprocessed (RST_STREAM REFUSED_STREAM sent) because the
    /// connection had `http2_max_concurrent_streams` requests in progress, or was
    /// closing for a flood.
    h2_streams_refused,
    /// Streams the client reset before their response was complete (logged 499).
    h2_streams_reset,
    /// HTTP/2 connections closed (GOAWAY) after `idle_timeout_ms` with no stream open.
    h2_idle_closed,
    /// Connections closed for more than `http2_max_resets` RST_STREAM frames per
    /// window (rapid reset, CVE-2023-44487).
    h2_flood_resets,
    /// ... for more than `http2_max_pings` PING frames per window.
    h2_flood_pings,
    /// ... for more than `http2_max_settings` SETTINGS frames per window.
    h2_flood_settings,
    /// ... for more than `http2_max_empty_data_frames` empty DATA frames per window.
    h2_flood_empty_data,
    /// ... for more than `http2_max_continuation_frames` CONTINUATION frames in one
    /// header block.
    h2_flood_continuation,
    /// Connections h2's own guards closed with ENHANCE_YOUR_CALM (resets before a
    /// stream was accepted, resets provoked by errors, small DATA frames).
    h2_calm_down,
    /// Connections closed for another HTTP/2 protocol error in the client's frames.
    h2_protocol_errors,
    /// Requests no route matched (404).
    route_not_found,
    /// Requests whose path matched but whose method no route allows (405).
    route_method_not_allowed,
    responses_2xx,
    responses_3xx,
    responses_4xx,
    responses_5xx,
    /// Upstream connections opened.
    upstream_connects,
    /// Upstream connections taken from the idle pool.
    upstream_reused,
    upstream_connect_failures,
    /// Upstream TLS handshakes that failed (certificate not verified, timeout, ...).
    upstream_tls_failures,
    upstream_timeouts,
    /// Responses cut short by the upstream (the client connection is closed).
    upstream_truncated,
    /// Idle pooled connections closed when taken because bytes were waiting on them
    /// or the upstream had closed them.
    upstream_pool_discarded,
    /// HTTP/2 streams an upstream did not process (REFUSED_STREAM, or above the
    /// last stream of its GOAWAY); the request is sent again when its body is whole.
    upstream_h2_refused,
    /// WebSocket upgrades the upstream accepted (101): tunnels opened.
    websocket_upgrades,
    /// Tunnels open now (not a running total).
    websocket_tunnels_open,
    /// Tunnels closed after `websocket_idle_timeout_ms` without a byte either way.
    websocket_idle_closed,
    /// Tunnels closed by the drain (after a quiet second).
    websocket_drain_closed,
    /// Access-log lines dropped because the writer thread was behind.
    access_log_dropped,
    /// Requests answered 503 at once because `max_in_flight_per_worker` were in
    /// progress on their worker (load shedding).
    requests_shed,
    /// Requests refused 503 by an upstream's `max_requests` breaker.
    upstream_overflow_requests,
    /// Requests refused 503 because `max_pending` already waited for a connection.
    upstream_overflow_pending,
    /// Requests answered with a 5xx made by the gateway itself (no endpoint, an
    /// upstream that failed or timed out, a breaker, shedding), not relayed from an
    /// upstream and not a configured `respond`: what a canary is judged by.
    responses_local_5xx,
    /// Connections closed because serving them panicked (the worker lives on).
    worker_panics,
    /// Worker threads that died and were started again by the control thread.
    worker_restarts,
    /// Configuration reloads tried (every trigger that read a file).
    config_reloads,
    /// Reloads whose configuration became the running one on every worker.
    config_reloads_promoted,
    /// Reloads whose canary was rolled back (by its verdict, a panic, or by hand).
    config_reloads_rolled_back,
    /// Reloads refused before any worker took them (invalid, over a limit).
    config_reloads_refused,
    /// Requests that waited for a connection under `max_connections` until their
    /// deadline (503).
    upstream_overflow_connections,
    /// Retries not made because of an upstream's `max_retries`.
    upstream_overflow_retries,
    /// Retries not made because the upstream's retry budget was spent.
    upstream_retry_budget_exhausted,
    /// Retries made (tries after the first, the stale-connection replay aside).
    upstream_retries,
    /// Tries sent while no endpoint of the upstream was available (panic mode).
    upstream_panic,
    /// Endpoints ejected by outlier detection (each worker counts its own).
    outlier_ejections,
    /// Ejections not made: `max_ejection_percent` or `min_hosts` would be passed.
    outlier_ejections_refused,
    /// Health-check probes sent (by the prober thread).
    health_checks,
    /// Probes that failed (no answer in time, or an unexpected status).
    health_check_failures,
    /// Endpoints the prober turned unhealthy.
    health_marked_unhealthy,
    /// Endpoints the prober turned healthy again.
    health_marked_healthy,
    /// Rate-limit checks passed (one per policy and request).
    ratelimit_allowed,
    /// Requests refused with 429.
    ratelimit_denied,
    /// Requests admitted on a provisional allowance (before the limiter's grant).
    ratelimit_provisional,
    /// Checks decided by a local bucket because the limiter could not be reached.
    ratelimit_local,
    /// Reports to the limiter thread that found its channel full.
    ratelimit_channel_full,
    /// Lease requests sent to the limiter thread.
    ratelimit_lease_requests,
    /// Keys evicted from this worker's rate-limit tables (least recently used).
    ratelimit_key_evictions,
    /// Reports the limiter thread handled.
    limiter_demands,
    /// Grants the limiter thread could not deliver (a worker's channel was full).
    limiter_grants_dropped,
    /// Keys evicted from the limiter thread's tables.
    limiter_key_evictions,
    /// Large leases recalled from a worker because another one was short.
    limiter_recalls,
    /// Successful Redis syncs of fleet policies.
    fleet_syncs,
    /// Failed Redis syncs and reconnects.
    fleet_redis_failures,
    /// 1 while Redis is unreachable and `on_redis_failure` applies.
    fleet_redis_down,
    /// Tokens whose signature and claims were checked (cache misses that passed).
    auth_verified,
    /// Requests answered from the per-worker verified-token cache.
    auth_cache_hits,
    /// Requests refused by authentication (401, 400, 503).
    auth_rejected,
    /// Sampled spans dropped because the exporter's queue was full (workers).
    trace_spans_dropped,
    /// Spans the OTLP collector accepted (exporter thread).
    trace_spans_exported,
    /// Spans lost because their export request failed (exporter thread).
    trace_spans_failed,
    /// Export requests the collector accepted (exporter thread).
    trace_exports,
    /// Export requests that failed: no connection, a timeout, or a non-2xx answer.
    trace_export_failures,
}

impl Counters {
    pub fn bump(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }

    pub fn count_status(&self, status: u16) {
        let c = match status {
            200..=299 => &self.responses_2xx,
            300..=399 => &self.responses_3xx,
            400..=499 => &self.responses_4xx,
            _ => &self.responses_5xx,
        };
        Self::bump(c);
    }
}
