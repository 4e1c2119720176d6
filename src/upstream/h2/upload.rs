//! A request body on its way to an HTTP/2 endpoint as DATA: the bytes after the
//! head, then the source's pieces, de-chunked when they came chunked, within the
//! endpoint's flow-control windows, then the end of the stream.
//!
//! Cancel-safe, so it can run beside the wait for the answer (and, for a body that
//! can be read apart from its request, beside the relay of the answer: a gRPC
//! bidirectional call): what was taken from the source but not yet sent is kept
//! here, and a pump dropped half-way resumes where it stopped.

use std::rc::Rc;
use std::time::Duration;

use monoio::time::Instant;

use crate::downstream::BodySource;
use crate::http::{BodyFraming, ChunkedScanner};

use super::super::failure::{ExchangeError, FailureSource};
use super::ready::ready_by;
use super::stream::StreamRef;

/// How long a request body may wait for the endpoint's flow-control window.
const SEND_STALL: Duration = Duration::from_secs(30);

/// The sending side of an exchange's stream, and what is left to send.
pub struct Upload {
    stream: Rc<StreamRef>,
    /// De-chunks a chunked body (the head's bytes and the source's pieces are one
    /// chunked body).
    scanner: Option<ChunkedScanner>,
    /// The source's pieces are chunked framing.
    chunked_pieces: bool,
    /// Payload taken but not sent yet: `pending[sent..]`.
    pending: Vec<u8>,
    sent: usize,
    /// The source has no more: the stream is ended once `pending` is sent.
    drained: bool,
    ended: bool,
}

impl Upload {
    /// An upload on `stream` of a body framed as `head_framing` in the head, whose
    /// first bytes (`head_rest`) came after the head; the rest comes from a source
    /// whose pieces are framed as `source_framing`.
    pub fn new(
        stream: Rc<StreamRef>,
        head_rest: &[u8],
        head_framing: BodyFraming,
        source_framing: BodyFraming,
    ) -> Result<Upload, ExchangeError> {
        let mut scanner = (head_framing == BodyFraming::Chunked).then(ChunkedScanner::new);
        let mut pending = Vec::new();
        payload(&mut scanner, head_rest, &mut pending)?;
        Ok(Upload {
            stream,
            scanner,
            chunked_pieces: source_framing == BodyFraming::Chunked,
            pending,
            sent: 0,
            drained: false,
            ended: false,
        })
    }

    /// The whole body has been sent and the stream ended.
    pub fn is_done(&self) -> bool {
        self.ended
    }

    /// Sends the rest of the body from `body`, then ends the stream. `streamed` is
    /// set once bytes were taken from the source (the request can no longer be
    /// sent again).
    pub async fn pump<B: BodySource>(
        &mut self,
        body: &mut B,
        streamed: &mut bool,
    ) -> Result<(), ExchangeError> {
        let (conn, id) = (self.stream.conn.clone(), self.stream.id);
        while !self.ended {
            if self.sent < self.pending.len() {
                let want = self.pending.len() - self.sent;
                let capacity = ready_by(
                    || Instant::now() + SEND_STALL,
                    |cx| conn.poll_send_capacity(id, want, cx),
                );
                let n = match capacity.await {
                    Ok(Ok(n)) => n,
                    Ok(Err(_)) => return Err(write_failed()),
                    Err(_) => return Err(stalled()),
                };
                if n == 0 {
                    // The endpoint answered in full and wants no more body.
                    self.ended = true;
                    break;
                }
                conn.send_data(id, &self.pending[self.sent..self.sent + n], false)
                    .map_err(|_| write_failed())?;
                self.sent += n;
                continue;
            }
            if self.drained {
                conn.send_data(id, &[], true).map_err(|_| write_failed())?;
                self.ended = true;
                continue;
            }
            match body.next_piece().await {
                Ok(Some(piece)) => {
                    *streamed = true;
                    self.pending.clear();
                    self.sent = 0;
                    let bytes = &piece.buf[piece.range.clone()];
                    let added = if self.chunked_pieces {
                        payload(&mut self.scanner, bytes, &mut self.pending)
                    } else {
                        self.pending.extend_from_slice(bytes);
                        Ok(())
                    };
                    body.give_back(piece);
                    added?;
                }
                Ok(None) => self.drained = true,
                Err(e) => return Err(ExchangeError::new(FailureSource::Client(e), e.message())),
            }
        }
        Ok(())
    }
}

fn write_failed() -> ExchangeError {
    ExchangeError::new(
        FailureSource::Write,
        "upstream stream closed while receiving the body",
    )
}

fn stalled() -> ExchangeError {
    ExchangeError::new(
        FailureSource::Write,
        "upstream flow-control window stayed shut",
    )
}

/// Appends the payload in `bytes` to `out`: de-chunked when a scanner is given.
fn payload(
    scanner: &mut Option<ChunkedScanner>,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ExchangeError> {
    match scanner {
        None => {
            out.extend_from_slice(bytes);
            Ok(())
        }
        Some(scanner) => scanner
            .scan_with(bytes, |data| out.extend_from_slice(data))
            .map(|_| ())
            .map_err(|e| ExchangeError::new(FailureSource::Protocol, e.reason())),
    }
}
