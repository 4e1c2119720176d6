//! A request body on its way to an HTTP/2 endpoint as DATA: the bytes after the
//! head, then the source's pieces, de-chunked when they came chunked, within the
//! endpoint's flow-control window, then the end of the stream.
//!
//! Cancel-safe, so it can run beside the wait for the answer (and, for a body that
//! can be read apart from its request, beside the relay of the answer: a gRPC
//! bidirectional call): what was taken from the source but not yet sent is kept
//! here, and a pump dropped half-way resumes where it stopped.

use std::cell::RefCell;
use std::time::Duration;

use ::h2::SendStream;
use bytes::Bytes;

use crate::downstream::h2::send_data;
use crate::downstream::BodySource;
use crate::http::{BodyFraming, ChunkedScanner};

use super::super::failure::{ExchangeError, FailureSource};

/// How long a request body may wait for the endpoint's flow-control window.
const SEND_STALL: Duration = Duration::from_secs(30);

/// The sending side of an exchange's stream, and what is left to send.
pub struct Upload {
    stream: RefCell<Option<SendStream<Bytes>>>,
    /// De-chunks a chunked body (the head's bytes and the source's pieces are one
    /// chunked body).
    scanner: Option<ChunkedScanner>,
    /// The source's pieces are chunked framing.
    chunked_pieces: bool,
    /// Payload taken but not sent yet.
    pending: Bytes,
    /// The source has no more: the stream is ended once `pending` is sent.
    drained: bool,
    ended: bool,
}

impl Upload {
    /// An upload on `stream` of a body framed as `head_framing` in the head, whose
    /// first bytes (`head_rest`) came after the head; the rest comes from a source
    /// whose pieces are framed as `source_framing`.
    pub fn new(
        stream: SendStream<Bytes>,
        head_rest: &[u8],
        head_framing: BodyFraming,
        source_framing: BodyFraming,
    ) -> Result<Upload, ExchangeError> {
        let mut scanner = (head_framing == BodyFraming::Chunked).then(ChunkedScanner::new);
        let pending = payload(&mut scanner, head_rest)?;
        Ok(Upload {
            stream: RefCell::new(Some(stream)),
            scanner,
            chunked_pieces: source_framing == BodyFraming::Chunked,
            pending,
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
        while !self.ended {
            if !self.pending.is_empty() {
                send_data(&self.stream, &mut self.pending, false, SEND_STALL)
                    .await
                    .map_err(write_failed)?;
                continue;
            }
            if self.drained {
                send_data(&self.stream, &mut Bytes::new(), true, SEND_STALL)
                    .await
                    .map_err(write_failed)?;
                self.ended = true;
                continue;
            }
            match body.next_piece().await {
                Ok(Some(piece)) => {
                    *streamed = true;
                    let bytes = &piece.buf[piece.range.clone()];
                    let data = if self.chunked_pieces {
                        payload(&mut self.scanner, bytes)
                    } else {
                        Ok(Bytes::copy_from_slice(bytes))
                    };
                    body.give_back(piece);
                    self.pending = data?;
                }
                Ok(None) => self.drained = true,
                Err(e) => return Err(ExchangeError::new(FailureSource::Client(e), e.message())),
            }
        }
        Ok(())
    }
}

fn write_failed(_: std::io::Error) -> ExchangeError {
    ExchangeError::new(
        FailureSource::Write,
        "upstream stream closed while receiving the body",
    )
}

/// The payload in `bytes`: de-chunked when a scanner is given.
fn payload(scanner: &mut Option<ChunkedScanner>, bytes: &[u8]) -> Result<Bytes, ExchangeError> {
    match scanner {
        None => Ok(Bytes::copy_from_slice(bytes)),
        Some(scanner) => {
            let mut out = Vec::with_capacity(bytes.len());
            scanner
                .scan_with(bytes, |data| out.extend_from_slice(data))
                .map_err(|e| ExchangeError::new(FailureSource::Protocol, e.reason()))?;
            Ok(Bytes::from(out))
        }
    }
}
