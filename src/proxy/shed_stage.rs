//! Load shedding: a worker with `max_in_flight_per_worker` requests in progress
//! answers new ones `503` with `Retry-After` at once, before routing or any
//! upstream work, so an overloaded worker spends nothing on requests it cannot
//! serve in time (the connection cap, `max_connections_per_worker`, refuses whole
//! connections earlier still).

use std::ops::ControlFlow;

use crate::config::Snapshot;
use crate::http::LocalReply;
use crate::observe::Counters;

use super::context::RequestCtx;
use super::replies;
use super::worker::Worker;

/// Refuses the request when its worker already has as many in progress as allowed
/// (the request itself is counted in).
pub fn shed(
    worker: &Worker,
    snap: &Snapshot,
    ctx: &RequestCtx,
) -> ControlFlow<LocalReply<'static>> {
    if worker.requests_in_flight() > snap.server.max_in_flight_per_worker {
        Counters::bump(&worker.counters.requests_shed);
        return ControlFlow::Break(replies::shed(&ctx.id));
    }
    ControlFlow::Continue(())
}
