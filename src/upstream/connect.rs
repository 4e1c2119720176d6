//! Opening a connection to an endpoint: TCP within the connect timeout, then the
//! TLS handshake when the upstream re-encrypts (sharing that timeout).

use monoio::net::TcpStream;
use monoio::time::Instant;

use crate::config::{Endpoint, Upstream};
use crate::observe::Counters;

use super::failure::{ExchangeError, FailureSource};
use super::pool::PooledConn;
use super::stream::UpstreamStream;

/// Connects to `endpoint` of `upstream`, giving up at `deadline` or after the
/// upstream's `connect_timeout_ms`, whichever comes first.
pub async fn connect(
    upstream: &Upstream,
    endpoint: &Endpoint,
    deadline: Instant,
    counters: &Counters,
) -> Result<PooledConn, ExchangeError> {
    let started = Instant::now();
    let timeout = upstream
        .connect_timeout
        .min(deadline.saturating_duration_since(started));
    let stream = match monoio::time::timeout(timeout, TcpStream::connect_addr(endpoint.addr)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            Counters::bump(&counters.upstream_connect_failures);
            tracing::debug!(endpoint = %endpoint.addr, error = %e, "upstream connect failed");
            return Err(ExchangeError::new(
                FailureSource::Connect,
                "upstream connect failed",
            ));
        }
        Err(_) => {
            Counters::bump(&counters.upstream_connect_failures);
            return Err(ExchangeError::new(
                FailureSource::ConnectTimeout,
                "upstream connect timed out",
            ));
        }
    };
    let _ = stream.set_nodelay(true);
    Counters::bump(&counters.upstream_connects);
    let Some(tls) = &upstream.tls else {
        return Ok(PooledConn::new(UpstreamStream::Plain(stream)));
    };
    let Some(name) = tls.server_name(&endpoint.authority) else {
        return Err(ExchangeError::new(
            FailureSource::Tls { timed_out: false },
            "upstream TLS: the endpoint has no usable server name; set tls.sni",
        ));
    };
    let left = timeout.saturating_sub(started.elapsed());
    match monoio::time::timeout(left, crate::tls::connect(stream, tls, name)).await {
        Ok(Ok(s)) => Ok(PooledConn::new(UpstreamStream::Tls(Box::new(s)))),
        Ok(Err(e)) => {
            Counters::bump(&counters.upstream_tls_failures);
            tracing::warn!(endpoint = %endpoint.addr, error = %e, "upstream TLS handshake failed");
            Err(ExchangeError::new(
                FailureSource::Tls { timed_out: false },
                format!("upstream TLS handshake failed: {e}"),
            ))
        }
        Err(_) => {
            Counters::bump(&counters.upstream_tls_failures);
            Err(ExchangeError::new(
                FailureSource::Tls { timed_out: true },
                "upstream TLS handshake timed out",
            ))
        }
    }
}
