//! A validating scanner for the chunked transfer coding (RFC 9112 §7.1).
//!
//! The gateway forwards chunked bodies byte for byte; the scanner only finds where
//! the body ends and refuses anything malformed (bad sizes, bare LF, control bytes,
//! oversized lines) before it can reach the other side.

use std::fmt;

/// Bytes allowed on a chunk-size line after the size (extensions) and per trailer line.
const MAX_LINE_BYTES: usize = 4096;
/// All trailer lines together.
const MAX_TRAILER_BYTES: usize = 16384;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    BadSize,
    SizeTooLarge,
    BadLineEnding,
    LineTooLong,
    BadByte,
    TrailersTooLarge,
}

impl ChunkedError {
    pub fn reason(self) -> &'static str {
        match self {
            ChunkedError::BadSize => "malformed chunk size",
            ChunkedError::SizeTooLarge => "chunk size too large",
            ChunkedError::BadLineEnding => "malformed chunk line ending",
            ChunkedError::LineTooLong => "chunk extension too long",
            ChunkedError::BadByte => "control character in chunk framing",
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
    /// After the size: chunk extensions up to CR.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
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
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedScanner {
    pub fn new() -> Self {
        ChunkedScanner {
            state: State::Size,
            size: 0,
            digits: 0,
            remaining: 0,
            line_bytes: 0,
            trailer_bytes: 0,
            data_total: 0,
        }
    }

    /// The body (framing included) has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes seen so far, framing excluded: what `max_body_bytes` limits.
    pub fn data_total(&self) -> u64 {
        self.data_total
    }

    /// Scans `input`, returning how many of its bytes belong to this body. Fewer than
    /// `input.len()` only when the body ended inside it; the rest is the next message.
    pub fn scan(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        self.scan_with(input, |_| {})
    }

    /// As [`scan`](Self::scan), handing each run of payload bytes (framing
    /// excluded) to `data` as it passes: a de-chunker for bodies read whole.
    pub fn scan_with<F: FnMut(&[u8])>(
        &mut self,
        input: &[u8],
        mut data: F,
    ) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
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
                        b';' | b' ' | b'\t' => {
                            self.line_bytes = 1;
                            State::Extension
                        }
                        _ => return Err(ChunkedError::BadSize),
                    },
                },
                State::Extension => match b {
                    b'\r' => State::SizeLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {
                        self.line_bytes += 1;
                        if self.line_bytes > MAX_LINE_BYTES {
                            return Err(ChunkedError::LineTooLong);
                        }
                        State::Extension
                    }
                    _ => return Err(ChunkedError::BadByte),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    let size = self.size;
                    self.size = 0;
                    self.digits = 0;
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
                    b'\t' | b' ' => return Err(ChunkedError::BadByte),
                    b'!'..=b'~' => {
                        self.line_bytes = 1;
                        self.count_trailer()?;
                        State::TrailerLine
                    }
                    _ => return Err(ChunkedError::BadByte),
                },
                State::TrailerLine => match b {
                    b'\r' => State::TrailerLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {
                        self.line_bytes += 1;
                        if self.line_bytes > MAX_LINE_BYTES {
                            return Err(ChunkedError::LineTooLong);
                        }
                        self.count_trailer()?;
                        State::TrailerLine
                    }
                    _ => return Err(ChunkedError::BadByte),
                },
                State::TrailerLf => match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err(ChunkedError::BadLineEnding),
                },
                State::FinalLf => match b {
                    b'\n' => {
                        self.state = State::Done;
                        return Ok(i);
                    }
                    _ => return Err(ChunkedError::BadLineEnding),
                },
                State::Done => return Ok(i - 1),
            };
        }
        Ok(i)
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
        let n = s.scan(input)?;
        Ok((n, s.is_done(), s.data_total()))
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
            assert_eq!(s.scan(std::slice::from_ref(b)).unwrap(), 1, "at {i}");
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
        ];
        for b in bad {
            assert!(scan_all(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn max_size_chunk_does_not_overflow() {
        let (_, done, total) = scan_all(b"ffffffffffffffff\r\n").unwrap();
        assert!(!done);
        assert_eq!(total, u64::MAX);
    }
}
