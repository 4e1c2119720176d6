//! Observation of what the gateway does: per-worker counters and the access log.
//!
//! Workers only ever touch their own counters and log buffer (no atomics, no locks
//! per request); the control thread reads published copies.

mod access_log;
mod counters;

pub use access_log::{AccessLogBuffer, AccessLogWriter, AccessRecord};
pub use counters::{Counters, PublishedCounters};
