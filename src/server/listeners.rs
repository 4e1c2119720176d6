//! A worker's listeners: the accept loop of each, with the per-worker connection
//! cap, the TLS handshake on TLS listeners, and the hand-off of each connection to
//! the HTTP/1.1 downstream with a [`Gateway`] that pins the current generation.
//!
//! Past `max_connections_per_worker`, a new plaintext connection is answered at once
//! with `503` and `Connection: close` (and counted), rather than left waiting in the
//! backlog: clients and load balancers see a clear, fast refusal. A TLS connection
//! past the cap is closed without a handshake (answering it would cost a handshake).
//!
//! On a TLS listener each accepted connection runs its handshake in its own task,
//! bounded by the listener's `handshake_timeout_ms`, before it is served.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};

use crate::downstream::{h1, ConnInfo};
use crate::http::{FieldList, OVERLOADED};
use crate::observe::Counters;
use crate::proxy::{Gateway, Worker};
use crate::tls::{self, ListenerTls};

/// What a listener speaks.
#[derive(Clone, Copy)]
pub enum ListenerKind {
    Plain,
    /// Index into the snapshot's TLS listeners (and the worker's TLS configs).
    Tls(usize),
}

/// The accepting side of one worker: its TLS contexts and open connections.
pub struct Acceptor {
    pub worker: Rc<Worker>,
    /// One rustls config per TLS listener, this worker's own (its session cache).
    tls_configs: RefCell<Vec<Arc<rustls::ServerConfig>>>,
    /// Connections open on this worker.
    pub active: Cell<usize>,
}

impl Acceptor {
    pub fn new(worker: Rc<Worker>) -> Self {
        Acceptor {
            worker,
            tls_configs: RefCell::new(Vec::new()),
            active: Cell::new(0),
        }
    }

    /// Installs new certificates: new handshakes use them; open connections keep
    /// what they negotiated.
    pub fn install_tls(&self, contexts: &[Arc<ListenerTls>]) -> Result<(), String> {
        let configs = contexts
            .iter()
            .map(|c| c.server_config())
            .collect::<Result<Vec<_>, _>>()?;
        *self.tls_configs.borrow_mut() = configs;
        Ok(())
    }

    fn tls_config(&self, index: usize) -> Option<Arc<rustls::ServerConfig>> {
        self.tls_configs.borrow().get(index).cloned()
    }
}

/// Accepts connections on `listener` until the worker drains.
pub async fn accept_loop(acceptor: Rc<Acceptor>, listener: TcpListener, kind: ListenerKind) {
    let worker = acceptor.worker.clone();
    loop {
        let accepted = monoio::select! {
            a = listener.accept() => a,
            _ = worker.drain.raised() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(worker = worker.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let limit = worker
            .generation()
            .snapshot
            .server
            .limits
            .max_connections_per_worker;
        if acceptor.active.get() >= limit {
            Counters::bump(&worker.counters.connections_rejected);
            if let ListenerKind::Plain = kind {
                monoio::spawn(refuse(stream));
            }
            continue;
        }
        Counters::bump(&worker.counters.connections_accepted);
        acceptor.active.set(acceptor.active.get() + 1);
        let acceptor = acceptor.clone();
        monoio::spawn(async move {
            match kind {
                ListenerKind::Plain => {
                    serve(&acceptor.worker, stream, ConnInfo::plain(peer)).await;
                }
                ListenerKind::Tls(index) => serve_tls(&acceptor, stream, peer, index).await,
            }
            acceptor.active.set(acceptor.active.get() - 1);
        });
    }
}

/// Serves one connection with the worker's current generation.
async fn serve<S: h1::Io>(worker: &Rc<Worker>, io: S, info: ConnInfo) {
    let gateway = Gateway::for_connection(worker.clone());
    let snapshot = gateway.generation.snapshot.clone();
    h1::serve(io, info, &snapshot.server.limits, &worker.drain, &gateway).await;
}

/// Handshakes, then serves; failures and timeouts are counted and logged at debug.
async fn serve_tls(acceptor: &Acceptor, stream: TcpStream, peer: SocketAddr, index: usize) {
    let worker = &acceptor.worker;
    let snapshot = worker.generation().snapshot.clone();
    let Some(listener) = snapshot.server.tls.get(index) else {
        return;
    };
    let Some(config) = acceptor.tls_config(index) else {
        return;
    };
    let timeout = listener.settings.handshake_timeout;
    match monoio::time::timeout(timeout, tls::accept(stream, config)).await {
        Ok(Ok(stream)) => {
            Counters::bump(&worker.counters.tls_handshakes);
            if stream.session().handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                Counters::bump(&worker.counters.tls_resumed);
            }
            let client_subject = listener
                .settings
                .client_subject_header
                .as_ref()
                .and_then(|h| {
                    let subject = tls::client_subject(stream.session().peer_certificates())?;
                    let mut field = FieldList::new();
                    field.push(h.as_bytes(), subject.as_bytes());
                    Some(field)
                });
            let info = ConnInfo {
                peer,
                secure: true,
                client_subject,
            };
            serve(worker, stream, info).await;
        }
        Ok(Err(e)) => {
            Counters::bump(&worker.counters.tls_handshake_failures);
            tracing::debug!(worker = worker.id, %peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            Counters::bump(&worker.counters.tls_handshake_failures);
            tracing::debug!(worker = worker.id, %peer, "TLS handshake timed out");
        }
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = monoio::time::timeout(Duration::from_secs(1), stream.write_all(OVERLOADED)).await;
}
