//! Composition: one client call fans out to several upstreams and gets one merged
//! JSON answer, with the failure policy the operator chose (`[route.compose]`,
//! docs/composition.md).
//!
//! The pipeline calls [`run`] with the route's [`ComposePlan`](crate::config::ComposePlan)
//! (compiled at load: templates, shapes, limits). All parts start at once on the
//! worker's task, over the same choose-then-exchange path as forwarding
//! (`crate::upstream`), and their answers merge in declared order, never in arrival
//! order:
//!
//! - `run.rs`: one composed call, start to answer;
//! - `outbound.rs` and `template.rs`: each part's request head from the client's
//!   request (path segments, query, headers, claims);
//! - `join.rs`: the parts polled together, stopped early when the answer is decided;
//! - `part.rs`: one part's exchange, its answer read whole under a size cap, parsed
//!   and shaped (`shape.rs`); `failure.rs`: why a part failed;
//! - `merge.rs`: the failure policy and the merge;
//! - `counters.rs`: calls and failures per route and part, published on the tick.

mod counters;
mod failure;
mod join;
mod merge;
mod outbound;
mod part;
mod run;
mod shape;
mod template;

pub use counters::{ComposeCounters, PublishedCompose};
pub use failure::FailureKind;
pub use outbound::ClientRequest;
pub use run::{run, Composed, Fanout, COMPOSITION_FIELD, PARTIAL_FIELD};
