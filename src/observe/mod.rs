//! Observation of what the gateway does: per-worker counters, the access log, and
//! the trace context a request carries.
//!
//! Workers only ever touch their own counters and log buffer (no atomics, no locks
//! per request); the control thread reads published copies.

mod access_log;
mod counters;
mod trace;

pub use access_log::{
    utc_timestamp, AccessLogBuffer, AccessLogTarget, AccessLogWriter, AccessRecord,
};
pub use counters::{Counters, PublishedCounters};
pub use trace::TraceContext;
