//! HTTP/2 frames (RFC 9113 §4.1, §6): the 9-octet frame header read from a buffer,
//! and the frames a client writes, appended to an output buffer.

/// The client connection preface (RFC 9113 §3.4), before its SETTINGS.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame header length in octets.
pub const HEAD_LEN: usize = 9;

/// The frame size every peer accepts (SETTINGS_MAX_FRAME_SIZE's initial value).
pub const DEFAULT_MAX_FRAME: usize = 16_384;

/// The flow-control window every stream and connection starts with (§6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;

/// The largest flow-control window (§6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers (§6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes (§7).
pub mod code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const INTERNAL_ERROR: u32 = 0x2;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const STREAM_CLOSED: u32 = 0x5;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const COMPRESSION_ERROR: u32 = 0x9;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Payload length in octets.
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    /// Stream identifier (the reserved bit cleared).
    pub stream: u32,
}

impl FrameHead {
    /// The header at the start of `buf`, if 9 octets are there.
    pub fn parse(buf: &[u8]) -> Option<FrameHead> {
        let h: &[u8; HEAD_LEN] = buf.get(..HEAD_LEN)?.try_into().ok()?;
        Some(FrameHead {
            len: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & MAX_WINDOW,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Appends a frame header.
pub fn put_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&head_bytes(len, kind, flags, stream));
}

/// A frame header's 9 octets: payload length (24 bits), type, flags, stream.
fn head_bytes(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEAD_LEN] {
    let len = len as u32;
    let id = (stream & MAX_WINDOW).to_be_bytes();
    [
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        kind,
        flags,
        id[0],
        id[1],
        id[2],
        id[3],
    ]
}

/// Appends a SETTINGS frame with `settings` (identifier, value).
pub fn put_settings(out: &mut Vec<u8>, settings: &[(u16, u32)]) {
    put_head(out, settings.len() * 6, kind::SETTINGS, 0, 0);
    for (id, value) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends a SETTINGS acknowledgement.
pub fn put_settings_ack(out: &mut Vec<u8>) {
    put_head(out, 0, kind::SETTINGS, flag::ACK, 0);
}

/// Appends a WINDOW_UPDATE of `increment` (1 to 2^31 − 1) for `stream` (0: the
/// connection).
pub fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put_head(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & MAX_WINDOW).to_be_bytes());
}

/// Appends a RST_STREAM with `error`.
pub fn put_rst_stream(out: &mut Vec<u8>, stream: u32, error: u32) {
    put_head(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&error.to_be_bytes());
}

/// Appends a PING acknowledging `payload`.
pub fn put_ping_ack(out: &mut Vec<u8>, payload: &[u8; 8]) {
    put_head(out, 8, kind::PING, flag::ACK, 0);
    out.extend_from_slice(payload);
}

/// Appends a GOAWAY with the last stream the sender processed and `error`.
pub fn put_goaway(out: &mut Vec<u8>, last_stream: u32, error: u32) {
    put_head(out, 8, kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
}

/// Appends a DATA frame carrying `data` (at most the peer's frame size).
pub fn put_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    put_head(out, data.len(), kind::DATA, flags, stream);
    out.extend_from_slice(data);
}

/// Starts a header block in `out`: room for the HEADERS frame header, which
/// [`frame_header_block`] fills in; returns where the block starts.
pub fn begin_header_block(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; HEAD_LEN]);
    out.len()
}

/// Frames the header block that `out[block_start..]` holds (begun with
/// [`begin_header_block`]): the HEADERS frame header is written in the room left
/// before it, and a block larger than `max_frame` is cut into CONTINUATION frames
/// (§6.10).
pub fn frame_header_block(
    out: &mut Vec<u8>,
    block_start: usize,
    stream: u32,
    end_stream: bool,
    max_frame: usize,
) {
    let end = if end_stream { flag::END_STREAM } else { 0 };
    let len = out.len() - block_start;
    let max_frame = max_frame.max(1);
    if len <= max_frame {
        let head = head_bytes(len, kind::HEADERS, end | flag::END_HEADERS, stream);
        out[block_start - HEAD_LEN..block_start].copy_from_slice(&head);
        return;
    }
    let block: Vec<u8> = out.split_off(block_start);
    out.truncate(block_start - HEAD_LEN);
    let mut pieces = block.chunks(max_frame).peekable();
    let mut first = true;
    while let Some(piece) = pieces.next() {
        let headers_end = if pieces.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        let (k, flags) = if first {
            (kind::HEADERS, end | headers_end)
        } else {
            (kind::CONTINUATION, headers_end)
        };
        put_head(out, piece.len(), k, flags, stream);
        out.extend_from_slice(piece);
        first = false;
    }
}

/// The payload of a frame that may be padded (DATA, HEADERS) without the pad
/// length octet and the padding: `None` when the padding is longer than the
/// payload (a PROTOCOL_ERROR, §6.1).
pub fn unpad<'p>(head: &FrameHead, payload: &'p [u8]) -> Option<&'p [u8]> {
    if !head.has(flag::PADDED) {
        return Some(payload);
    }
    let (&pad, rest) = payload.split_first()?;
    rest.get(..rest.len().checked_sub(usize::from(pad))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_and_blocks_split_into_continuations() {
        let mut out = Vec::new();
        put_head(&mut out, 0x12345, kind::DATA, flag::END_STREAM, 0x8000_0003);
        let h = FrameHead::parse(&out).unwrap();
        assert_eq!(
            h,
            FrameHead {
                len: 0x12345,
                kind: kind::DATA,
                flags: 1,
                stream: 3
            }
        );
        let mut out = b"xx".to_vec();
        let start = begin_header_block(&mut out);
        out.extend_from_slice(&[7u8; 25]);
        frame_header_block(&mut out, start, 5, true, 10);
        assert_eq!(&out[..2], b"xx");
        let a = FrameHead::parse(&out[2..]).unwrap();
        assert_eq!(
            (a.len, a.kind, a.flags),
            (10, kind::HEADERS, flag::END_STREAM)
        );
        let b = FrameHead::parse(&out[2 + 19..]).unwrap();
        assert_eq!((b.len, b.kind, b.flags), (10, kind::CONTINUATION, 0));
        let c = FrameHead::parse(&out[2 + 38..]).unwrap();
        assert_eq!(
            (c.len, c.kind, c.flags),
            (5, kind::CONTINUATION, flag::END_HEADERS)
        );
        assert_eq!(out.len(), 2 + 3 * 9 + 25);
        let mut out = b"xx".to_vec();
        let start = begin_header_block(&mut out);
        out.extend_from_slice(&[7u8; 10]);
        frame_header_block(&mut out, start, 5, false, 10);
        let a = FrameHead::parse(&out[2..]).unwrap();
        assert_eq!(
            (a.len, a.kind, a.flags),
            (10, kind::HEADERS, flag::END_HEADERS)
        );
        assert_eq!(out.len(), 2 + 9 + 10);
    }

    #[test]
    fn padding_is_taken_off_and_too_much_of_it_refused() {
        let padded = FrameHead {
            len: 0,
            kind: kind::DATA,
            flags: flag::PADDED,
            stream: 1,
        };
        let plain = FrameHead { flags: 0, ..padded };
        assert_eq!(unpad(&padded, b"\x02abc\0\0"), Some(&b"abc"[..]));
        assert_eq!(unpad(&padded, b"\x03ab\0\0\0"), Some(&b"ab"[..]));
        assert_eq!(unpad(&padded, b"\x03\0\0\0"), Some(&b""[..]));
        assert_eq!(unpad(&padded, b"\x04\0\0\0"), None);
        assert_eq!(unpad(&padded, b""), None);
        assert_eq!(unpad(&plain, b"\x02abc"), Some(&b"\x02abc"[..]));
    }
}
