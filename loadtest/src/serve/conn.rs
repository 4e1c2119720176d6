//! One client connection: the TLS handshake with `--tls`, then read, parse, drain the
//! body, answer; keep-alive and pipelining.
//!
//! Buffers are per connection and reused: `input` holds received bytes (`start` marks
//! what is consumed), `output` collects the responses to every complete request in
//! `input` and goes out in one write just before the connection would block on a read
//! (or a delay), so pipelined requests are answered in order with one syscall.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::server::UnbufferedServerConnection;

use super::echo::{self, FNV_OFFSET, MAX_ECHOED_BODY};
use super::request::{self, Framing, Head, HeadError, Parsed};
use super::response::{
    self, filler, filler_chunk_frame, BodyLength, Persistence, APPLICATION_JSON, CONTINUE,
    FILL_CHUNK, INLINE_BODY_MAX, TEXT_PLAIN,
};
use super::{tls, Worker};
use crate::tls::transport::Transport;

/// Initial size of the read buffer.
const INPUT_INITIAL: usize = 16 * 1024;
/// The read buffer grows up to this size for a head, chunk line or trailer that does
/// not fit; beyond it the request is rejected.
const INPUT_MAX: usize = 64 * 1024;
/// Pipelined responses are flushed once this much is pending.
const OUTPUT_FLUSH: usize = 64 * 1024;

/// How long and how much input is drained after an error response.
const LINGER_TIME: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 1024 * 1024;

/// Why a connection stops.
#[derive(Debug)]
enum ConnError {
    /// Socket error: just close.
    Io,
    /// The peer closed in the middle of a request: just close.
    Eof,
    /// Bad framing: answer 400 and close.
    Malformed,
    /// A head, chunk line or trailer larger than `INPUT_MAX`: answer 431 and close.
    TooLarge,
}

impl From<io::Error> for ConnError {
    fn from(_: io::Error) -> Self {
        ConnError::Io
    }
}

/// The request body as the response needs it.
struct BodySummary {
    bytes: u64,
    fnv: u64,
    /// The whole body is in `Connection::body`.
    kept: bool,
}

pub(crate) async fn serve_connection(socket: TcpStream, worker: Rc<Worker>) {
    let stream = match &worker.tls {
        None => Transport::Plain(socket),
        Some(config) => match tls::accept(socket, Arc::clone(config)).await {
            Ok(stream) => Transport::Tls(Box::new(stream)),
            // The client rejected the certificate, or gave up: nothing to answer.
            Err(_) => return,
        },
    };
    let mut conn = Connection {
        stream,
        input: Vec::with_capacity(INPUT_INITIAL),
        start: 0,
        output: Vec::with_capacity(1024),
        echo: Vec::new(),
        body: Vec::new(),
    };
    conn.run(&worker).await;
}

struct Connection {
    stream: Transport<UnbufferedServerConnection>,
    input: Vec<u8>,
    start: usize,
    output: Vec<u8>,
    /// Echo JSON under construction (only used with `--echo`).
    echo: Vec<u8>,
    /// Kept request body for the echo (at most `MAX_ECHOED_BODY`).
    body: Vec<u8>,
}

impl Connection {
    async fn run(&mut self, worker: &Worker) {
        let result = self.serve_requests(worker).await;
        let status = match result {
            Ok(()) | Err(ConnError::Io) | Err(ConnError::Eof) => None,
            Err(ConnError::Malformed) => Some(400),
            Err(ConnError::TooLarge) => Some(431),
        };
        if let Some(status) = status {
            response::write_error(&mut self.output, status);
        }
        if self.flush().await.is_err() {
            return;
        }
        let _ = self.stream.shutdown().await;
        if status.is_some() {
            self.linger().await;
        }
    }

    /// After an error response, reads and drops what the client still sends (bounded
    /// in time and size) so that closing with unread input does not reset the
    /// connection before the client has read the response.
    async fn linger(&mut self) {
        let deadline = monoio::time::Instant::now() + LINGER_TIME;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            self.input.clear();
            self.start = 0;
            match monoio::time::timeout_at(deadline, self.fill()).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => return,
            }
        }
    }

    /// Serves requests until the peer closes or a response ends the connection.
    async fn serve_requests(&mut self, worker: &Worker) -> Result<(), ConnError> {
        loop {
            let echo = worker.args.echo.then_some(&mut self.echo);
            match request::parse(&self.input[self.start..], echo) {
                Ok(Parsed::Complete(head)) => {
                    self.start += head.len;
                    self.answer(worker, &head).await?;
                    if !head.keep_alive {
                        return Ok(());
                    }
                    if self.output.len() >= OUTPUT_FLUSH {
                        self.flush().await?;
                    }
                }
                Ok(Parsed::Partial) => {
                    if self.fill().await? == 0 {
                        return Ok(());
                    }
                }
                Err(HeadError::Malformed) => return Err(ConnError::Malformed),
                Err(HeadError::TooManyHeaders) => return Err(ConnError::TooLarge),
            }
        }
    }

    /// Reads the body of one request and appends (or streams) its response.
    async fn answer(&mut self, worker: &Worker, head: &Head) -> Result<(), ConnError> {
        let args = &worker.args;
        if head.expect_continue && head.framing != Framing::Empty {
            self.output.extend_from_slice(CONTINUE);
            self.flush().await?;
        }
        let echo = args.echo && !head.hits_endpoint;
        let body = self.read_body(head.framing, echo).await?;
        let persistence = Persistence::of(head.keep_alive, head.http10);
        let overrides = head.overrides;
        let chunked = overrides.chunked && !head.http10;
        let status = overrides.status.unwrap_or(200);

        if head.hits_endpoint {
            let json = hits_json(worker.hits.total());
            response::write_buffered(
                &mut self.output,
                200,
                APPLICATION_JSON,
                &json,
                false,
                head.is_head_method,
                persistence,
            );
            return Ok(());
        }

        let delay = worker.count_request().saturating_add(overrides.delay_ms);
        if delay > 0 {
            self.flush().await?;
            monoio::time::sleep(Duration::from_millis(delay)).await;
        }

        if echo {
            let kept = body.kept.then_some(self.body.as_slice());
            echo::write_suffix(&mut self.echo, kept, body.bytes, body.fnv);
            response::write_buffered(
                &mut self.output,
                status,
                APPLICATION_JSON,
                &self.echo,
                chunked,
                head.is_head_method,
                persistence,
            );
            return Ok(());
        }

        let bytes = overrides.bytes.unwrap_or(args.body_bytes);
        match &worker.fixed {
            Some(fixed) if status == 200 && !chunked && bytes == args.body_bytes => {
                self.output
                    .extend_from_slice(fixed.get(persistence, head.is_head_method));
                Ok(())
            }
            _ => {
                self.send_filler(status, bytes, chunked, head.is_head_method, persistence)
                    .await
            }
        }
    }

    /// Sends a text/plain response of `bytes` filler bytes; large bodies are written
    /// straight from the static filler, never allocated.
    async fn send_filler(
        &mut self,
        status: u16,
        bytes: u64,
        chunked: bool,
        head_only: bool,
        persistence: Persistence,
    ) -> Result<(), ConnError> {
        let out = &mut self.output;
        if !response::status_has_body(status) {
            response::write_head(out, status, TEXT_PLAIN, BodyLength::Omitted, persistence);
            return Ok(());
        }
        let length = if chunked {
            BodyLength::Chunked
        } else {
            BodyLength::Length(bytes)
        };
        response::write_head(out, status, TEXT_PLAIN, length, persistence);
        if head_only {
            return Ok(());
        }
        let chunk = FILL_CHUNK as u64;
        if chunked {
            let full_chunks = bytes / chunk;
            let rest = (bytes % chunk) as usize;
            if full_chunks > 0 {
                self.flush().await?;
                for _ in 0..full_chunks {
                    self.write_static(filler_chunk_frame()).await?;
                }
            }
            let out = &mut self.output;
            if rest > 0 {
                response::push_hex(out, rest as u64);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(filler(rest));
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else if bytes <= INLINE_BODY_MAX as u64 {
            out.extend_from_slice(filler(bytes as usize));
        } else {
            self.flush().await?;
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk);
                self.write_static(filler(n as usize)).await?;
                left -= n;
            }
        }
        Ok(())
    }

    /// Reads the whole request body without holding more than `MAX_ECHOED_BODY` of it.
    /// With `digest`, computes the FNV-1a checksum and keeps a small body in `self.body`.
    async fn read_body(
        &mut self,
        framing: Framing,
        digest: bool,
    ) -> Result<BodySummary, ConnError> {
        let mut sink = BodySink {
            digest,
            keep: digest,
            kept: std::mem::take(&mut self.body),
            bytes: 0,
            fnv: FNV_OFFSET,
        };
        sink.kept.clear();
        let result = match framing {
            Framing::Empty => Ok(()),
            Framing::Length(n) => {
                sink.keep &= n <= MAX_ECHOED_BODY as u64;
                self.read_body_bytes(n, &mut sink).await
            }
            Framing::Chunked => self.read_chunked(&mut sink).await,
        };
        let summary = BodySummary {
            bytes: sink.bytes,
            fnv: sink.fnv,
            kept: sink.keep,
        };
        self.body = sink.kept;
        result.map(|()| summary)
    }

    /// Passes the next `n` body bytes to `sink`.
    async fn read_body_bytes(&mut self, mut n: u64, sink: &mut BodySink) -> Result<(), ConnError> {
        while n > 0 {
            if self.start == self.input.len() {
                self.fill_or_eof().await?;
            }
            let available = self.input.len() - self.start;
            let take = usize::try_from(n).map_or(available, |n| n.min(available));
            sink.feed(&self.input[self.start..self.start + take]);
            self.start += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Decodes a chunked body (RFC 9112 §7.1), trailers skipped.
    async fn read_chunked(&mut self, sink: &mut BodySink) -> Result<(), ConnError> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.input[self.start..]) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.start += used;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => self.fill_or_eof().await?,
                    Err(_) => return Err(ConnError::Malformed),
                }
            };
            if size == 0 {
                break;
            }
            self.read_body_bytes(size, sink).await?;
            while self.input.len() - self.start < 2 {
                self.fill_or_eof().await?;
            }
            if &self.input[self.start..self.start + 2] != b"\r\n" {
                return Err(ConnError::Malformed);
            }
            self.start += 2;
        }
        // Trailer fields, then the empty line.
        loop {
            let pending = &self.input[self.start..];
            match pending.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let line = &pending[..end];
                    if line.last() != Some(&b'\r') {
                        return Err(ConnError::Malformed);
                    }
                    self.start += end + 1;
                    if line.len() == 1 {
                        return Ok(());
                    }
                }
                None => self.fill_or_eof().await?,
            }
        }
    }

    /// Reads more input after the unconsumed bytes, first sending pending output.
    /// Returns the number of bytes read, 0 at end of stream.
    async fn fill(&mut self) -> Result<usize, ConnError> {
        self.flush().await?;
        if self.start == self.input.len() {
            self.input.clear();
        } else if self.start > 0 {
            self.input.copy_within(self.start.., 0);
            self.input.truncate(self.input.len() - self.start);
        }
        self.start = 0;
        if self.input.len() == self.input.capacity() {
            if self.input.capacity() >= INPUT_MAX {
                return Err(ConnError::TooLarge);
            }
            self.input.reserve_exact(self.input.capacity());
        }
        loop {
            let input = std::mem::take(&mut self.input);
            let (len, cap) = (input.len(), input.capacity());
            let (result, slice) = self.stream.read(input.slice_mut(len..cap)).await;
            self.input = slice.into_inner();
            match result {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `fill`, where end of stream is an error (mid-request).
    async fn fill_or_eof(&mut self) -> Result<(), ConnError> {
        match self.fill().await? {
            0 => Err(ConnError::Eof),
            _ => Ok(()),
        }
    }

    /// Writes all pending output.
    async fn flush(&mut self) -> Result<(), ConnError> {
        if self.output.is_empty() {
            return Ok(());
        }
        let output = std::mem::take(&mut self.output);
        let (result, mut output) = self.stream.write_all(output).await;
        output.clear();
        self.output = output;
        result?;
        Ok(())
    }

    async fn write_static(&mut self, bytes: &'static [u8]) -> Result<(), ConnError> {
        self.stream.write_all(bytes).await.0?;
        Ok(())
    }
}

/// Where body bytes go: counted always; checksummed and (while small) kept for echo.
struct BodySink {
    digest: bool,
    keep: bool,
    kept: Vec<u8>,
    bytes: u64,
    fnv: u64,
}

impl BodySink {
    fn feed(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if !self.digest {
            return;
        }
        self.fnv = echo::fnv1a64(self.fnv, data);
        if self.keep {
            if self.kept.len() + data.len() <= MAX_ECHOED_BODY {
                self.kept.extend_from_slice(data);
            } else {
                self.keep = false;
                self.kept.clear();
            }
        }
    }
}

/// `{"requests": N}`.
fn hits_json(requests: u64) -> Vec<u8> {
    let mut json = Vec::with_capacity(32);
    json.extend_from_slice(b"{\"requests\": ");
    response::push_decimal(&mut json, requests);
    json.push(b'}');
    json
}
