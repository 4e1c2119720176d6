//! Opening an HTTP/2 connection to an endpoint: TCP (and TLS with ALPN `h2` for
//! `protocol = "h2"`) as for HTTP/1.1, then the client preface and SETTINGS.

use ::h2::client::{Connection, SendRequest};
use bytes::Bytes;
use monoio::time::Instant;
use monoio_compat::StreamWrapper;

use crate::config::{Endpoint, Upstream};
use crate::observe::Counters;

use super::super::connect::connect;
use super::super::failure::{ExchangeError, FailureSource};
use super::super::stream::UpstreamStream;

/// monoio-compat's buffers (see downstream/h2/conn.rs).
const READ_BUFFER: usize = 16 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;
/// Flow-control windows for responses: a response is read this far ahead of the
/// client, per stream and per connection.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Largest response header list accepted (as for HTTP/1.1 response heads).
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// The I/O an upstream HTTP/2 connection runs over.
pub type Io = StreamWrapper<UpstreamStream>;

/// Opens a connection to `endpoint` and starts HTTP/2 on it. The endpoint's
/// SETTINGS are not waited for: until they come, at most `max_concurrent_streams`
/// requests are sent at once.
pub async fn open(
    upstream: &Upstream,
    endpoint: &Endpoint,
    deadline: Instant,
    counters: &Counters,
) -> Result<(SendRequest<Bytes>, Connection<Io, Bytes>), ExchangeError> {
    let conn = connect(upstream, endpoint, deadline, counters).await?;
    if let UpstreamStream::Tls(tls) = &conn.stream {
        if tls.session().alpn_protocol() != Some(b"h2") {
            return Err(ExchangeError::new(
                FailureSource::Protocol,
                "upstream did not agree to HTTP/2 (ALPN h2)",
            ));
        }
    }
    let io = StreamWrapper::new_with_buffer_size(conn.stream, READ_BUFFER, WRITE_BUFFER);
    let handshake = ::h2::client::Builder::new()
        .initial_max_send_streams(upstream.max_concurrent_streams)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .handshake::<_, Bytes>(io);
    match monoio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e)) => Err(ExchangeError::new(
            FailureSource::Protocol,
            format!("upstream HTTP/2 handshake failed: {e}"),
        )),
        Err(_) => Err(ExchangeError::new(
            FailureSource::Timeout,
            "upstream HTTP/2 handshake timed out",
        )),
    }
}
