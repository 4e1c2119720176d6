//! HTTP/1.1 client connections: read a request head, hand the request to the
//! [`Handler`], and keep the connection alive between requests until the client, a
//! limit, an error or the drain ends it.

mod conn;
mod request;

pub use conn::{ClientConn, Io};
pub use request::H1Request;

use crate::config::Limits;

use super::{ConnInfo, DrainSignal, Handler};
use conn::HeadRead;

/// Serves one accepted connection until it ends: each request goes to `handler`;
/// a head the codec refuses is answered through `handler.refuse` and closes.
pub async fn serve<S: Io, H: Handler>(
    io: S,
    info: ConnInfo,
    limits: &Limits,
    drain: &DrainSignal,
    handler: &H,
) {
    serve_after(io, Vec::new(), info, limits, drain, handler).await
}

/// As [`serve`], for a connection whose first bytes were already read (`read`,
/// e.g. while looking for the HTTP/2 preface).
pub async fn serve_after<S: Io, H: Handler>(
    io: S,
    read: Vec<u8>,
    info: ConnInfo,
    limits: &Limits,
    drain: &DrainSignal,
    handler: &H,
) {
    let mut conn = ClientConn::with_read(io, info, read);
    let mut first = true;
    loop {
        match conn.read_head(limits, drain, first).await {
            HeadRead::Ready => {}
            HeadRead::Closed => break,
            HeadRead::Rejected(err) => {
                let mut request = H1Request::refused(&mut conn, limits, drain);
                handler.refuse(&mut request, err).await;
                break;
            }
        }
        first = false;
        let mut request = H1Request::new(&mut conn, limits, drain);
        handler.handle(&mut request).await;
        let keep = request.keep_alive();
        conn.finish_request();
        if !keep || drain.is_raised() {
            break;
        }
    }
    let _ = conn.io.shutdown().await;
}

#[cfg(test)]
mod tests;
