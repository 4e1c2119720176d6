//! Reading responses: the head (httparse) and how its body ends, and a byte-wise
//! chunked-body scanner. Pure functions over buffers; the socket side is in
//! `connection.rs`.

/// A response head longer than this is a parse error.
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// No body (HEAD, 1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// The body runs until the server closes the connection.
    Close,
}

/// The parts of a response head a load generator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes of the head, including the empty line.
    pub len: usize,
    pub body: BodyEnd,
    /// The connection may carry the next request.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// 1xx responses (100 Continue, 103 Early Hints) precede the real one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// A malformed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Parses the response head at the start of `buf`; `Ok(None)` means more bytes are
/// needed. `head_request`: the request was HEAD, so no body follows.
pub fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, Malformed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Malformed("response head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Malformed("too many headers")),
        Err(_) => return Err(Malformed("bad response head")),
    };
    let (Some(status), Some(minor)) = (response.code, response.version) else {
        return Err(Malformed("bad status line"));
    };
    if status == 101 {
        return Err(Malformed("unexpected 101 Switching Protocols"));
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = minor == 0;
    for h in response.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_decimal(h.value.trim_ascii()).ok_or(Malformed("bad Content-Length"))?;
            if length.is_some_and(|old| old != n) {
                return Err(Malformed("conflicting Content-Length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    close = false;
                }
            }
        }
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        BodyEnd::Empty
    } else if transfer_encoding {
        // RFC 9112 §6.3: Transfer-Encoding wins over Content-Length; a final coding
        // other than chunked means the body ends at close.
        if chunked {
            BodyEnd::Chunked
        } else {
            BodyEnd::Close
        }
    } else {
        match length {
            Some(0) => BodyEnd::Empty,
            Some(n) => BodyEnd::Length(n),
            None => BodyEnd::Close,
        }
    };
    let keep_alive = !close && body != BodyEnd::Close;
    Ok(Some(ResponseHead {
        status,
        len,
        body,
        keep_alive,
    }))
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// Where a chunked body's scanner stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of a chunk size (`digits` read so far).
    Size {
        size: u64,
        digits: u8,
    },
    /// Blanks or `;extension` after the size, up to CR.
    SizeRest {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

/// Walks a chunked body without keeping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedScanner {
    state: ChunkState,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: ChunkState::Size { size: 0, digits: 0 },
        }
    }
}

impl ChunkedScanner {
    /// Consumes body bytes from `buf`; returns how many it used. Stops right after the
    /// body's last byte, so any bytes left belong to the next response.
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < buf.len() && self.state != ChunkState::Done {
            if let ChunkState::Data { left } = self.state {
                let take = left.min((buf.len() - i) as u64);
                i += take as usize;
                self.state = match left - take {
                    0 => ChunkState::DataCr,
                    left => ChunkState::Data { left },
                };
                continue;
            }
            self.state = self.step(buf[i])?;
            i += 1;
        }
        Ok(i)
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    fn step(&self, b: u8) -> Result<ChunkState, Malformed> {
        use ChunkState::*;
        let bad = Malformed("bad chunked framing");
        Ok(match (self.state, b) {
            (Size { size, digits }, _) if b.is_ascii_hexdigit() => {
                if digits >= 15 {
                    return Err(Malformed("chunk size too large"));
                }
                let digit = (b as char).to_digit(16).unwrap_or(0);
                Size {
                    size: size * 16 + u64::from(digit),
                    digits: digits + 1,
                }
            }
            (Size { digits: 0, .. }, _) => return Err(bad),
            (Size { size, .. } | SizeRest { size }, b'\r') => SizeLf { size },
            (Size { size, .. } | SizeRest { size }, b';' | b' ' | b'\t') => SizeRest { size },
            (SizeRest { size }, b) if b != b'\n' => SizeRest { size },
            (SizeLf { size: 0 }, b'\n') => TrailerStart,
            (SizeLf { size }, b'\n') => Data { left: size },
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size { size: 0, digits: 0 },
            (TrailerStart, b'\r') => FinalLf,
            (TrailerStart | TrailerLine, b) if b != b'\r' && b != b'\n' => TrailerLine,
            (TrailerLine, b'\r') => TrailerLf,
            (TrailerLf, b'\n') => TrailerStart,
            (FinalLf, b'\n') => Done,
            _ => return Err(bad),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> ResponseHead {
        parse_head(raw.as_bytes(), false).unwrap().unwrap()
    }

    #[test]
    fn framing_and_persistence() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(
            (h.status, h.body, h.keep_alive),
            (200, BodyEnd::Length(5), true)
        );
        assert_eq!(h.len, 38);
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(h.body, BodyEnd::Chunked);
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.body, h.keep_alive), (BodyEnd::Close, false));
        let h = head("HTTP/1.1 429 Too Many\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            (h.status, h.body, h.keep_alive),
            (429, BodyEnd::Empty, false)
        );
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n");
        assert!(h.keep_alive);
        let h = head("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(h.body, BodyEnd::Empty);
        assert!(head("HTTP/1.1 100 Continue\r\n\r\n").is_interim());
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true);
        assert_eq!(h.unwrap().unwrap().body, BodyEnd::Empty);
    }

    #[test]
    fn partial_and_malformed() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nConte", false), Ok(None));
        for bad in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 101 Switching\r\n\r\n",
        ] {
            assert!(
                parse_head(bad, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b'a'; MAX_HEAD];
        assert!(parse_head(&huge, false).is_err());
    }

    #[test]
    fn chunked_bodies_in_pieces() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - b"NEXT".len();
        for split in 0..=end {
            let mut scanner = ChunkedScanner::default();
            let first = scanner.feed(&body[..split]).unwrap();
            assert_eq!(first, split);
            let second = scanner.feed(&body[split..]).unwrap();
            assert!(scanner.is_done(), "split {split}");
            assert_eq!(&body[split + second..], b"NEXT");
        }
        let mut scanner = ChunkedScanner::default();
        assert_eq!(scanner.feed(b"0\r\n\r\n"), Ok(5));
        assert!(scanner.is_done());
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"\r\n",
            b"fffffffffffffffff\r\n",
        ] {
            assert!(ChunkedScanner::default().feed(bad).is_err(), "{bad:?}");
        }
    }
}
