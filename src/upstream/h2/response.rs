//! An HTTP/2 upstream response being received: the decoded head, then the
//! stream's DATA as payload pieces (flow-control windows reopened once a piece was
//! relayed), then its trailers. The stream's place on its connection is held
//! until the response (and the upload beside it, if any) is dropped.

use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ::http::{HeaderMap, HeaderName, HeaderValue};
use monoio::time::Instant;

use crate::downstream::Piece;
use crate::http::{BodyFraming, FieldList};

use super::super::failure::{ExchangeError, FailureSource};
use super::conn::Head;
use super::ready::ready_by;
use super::stream::StreamRef;
use super::upload::Upload;

/// The answer of an HTTP/2 exchange.
pub struct H2Response {
    pub status: u16,
    /// Names lowercase, as HTTP/2 sends them.
    pub fields: FieldList,
    /// `EndStream` without `content-length`; `None` when the head ended the stream.
    pub framing: BodyFraming,
    stream: Rc<StreamRef>,
    /// The buffer pieces are lent in (swapped with the stream's received DATA).
    buf: Vec<u8>,
    /// Octets of the piece out, given back to the windows when it comes back.
    lent: usize,
    pub read_timeout: Duration,
    /// The rest of the request body, when the answer came before all of it was
    /// sent (it goes on beside the relay: [`take_upload`](Self::take_upload)).
    upload: Option<Upload>,
}

impl H2Response {
    /// A response whose head arrived on `stream`; `is_head`: the request was
    /// `HEAD` (no body, whatever `content-length` says).
    pub fn new(
        head: Head,
        stream: Rc<StreamRef>,
        is_head: bool,
        read_timeout: Duration,
        upload: Option<Upload>,
    ) -> Self {
        let length = head.content_length;
        let no_body =
            is_head || stream.conn.ended(stream.id) || head.status == 204 || head.status == 304;
        let framing = match length {
            _ if no_body => BodyFraming::None,
            Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::EndStream,
        };
        H2Response {
            status: head.status,
            fields: head.fields,
            framing,
            stream,
            buf: Vec::new(),
            lent: 0,
            read_timeout,
            upload,
        }
    }

    /// The unfinished request body's upload, to go on while the answer is relayed.
    pub fn take_upload(&mut self) -> Option<Upload> {
        self.upload.take()
    }

    /// The DATA received so far as a piece, without waiting: `None` when none
    /// is there yet or the body is over (then [`next_piece`](Self::next_piece)
    /// says which, and reports any error). The relay sends it with the head: an
    /// answer that came whole in one read goes to the client in one write.
    pub fn ready_piece(&mut self) -> Option<Piece> {
        if self.framing == BodyFraming::None {
            return None;
        }
        let (conn, id) = (&self.stream.conn, self.stream.id);
        match conn.poll_data(id, &mut self.buf, &mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(true)) => Some(self.lend()),
            _ => None,
        }
    }

    /// The next DATA as a piece; `Ok(None)` at the end of the stream (what has
    /// arrived already without a timer: `ready_by`).
    pub async fn next_piece(&mut self) -> Result<Option<Piece>, ExchangeError> {
        if self.framing == BodyFraming::None {
            return Ok(None);
        }
        let (conn, id, limit) = (&self.stream.conn, self.stream.id, self.read_timeout);
        let buf = &mut self.buf;
        let data = ready_by(|| Instant::now() + limit, |cx| conn.poll_data(id, buf, cx));
        match data.await {
            Ok(Ok(true)) => Ok(Some(self.lend())),
            Ok(Ok(false)) => Ok(None),
            Ok(Err(_)) | Err(_) => Err(cut_short()),
        }
    }

    /// The received DATA in `buf` as a piece (given back by `give_back`).
    fn lend(&mut self) -> Piece {
        let buf = std::mem::take(&mut self.buf);
        self.lent = buf.len();
        let range = 0..buf.len();
        Piece { buf, range }
    }

    /// Takes back a piece's buffer: the upstream may send that much more.
    pub fn give_back(&mut self, piece: Piece) {
        self.buf = piece.buf;
        self.stream.conn.release(self.stream.id, self.lent);
        self.lent = 0;
    }

    /// The trailers after the body, if the upstream sent any.
    pub async fn trailers(&mut self) -> Result<Option<HeaderMap>, ExchangeError> {
        if self.framing == BodyFraming::None {
            return Ok(None);
        }
        let (conn, id, limit) = (&self.stream.conn, self.stream.id, self.read_timeout);
        let trailers = ready_by(|| Instant::now() + limit, |cx| conn.poll_trailers(id, cx));
        match trailers.await {
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(fields))) => Ok(Some(to_map(&fields))),
            _ => Err(cut_short()),
        }
    }
}

/// Trailers as the relay takes them (the `http` crate's map, as the `h2` crate on
/// the client side wants them).
fn to_map(fields: &FieldList) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields.iter() {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    map
}

fn cut_short() -> ExchangeError {
    ExchangeError::new(
        FailureSource::Protocol,
        "upstream response cut short or malformed",
    )
}
