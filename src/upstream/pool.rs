//! Per-worker keep-alive pools, one stack of idle connections per endpoint.
//!
//! Last-in first-out, so the warmest connection is reused and surplus ones age out.
//! Idle connections past `pool_idle_timeout` are closed by `sweep` on the worker's
//! tick, and skipped when found on `take`.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::stream::UpstreamStream;

/// An upstream connection with its read buffer and history.
pub struct PooledConn {
    pub stream: UpstreamStream,
    /// Read buffer, kept with the connection so reuse costs no allocation.
    pub buf: Vec<u8>,
    /// Requests sent on this connection so far.
    pub requests: u64,
}

impl PooledConn {
    pub fn new(stream: UpstreamStream) -> Self {
        PooledConn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            requests: 0,
        }
    }
}

struct Idle {
    conn: PooledConn,
    since: Instant,
    timeout: Duration,
}

/// All idle upstream connections of one worker, indexed by `Endpoint::id`.
pub struct UpstreamPools {
    idle: RefCell<Vec<Vec<Idle>>>,
}

impl UpstreamPools {
    pub fn new(endpoints: usize) -> Self {
        UpstreamPools {
            idle: RefCell::new((0..endpoints).map(|_| Vec::new()).collect()),
        }
    }

    /// The most recently used idle connection to `endpoint` that has not expired.
    pub fn take(&self, endpoint: usize) -> Option<PooledConn> {
        let mut idle = self.idle.borrow_mut();
        let stack = idle.get_mut(endpoint)?;
        while let Some(entry) = stack.pop() {
            if entry.since.elapsed() < entry.timeout {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Returns a connection for reuse, unless the pool for `endpoint` is full.
    pub fn put(&self, endpoint: usize, conn: PooledConn, max_idle: usize, timeout: Duration) {
        let mut idle = self.idle.borrow_mut();
        if let Some(stack) = idle.get_mut(endpoint) {
            if stack.len() < max_idle {
                stack.push(Idle {
                    conn,
                    since: Instant::now(),
                    timeout,
                });
            }
        }
    }

    /// Closes idle connections that have expired.
    pub fn sweep(&self) {
        let now = Instant::now();
        for stack in self.idle.borrow_mut().iter_mut() {
            stack.retain(|e| now.duration_since(e.since) < e.timeout);
        }
    }

    /// Closes every idle connection (on drain).
    pub fn clear(&self) {
        for stack in self.idle.borrow_mut().iter_mut() {
            stack.clear();
        }
    }
}
