//! Per-worker keep-alive pools: a stack of idle connections per endpoint, keyed by
//! the endpoint's identity (address and TLS settings, [`EndpointKey`]), never its
//! position in a config, so a pooled connection can only ever carry requests meant
//! for the target it was opened to.
//!
//! Last-in first-out, so the warmest connection is reused and surplus ones age out.
//! Idle connections past their `pool_idle_timeout` are closed by `sweep` on the
//! worker's tick, and skipped when found on `take`. Once the worker drains, the pool
//! takes nothing back.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::config::EndpointKey;
use crate::observe::Counters;

use super::breaker::ConnSlot;
use super::stream::UpstreamStream;

/// An upstream connection with its read buffer and history.
pub struct PooledConn {
    pub stream: UpstreamStream,
    /// Read buffer, kept with the connection so reuse costs no allocation.
    pub buf: Vec<u8>,
    /// Requests sent on this connection so far.
    pub requests: u64,
    /// Its place under the upstream's `max_connections`, given back on close
    /// (`None`: not counted, e.g. the health prober's).
    pub slot: Option<ConnSlot>,
}

impl PooledConn {
    pub fn new(stream: UpstreamStream) -> Self {
        PooledConn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            requests: 0,
            slot: None,
        }
    }
}

struct Idle {
    conn: PooledConn,
    since: Instant,
    timeout: Duration,
}

/// All idle upstream connections of one worker.
#[derive(Default)]
pub struct UpstreamPools {
    idle: RefCell<HashMap<EndpointKey, Vec<Idle>, BuildHasherDefault<Fnv>>>,
    closed: Cell<bool>,
}

impl UpstreamPools {
    pub fn new() -> Self {
        UpstreamPools::default()
    }

    /// The most recently used idle connection to `endpoint` that has not expired
    /// by `now` (the caller's reading of the clock) and is clean: nothing unread
    /// waits on it and the endpoint has not closed it (bytes that arrive after a
    /// response would otherwise be read as the next request's answer). Others are
    /// closed; unclean ones are counted.
    pub fn take(
        &self,
        endpoint: &EndpointKey,
        now: Instant,
        counters: &Counters,
    ) -> Option<PooledConn> {
        let mut idle = self.idle.borrow_mut();
        let stack = idle.get_mut(endpoint)?;
        while let Some(entry) = stack.pop() {
            if now.saturating_duration_since(entry.since) >= entry.timeout {
                continue;
            }
            if entry.conn.stream.is_clean() {
                return Some(entry.conn);
            }
            Counters::bump(&counters.upstream_pool_discarded);
        }
        None
    }

    /// Keeps a connection for reuse, unless the pool for `endpoint` holds
    /// `max_idle` already or the worker is draining (then it closes).
    pub fn put(
        &self,
        endpoint: &EndpointKey,
        conn: PooledConn,
        max_idle: usize,
        timeout: Duration,
    ) {
        if self.closed.get() || max_idle == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let stack = match idle.get_mut(endpoint) {
            Some(s) => s,
            None => idle.entry(endpoint.clone()).or_default(),
        };
        if stack.len() < max_idle {
            if let Some(slot) = &conn.slot {
                slot.went_idle();
            }
            stack.push(Idle {
                conn,
                since: Instant::now(),
                timeout,
            });
        }
    }

    /// Idle connections kept for `endpoint` (expired ones not yet swept included).
    pub fn idle_count(&self, endpoint: &EndpointKey) -> usize {
        self.idle.borrow().get(endpoint).map_or(0, Vec::len)
    }

    /// Closes one idle connection to `endpoint` (the oldest), to make room under
    /// `max_connections` for a connection to another endpoint. False if none.
    pub fn evict_one(&self, endpoint: &EndpointKey) -> bool {
        let mut idle = self.idle.borrow_mut();
        match idle.get_mut(endpoint) {
            Some(stack) if !stack.is_empty() => {
                drop(stack.remove(0));
                true
            }
            _ => false,
        }
    }

    /// Closes idle connections that have expired (and forgets empty endpoints).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.idle.borrow_mut().retain(|_, stack| {
            stack.retain(|e| now.duration_since(e.since) < e.timeout);
            !stack.is_empty()
        });
    }

    /// Closes every idle connection and takes none back from now on (the drain).
    pub fn close(&self) {
        self.closed.set(true);
        self.idle.borrow_mut().clear();
    }

    /// The worker is draining: nothing goes back to the pool.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }
}

/// FNV-1a: endpoint keys are a handful of bytes from the operator's config, and a
/// lookup per request should cost nanoseconds, not SipHash's tens.
#[derive(Default)]
pub(super) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}
