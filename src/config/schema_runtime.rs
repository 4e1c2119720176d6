//! The TOML shape of `[server.runtime]`: how each worker's event loop runs (driver,
//! cores, ring, buffers, accepts). `runtime.rs` checks it and builds
//! [`super::RuntimeSettings`]; docs/tuning.md says what each setting costs.

use serde::Deserialize;
use toml::Spanned;

/// `[server.runtime]`; every key optional, defaults right for most hosts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// `"auto"` (io_uring, epoll when refused), `"io_uring"` (no fallback) or `"epoll"`.
    pub driver: Spanned<String>,
    /// The cores to run workers on, e.g. `"1-3,6"`; all allowed cores when absent.
    pub cpus: Option<Spanned<String>>,
    /// io_uring submission queue entries (the completion queue is twice as large).
    pub ring_entries: Spanned<u64>,
    /// Kernel-side submission polling: the poller thread sleeps after this many idle
    /// milliseconds; 0 = off.
    pub sqpoll_idle_ms: Spanned<u64>,
    /// First read buffer of a client connection (grows to the head's size as needed).
    pub read_buffer_bytes: Spanned<u64>,
    /// Buffer a response head is written from (grows as needed).
    pub write_buffer_bytes: Spanned<u64>,
    /// Accepts each worker keeps waiting on each listener at once.
    pub accepts_in_flight: Spanned<u64>,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        let s = |v: u64| Spanned::new(0..0, v);
        RuntimeSection {
            driver: Spanned::new(0..0, "auto".to_string()),
            cpus: None,
            ring_entries: s(1024),
            sqpoll_idle_ms: s(0),
            read_buffer_bytes: s(4096),
            write_buffer_bytes: s(4096),
            accepts_in_flight: s(1),
        }
    }
}
