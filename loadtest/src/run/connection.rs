//! One load-generating connection: send a request, read its whole response, repeat —
//! when the last answer arrives (closed loop) or at the next intended time (open loop).
//! HTTP/1.1 keep-alive, no pipelining; a connection that fails or is closed by the
//! server is opened again for the next request (with `--new-connection`, every request
//! opens one). For https, opening includes the TLS handshake, which is timed.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::net::TcpStream;
use rustls::{ClientConnection, HandshakeKind, ProtocolVersion};

use super::options::Plan;
use super::response::{self, BodyEnd, ChunkedScanner, ResponseHead};
use super::schedule::{self, Schedule, EARLY};
use super::tally::{ErrorKind, Handshake, Tally};
use crate::tls::transport::Transport;

const INPUT_INITIAL: usize = 16 * 1024;
/// After a failed connect or TLS handshake in closed loop, wait this long before the
/// next attempt.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// The measured part of a run, shared by all connections of all workers.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When the schedule (and the warm-up) begins.
    pub start: Instant,
    /// Requests sent (open loop: meant to be sent) from here on are measured.
    pub measure_from: Instant,
    /// No new request starts from here on (in open loop: none meant for a later
    /// time; those held back by a stall get `--timeout` more to leave).
    pub end: Instant,
}

impl Window {
    fn measures(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }
}

/// Drives connection number `index` (global) until the window ends.
pub async fn drive(plan: Rc<Plan>, window: Window, index: u64, tally: Rc<RefCell<Tally>>) {
    let mut conn = Connection::new(&plan);
    match plan.rate {
        Some(rate) => {
            let schedule = Schedule::new(window.start, index, plan.connections, rate);
            conn.open_loop(schedule, window, &tally).await
        }
        None => conn.closed_loop(index, window, &tally).await,
    }
}

/// A finished exchange.
struct Answer {
    status: u16,
}

struct Connection<'p> {
    plan: &'p Plan,
    stream: Option<Transport<ClientConnection>>,
    /// The handshake of a TLS connection opened by the last exchange.
    opened: Option<Handshake>,
    /// Received bytes not yet consumed.
    input: Vec<u8>,
    output: Vec<u8>,
}

impl<'p> Connection<'p> {
    fn new(plan: &'p Plan) -> Self {
        Connection {
            plan,
            stream: None,
            opened: None,
            input: Vec::with_capacity(INPUT_INITIAL),
            output: Vec::with_capacity(1024),
        }
    }

    /// The wrk model: the next request leaves when the last answer arrived.
    async fn closed_loop(&mut self, first: u64, window: Window, tally: &RefCell<Tally>) {
        let mut sequence = first;
        sleep_until(window.start).await;
        loop {
            let sent = Instant::now();
            if sent >= window.end {
                return;
            }
            let result = self.exchange(sequence, sent + self.plan.timeout).await;
            let done = Instant::now();
            let opened = self.opened.take();
            if window.measures(sent) {
                record(tally, &result, done - sent, opened);
            }
            if matches!(result, Err(ErrorKind::Connect | ErrorKind::Tls)) {
                monoio::time::sleep(CONNECT_BACKOFF).await;
            }
            sequence += self.plan.connections;
        }
    }

    /// The wrk2 model: request k leaves at its intended time, or as soon as the
    /// connection is free if that time has passed, and is timed from the intended time.
    ///
    /// Requests meant for the window that are still held back when it ends (behind a
    /// stall) are sent for up to `--timeout` more: cutting them off would drop exactly
    /// the slow tail the open loop exists to see. What is left after that is counted
    /// as never sent.
    async fn open_loop(&mut self, mut schedule: Schedule, window: Window, tally: &RefCell<Tally>) {
        let give_up = window.end + self.plan.timeout;
        loop {
            let intended = schedule.intended();
            if intended >= window.end {
                return;
            }
            let ready = Instant::now();
            if ready >= give_up {
                // Stopped while behind: what was meant for the window never left.
                let unsent = schedule.remaining_before(window.end)
                    - schedule.remaining_before(window.measure_from);
                tally.borrow_mut().unsent += unsent;
                return;
            }
            if ready + EARLY < intended {
                sleep_until(intended - EARLY).await;
            }
            let sent = Instant::now();
            let measured = window.measures(intended);
            if measured {
                let mut t = tally.borrow_mut();
                if ready > intended {
                    t.sent_late_busy += 1;
                } else {
                    t.record_send_lag(sent.saturating_duration_since(intended));
                }
            }
            let result = self
                .exchange(schedule.sequence(), sent + self.plan.timeout)
                .await;
            let done = Instant::now();
            let opened = self.opened.take();
            if measured {
                record(
                    tally,
                    &result,
                    done - schedule::latency_start(intended, sent),
                    opened,
                );
            }
            schedule.advance();
        }
    }

    /// Sends request `sequence` and reads its response, opening the connection first
    /// if needed. Any error closes the connection.
    async fn exchange(&mut self, sequence: u64, deadline: Instant) -> Result<Answer, ErrorKind> {
        let result = self.try_exchange(sequence, deadline).await;
        if result.is_err() {
            self.close();
        }
        result
    }

    async fn try_exchange(
        &mut self,
        sequence: u64,
        deadline: Instant,
    ) -> Result<Answer, ErrorKind> {
        let deadline = monoio::time::Instant::from_std(deadline);
        if self.stream.is_none() {
            self.stream = Some(self.open(deadline).await?);
            self.input.clear();
        }
        self.plan.requests.write(sequence, &mut self.output);
        let output = std::mem::take(&mut self.output);
        let stream = self.stream.as_mut().ok_or(ErrorKind::Reset)?;
        let (result, output) =
            match monoio::time::timeout_at(deadline, stream.write_all(output)).await {
                Ok(done) => done,
                Err(_) => return Err(ErrorKind::Timeout),
            };
        self.output = output;
        result.map_err(|_| ErrorKind::Reset)?;

        let head = self.read_head(deadline).await?;
        self.skip_body(head.body, deadline).await?;
        if !head.keep_alive || self.plan.new_connection {
            self.close();
        }
        Ok(Answer {
            status: head.status,
        })
    }

    /// Opens the connection: TCP, then for https the TLS handshake, timed from the
    /// open socket to the handshake's end.
    async fn open(
        &mut self,
        deadline: monoio::time::Instant,
    ) -> Result<Transport<ClientConnection>, ErrorKind> {
        let connect = TcpStream::connect_addr(self.plan.addr);
        let socket = match monoio::time::timeout_at(deadline, connect).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(_)) | Err(_) => return Err(ErrorKind::Connect),
        };
        let _ = socket.set_nodelay(true);
        let Some(tls) = &self.plan.tls else {
            return Ok(Transport::Plain(socket));
        };
        let started = Instant::now();
        match monoio::time::timeout_at(deadline, tls.connect(socket)).await {
            Ok(Ok(stream)) => {
                let session = stream.session();
                self.opened = Some(Handshake {
                    took: started.elapsed(),
                    resumed: session.handshake_kind() == Some(HandshakeKind::Resumed),
                    tls13: session.protocol_version() == Some(ProtocolVersion::TLSv1_3),
                });
                Ok(Transport::Tls(Box::new(stream)))
            }
            Ok(Err(_)) => Err(ErrorKind::Tls),
            Err(_) => Err(ErrorKind::Timeout),
        }
    }

    /// Reads up to the final (non-1xx) response head and consumes it.
    async fn read_head(
        &mut self,
        deadline: monoio::time::Instant,
    ) -> Result<ResponseHead, ErrorKind> {
        loop {
            match response::parse_head(&self.input, self.plan.requests.is_head()) {
                Ok(Some(head)) => {
                    self.input.drain(..head.len);
                    if !head.is_interim() {
                        return Ok(head);
                    }
                }
                Ok(None) => {
                    if self.fill(deadline).await? == 0 {
                        return Err(ErrorKind::Reset);
                    }
                }
                Err(_) => return Err(ErrorKind::Parse),
            }
        }
    }

    /// Reads and drops the response body.
    async fn skip_body(
        &mut self,
        body: BodyEnd,
        deadline: monoio::time::Instant,
    ) -> Result<(), ErrorKind> {
        match body {
            BodyEnd::Empty => Ok(()),
            BodyEnd::Length(mut left) => loop {
                let take = left.min(self.input.len() as u64);
                self.input.drain(..take as usize);
                left -= take;
                if left == 0 {
                    return Ok(());
                }
                if self.fill(deadline).await? == 0 {
                    return Err(ErrorKind::Reset);
                }
            },
            BodyEnd::Chunked => {
                let mut scanner = ChunkedScanner::default();
                loop {
                    let used = scanner.feed(&self.input).map_err(|_| ErrorKind::Parse)?;
                    self.input.drain(..used);
                    if scanner.is_done() {
                        return Ok(());
                    }
                    if self.fill(deadline).await? == 0 {
                        return Err(ErrorKind::Reset);
                    }
                }
            }
            BodyEnd::Close => loop {
                self.input.clear();
                if self.fill(deadline).await? == 0 {
                    return Ok(());
                }
            },
        }
    }

    /// Appends what the socket has to `input`; 0 at end of stream.
    async fn fill(&mut self, deadline: monoio::time::Instant) -> Result<usize, ErrorKind> {
        let stream = self.stream.as_mut().ok_or(ErrorKind::Reset)?;
        if self.input.len() == self.input.capacity() {
            self.input.reserve(self.input.capacity().max(INPUT_INITIAL));
        }
        loop {
            let input = std::mem::take(&mut self.input);
            let (len, cap) = (input.len(), input.capacity());
            let read = stream.read(input.slice_mut(len..cap));
            let (result, slice) = match monoio::time::timeout_at(deadline, read).await {
                Ok(done) => done,
                // The buffer went with the cancelled read; the connection is dropped.
                Err(_) => return Err(ErrorKind::Timeout),
            };
            self.input = slice.into_inner();
            match result {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(ErrorKind::Reset),
            }
        }
    }

    fn close(&mut self) {
        self.stream = None;
        self.input.clear();
        if self.input.capacity() == 0 {
            self.input.reserve(INPUT_INITIAL);
        }
    }
}

fn record(
    tally: &RefCell<Tally>,
    result: &Result<Answer, ErrorKind>,
    latency: Duration,
    opened: Option<Handshake>,
) {
    let mut t = tally.borrow_mut();
    if let Some(handshake) = opened {
        t.record_handshake(handshake);
    }
    match result {
        Ok(answer) => t.record_response(answer.status, latency),
        Err(kind) => t.record_error(*kind),
    }
}

async fn sleep_until(t: Instant) {
    monoio::time::sleep_until(monoio::time::Instant::from_std(t)).await;
}
