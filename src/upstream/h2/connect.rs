//! Opening an HTTP/2 connection to an endpoint: TCP (and TLS with ALPN `h2` for
//! `protocol = "h2"`) as for HTTP/1.1; the client preface and SETTINGS then leave
//! with the first request's HEADERS, in the connection's first write.

use std::rc::Rc;

use monoio::time::Instant;

use crate::config::{Endpoint, Upstream};
use crate::observe::Counters;

use super::super::connect::connect;
use super::super::failure::{ExchangeError, FailureSource};
use super::super::stream::UpstreamStream;
use super::conn::{drive, Connection};

/// Opens a connection to `endpoint` and starts its task. The endpoint's SETTINGS
/// are not waited for: until they come, the upstream's `max_concurrent_streams`
/// bounds the streams at once.
pub async fn open(
    upstream: &Upstream,
    endpoint: &Endpoint,
    deadline: Instant,
    counters: &Counters,
) -> Result<Rc<Connection>, ExchangeError> {
    let conn = connect(upstream, endpoint, deadline, counters).await?;
    if let UpstreamStream::Tls(tls) = &conn.stream {
        if tls.session().alpn_protocol() != Some(b"h2") {
            return Err(ExchangeError::new(
                FailureSource::Protocol,
                "upstream did not agree to HTTP/2 (ALPN h2)",
            ));
        }
    }
    let h2 = Connection::new();
    monoio::spawn(drive(h2.clone(), conn.stream, upstream.send_timeout));
    Ok(h2)
}
