//! HTTP/2 load (`run --http2`): each connection carries `--streams` requests at a
//! time, one per stream slot, and each slot is a `Lane` (`loops.rs` decides when its
//! requests leave and times them, exactly as for HTTP/1.1 connections).
//!
//! The protocol is the `h2` crate's client over `monoio_compat::StreamWrapper`, which
//! gives monoio's owned-buffer streams (plain or TLS: `Transport`) tokio's I/O traits;
//! no tokio runtime runs (h2 needs no timer and spawns nothing). The slots of a
//! connection share it through a `Link`: the first slot that needs it opens it (TCP,
//! TLS with ALPN h2 or h2c with prior knowledge, the preface) while the others wait for
//! that, and a task per connection drives h2's `Connection` (reads frames, and writes
//! what the slots queued: requests queued in one event-loop turn leave in one write).
//!
//! How failures count:
//! - a stream the server resets, a GOAWAY that drops a request already sent, the
//!   connection failing: `reset`, for each request it hits (h2load counts them as
//!   failed too);
//! - sent again instead, within the request's `--timeout` (and timed as one request):
//!   a request that had not left yet (the connection was going away, or ran out of
//!   stream ids: on a new connection), and one whose stream the server refused
//!   unprocessed (REFUSED_STREAM, RFC 9113 §8.7: e.g. streams over its limit opened
//!   before its SETTINGS arrived), up to 3 times;
//! - a protocol error that h2 finds in the server's frames: `parse`;
//! - a request without its whole response by `--timeout`: `timeout`; its stream is
//!   reset (RST_STREAM CANCEL), the connection stays.
//!
//! With `--new-connection`, every request opens its own connection (and `--streams` is 1).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::{Reason, SendStream};
use monoio::task::JoinHandle;
use monoio::time::timeout_at;
use monoio::{FusionDriver, RuntimeBuilder};
use monoio_compat::StreamWrapper;
use rustls::client::UnbufferedClientConnection;

use super::dial;
use super::loops::{self, Answer, Lane, Window};
use super::options::Plan;
use super::requests::Http2Requests;
use super::tally::{ErrorKind, Handshake, Tally};
use crate::tls::transport::Transport;

/// Flow-control windows of each connection and each stream: h2load's defaults
/// (2^30 − 1 bytes), so flow control never throttles the load.
const WINDOW: u32 = (1 << 30) - 1;
/// monoio-compat's own buffers: a socket read fills up to this, then h2 copies out of
/// it; a write copies up to this from h2's encoder (which flushes at 16 KiB).
const READ_BUFFER: usize = 32 * 1024;
const WRITE_BUFFER: usize = 32 * 1024;
/// How many times one request is sent again after the server refused its stream
/// unprocessed (REFUSED_STREAM), before it counts as `reset`.
const MAX_REFUSED: u32 = 3;
/// How long a finished run lets each connection send its GOAWAY and close.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// What h2 reads and writes: a plain or TLS stream with tokio's I/O traits.
type Io = StreamWrapper<Transport<UnbufferedClientConnection>>;

/// Drives connection number `index` (global) and its `plan.streams()` slots until the
/// window ends. Slot `s` is lane `s × connections + index`, so consecutive sequence
/// numbers go to different connections.
pub async fn drive(
    plan: Rc<Plan>,
    requests: Rc<Http2Requests>,
    window: Window,
    index: u64,
    tally: Rc<RefCell<Tally>>,
) {
    let link = Rc::new(Link::new(Rc::clone(&plan)));
    let slots: Vec<_> = (0..plan.streams())
        .map(|s| {
            let lane = s * plan.connections + index;
            let plan = Rc::clone(&plan);
            let mut slot = Slot {
                link: Rc::clone(&link),
                requests: Rc::clone(&requests),
                new_connection: plan.new_connection,
                current: None,
                opened: None,
            };
            let tally = Rc::clone(&tally);
            monoio::spawn(async move { loops::drive(&mut slot, &plan, lane, window, &tally).await })
        })
        .collect();
    for slot in slots {
        slot.await;
    }
    link.close().await;
}

/// One stream slot: a lane that sends its requests on its connection's `Link`.
struct Slot {
    link: Rc<Link>,
    requests: Rc<Http2Requests>,
    new_connection: bool,
    /// The connection this slot last used (its attempt number and h2 handle).
    current: Option<(u64, SendRequest<Bytes>)>,
    /// The handshake of a TLS connection this slot opened in the last exchange.
    opened: Option<Handshake>,
}

impl Lane for Slot {
    async fn exchange(&mut self, sequence: u64, deadline: Instant) -> Result<Answer, ErrorKind> {
        let deadline = monoio::time::Instant::from_std(deadline);
        let result = match timeout_at(deadline, self.try_exchange(sequence, deadline)).await {
            Ok(result) => result,
            // The dropped futures reset the stream; the connection stays.
            Err(_) => Err(ErrorKind::Timeout),
        };
        if self.new_connection {
            if let Some((id, _)) = self.current.take() {
                self.link.lost(id);
            }
        }
        result
    }

    fn take_opened(&mut self) -> Option<Handshake> {
        self.opened.take()
    }
}

impl Slot {
    async fn try_exchange(
        &mut self,
        sequence: u64,
        deadline: monoio::time::Instant,
    ) -> Result<Answer, ErrorKind> {
        let mut refused = 0;
        loop {
            let (response, sending) = self.send(sequence, deadline).await?;
            match receive(response, sending, self.requests.body()).await {
                Ok(answer) => return Ok(answer),
                // Closed before any processing (RFC 9113 §8.7), as a server does with
                // the streams over its limit that a client opened before its SETTINGS
                // arrived: sent again, the wait counting in the latency.
                Err(e) if e.reason() == Some(Reason::REFUSED_STREAM) && e.is_remote() => {
                    refused += 1;
                    if refused > MAX_REFUSED {
                        return Err(self.failed(&e));
                    }
                }
                Err(e) => return Err(self.failed(&e)),
            }
        }
    }

    /// Sends the head of request `sequence` on this slot's connection. A request that
    /// could not leave because the connection is going away (GOAWAY, an error, no
    /// stream ids left) is sent on a new one; twice in a row is the server's doing.
    async fn send(
        &mut self,
        sequence: u64,
        deadline: monoio::time::Instant,
    ) -> Result<(ResponseFuture, SendStream<Bytes>), ErrorKind> {
        let end_of_stream = self.requests.body().is_none();
        let mut fresh = false;
        loop {
            let (id, send) =
                connection(&self.link, &mut self.current, &mut self.opened, deadline).await?;
            let sent = match poll_fn(|cx| send.poll_ready(cx)).await {
                Ok(()) => send.send_request(self.requests.request(sequence), end_of_stream),
                Err(e) => Err(e),
            };
            match sent {
                Ok(sent) => return Ok(sent),
                Err(e) => {
                    self.current = None;
                    self.link.lost(id);
                    if fresh {
                        return Err(error_kind(&e));
                    }
                    fresh = true;
                }
            }
        }
    }

    /// The kind of an error after the request left; a connection-level error also
    /// retires the connection, so the next request opens a new one.
    fn failed(&mut self, e: &h2::Error) -> ErrorKind {
        if e.is_io() || e.is_go_away() {
            if let Some((id, _)) = self.current.take() {
                self.link.lost(id);
            }
        }
        error_kind(e)
    }
}

/// Sends the body, if any, and reads the whole response: head, body (its flow-control
/// capacity released as it arrives) and trailers.
async fn receive(
    response: ResponseFuture,
    mut sending: SendStream<Bytes>,
    body: Option<&Bytes>,
) -> Result<Answer, h2::Error> {
    if let Some(body) = body {
        sending.send_data(body.clone(), true)?;
    }
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk?.len());
    }
    body.trailers().await?;
    Ok(Answer { status })
}

/// The connection for a slot to send on: the one it used last (`current`) if that is
/// still open, else the link's (opened by this slot, with its handshake in `opened`,
/// or by another).
async fn connection<'c>(
    link: &Rc<Link>,
    current: &'c mut Option<(u64, SendRequest<Bytes>)>,
    opened: &mut Option<Handshake>,
    deadline: monoio::time::Instant,
) -> Result<(u64, &'c mut SendRequest<Bytes>), ErrorKind> {
    if !matches!(current, Some((id, _)) if link.is_open(*id)) {
        *current = None;
        *current = Some(link.sender(deadline, opened).await?);
    }
    match current {
        Some((id, send)) => Ok((*id, send)),
        None => Err(ErrorKind::Reset),
    }
}

/// How an h2 error counts: a protocol error h2 found in the server's frames (it then
/// sends GOAWAY or RST_STREAM itself) is `parse`; resets and GOAWAYs from the server,
/// I/O errors and the rest are `reset`.
fn error_kind(e: &h2::Error) -> ErrorKind {
    if e.is_library() {
        ErrorKind::Parse
    } else {
        ErrorKind::Reset
    }
}

/// One connection of the run, shared by its slots.
struct Link {
    plan: Rc<Plan>,
    state: RefCell<State>,
    /// Slots waiting while another slot opens the connection.
    waiting: RefCell<Vec<Waker>>,
    /// Opening attempts so far; each connection is named by its attempt's number.
    attempts: Cell<u64>,
    /// The task driving the current connection.
    driver: RefCell<Option<JoinHandle<()>>>,
}

enum State {
    Closed,
    Opening(u64),
    Open(u64, SendRequest<Bytes>),
    /// Attempt `.0` failed: the slots that waited for it fail the same way.
    Failed(u64, ErrorKind),
}

impl Link {
    fn new(plan: Rc<Plan>) -> Link {
        Link {
            plan,
            state: RefCell::new(State::Closed),
            waiting: RefCell::new(Vec::new()),
            attempts: Cell::new(0),
            driver: RefCell::new(None),
        }
    }

    fn is_open(&self, id: u64) -> bool {
        matches!(&*self.state.borrow(), State::Open(open, _) if *open == id)
    }

    /// The open connection's handle, opening it first if there is none (this slot
    /// then gets the TLS handshake in `opened`), or waiting for another slot that is
    /// opening it.
    async fn sender(
        self: &Rc<Self>,
        deadline: monoio::time::Instant,
        opened: &mut Option<Handshake>,
    ) -> Result<(u64, SendRequest<Bytes>), ErrorKind> {
        loop {
            let opening = match &*self.state.borrow() {
                State::Open(id, send) => return Ok((*id, send.clone())),
                State::Opening(id) => Some(*id),
                State::Closed | State::Failed(..) => None,
            };
            let Some(id) = opening else {
                return self.open(deadline, opened).await;
            };
            self.until_settled(id).await;
            if let State::Failed(failed, kind) = &*self.state.borrow() {
                if *failed == id {
                    return Err(*kind);
                }
            }
        }
    }

    /// Opens a connection and starts the task that drives it.
    async fn open(
        self: &Rc<Self>,
        deadline: monoio::time::Instant,
        opened: &mut Option<Handshake>,
    ) -> Result<(u64, SendRequest<Bytes>), ErrorKind> {
        let id = self.attempts.get() + 1;
        self.attempts.set(id);
        self.settle(State::Opening(id));
        // If this future is dropped (the request timed out), the attempt ends here.
        let _attempt = Attempt { link: self, id };
        match connect(&self.plan, deadline).await {
            Ok((send, connection, handshake)) => {
                let link = Rc::downgrade(self);
                let driver = monoio::spawn(drive_connection(connection, link, id));
                *self.driver.borrow_mut() = Some(driver);
                self.settle(State::Open(id, send.clone()));
                *opened = handshake;
                Ok((id, send))
            }
            Err(refused) => {
                self.settle(State::Failed(id, refused.kind));
                Err(refused.kind)
            }
        }
    }

    /// Connection `id` failed or went away: the next request opens a new one.
    fn lost(&self, id: u64) {
        if self.is_open(id) {
            self.settle(State::Closed);
        }
    }

    /// Sets the state and wakes the slots waiting for an opening to end.
    fn settle(&self, state: State) {
        *self.state.borrow_mut() = state;
        for waker in self.waiting.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Waits until attempt `id` is no longer opening.
    async fn until_settled(&self, id: u64) {
        poll_fn(|cx| {
            if matches!(&*self.state.borrow(), State::Opening(opening) if *opening == id) {
                self.waiting.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// The run is over: drops the connection's handle, so h2 sends GOAWAY and closes
    /// it once its streams are done, and waits a little for that.
    async fn close(&self) {
        self.settle(State::Closed);
        let driver = self.driver.borrow_mut().take();
        if let Some(driver) = driver {
            let _ = monoio::time::timeout(CLOSE_GRACE, driver).await;
        }
    }
}

/// An opening in progress; dropped before the attempt settled (the request timed
/// out), it leaves the link closed so that the next request tries again.
struct Attempt<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let opening = matches!(&*self.link.state.borrow(), State::Opening(id) if *id == self.id);
        if opening {
            self.link.settle(State::Closed);
        }
    }
}

/// Runs an h2 connection until it ends (closed by either side, or failed), then
/// retires it from its link.
async fn drive_connection(connection: Connection<Io, Bytes>, link: Weak<Link>, id: u64) {
    let _ = connection.await;
    if let Some(link) = link.upgrade() {
        link.lost(id);
    }
}

/// Opens a connection (`dial.rs`) and starts HTTP/2 on it: the client preface and
/// SETTINGS are queued, not yet answered (h2 lets requests follow at once).
async fn connect(
    plan: &Plan,
    deadline: monoio::time::Instant,
) -> Result<(SendRequest<Bytes>, Connection<Io, Bytes>, Option<Handshake>), dial::Refused> {
    let opened = dial::open(plan, deadline).await?;
    let io = StreamWrapper::new_with_buffer_size(opened.stream, READ_BUFFER, WRITE_BUFFER);
    let started = h2::client::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .handshake::<_, Bytes>(io);
    match timeout_at(deadline, started).await {
        Ok(Ok((send, connection))) => Ok((send, connection, opened.handshake)),
        Ok(Err(e)) => Err(dial::Refused {
            kind: error_kind(&e),
            why: e.to_string(),
        }),
        Err(_) => Err(dial::Refused {
            kind: ErrorKind::Timeout,
            why: "the preface could not be sent in time".into(),
        }),
    }
}

/// One connection before the run: opened as the run opens them, then a PING that the
/// server must answer. A server that does not speak HTTP/2 (no h2c on a plaintext
/// port, no ALPN h2 over TLS) is one clear line (exit status 2) instead of a run full
/// of errors. No request is sent, so the server's logs and counters see none.
pub fn check(plan: &Plan, timeout: Duration) -> Result<(), String> {
    let url = &plan.targets[0].url;
    let hint = if plan.tls.is_some() {
        ""
    } else {
        " (does the server speak h2c with prior knowledge on this port? nginx: `listen … http2`)"
    };
    let mut runtime = RuntimeBuilder::<FusionDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("cannot start the HTTP/2 check: {e}"))?;
    runtime
        .block_on(ping_once(plan, timeout))
        .map_err(|why| format!("HTTP/2 with {url} failed: {why}{hint}"))
}

async fn ping_once(plan: &Plan, timeout: Duration) -> Result<(), String> {
    let deadline = monoio::time::Instant::now() + timeout;
    let (send, mut connection, _) = connect(plan, deadline).await.map_err(|r| r.why)?;
    let mut ping_pong = connection.ping_pong().ok_or("h2 offered no PING handle")?;
    let answered = monoio::select! {
        pong = ping_pong.ping(h2::Ping::opaque()) => pong.map_err(|e| e.to_string()),
        ended = &mut connection => match ended {
            Err(e) => Err(e.to_string()),
            Ok(()) => Err("the server closed the connection".to_string()),
        },
        _ = monoio::time::sleep_until(deadline) => {
            Err(format!("no answer to a PING within {timeout:?}"))
        }
    };
    drop(send);
    if answered.is_ok() {
        // Let h2 send its GOAWAY and close.
        let _ = monoio::time::timeout(CLOSE_GRACE, connection).await;
    }
    answered.map(|_| ())
}
