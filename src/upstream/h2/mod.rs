//! HTTP/2 upstreams (`protocol = "h2"` over TLS with ALPN, `"h2c"` with prior
//! knowledge): the gateway's own HTTP/2 client (frames and HPACK from
//! `crate::http::http2`), with per-worker multiplexed connections (`pool.rs`),
//! each run by a task of its own that writes the streams of a loop turn at once
//! and reads their answers at once (`conn/`); the exchange (`exchange.rs`) that
//! the generic [`Exchanger`](super::Exchanger) hands HTTP/2 upstreams to; the
//! request head read back from HTTP/1.1 text and encoded (`request.rs`); the
//! request body's DATA (`upload.rs`); the response's DATA and trailers
//! (`response.rs`); waits on a connection's state that skip the timer when it is
//! ready already (`ready.rs`). docs/http2.md says why this side is not the `h2` crate.

mod conn;
mod connect;
mod exchange;
mod pool;
mod ready;
mod request;
mod response;
mod stream;
mod upload;

pub use conn::feed_for_fuzzing;
pub use exchange::exchange;
pub use pool::H2Pools;
pub use response::H2Response;
pub use upload::Upload;
