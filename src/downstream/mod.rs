//! Downstream: the client side of the gateway. A connection protocol (HTTP/1.1 in
//! [`h1`] today; HTTP/2 streams next) turns bytes into requests and hands each one
//! to a [`Handler`] as a [`Downstream`]: a protocol-neutral view of one request —
//! its head to read, its body to pull ([`BodySource`]), and the sink its response
//! goes to. The pipeline above sees no wire format; the wire text itself lives in
//! `crate::http`.
//!
//! Keep-alive is decided here, once per response, from what the client asked, the
//! drain, what the reply requires, and whether the request body was read.
//!
//! A connection that waits for its next request holds no buffer ([`Io`] is what it
//! needs of its stream for that); its deadline is checked on the worker's tick
//! ([`IdleDeadlines`]).

mod drain;
pub mod h1;
mod idle_deadlines;
mod request;
mod transport;

pub use drain::DrainSignal;
pub use idle_deadlines::IdleDeadlines;
pub use request::{BodyError, BodySource, ConnInfo, Downstream, Handler, Piece};
pub use transport::Io;
