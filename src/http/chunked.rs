//! A validating scanner for the chunked transfer coding (RFC 9112 §7.1).
//!
//! The gateway forwards chunked bodies byte for byte; the scanner finds where the
//! body ends and refuses anything that is not exactly the RFC's grammar before it
//! can reach the other side:
//!
//! ```text
//! chunk-size *( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] ) CRLF
//! ext-name = token; ext-value = token / quoted-string; BWS = *( SP / HTAB )
//! trailer  = *( field-name ":" field-value CRLF ) CRLF
//! ```
//!
//! so `5 Z`, `5 `, `5;`, `5;a=`, a bare LF, a missing CRLF after the data, control
//! bytes and over-long lines are all errors. A scanner made with
//! [`ChunkedScanner::dropping_trailers`] also tells the caller which bytes of the
//! trailer section to leave out, so a request's trailer fields never reach the
//! upstream (they would bypass the header rules): the trailer lines are left out,
//! the final CRLF is kept, so what is forwarded ends `0\r\n\r\n`.
//! [`ChunkedScanner::scan_with`] hands the payload bytes to a closure as it goes:
//! the de-chunker of bodies read whole and of chunked responses to HTTP/1.0 clients.

use std::fmt;

use super::headers::is_tchar;

/// Bytes allowed on a chunk-size line after the size (extensions) and per trailer line.
const MAX_LINE_BYTES: usize = 4096;
/// All trailer lines together.
const MAX_TRAILER_BYTES: usize = 16384;

/// Why chunked framing was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    /// Not a hex size, or something after the size that is not an extension.
    BadSize,
    /// More than 16 hex digits.
    SizeTooLarge,
    /// A chunk extension that is not `;name[=token|"quoted"]`.
    BadExtension,
    BadLineEnding,
    LineTooLong,
    /// A control byte in the framing, or a trailer line that is not `name: value`.
    BadByte,
    TrailersTooLarge,
}

impl ChunkedError {
    /// A short reason, for the error response.
    pub fn reason(self) -> &'static str {
        match self {
            ChunkedError::BadSize => "malformed chunk size",
            ChunkedError::SizeTooLarge => "chunk size too large",
            ChunkedError::BadExtension => "malformed chunk extension",
            ChunkedError::BadLineEnding => "malformed chunk line ending",
            ChunkedError::LineTooLong => "chunk extension too long",
            ChunkedError::BadByte => "malformed trailer or control character in chunk framing",
            ChunkedError::TrailersTooLarge => "trailer section too large",
        }
    }
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `digits` counts them.
    Size,
    /// BWS after the size: only more BWS or `;` may follow.
    SizeBws,
    /// After `;`: BWS, then the first byte of an extension name.
    ExtNameStart,
    ExtName,
    /// BWS after a name: `=`, `;` or more BWS.
    ExtNameBws,
    /// After `=`: BWS, then a token or a quoted-string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedPair,
    /// Just after a closing quote: CR, `;` or BWS.
    ExtAfterValue,
    /// BWS after a value: `;` or more BWS.
    ExtValueBws,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

/// What one [`ChunkedScanner::scan`] found in its input: the bytes to send on
/// are `input[..forward]` followed by `input[consumed - tail..consumed]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Bytes at the start of the input that belong to this body.
    pub consumed: usize,
    /// How many of those, from the start, to forward: fewer than `consumed` only
    /// when trailer lines are being dropped.
    pub forward: usize,
    /// How many bytes at the end of the consumed ones are the final CRLF after
    /// dropped trailer lines, sent after the `forward` ones (0 to 2; always 0
    /// unless trailers are dropped). `forward + tail <= consumed`.
    pub tail: usize,
}

/// Tracks one chunked body across any number of reads.
#[derive(Clone, Debug)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
    digits: u8,
    remaining: u64,
    line_bytes: usize,
    trailer_bytes: usize,
    data_total: u64,
    drop_trailers: bool,
    /// Trailer lines were seen (and, when dropping, left out).
    had_trailers: bool,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedScanner {
    /// A scanner whose every byte is forwarded (responses: trailers pass).
    pub fn new() -> Self {
        ChunkedScanner {
            state: State::Size,
            size: 0,
            digits: 0,
            remaining: 0,
            line_bytes: 0,
            trailer_bytes: 0,
            data_total: 0,
            drop_trailers: false,
            had_trailers: false,
        }
    }

    /// A scanner that leaves the trailer lines out of what it says to forward
    /// (requests): the body then ends `0\r\n\r\n`; see [`Scan`].
    pub fn dropping_trailers() -> Self {
        ChunkedScanner {
            drop_trailers: true,
            ..Self::new()
        }
    }

    /// The body (framing included) has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Trailer lines were seen and left out of what was forwarded.
    pub fn dropped_trailers(&self) -> bool {
        self.drop_trailers && self.had_trailers
    }

    /// Payload bytes seen so far, framing excluded: what `max_body_bytes` limits.
    pub fn data_total(&self) -> u64 {
        self.data_total
    }

    /// Scans `input`: how many of its bytes belong to this body (fewer than
    /// `input.len()` only when the body ended inside it; the rest is the next
    /// message), and which of those to forward ([`Scan`]).
    pub fn scan(&mut self, input: &[u8]) -> Result<Scan, ChunkedError> {
        self.scan_with(input, |_| {})
    }

    /// As [`scan`](Self::scan), handing each run of payload bytes (framing
    /// excluded) to `data` as it passes: a de-chunker for bodies read whole.
    pub fn scan_with<F: FnMut(&[u8])>(
        &mut self,
        input: &[u8],
        mut data: F,
    ) -> Result<Scan, ChunkedError> {
        let mut forward = None;
        let mut tail = 0;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            if self.drop_trailers && self.in_dropped_section(b) {
                forward.get_or_insert(i);
                tail += usize::from(self.ends_dropped_section(b));
            }
            i += 1;
            self.state = match self.state {
                State::Size => match hex_value(b) {
                    Some(v) => {
                        self.digits += 1;
                        if self.digits > 16 {
                            return Err(ChunkedError::SizeTooLarge);
                        }
                        self.size = (self.size << 4) | u64::from(v);
                        State::Size
                    }
                    None if self.digits == 0 => return Err(ChunkedError::BadSize),
                    None => match b {
                        b'\r' => State::SizeLf,
                        b';' => self.ext_byte(State::ExtNameStart)?,
                        b' ' | b'\t' => self.ext_byte(State::SizeBws)?,
                        _ => return Err(ChunkedError::BadSize),
                    },
                },
                State::SizeBws => match b {
                    b' ' | b'\t' => self.ext_byte(State::SizeBws)?,
                    b';' => self.ext_byte(State::ExtNameStart)?,
                    _ => return Err(ChunkedError::BadSize),
                },
                State::ExtNameStart => match b {
                    b' ' | b'\t' => self.ext_byte(State::ExtNameStart)?,
                    _ if is_tchar(b) => self.ext_byte(State::ExtName)?,
                    _ => return Err(ChunkedError::BadExtension),
                },
                State::ExtName => match b {
                    b'\r' => State::SizeLf,
                    b';' => self.ext_byte(State::ExtNameStart)?,
                    b'=' => self.ext_byte(State::ExtValueStart)?,
                    b' ' | b'\t' => self.ext_byte(State::ExtNameBws)?,
                    _ if is_tchar(b) => self.ext_byte(State::ExtName)?,
                    _ => return Err(ChunkedError::BadExtension),
                },
                State::ExtNameBws => match b {
                    b' ' | b'\t' => self.ext_byte(State::ExtNameBws)?,
                    b';' => self.ext_byte(State::ExtNameStart)?,
                    b'=' => self.ext_byte(State::ExtValueStart)?,
                    _ => return Err(ChunkedError::BadExtension),
                },
                State::ExtValueStart => match b {
                    b' ' | b'\t' => self.ext_byte(State::ExtValueStart)?,
                    b'"' => self.ext_byte(State::ExtQuoted)?,
                    _ if is_tchar(b) => self.ext_byte(State::ExtToken)?,
                    _ => return Err(ChunkedError::BadExtension),
                },
                State::ExtToken => match b {
                    b'\r' => State::SizeLf,
                    b';' => self.ext_byte(State::ExtNameStart)?,
                    b' ' | b'\t' => self.ext_byte(State::ExtValueBws)?,
                    _ if is_tchar(b) => self.ext_byte(State::ExtToken)?,
                    _ => return Err(ChunkedError::BadExtension),
                },
                State::ExtQuoted => match b {
                    b'"' => self.ext_byte(State::ExtAfterValue)?,
                    b'\\' => self.ext_byte(State::ExtQuotedPair)?,
                    // qdtext: HTAB, SP, VCHAR except `"` and `\`, obs-text.
                    b'\t' | b' '..=b'~' | 0x80..=0xff => self.ext_byte(State::ExtQuoted)?,
                    _ => return Err(ChunkedError::BadExtension),
                },
                State::ExtQuotedPair => match b {
                    b'\t' | b' '..=b'~' | 0x80..=0xff => self.ext_byte(State::ExtQuoted)?,
                    _ => return Err(ChunkedError::BadExtension),
                },
                State::ExtAfterValue => match b {
                    b'\r' => State::SizeLf,
                    b';' => self.ext_byte(State::ExtNameStart)?,
                    b' ' | b'\t' => self.ext_byte(State::ExtValueBws)?,
                    _ => return Err(ChunkedError::BadExtension),
                },
                State::ExtValueBws => match b {
                    b' ' | b'\t' => self.ext_byte(State::ExtValueBws)?,
                    b';' => self.ext_byte(State::ExtNameStart)?,
                    _ => return Err(ChunkedError::BadExtension),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    let size = self.size;
                    self.size = 0;
                    self.digits = 0;
                    self.line_bytes = 0;
                    if size == 0 {
                        State::TrailerStart
                    } else {
                        self.data_total = self.data_total.saturating_add(size);
                        self.remaining = size;
                        State::Data
                    }
                }
                State::Data => {
                    // Skip the payload in one step; it is forwarded untouched.
                    let start = i - 1;
                    let take = self.remaining.min((input.len() - start) as u64);
                    self.remaining -= take;
                    i = start + take as usize;
                    data(&input[start..i]);
                    if self.remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data
                    }
                }
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    _ => return Err(ChunkedError::BadLineEnding),
                },
                State::DataLf => match b {
                    b'\n' => State::Size,
                    _ => return Err(ChunkedError::BadLineEnding),
                },
                State::TrailerStart => match b {
                    b'\r' => State::FinalLf,
                    _ if is_tchar(b) => {
                        self.had_trailers = true;
                        self.line_bytes = 1;
                        self.count_trailer()?;
                        State::TrailerName
                    }
                    // obs-fold (a line starting with SP or HTAB) included.
                    _ => return Err(ChunkedError::BadByte),
                },
                State::TrailerName => match b {
                    b':' => self.trailer_byte(State::TrailerValue)?,
                    _ if is_tchar(b) => self.trailer_byte(State::TrailerName)?,
                    _ => return Err(ChunkedError::BadByte),
                },
                State::TrailerValue => match b {
                    b'\r' => State::TrailerLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => self.trailer_byte(State::TrailerValue)?,
                    _ => return Err(ChunkedError::BadByte),
                },
                State::TrailerLf => match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err(ChunkedError::BadLineEnding),
                },
                State::FinalLf => match b {
                    b'\n' => {
                        self.state = State::Done;
                        return Ok(Scan {
                            consumed: i,
                            forward: forward.unwrap_or(i),
                            tail,
                        });
                    }
                    _ => return Err(ChunkedError::BadLineEnding),
                },
                State::Done => {
                    i -= 1;
                    break;
                }
            };
        }
        Ok(Scan {
            consumed: i,
            forward: forward.unwrap_or(i),
            tail,
        })
    }

    /// Whether byte `b`, about to be scanned, belongs to a trailer section that
    /// is left out: a trailer line, or the final CRLF after such lines.
    fn in_dropped_section(&self, b: u8) -> bool {
        match self.state {
            State::TrailerStart => self.had_trailers || b != b'\r',
            State::TrailerName | State::TrailerValue | State::TrailerLf => true,
            State::FinalLf => self.had_trailers,
            _ => false,
        }
    }

    /// Whether byte `b`, in a dropped section, is part of its final CRLF (which
    /// is forwarded after all: the [`Scan::tail`]).
    fn ends_dropped_section(&self, b: u8) -> bool {
        self.had_trailers
            && match self.state {
                State::TrailerStart => b == b'\r',
                State::FinalLf => true,
                _ => false,
            }
    }

    /// One more byte on a chunk-size line after the size.
    fn ext_byte(&mut self, next: State) -> Result<State, ChunkedError> {
        self.line_bytes += 1;
        if self.line_bytes > MAX_LINE_BYTES {
            return Err(ChunkedError::LineTooLong);
        }
        Ok(next)
    }

    /// One more byte of a trailer line.
    fn trailer_byte(&mut self, next: State) -> Result<State, ChunkedError> {
        self.line_bytes += 1;
        if self.line_bytes > MAX_LINE_BYTES {
            return Err(ChunkedError::LineTooLong);
        }
        self.count_trailer()?;
        Ok(next)
    }

    fn count_trailer(&mut self) -> Result<(), ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkedError::TrailersTooLarge);
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Result<(usize, bool, u64), ChunkedError> {
        let mut s = ChunkedScanner::new();
        let scan = s.scan(input)?;
        assert_eq!(scan.forward, scan.consumed);
        Ok((scan.consumed, s.is_done(), s.data_total()))
    }

    /// What a trailer-dropping scanner forwards of `input` read in pieces of
    /// `step` bytes: each piece's forwarded bytes, then its tail.
    fn forwarded(input: &[u8], step: usize) -> Result<Vec<u8>, ChunkedError> {
        let mut s = ChunkedScanner::dropping_trailers();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            let scan = s.scan(piece)?;
            assert!(scan.forward + scan.tail <= scan.consumed);
            out.extend_from_slice(&piece[..scan.forward]);
            out.extend_from_slice(&piece[scan.consumed - scan.tail..scan.consumed]);
            if s.is_done() {
                break;
            }
        }
        Ok(out)
    }

    #[test]
    fn whole_body_and_what_follows() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nGET /next";
        let (n, done, total) = scan_all(body).unwrap();
        assert!(done);
        assert_eq!(&body[n..], b"GET /next");
        assert_eq!(total, 11);
    }

    #[test]
    fn byte_at_a_time_matches_whole() {
        let body = b"a\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        let mut s = ChunkedScanner::new();
        for (i, b) in body.iter().enumerate() {
            assert_eq!(
                s.scan(std::slice::from_ref(b)).unwrap().consumed,
                1,
                "at {i}"
            );
        }
        assert!(s.is_done());
    }

    #[test]
    fn malformed_framing_is_refused() {
        let bad: &[&[u8]] = &[
            b"z\r\n",
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
            b"5;a\x01\r\n",
            b"0\r\n bad\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nno-colon\r\n\r\n",
            b"0\r\nX-A : 1\r\n\r\n",
            b"0\r\n:v\r\n\r\n",
            b"0\r\nX-A: \x7f\r\n\r\n",
        ];
        for b in bad {
            assert!(scan_all(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
    }

    /// RFC 9112 §7.1.1: `chunk-size *( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] )`.
    #[test]
    fn chunk_size_line_grammar() {
        let good: &[&[u8]] = &[
            b"5\r\n",
            b"0005\r\n",
            b"5;a\r\n",
            b"5;a=b\r\n",
            b"5 ;a=b\r\n",
            b"5\t; a = b ;c;d=\"x y\"\r\n",
            b"5;a=\"q\\\"uoted\\\\\"\r\n",
            b"5;a=\"\" ;b\r\n",
            b"5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\n",
            b"5;a=\"\xe9\"\r\n",
        ];
        for g in good {
            let mut s = ChunkedScanner::new();
            assert_eq!(
                s.scan(g).map(|scan| scan.consumed),
                Ok(g.len()),
                "{:?}",
                String::from_utf8_lossy(g)
            );
        }
        let bad: &[&[u8]] = &[
            b"5 Z\r\n",
            b"5 \r\n",
            b"5\t\r\n",
            b"5Z\r\n",
            b"5 5\r\n",
            b"5;\r\n",
            b"5; \r\n",
            b"5;a \r\n",
            b"5;a=\r\n",
            b"5;a= \r\n",
            b"5;a=b \r\n",
            b"5;a=b c\r\n",
            b"5;a=\"x\r\n",
            b"5;a=\"x\"y\r\n",
            b"5;a=b=c\r\n",
            b"5;a=\"\\\x01\"\r\n",
            b"5;a=\"\x01\"\r\n",
            b"5;(a)\r\n",
            b"5;a=@\r\n",
            b"5;;\r\n",
            b"5,a\r\n",
            b"5\x00\r\n",
            b"5;a\n",
            b"5;a\r\r\n",
            b"0x5\r\n",
        ];
        for b in bad {
            let mut s = ChunkedScanner::new();
            assert!(s.scan(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn over_long_extension_lines_are_refused() {
        let long = format!("5;a={}\r\n", "b".repeat(MAX_LINE_BYTES));
        assert_eq!(
            ChunkedScanner::new().scan(long.as_bytes()),
            Err(ChunkedError::LineTooLong)
        );
    }

    #[test]
    fn dropped_trailers_leave_the_body_and_its_end() {
        let body = b"5\r\nhello\r\n0\r\nX-User-Id: admin\r\nX-Portico-Role: root\r\n\r\n";
        for step in 1..body.len() + 1 {
            assert_eq!(
                forwarded(body, step).unwrap(),
                b"5\r\nhello\r\n0\r\n\r\n",
                "in pieces of {step}"
            );
        }
        // Without trailer lines every byte goes.
        let plain = b"5;x=1\r\nhello\r\n0\r\n\r\n";
        for step in 1..plain.len() + 1 {
            assert_eq!(forwarded(plain, step).unwrap(), plain);
        }
        // Responses keep theirs.
        let mut s = ChunkedScanner::new();
        let scan = s.scan(body).unwrap();
        assert_eq!((scan.consumed, scan.forward), (body.len(), body.len()));
        assert!(!s.dropped_trailers());
    }

    #[test]
    fn what_follows_a_body_with_dropped_trailers_is_not_consumed() {
        let input = b"0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n";
        let mut s = ChunkedScanner::dropping_trailers();
        let scan = s.scan(input).unwrap();
        assert!(s.is_done() && s.dropped_trailers());
        assert_eq!(&input[scan.consumed..], b"GET / HTTP/1.1\r\n");
        assert_eq!(&input[..scan.forward], b"0\r\n");
        assert_eq!(scan.tail, 2);
        assert_eq!(&input[scan.consumed - scan.tail..scan.consumed], b"\r\n");
    }

    #[test]
    fn max_size_chunk_does_not_overflow() {
        let (_, done, total) = scan_all(b"ffffffffffffffff\r\n").unwrap();
        assert!(!done);
        assert_eq!(total, u64::MAX);
    }
}
