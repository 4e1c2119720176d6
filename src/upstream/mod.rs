//! The upstream side: choose an endpoint ([`Balancer`]), then exchange one request
//! with it ([`Exchanger::exchange`]) over a pooled or new connection, plain or TLS,
//! in HTTP/1.1 or HTTP/2 (`h2`: multiplexed connections, [`H2Pools`]).
//!
//! Choosing is separate from exchanging, and the exchange knows nothing of the
//! client, so the forwarder, a retry loop, composition parts and health probes can
//! all stand on it. Every call has a timeout; failures say where they happened and
//! whether the request may be sent again ([`ExchangeError`]).
//!
//! Around them, what keeps a failing endpoint from hurting the rest: the active
//! health [`Prober`] (one side thread for the process), passive outlier ejection
//! ([`record_outcome`], per worker), circuit breakers and the retry budget
//! ([`Breaker`]), all per worker and identity-keyed on it ([`UpstreamStates`]), and
//! the [`EndpointBoard`] that carries health verdicts to the workers and endpoint
//! states to the admin listener.

mod balance;
mod board;
mod breaker;
mod connect;
mod endpoint_health;
mod exchange;
mod failure;
mod h2;
mod health;
mod outbound;
mod outlier;
mod pool;
mod resilience;
mod response;
mod retry_budget;
mod stream;

pub use balance::{Balancer, HashKey};
pub use board::{EndpointBoard, EndpointReport, ProbeSet};
pub use breaker::{Breaker, BreakerLimit, InFlight};
pub use endpoint_health::EndpointHealth;
pub use exchange::Exchanger;
pub use failure::{ExchangeError, FailureSource};
pub use h2::{feed_for_fuzzing as h2_feed_for_fuzzing, H2Pools, Upload};
pub use health::Prober;
pub use outbound::OutboundRequest;
pub use outlier::{record as record_outcome, Outcome};
pub use pool::{PooledConn, UpstreamPools};
pub use resilience::UpstreamStates;
pub use response::{ResponseFields, Upgraded, UpstreamResponse};
pub use stream::UpstreamStream;

#[cfg(test)]
mod tests;
