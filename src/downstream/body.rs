//! A request body as the gateway moves it: pulled from the client piece by piece
//! ([`BodySource`]), each piece an owned buffer and the range of it to send
//! ([`Piece`]), and why reading it can fail ([`BodyError`]).

use std::ops::Range;

use crate::http::BodyFraming;

/// A request body, pulled in the framing its head declared (a chunked body stays
/// chunked), so it can be forwarded byte for byte; the side that writes it in
/// another protocol converts it (see [`BodyFraming`]).
#[allow(async_fn_in_trait)]
pub trait BodySource {
    /// How the body is framed, as declared in the head — which also says how its
    /// pieces are encoded: HTTP/1.1 chunked framing (`Chunked`) or payload.
    fn body_framing(&self) -> BodyFraming;

    /// The whole body has been taken (or there is none): a request whose body is
    /// complete before it is sent can be sent again on another connection.
    fn is_complete(&self) -> bool;

    /// Appends the body bytes already received (up to the end of the body) to `out`,
    /// so they go out in the same write as the head.
    fn take_buffered(&mut self, out: &mut Vec<u8>) -> Result<(), BodyError>;

    /// Reads the next body bytes from the client: an owned buffer and the range of
    /// it that belongs to the body. `Ok(None)` once the body is complete. Hand the
    /// buffer back with [`give_back`](BodySource::give_back) before the next call.
    async fn next_piece(&mut self) -> Result<Option<Piece>, BodyError>;

    /// Returns a buffer taken by [`next_piece`](BodySource::next_piece), its range
    /// consumed.
    fn give_back(&mut self, piece: Piece);
}

/// Bytes on their way from one side to the other without a copy: an owned buffer
/// (monoio's I/O takes buffers by value) and the range of it to send.
pub struct Piece {
    pub buf: Vec<u8>,
    pub range: Range<usize>,
}

impl Piece {
    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// Why a request body could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The client closed the connection mid-body (logged as 499; no answer).
    Closed,
    /// No body bytes within `body_read_timeout_ms`: 408.
    TimedOut,
    /// Broken chunk framing: 400 with the reason.
    Malformed(&'static str),
    /// The body grew past `max_body_bytes`: 413.
    TooLarge,
}

impl BodyError {
    /// The status to answer with (499 = nothing is answered, the connection closes).
    pub fn status(self) -> u16 {
        match self {
            BodyError::Closed => 499,
            BodyError::TimedOut => 408,
            BodyError::Malformed(_) => 400,
            BodyError::TooLarge => 413,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            BodyError::Closed => "client closed the connection",
            BodyError::TimedOut => "request body not received in time",
            BodyError::Malformed(reason) => reason,
            BodyError::TooLarge => "request body too large",
        }
    }
}
