//! HTTP/1.1 chunked framing (RFC 9112 §7.1) for payload the gateway frames itself:
//! a body of unknown length from an HTTP/2 peer ([`BodyFraming::EndStream`]) going
//! to an HTTP/1.1 peer. Chunked bodies from HTTP/1.1 peers pass byte for byte and
//! never come here.
//!
//! [`BodyFraming::EndStream`]: super::BodyFraming::EndStream

use std::io::Write as _;

use super::forwarded::header;
use super::HeaderLookup;

/// What ends every chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// Appends the size line of a chunk of `len` payload bytes (never 0: that is the
/// last chunk).
pub fn write_chunk_head(w: &mut Vec<u8>, len: usize) {
    let _ = write!(w, "{len:x}\r\n");
}

/// Appends the last chunk and the trailer section: `trailers` when given (every
/// field but the framing ones), then the empty line.
pub fn write_last_chunk(w: &mut Vec<u8>, trailers: Option<&dyn HeaderLookup>) {
    w.extend_from_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        trailers.each(&mut |name, value| {
            if !name.eq_ignore_ascii_case(b"content-length")
                && !name.eq_ignore_ascii_case(b"transfer-encoding")
            {
                header(w, name, value);
            }
        });
    }
    w.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::FieldList;
    use super::*;

    #[test]
    fn chunks_and_trailers() {
        let mut w = Vec::new();
        write_chunk_head(&mut w, 300);
        w.extend_from_slice(b"..");
        w.extend_from_slice(CHUNK_END);
        let mut t = FieldList::new();
        t.push(b"grpc-status", b"0");
        write_last_chunk(&mut w, Some(&t));
        assert_eq!(w, b"12c\r\n..\r\n0\r\ngrpc-status: 0\r\n\r\n");
        w.clear();
        write_last_chunk(&mut w, None);
        assert_eq!(w, b"0\r\n\r\n");
    }
}
