//! Opening a connection to the target, for both protocols: TCP (with `TCP_NODELAY`),
//! then for https the TLS handshake, timed from the open socket to the handshake's
//! end. With `--http2` the server must choose ALPN `h2`, else the connection is a
//! `tls` error: the tool never falls back to HTTP/1.1 behind the user's back.

use std::time::Instant;

use monoio::net::TcpStream;
use monoio::time::timeout_at;
use rustls::client::UnbufferedClientConnection;
use rustls::{HandshakeKind, ProtocolVersion};

use super::options::Plan;
use super::tally::{ErrorKind, Handshake};
use super::tls::ALPN_H2;
use crate::tls::transport::Transport;

/// An open connection and, over TLS, its handshake.
pub struct Opened {
    pub stream: Transport<UnbufferedClientConnection>,
    pub handshake: Option<Handshake>,
}

/// Why a connection could not be opened: the kind the run counts, and words for the
/// check before the run.
#[derive(Debug)]
pub struct Refused {
    pub kind: ErrorKind,
    pub why: String,
}

impl Refused {
    fn new(kind: ErrorKind, why: impl Into<String>) -> Refused {
        Refused {
            kind,
            why: why.into(),
        }
    }
}

/// Opens a connection to `plan.addr` by `deadline`. A connect that fails or times out
/// is `Connect`; a handshake that fails is `Tls`, one that times out `Timeout`.
pub async fn open(plan: &Plan, deadline: monoio::time::Instant) -> Result<Opened, Refused> {
    let socket = match timeout_at(deadline, TcpStream::connect_addr(plan.addr)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => return Err(Refused::new(ErrorKind::Connect, e.to_string())),
        Err(_) => return Err(Refused::new(ErrorKind::Connect, "connect timed out")),
    };
    let _ = socket.set_nodelay(true);
    let Some(tls) = &plan.tls else {
        return Ok(Opened {
            stream: Transport::Plain(socket),
            handshake: None,
        });
    };
    let started = Instant::now();
    let stream = match timeout_at(deadline, tls.connect(socket)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Refused::new(ErrorKind::Tls, e.to_string())),
        Err(_) => return Err(Refused::new(ErrorKind::Timeout, "TLS handshake timed out")),
    };
    let session = stream.session();
    if tls.http2 && session.alpn_protocol() != Some(ALPN_H2) {
        return Err(Refused::new(
            ErrorKind::Tls,
            "the server did not choose ALPN h2",
        ));
    }
    let handshake = Handshake {
        took: started.elapsed(),
        resumed: session.handshake_kind() == Some(HandshakeKind::Resumed),
        tls13: session.protocol_version() == Some(ProtocolVersion::TLSv1_3),
    };
    Ok(Opened {
        stream: Transport::Tls(Box::new(stream)),
        handshake: Some(handshake),
    })
}
