//! Where a message body ends, tracked across any number of reads, whatever its
//! framing. The proxy forwards bodies as they arrive; this says how many bytes of
//! each read belong to the current message.

use super::{BodyFraming, ChunkedError, ChunkedScanner};

pub struct BodyProgress {
    framing: BodyFraming,
    /// `Length`: bytes still to come.
    remaining: u64,
    chunked: ChunkedScanner,
    /// `UntilClose`: bytes seen so far.
    seen: u64,
    done: bool,
}

impl BodyProgress {
    pub fn new(framing: BodyFraming) -> Self {
        let (remaining, done) = match framing {
            BodyFraming::Length(n) => (n, n == 0),
            BodyFraming::Chunked | BodyFraming::UntilClose | BodyFraming::EndStream => (0, false),
            BodyFraming::None => (0, true),
        };
        BodyProgress {
            framing,
            remaining,
            chunked: ChunkedScanner::new(),
            seen: 0,
            done,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// The body ends when the sender closes the connection (or its stream).
    pub fn ends_at_close(&self) -> bool {
        matches!(
            self.framing,
            BodyFraming::UntilClose | BodyFraming::EndStream
        )
    }

    /// The sender closed the connection: a close-delimited body is complete.
    pub fn close(&mut self) {
        if self.ends_at_close() {
            self.done = true;
        }
    }

    /// Payload bytes so far, chunk framing excluded (what `max_body_bytes` limits).
    pub fn payload_bytes(&self) -> u64 {
        match self.framing {
            BodyFraming::Length(n) => n - self.remaining,
            BodyFraming::Chunked => self.chunked.data_total(),
            BodyFraming::UntilClose | BodyFraming::EndStream => self.seen,
            BodyFraming::None => 0,
        }
    }

    /// How many bytes at the start of `input` belong to the body; the rest, if
    /// any, is the next message.
    pub fn advance(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        if self.done {
            return Ok(0);
        }
        match self.framing {
            BodyFraming::Length(_) => {
                let take = self.remaining.min(input.len() as u64);
                self.remaining -= take;
                self.done = self.remaining == 0;
                Ok(take as usize)
            }
            BodyFraming::Chunked => {
                let take = self.chunked.scan(input)?;
                self.done = self.chunked.is_done();
                Ok(take)
            }
            BodyFraming::UntilClose | BodyFraming::EndStream => {
                self.seen += input.len() as u64;
                Ok(input.len())
            }
            BodyFraming::None => Ok(0),
        }
    }
}

/// The payload of a whole message body held in `input` (framed as `framing`
/// declares; `UntilClose` takes everything): for small bodies read in one piece,
/// such as JWKS documents. Errors name what is wrong: broken chunk framing, or a
/// body shorter than its framing says.
pub fn decode_whole(framing: BodyFraming, input: &[u8]) -> Result<Vec<u8>, &'static str> {
    match framing {
        BodyFraming::None => Ok(Vec::new()),
        BodyFraming::Length(n) => input
            .get(..n as usize)
            .map(<[u8]>::to_vec)
            .ok_or("the body is shorter than its content-length"),
        BodyFraming::UntilClose | BodyFraming::EndStream => Ok(input.to_vec()),
        BodyFraming::Chunked => {
            let mut scanner = ChunkedScanner::new();
            let mut out = Vec::new();
            scanner
                .scan_with(input, |d| out.extend_from_slice(d))
                .map_err(ChunkedError::reason)?;
            if scanner.is_done() {
                Ok(out)
            } else {
                Err("truncated chunked body")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_framing_stops_at_the_length() {
        let mut b = BodyProgress::new(BodyFraming::Length(5));
        assert_eq!(b.advance(b"abc").unwrap(), 3);
        assert!(!b.is_complete());
        assert_eq!(b.advance(b"defGET").unwrap(), 2);
        assert!(b.is_complete());
        assert_eq!(b.payload_bytes(), 5);
        assert_eq!(b.advance(b"more").unwrap(), 0);
    }

    #[test]
    fn chunked_framing_counts_payload_only() {
        let mut b = BodyProgress::new(BodyFraming::Chunked);
        let input = b"3\r\nabc\r\n0\r\n\r\nNEXT";
        assert_eq!(b.advance(input).unwrap(), input.len() - 4);
        assert!(b.is_complete());
        assert_eq!(b.payload_bytes(), 3);
    }

    #[test]
    fn close_delimited_bodies_end_only_at_close() {
        let mut b = BodyProgress::new(BodyFraming::UntilClose);
        assert_eq!(b.advance(b"abc").unwrap(), 3);
        assert!(!b.is_complete());
        b.close();
        assert!(b.is_complete());
        assert_eq!(b.payload_bytes(), 3);
    }

    #[test]
    fn whole_bodies_decode() {
        assert_eq!(
            decode_whole(
                BodyFraming::Chunked,
                b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n"
            )
            .unwrap(),
            b"abcde"
        );
        assert!(decode_whole(BodyFraming::Chunked, b"3\r\nabc\r\n").is_err());
        assert!(decode_whole(BodyFraming::Chunked, b"z\r\n").is_err());
        assert_eq!(decode_whole(BodyFraming::Length(2), b"abc").unwrap(), b"ab");
        assert!(decode_whole(BodyFraming::Length(4), b"abc").is_err());
        assert_eq!(
            decode_whole(BodyFraming::UntilClose, b"abc").unwrap(),
            b"abc"
        );
    }

    #[test]
    fn no_body_is_complete_at_once() {
        assert!(BodyProgress::new(BodyFraming::None).is_complete());
        assert!(BodyProgress::new(BodyFraming::Length(0)).is_complete());
    }
}
