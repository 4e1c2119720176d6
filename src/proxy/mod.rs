//! The request pipeline: the life of one request on a worker as a list of stages
//! that pass or answer (`pipeline.rs`), over one request context (`context.rs`),
//! with the gateway's own replies (`replies.rs`) and one place that records each
//! request (`gateway.rs`). A worker's state (`worker.rs`) outlives configurations;
//! what it derives from one snapshot is a generation (`generation.rs`).

mod auth_stage;
mod compose_stage;
mod context;
mod cors_stage;
mod exit;
mod forward;
mod gateway;
mod generation;
mod limit_stage;
mod pipeline;
mod replies;
mod request_id;
mod retry;
mod route_stage;
mod shed_stage;
#[cfg(debug_assertions)]
pub mod test_panic;
mod transcode_stage;
mod transform_stage;
mod websocket;
mod worker;

pub use context::{RequestCtx, Timings};
pub use gateway::Gateway;
pub use generation::Generation;
pub use request_id::{RequestId, RequestIds};
pub use worker::Worker;
