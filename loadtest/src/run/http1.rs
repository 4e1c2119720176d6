//! One HTTP/1.1 load-generating connection, a `Lane` of the run (`loops.rs` decides
//! when requests leave): send a request, read its whole response. Keep-alive, no
//! pipelining; a connection that fails or is closed by the server is opened again for
//! the next request (with `--new-connection`, every request opens one). For https,
//! opening includes the TLS handshake, which is timed.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use rustls::client::UnbufferedClientConnection;

use super::dial;
use super::loops::{self, Answer, Lane, Window};
use super::options::Plan;
use super::requests::RequestSet;
use super::response::{self, BodyEnd, ChunkedScanner, ResponseHead};
use super::tally::{ErrorKind, Handshake, Tally};
use crate::tls::transport::Transport;

const INPUT_INITIAL: usize = 16 * 1024;

/// Drives connection number `index` (global) until the window ends.
pub async fn drive(
    plan: Rc<Plan>,
    requests: Rc<RequestSet>,
    window: Window,
    index: u64,
    tally: Rc<RefCell<Tally>>,
) {
    let mut conn = Connection::new(&plan, &requests);
    loops::drive(&mut conn, &plan, index, window, &tally).await
}

struct Connection<'p> {
    plan: &'p Plan,
    requests: &'p RequestSet,
    stream: Option<Transport<UnbufferedClientConnection>>,
    /// The handshake of a TLS connection opened by the last exchange.
    opened: Option<Handshake>,
    /// Received bytes not yet consumed.
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Lane for Connection<'_> {
    /// Sends request `sequence` and reads its response, opening the connection first
    /// if needed. Any error closes the connection.
    async fn exchange(&mut self, sequence: u64, deadline: Instant) -> Result<Answer, ErrorKind> {
        let result = self.try_exchange(sequence, deadline).await;
        if result.is_err() {
            self.close();
        }
        result
    }

    fn take_opened(&mut self) -> Option<Handshake> {
        self.opened.take()
    }
}

impl<'p> Connection<'p> {
    fn new(plan: &'p Plan, requests: &'p RequestSet) -> Self {
        Connection {
            plan,
            requests,
            stream: None,
            opened: None,
            input: Vec::with_capacity(INPUT_INITIAL),
            output: Vec::with_capacity(1024),
        }
    }

    async fn try_exchange(
        &mut self,
        sequence: u64,
        deadline: Instant,
    ) -> Result<Answer, ErrorKind> {
        let deadline = monoio::time::Instant::from_std(deadline);
        if self.stream.is_none() {
            let opened = dial::open(self.plan, deadline).await.map_err(|r| r.kind)?;
            self.stream = Some(opened.stream);
            self.opened = opened.handshake;
            self.input.clear();
        }
        self.requests.write(sequence, &mut self.output);
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

    /// Reads up to the final (non-1xx) response head and consumes it.
    async fn read_head(
        &mut self,
        deadline: monoio::time::Instant,
    ) -> Result<ResponseHead, ErrorKind> {
        loop {
            match response::parse_head(&self.input, self.requests.is_head()) {
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
