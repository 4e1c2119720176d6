//! Where a message body ends, tracked across any number of reads, whatever its
//! framing. The proxy forwards bodies as they arrive; this says how many bytes of
//! each read belong to the current message, and which of them to pass on.

use super::chunked::Scan;
use super::{BodyFraming, ChunkedError, ChunkedScanner};

/// One read's worth of a body: what belongs to it and what to send on. The
/// bytes to send are `input[..forward]`, then `input[consumed - tail..consumed]`;
/// both are all of `input[..consumed]` except in a request's chunked trailer
/// section, whose lines are left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyStep {
    /// Bytes at the start of the input that belong to this body; the rest, if
    /// any, is the next message. Consume these.
    pub consumed: usize,
    /// How many of them, from the start, to forward. Less than `consumed` only
    /// in a request's chunked trailer section.
    pub forward: usize,
    /// How many of the last consumed bytes to send after those: the final CRLF
    /// of a chunked body whose trailer lines were left out (0 to 2 bytes).
    pub tail: usize,
}

impl BodyStep {
    /// Every consumed byte is sent (the common case: no trailer lines here).
    pub fn is_whole(&self) -> bool {
        self.forward == self.consumed
    }

    /// Makes the bytes to send one run at the start of `input`, the bytes this
    /// step was computed from, by moving the tail (at most two bytes) back to
    /// right after the forwarded ones, over the left-out trailer lines. Returns
    /// the run's length. Nothing moves in the common case.
    pub fn compact(&self, input: &mut [u8]) -> usize {
        if self.tail > 0 && self.forward + self.tail < self.consumed {
            input.copy_within(self.consumed - self.tail..self.consumed, self.forward);
        }
        self.forward + self.tail
    }
}

/// Tracks one message body (see the module doc).
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
    /// A body relayed whole: every consumed byte is forwarded (`forward ==
    /// consumed`, no `tail`), trailers included. For responses.
    pub fn new(framing: BodyFraming) -> Self {
        Self::with_scanner(framing, ChunkedScanner::new())
    }

    /// A request body: as [`BodyProgress::new`], except that a chunked body's
    /// trailer section is left out (RFC 9110 §6.5.1 lets a proxy discard
    /// trailer fields; forwarded, they would skip the header rules).
    pub fn request(framing: BodyFraming) -> Self {
        Self::with_scanner(framing, ChunkedScanner::dropping_trailers())
    }

    fn with_scanner(framing: BodyFraming, chunked: ChunkedScanner) -> Self {
        let (remaining, done) = match framing {
            BodyFraming::Length(n) => (n, n == 0),
            BodyFraming::Chunked | BodyFraming::UntilClose | BodyFraming::EndStream => (0, false),
            BodyFraming::None => (0, true),
        };
        BodyProgress {
            framing,
            remaining,
            chunked,
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

    /// Which bytes at the start of `input` belong to the body, and which of
    /// them to forward (see [`BodyStep`]). Broken chunked framing is an error.
    pub fn advance(&mut self, input: &[u8]) -> Result<BodyStep, ChunkedError> {
        let whole = |n: usize| BodyStep {
            consumed: n,
            forward: n,
            tail: 0,
        };
        if self.done {
            return Ok(whole(0));
        }
        match self.framing {
            BodyFraming::Length(_) => {
                let take = self.remaining.min(input.len() as u64);
                self.remaining -= take;
                self.done = self.remaining == 0;
                Ok(whole(take as usize))
            }
            BodyFraming::Chunked => {
                let Scan {
                    consumed,
                    forward,
                    tail,
                } = self.chunked.scan(input)?;
                self.done = self.chunked.is_done();
                Ok(BodyStep {
                    consumed,
                    forward,
                    tail,
                })
            }
            BodyFraming::UntilClose | BodyFraming::EndStream => {
                self.seen += input.len() as u64;
                Ok(whole(input.len()))
            }
            BodyFraming::None => Ok(whole(0)),
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

    fn consumed(b: &mut BodyProgress, input: &[u8]) -> usize {
        b.advance(input).unwrap().consumed
    }

    #[test]
    fn length_framing_stops_at_the_length() {
        let mut b = BodyProgress::new(BodyFraming::Length(5));
        assert_eq!(consumed(&mut b, b"abc"), 3);
        assert!(!b.is_complete());
        assert_eq!(consumed(&mut b, b"defGET"), 2);
        assert!(b.is_complete());
        assert_eq!(b.payload_bytes(), 5);
        assert_eq!(consumed(&mut b, b"more"), 0);
    }

    #[test]
    fn chunked_framing_counts_payload_only() {
        let mut b = BodyProgress::new(BodyFraming::Chunked);
        let input = b"3\r\nabc\r\n0\r\n\r\nNEXT";
        assert_eq!(consumed(&mut b, input), input.len() - 4);
        assert!(b.is_complete());
        assert_eq!(b.payload_bytes(), 3);
    }

    #[test]
    fn request_trailers_are_left_out_and_response_trailers_kept() {
        let input = b"3\r\nabc\r\n0\r\nX-User-Id: admin\r\n\r\nNEXT";
        let mut request = BodyProgress::request(BodyFraming::Chunked);
        let step = request.advance(input).unwrap();
        assert_eq!(step.consumed, input.len() - 4);
        assert_eq!(&input[..step.forward], b"3\r\nabc\r\n0\r\n");
        assert_eq!(step.tail, 2);
        assert!(!step.is_whole());
        let mut compacted = input.to_vec();
        let run = step.compact(&mut compacted);
        assert_eq!(&compacted[..run], b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(&compacted[step.consumed..], b"NEXT");
        let mut response = BodyProgress::new(BodyFraming::Chunked);
        let step = response.advance(input).unwrap();
        assert_eq!(
            (step.consumed, step.forward),
            (input.len() - 4, input.len() - 4)
        );
        assert_eq!(step.tail, 0);
        assert!(step.is_whole());
    }

    /// The final CRLF after left-out trailer lines may arrive split over reads:
    /// each read's run, compacted, still adds up to the body without its trailers.
    #[test]
    fn compacted_runs_add_up_in_any_split() {
        let body = b"3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
        for cut in 1..body.len() {
            let mut request = BodyProgress::request(BodyFraming::Chunked);
            let mut sent = Vec::new();
            for part in [&body[..cut], &body[cut..]] {
                let mut part = part.to_vec();
                let step = request.advance(&part).unwrap();
                assert_eq!(step.consumed, part.len());
                let run = step.compact(&mut part);
                sent.extend_from_slice(&part[..run]);
            }
            assert!(request.is_complete());
            assert_eq!(sent, b"3\r\nabc\r\n0\r\n\r\n", "cut at {cut}");
        }
    }

    #[test]
    fn close_delimited_bodies_end_only_at_close() {
        let mut b = BodyProgress::new(BodyFraming::UntilClose);
        assert_eq!(consumed(&mut b, b"abc"), 3);
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
