//! HTTP/2 upstreams (`protocol = "h2"` over TLS with ALPN, `"h2c"` with prior
//! knowledge): the `h2` crate's client over monoio-compat, with per-worker
//! multiplexed connections (`pool.rs`), the exchange (`exchange.rs`) that the
//! generic [`Exchanger`](super::Exchanger) hands HTTP/2 upstreams to, the request
//! head read back from HTTP/1.1 text (`request.rs`), the request body's DATA
//! (`upload.rs`), and the response's DATA and trailers (`response.rs`).

mod connect;
mod exchange;
mod pool;
mod request;
mod response;
mod upload;

pub use exchange::exchange;
pub use pool::H2Pools;
pub use response::H2Response;
pub use upload::Upload;
