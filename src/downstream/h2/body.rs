//! An HTTP/2 request body: the stream's DATA as payload pieces, each piece's
//! flow-control capacity given back once it was forwarded, so a client can be no
//! more than a window ahead of the upstream. HTTP/2 streams are full duplex, so the
//! body can be detached from its request and read while the response is written
//! (a gRPC bidirectional call): [`DuplexBody`].

use ::h2::RecvStream;
use std::time::Duration;

use crate::http::BodyFraming;

use super::super::{BodyError, BodySource, Piece};

/// The body of one HTTP/2 request, readable apart from the request it came with.
pub struct DuplexBody {
    recv: RecvStream,
    framing: BodyFraming,
    done: bool,
    /// Payload bytes so far (what `max_body_bytes` limits).
    bytes: u64,
    max_bytes: u64,
    /// No DATA for this long fails the read.
    read_timeout: Duration,
    /// The buffer pieces are lent in (DATA arrives as `Bytes`; one copy).
    buf: Vec<u8>,
    /// Flow-control capacity of the piece out with the caller.
    lent: usize,
}

impl DuplexBody {
    /// The body that follows a head with `framing` (`None`: there is none).
    pub fn new(
        recv: RecvStream,
        framing: BodyFraming,
        max_bytes: u64,
        read_timeout: Duration,
    ) -> Self {
        DuplexBody {
            recv,
            framing,
            done: framing == BodyFraming::None,
            bytes: 0,
            max_bytes,
            read_timeout,
            buf: Vec::new(),
            lent: 0,
        }
    }
}

impl BodySource for DuplexBody {
    fn body_framing(&self) -> BodyFraming {
        self.framing
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    fn take_buffered(&mut self, _out: &mut Vec<u8>) -> Result<(), BodyError> {
        // DATA frames come through `next_piece`; none are taken with the head.
        Ok(())
    }

    /// The next DATA, within the read timeout. Cancel-safe: a read dropped before it
    /// returned loses nothing (h2 keeps the DATA until it is polled again).
    async fn next_piece(&mut self) -> Result<Option<Piece>, BodyError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let data = monoio::time::timeout(self.read_timeout, self.recv.data()).await;
            let bytes = match data {
                Err(_) => return Err(BodyError::TimedOut),
                // The stream ended (any trailers are dropped: docs/http.md).
                Ok(None) => {
                    self.done = true;
                    return Ok(None);
                }
                Ok(Some(Err(_))) => return Err(BodyError::Closed),
                Ok(Some(Ok(bytes))) => bytes,
            };
            self.done = self.recv.is_end_stream();
            self.bytes += bytes.len() as u64;
            if self.bytes > self.max_bytes {
                return Err(BodyError::TooLarge);
            }
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

    fn give_back(&mut self, piece: Piece) {
        self.buf = piece.buf;
        // The piece was forwarded: the client may send that much more.
        let _ = self.recv.flow_control().release_capacity(self.lent);
        self.lent = 0;
    }
}
