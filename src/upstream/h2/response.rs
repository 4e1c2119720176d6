//! An HTTP/2 upstream response being received: the decoded head, then the
//! stream's DATA as payload pieces (flow-control capacity given back once a piece
//! was relayed), then its trailers. The stream's place on its connection is held
//! until the response is dropped.

use std::time::Duration;

use ::h2::RecvStream;
use ::http::{HeaderMap, StatusCode};

use crate::downstream::Piece;
use crate::http::BodyFraming;

use super::super::failure::{ExchangeError, FailureSource};
use super::pool::StreamSlot;
use super::upload::Upload;

/// The answer of an HTTP/2 exchange.
pub struct H2Response {
    pub status: StatusCode,
    pub fields: HeaderMap,
    /// `EndStream` without `content-length`; `None` when the head ended the stream.
    pub framing: BodyFraming,
    body: RecvStream,
    /// The buffer pieces are lent in (DATA arrives as `Bytes`).
    buf: Vec<u8>,
    /// Flow-control capacity of the piece out, released when it comes back.
    lent: usize,
    pub read_timeout: Duration,
    /// The rest of the request body, when the answer came before all of it was
    /// sent (it goes on beside the relay: [`take_upload`](Self::take_upload)).
    upload: Option<Upload>,
    _slot: StreamSlot,
}

impl H2Response {
    /// A response whose head arrived; `is_head`: the request was `HEAD` (no body,
    /// whatever `content-length` says).
    pub fn new(
        response: ::http::Response<RecvStream>,
        is_head: bool,
        read_timeout: Duration,
        slot: StreamSlot,
        upload: Option<Upload>,
    ) -> Self {
        let (parts, body) = response.into_parts();
        let length = parts
            .headers
            .get(::http::header::CONTENT_LENGTH)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse::<u64>().ok());
        let no_body = is_head
            || body.is_end_stream()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        let framing = match length {
            _ if no_body => BodyFraming::None,
            Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::EndStream,
        };
        H2Response {
            status: parts.status,
            fields: parts.headers,
            framing,
            body,
            buf: Vec::new(),
            lent: 0,
            read_timeout,
            upload,
            _slot: slot,
        }
    }

    /// The unfinished request body's upload, to go on while the answer is relayed.
    pub fn take_upload(&mut self) -> Option<Upload> {
        self.upload.take()
    }

    /// The next DATA as a piece; `Ok(None)` at the end of the stream.
    pub async fn next_piece(&mut self) -> Result<Option<Piece>, ExchangeError> {
        if self.framing == BodyFraming::None {
            return Ok(None);
        }
        loop {
            let data = monoio::time::timeout(self.read_timeout, self.body.data()).await;
            let bytes = match data {
                Ok(None) => return Ok(None),
                Ok(Some(Ok(bytes))) => bytes,
                Ok(Some(Err(_))) | Err(_) => return Err(cut_short()),
            };
            if bytes.is_empty() {
                continue;
            }
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            buf.extend_from_slice(&bytes);
            self.lent = bytes.len();
            let range = 0..buf.len();
            return Ok(Some(Piece { buf, range }));
        }
    }

    /// Takes back a piece's buffer: the upstream may send that much more.
    pub fn give_back(&mut self, piece: Piece) {
        self.buf = piece.buf;
        let _ = self.body.flow_control().release_capacity(self.lent);
        self.lent = 0;
    }

    /// The trailers after the body, if the upstream sent any.
    pub async fn trailers(&mut self) -> Result<Option<HeaderMap>, ExchangeError> {
        if self.framing == BodyFraming::None {
            return Ok(None);
        }
        match monoio::time::timeout(self.read_timeout, self.body.trailers()).await {
            Ok(Ok(trailers)) => Ok(trailers),
            _ => Err(cut_short()),
        }
    }
}

fn cut_short() -> ExchangeError {
    ExchangeError::new(
        FailureSource::Protocol,
        "upstream response cut short or malformed",
    )
}
