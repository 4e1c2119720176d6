//! Blocking sockets for the side threads that are clients on their own behalf
//! (the JWKS fetcher, the span exporter): never used on a worker.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Instant;

/// Resolves `host` and connects to `port` on its addresses in turn until one
/// answers, all before `deadline`. `Err` says why (the last address's failure).
pub fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} resolved to no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{last}; timed out"));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    Err(last)
}
