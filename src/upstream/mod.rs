//! The forward stage: choose an endpoint, reuse or open a connection, send the
//! request, relay the response. Every upstream call has a timeout; failures become
//! 502 (connect refused, reset, malformed) or 504 (timeout).

mod balance;
mod forward;
mod pool;
mod stream;

pub use balance::{Balancer, HashKey};
pub use forward::forward;
pub use pool::{PooledConn, UpstreamPools};
pub use stream::UpstreamStream;
