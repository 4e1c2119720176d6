//! Downstream: the client side of the gateway. A connection protocol (HTTP/1.1 in
//! [`h1`], HTTP/2 in [`h2`]: one request per stream) turns bytes into requests and
//! hands each one to a [`Handler`] as a [`Downstream`]: a protocol-neutral view of
//! one request — its head to read, its body to pull ([`BodySource`]), and the sink
//! its response goes to. The pipeline above sees no wire format; HTTP/1.1 wire text
//! lives in `crate::http`, HTTP/2 frames are the `h2` crate's.
//!
//! Keep-alive is decided here, once per response, from what the client asked, the
//! drain, what the reply requires, and whether the request body was read.

mod body;
mod client_reset;
mod drain;
pub mod h1;
pub mod h2;
mod request;
mod tunnel;

pub use body::{BodyError, BodySource, Piece};
pub use client_reset::{ClientReset, ResponseHandles};
pub use drain::DrainSignal;
pub use request::{ConnInfo, Downstream, Handler};
pub use tunnel::{Duplex, TunnelBytes, TunnelEnd};
