//! The flood guard: the client connection's bytes pass through here on their way
//! to the `h2` crate, which sees only what this guard lets through. The guard reads
//! every frame header the client sends (9 bytes each; payloads are skipped by
//! length, never parsed) and counts, per `http2_flood_window_ms`, the frames that
//! cost the server work without carrying a request: RST_STREAM (rapid reset,
//! CVE-2023-44487), PING, SETTINGS, empty DATA; and CONTINUATION frames per header
//! block. Past a limit it raises a [`Flood`] (the connection task answers GOAWAY
//! `ENHANCE_YOUR_CALM`) and hands `h2` no more bytes.
//!
//! `h2` has guards of its own (docs/http2.md): these come first and are counted.
//! Bytes already read when a flood is found still reach `h2` (one read at most).
//!
//! On the way out the guard follows the gateway's own frames the same way, to count
//! the streams refused unprocessed (RST_STREAM `REFUSED_STREAM`): most of them `h2`
//! refuses itself, past `http2_max_concurrent_streams`, and tells nobody.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::Instant;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

use crate::config::FloodLimits;

/// The connection preface a client sends before its first frame (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a client sent too much of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flood {
    Resets,
    Pings,
    Settings,
    EmptyData,
    Continuation,
}

/// The guard's verdict, shared with the connection task.
pub struct GuardState {
    limits: FloodLimits,
    flood: Cell<Option<Flood>>,
    waker: RefCell<Option<Waker>>,
    counts: RefCell<Counts>,
    /// Streams refused (RST_STREAM `REFUSED_STREAM` sent) not yet taken.
    refused: Cell<u64>,
}

#[derive(Default)]
struct Counts {
    since: Option<Instant>,
    resets: u32,
    pings: u32,
    settings: u32,
    empty_data: u32,
}

impl GuardState {
    pub fn new(limits: FloodLimits) -> Self {
        GuardState {
            limits,
            flood: Cell::new(None),
            waker: RefCell::new(None),
            counts: RefCell::new(Counts::default()),
            refused: Cell::new(0),
        }
    }

    /// The streams refused unprocessed since the last call.
    pub fn take_refused(&self) -> u64 {
        self.refused.replace(0)
    }

    /// Resolves with the flood once one is found.
    pub async fn flooded(&self) -> Flood {
        poll_fn(|cx| match self.flood.get() {
            Some(f) => Poll::Ready(f),
            None => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    fn raise(&self, flood: Flood) {
        if self.flood.get().is_none() {
            self.flood.set(Some(flood));
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Counts one frame of a kind limited per window; raises a flood past its limit.
    fn count(&self, kind: Flood) {
        let mut c = self.counts.borrow_mut();
        let now = Instant::now();
        let fresh = c
            .since
            .is_none_or(|since| now.duration_since(since) >= self.limits.window);
        if fresh {
            *c = Counts {
                since: Some(now),
                ..Counts::default()
            };
        }
        let (n, limit) = match kind {
            Flood::Resets => (&mut c.resets, self.limits.resets),
            Flood::Pings => (&mut c.pings, self.limits.pings),
            Flood::Settings => (&mut c.settings, self.limits.settings),
            Flood::EmptyData => (&mut c.empty_data, self.limits.empty_data),
            Flood::Continuation => return,
        };
        *n += 1;
        if *n > limit {
            drop(c);
            self.raise(kind);
        }
    }
}

/// Where the scan of the client's byte stream is.
struct Scan {
    /// Preface bytes still to skip.
    preface_left: usize,
    /// The frame header being read, and how much of it arrived.
    header: [u8; 9],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload_left: usize,
    /// CONTINUATION frames since the HEADERS that opened the current header block
    /// (`None` outside a header block).
    continuations: Option<u32>,
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

impl Scan {
    fn new() -> Self {
        Scan {
            preface_left: PREFACE.len(),
            header: [0; 9],
            header_len: 0,
            payload_left: 0,
            continuations: None,
        }
    }

    /// Follows the frames in `bytes`, the next bytes of the client's stream.
    fn feed(&mut self, mut bytes: &[u8], state: &GuardState) {
        let skip = self.preface_left.min(bytes.len());
        self.preface_left -= skip;
        bytes = &bytes[skip..];
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(bytes.len());
                self.payload_left -= skip;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (9 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == 9 {
                self.header_len = 0;
                self.frame(state);
            }
        }
    }

    /// One whole frame header.
    fn frame(&mut self, state: &GuardState) {
        let h = &self.header;
        let length = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        self.payload_left = length;
        match kind {
            DATA if length == 0 && flags & END_STREAM == 0 => state.count(Flood::EmptyData),
            HEADERS if flags & END_HEADERS == 0 => self.continuations = Some(0),
            CONTINUATION => {
                let n = self.continuations.unwrap_or(0) + 1;
                self.continuations = (flags & END_HEADERS == 0).then_some(n);
                if n > state.limits.continuation {
                    state.raise(Flood::Continuation);
                }
            }
            RST_STREAM => state.count(Flood::Resets),
            SETTINGS if flags & ACK == 0 => state.count(Flood::Settings),
            PING if flags & ACK == 0 => state.count(Flood::Pings),
            _ => {}
        }
    }
}

/// RST_STREAM's error code for a stream refused unprocessed (RFC 9113 §7).
const REFUSED_STREAM: [u8; 4] = [0, 0, 0, 7];

/// Where the scan of the gateway's own byte stream is (no preface: a server's
/// starts with its SETTINGS frame). Only RST_STREAM payloads are read.
#[derive(Default)]
struct SentScan {
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
    /// The error code of the RST_STREAM being read, and how much of it arrived.
    reset: Option<([u8; 4], usize)>,
}

impl SentScan {
    /// Follows the frames in `bytes`, the next bytes sent to the client.
    fn feed(&mut self, mut bytes: &[u8], state: &GuardState) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                if let Some((code, got)) = &mut self.reset {
                    let take = (4 - *got).min(n);
                    code[*got..*got + take].copy_from_slice(&bytes[..take]);
                    *got += take;
                    if *got == 4 {
                        if *code == REFUSED_STREAM {
                            state.refused.set(state.refused.get() + 1);
                        }
                        self.reset = None;
                    }
                }
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let take = (9 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == 9 {
                self.header_len = 0;
                let h = &self.header;
                let length =
                    (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                self.payload_left = length;
                self.reset = (h[3] == RST_STREAM && length == 4).then_some(([0; 4], 0));
            }
        }
    }
}

/// A client stream with the guard on its read side, and the count of refused
/// streams on its write side.
pub struct FrameGuard<S> {
    io: S,
    state: std::rc::Rc<GuardState>,
    scan: Scan,
    sent: SentScan,
    /// Bytes read before HTTP/2 was recognized (h2c's preface), served first.
    prefix: Vec<u8>,
    prefix_pos: usize,
}

impl<S> FrameGuard<S> {
    /// Guards `io`; `prefix` are bytes already read from it (they are read again).
    pub fn new(io: S, state: std::rc::Rc<GuardState>, prefix: Vec<u8>) -> Self {
        FrameGuard {
            io,
            state,
            scan: Scan::new(),
            sent: SentScan::default(),
            prefix,
            prefix_pos: 0,
        }
    }
}

impl<S: AsyncReadRent> AsyncReadRent for FrameGuard<S> {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        if self.state.flood.get().is_some() {
            // h2 gets nothing more; the connection task closes the connection.
            std::future::pending::<()>().await;
        }
        if self.prefix_pos < self.prefix.len() {
            let n = (self.prefix.len() - self.prefix_pos).min(buf.bytes_total());
            let src = &self.prefix[self.prefix_pos..self.prefix_pos + n];
            // SAFETY: `buf` owns `bytes_total()` writable bytes at `write_ptr()`;
            // `n` is at most that, and exactly `n` bytes are written and marked.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), buf.write_ptr(), n);
                buf.set_init(n);
            }
            self.scan.feed(src, &self.state);
            self.prefix_pos += n;
            if self.prefix_pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.prefix_pos = 0;
            }
            return (Ok(n), buf);
        }
        let (res, mut buf) = self.io.read(buf).await;
        if let Ok(n) = res {
            // SAFETY: the read wrote `n` bytes at `write_ptr()`.
            let read = unsafe { std::slice::from_raw_parts(buf.write_ptr(), n) };
            self.scan.feed(read, &self.state);
        }
        (res, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer views the first iovec of `buf`, owned by this call.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl<S: AsyncWriteRent> AsyncWriteRent for FrameGuard<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let (res, buf) = self.io.write(buf).await;
        if let Ok(n) = res {
            // SAFETY: `buf` holds `bytes_init()` readable bytes at `read_ptr()`, and
            // the write took `n` of them.
            let sent = unsafe { std::slice::from_raw_parts(buf.read_ptr(), n) };
            self.sent.feed(sent, &self.state);
        }
        (res, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // One iovec at a time (the caller writes the rest), so that what was sent
        // is one slice to follow.
        // SAFETY: the raw buffer views the first iovec of `buf`, owned by this call.
        let n = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => self.write(raw).await.0,
            None => Ok(0),
        };
        (n, buf)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.io.flush().await
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> FloodLimits {
        FloodLimits {
            window: Duration::from_secs(10),
            resets: 3,
            pings: 2,
            settings: 2,
            empty_data: 2,
            continuation: 2,
        }
    }

    fn frame(kind: u8, flags: u8, len: usize) -> Vec<u8> {
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend(std::iter::repeat_n(0xEE, len));
        f
    }

    #[test]
    fn frames_are_followed_across_reads_and_counted() {
        let state = GuardState::new(limits());
        let mut scan = Scan::new();
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(SETTINGS, 0, 12));
        stream.extend(frame(SETTINGS, ACK, 0));
        // A payload that looks like frame headers is skipped, not read as frames.
        stream.extend(frame(DATA, 0, 40));
        stream.extend(frame(PING, 0, 8));
        stream.extend(frame(PING, ACK, 8));
        stream.extend(frame(PING, 0, 8));
        for piece in stream.chunks(5) {
            scan.feed(piece, &state);
        }
        assert_eq!(
            state.flood.get(),
            None,
            "2 pings and 1 settings are within limits"
        );
        scan.feed(&frame(PING, 0, 8), &state);
        assert_eq!(state.flood.get(), Some(Flood::Pings));
    }

    #[test]
    fn refused_streams_are_counted_on_the_way_out() {
        let state = GuardState::new(limits());
        let mut sent = SentScan::default();
        let mut stream = frame(SETTINGS, 0, 6);
        for code in [7u8, 8, 7] {
            let mut reset = frame(RST_STREAM, 0, 0);
            reset[2] = 4;
            reset.extend([0, 0, 0, code]);
            stream.extend(reset);
            // A DATA payload holding the same bytes is not a reset.
            let mut data = frame(DATA, 0, 0);
            data[2] = 13;
            data.extend(&stream[stream.len() - 13..].to_vec());
            stream.extend(data);
        }
        for piece in stream.chunks(3) {
            sent.feed(piece, &state);
        }
        assert_eq!(state.take_refused(), 2, "REFUSED_STREAM, not CANCEL");
        assert_eq!(state.take_refused(), 0);
    }

    #[test]
    fn resets_empty_data_and_continuations_have_limits() {
        let state = GuardState::new(limits());
        let mut scan = Scan::new();
        scan.feed(PREFACE, &state);
        for _ in 0..3 {
            scan.feed(&frame(RST_STREAM, 0, 4), &state);
        }
        assert_eq!(state.flood.get(), None);
        scan.feed(&frame(RST_STREAM, 0, 4), &state);
        assert_eq!(state.flood.get(), Some(Flood::Resets));

        let state = GuardState::new(limits());
        scan.feed(&frame(DATA, END_STREAM, 0), &state);
        scan.feed(&frame(DATA, 0, 0), &state);
        scan.feed(&frame(DATA, 0, 0), &state);
        assert_eq!(
            state.flood.get(),
            None,
            "an empty final DATA is not counted"
        );
        scan.feed(&frame(DATA, 0, 0), &state);
        assert_eq!(state.flood.get(), Some(Flood::EmptyData));

        let state = GuardState::new(limits());
        scan.feed(&frame(HEADERS, 0, 10), &state);
        scan.feed(&frame(CONTINUATION, 0, 10), &state);
        scan.feed(&frame(CONTINUATION, END_HEADERS, 10), &state);
        scan.feed(&frame(HEADERS, 0, 10), &state);
        scan.feed(&frame(CONTINUATION, 0, 10), &state);
        scan.feed(&frame(CONTINUATION, 0, 10), &state);
        assert_eq!(state.flood.get(), None, "two per block are allowed");
        scan.feed(&frame(CONTINUATION, 0, 10), &state);
        assert_eq!(state.flood.get(), Some(Flood::Continuation));
    }
}
