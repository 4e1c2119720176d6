//! Response bytes: the pre-built fixed responses, a head writer, and the static
//! filler that large bodies are streamed from.

use std::sync::OnceLock;

/// Bodies up to this size are copied into the connection's output buffer and sent
/// with the head in one write; larger ones are streamed from `FILLER`.
pub const INLINE_BODY_MAX: usize = 64 * 1024;

/// Size of the filler and of each streamed chunk.
pub const FILL_CHUNK: usize = 64 * 1024;
static FILLER: [u8; FILL_CHUNK] = [b'x'; FILL_CHUNK];

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
pub const TEXT_PLAIN: &[u8] = b"text/plain";
pub const APPLICATION_JSON: &[u8] = b"application/json";

/// The first `n` (at most `FILL_CHUNK`) bytes of the filler body.
pub fn filler(n: usize) -> &'static [u8] {
    &FILLER[..n.min(FILL_CHUNK)]
}

/// One complete chunk of `FILL_CHUNK` filler bytes in chunked framing.
pub fn filler_chunk_frame() -> &'static [u8] {
    static FRAME: OnceLock<Vec<u8>> = OnceLock::new();
    FRAME.get_or_init(|| {
        let mut frame = Vec::with_capacity(FILL_CHUNK + 16);
        push_hex(&mut frame, FILL_CHUNK as u64);
        frame.extend_from_slice(b"\r\n");
        frame.extend_from_slice(&FILLER);
        frame.extend_from_slice(b"\r\n");
        frame
    })
}

/// Whether the connection stays open after a response, and how to say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 keep-alive: no header needed.
    KeepAlive,
    /// HTTP/1.0 keep-alive: `connection: keep-alive`.
    KeepAlive10,
    /// `connection: close`.
    Close,
}

impl Persistence {
    pub fn of(keep_alive: bool, http10: bool) -> Self {
        match (keep_alive, http10) {
            (false, _) => Persistence::Close,
            (true, false) => Persistence::KeepAlive,
            (true, true) => Persistence::KeepAlive10,
        }
    }

    fn header(self) -> &'static [u8] {
        match self {
            Persistence::KeepAlive => b"",
            Persistence::KeepAlive10 => b"connection: keep-alive\r\n",
            Persistence::Close => b"connection: close\r\n",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    Length(u64),
    Chunked,
    /// No body and no length header (204, 304).
    Omitted,
}

/// 204 and 304 responses carry no body.
pub fn status_has_body(status: u16) -> bool {
    status != 204 && status != 304
}

/// Appends a response head.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &[u8],
    length: BodyLength,
    persistence: Persistence,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\n");
    match length {
        BodyLength::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyLength::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyLength::Omitted => {}
    }
    out.extend_from_slice(persistence.header());
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete response with a body held in memory (echo, `/__hits`).
pub fn write_buffered(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &[u8],
    body: &[u8],
    chunked: bool,
    head_only: bool,
    persistence: Persistence,
) {
    if !status_has_body(status) {
        write_head(out, status, content_type, BodyLength::Omitted, persistence);
        return;
    }
    let length = if chunked {
        BodyLength::Chunked
    } else {
        BodyLength::Length(body.len() as u64)
    };
    write_head(out, status, content_type, length, persistence);
    if head_only {
        return;
    }
    if chunked {
        if !body.is_empty() {
            push_hex(out, body.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(body);
    }
}

/// Appends a short `connection: close` error response.
pub fn write_error(out: &mut Vec<u8>, status: u16) {
    let body = reason(status).as_bytes();
    write_head(
        out,
        status,
        TEXT_PLAIN,
        BodyLength::Length(body.len() as u64 + 1),
        Persistence::Close,
    );
    out.extend_from_slice(body);
    out.push(b'\n');
}

/// The `--body-bytes` 200 response, pre-built for each persistence so that the hot
/// path is one copy into the output buffer.
pub struct FixedResponses {
    variants: [Box<[u8]>; 3],
    head_lens: [usize; 3],
}

impl FixedResponses {
    /// `None` when the body is too large to inline; it is then streamed.
    pub fn new(body_bytes: usize) -> Option<Self> {
        if body_bytes > INLINE_BODY_MAX {
            return None;
        }
        let build = |p: Persistence| {
            let mut bytes = Vec::new();
            write_head(
                &mut bytes,
                200,
                TEXT_PLAIN,
                BodyLength::Length(body_bytes as u64),
                p,
            );
            let head_len = bytes.len();
            bytes.extend_from_slice(filler(body_bytes));
            (bytes.into_boxed_slice(), head_len)
        };
        // Indexed by `Persistence::index`, i.e. in declaration order.
        let [(a, ha), (b, hb), (c, hc)] = [
            Persistence::KeepAlive,
            Persistence::KeepAlive10,
            Persistence::Close,
        ]
        .map(build);
        Some(FixedResponses {
            variants: [a, b, c],
            head_lens: [ha, hb, hc],
        })
    }

    /// The full response, or only its head for HEAD requests.
    pub fn get(&self, persistence: Persistence, head_only: bool) -> &[u8] {
        let i = persistence.index();
        if head_only {
            &self.variants[i][..self.head_lens[i]]
        } else {
            &self.variants[i]
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `n` in lowercase hex without leading zeros (chunk sizes).
pub fn push_hex(out: &mut Vec<u8>, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((n >> (shift * 4)) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, u64::MAX);
        out.push(b' ');
        push_hex(&mut out, 0);
        out.push(b' ');
        push_hex(&mut out, 65536);
        assert_eq!(out, b"0 18446744073709551615 0 10000");
    }

    #[test]
    fn fixed_responses() {
        let fixed = FixedResponses::new(3).unwrap();
        assert_eq!(
            fixed.get(Persistence::KeepAlive, false),
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nxxx"
        );
        assert_eq!(
            fixed.get(Persistence::Close, true),
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"
        );
        assert!(fixed
            .get(Persistence::KeepAlive10, false)
            .windows(24)
            .any(|w| w == b"connection: keep-alive\r\n"));
        assert!(FixedResponses::new(INLINE_BODY_MAX + 1).is_none());
    }

    #[test]
    fn chunk_frame() {
        let frame = filler_chunk_frame();
        assert!(frame.starts_with(b"10000\r\nxxx"));
        assert!(frame.ends_with(b"x\r\n"));
        assert_eq!(frame.len(), FILL_CHUNK + 9);
    }

    #[test]
    fn buffered_chunked_and_no_body_statuses() {
        let mut out = Vec::new();
        write_buffered(
            &mut out,
            200,
            APPLICATION_JSON,
            b"{}",
            true,
            false,
            Persistence::KeepAlive,
        );
        assert!(out.ends_with(b"transfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"));
        out.clear();
        write_buffered(
            &mut out,
            204,
            TEXT_PLAIN,
            b"abc",
            false,
            false,
            Persistence::KeepAlive,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 204 No Content\r\ncontent-type: text/plain\r\n\r\n"
        );
    }
}
