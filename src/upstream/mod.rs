//! The upstream side: choose an endpoint ([`Balancer`]), then exchange one request
//! with it ([`Exchanger::exchange`]) over a pooled or new connection, plain or TLS.
//!
//! Choosing is separate from exchanging, and the exchange knows nothing of the
//! client, so the forwarder, a retry loop, composition parts and health probes can
//! all stand on it. Every call has a timeout; failures say where they happened and
//! whether the request may be sent again ([`ExchangeError`]).

mod balance;
mod connect;
mod exchange;
mod failure;
mod pool;
mod response;
mod stream;

pub use balance::{Balancer, HashKey};
pub use exchange::{Exchanger, OutboundRequest};
pub use failure::{ExchangeError, FailureSource};
pub use pool::{PooledConn, UpstreamPools};
pub use response::UpstreamResponse;
pub use stream::UpstreamStream;

#[cfg(test)]
mod tests;
