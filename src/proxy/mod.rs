//! The request pipeline: the life of one request on a worker, stage by stage
//! (see `pipeline.rs`), and the gateway's own replies.

mod pipeline;
mod rate_limit;
mod reply;
mod request_id;

pub use pipeline::{handle, reject};
pub use reply::{send_error, send_fixed, send_reply, LocalReply};
pub use request_id::{RequestId, RequestIds};

use std::net::SocketAddr;

/// How one request ended, for counters, the access log and the connection loop.
pub struct Outcome {
    pub status: u16,
    /// Bytes written to the client (head and body).
    pub bytes_sent: u64,
    /// The connection may serve another request.
    pub keep_alive: bool,
    /// The endpoint that answered, when the request was forwarded.
    pub upstream: Option<SocketAddr>,
    pub request_id: RequestId,
}
