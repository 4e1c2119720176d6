//! One HTTP/2 connection to an upstream endpoint: the gateway's own client side of
//! RFC 9113, shared by the exchanges of one worker ([`Connection`]) and run by a
//! task of its own ([`drive`]).
//!
//! Exchanges do not write to the socket: opening a stream encodes its HEADERS
//! (HPACK, `crate::http::http2::hpack`) straight into the connection's output
//! buffer, a body's DATA goes there too, and the connection's writer sends what
//! gathered in one write when it next runs, after the other tasks of the loop
//! turn: the requests of many client connections leave in one `send`. Its reader
//! reads whatever the endpoint sent in one `recv` and hands each stream its head,
//! DATA and trailers, waking the exchange that waits for them.
//!
//! Flow control: the endpoint may send 256 KiB per stream and 1 MiB on the
//! connection ahead of the relay; windows are reopened as the relay hands pieces
//! back. Our DATA keeps within the endpoint's windows. A stream dropped before it
//! finished is reset (CANCEL). What the endpoint breaks is answered as RFC 9113
//! §5.4 says: a stream error resets that stream, a connection error sends GOAWAY
//! and ends the connection, and every stream on it fails.
//!
//! This file holds the connection's state and what exchanges call; `receive.rs`
//! handles each frame the endpoint sends, `block.rs` checks a decoded header block
//! as a response head or trailers, `driver.rs` is the connection's task (a reader
//! and a writer), `fuzz.rs` the entry the fuzz target drives.

mod block;
mod driver;
mod fuzz;
mod receive;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::http::http2::frame::{
    self, code, setting, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, MAX_WINDOW,
};
use crate::http::http2::hpack::{Decoder, Encoder, DEFAULT_TABLE_SIZE};
use crate::http::FieldList;

use super::super::pool::Fnv;

pub use driver::drive;
pub use fuzz::feed_for_fuzzing;

/// How far ahead of the relay the endpoint may send, per stream and in all.
pub const STREAM_WINDOW: u32 = 256 * 1024;
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Largest response header list accepted (as for HTTP/1.1 response heads): names,
/// values and 32 octets per field (RFC 9113 §6.5.2).
pub const MAX_HEADER_LIST: usize = 64 * 1024;
/// Largest header block gathered from CONTINUATION frames: past it the endpoint is
/// flooding, not answering.
const MAX_HEADER_BLOCK: usize = 2 * MAX_HEADER_LIST;
/// Read buffer: a whole frame of the default maximum size fits with room to spare.
const READ_BUFFER: usize = 64 * 1024;
/// DATA waits while this much output is not yet written.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// An endpoint that makes us queue more than this (PING and SETTINGS answers,
/// WINDOW_UPDATEs, resets) while it reads nothing is flooding: connection error.
const OUTPUT_LIMIT: usize = 4 * OUTPUT_HIGH_WATER;

/// Why a stream did not get (all of) its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The endpoint did not process it (REFUSED_STREAM, a stream above a GOAWAY's
    /// last one, or the connection was going away before it was sent): it may be
    /// sent again (RFC 9113 §8.7).
    Refused,
    /// The endpoint reset it with this error code.
    Reset(u32),
    /// The connection ended while it was open (GOAWAY, I/O error, protocol error).
    Closed,
    /// The response broke HTTP/2's rules; the gateway reset the stream.
    Malformed,
}

/// A response head: status and fields (names lowercase, pseudo-fields apart).
pub struct Head {
    pub status: u16,
    pub fields: FieldList,
    /// The `content-length` field's value, when it has one.
    pub content_length: Option<u64>,
}

/// One HTTP/2 connection to an endpoint, shared by its exchanges and its driver.
pub struct Connection {
    state: RefCell<State>,
}

struct State {
    /// Frames waiting for the writer.
    out: Vec<u8>,
    writer: Option<Waker>,
    /// Tasks waiting for room: the output to drain, or a stream slot to free.
    waiting: Vec<Waker>,
    encoder: Encoder,
    decoder: Decoder,
    streams: HashMap<u32, Stream, BuildHasherDefault<Fnv>>,
    next_id: u32,
    /// The endpoint's SETTINGS (RFC 9113 defaults until they come).
    peer_max_streams: u32,
    peer_window: u32,
    peer_max_frame: usize,
    /// What we may still send on the connection, and the endpoint to us.
    send_window: i64,
    recv_window: i64,
    /// Received on the connection and consumed, not yet reopened.
    recv_consumed: u32,
    /// No new streams (retired, GOAWAY received, IDs exhausted).
    going_away: bool,
    /// The writer ends the connection once `out` is written.
    closing: bool,
    /// The connection has ended.
    closed: bool,
    /// A header block arriving in CONTINUATION frames.
    partial: Option<PartialBlock>,
}

struct PartialBlock {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

#[derive(Default)]
struct Stream {
    head: Option<Head>,
    head_taken: bool,
    data: Vec<u8>,
    trailers: Option<FieldList>,
    /// END_STREAM received: the response is complete.
    end: bool,
    error: Option<StreamError>,
    /// The exchange waiting for the response; the upload waiting for a window.
    waker: Option<Waker>,
    send_waker: Option<Waker>,
    send_window: i64,
    recv_window: i64,
    /// Consumed by the relay, not yet reopened (stream level).
    recv_consumed: u32,
    /// Received on this stream and counted in the connection window, not yet
    /// reopened there (given back when the stream goes).
    held: u32,
    /// END_STREAM sent.
    sent_end: bool,
    /// A RST_STREAM was sent or received: nothing more is sent on it.
    reset: bool,
    content_length: Option<u64>,
    received: u64,
    /// The request was HEAD: `content-length` says nothing of the (absent) body.
    head_request: bool,
}

impl Connection {
    /// A connection about to start: the client preface, our SETTINGS (no push,
    /// 256 KiB stream windows, the header list limit) and the connection window's
    /// first WINDOW_UPDATE wait in its output for the first write.
    pub fn new() -> Rc<Connection> {
        let mut out = Vec::with_capacity(16 * 1024);
        out.extend_from_slice(frame::PREFACE);
        frame::put_settings(
            &mut out,
            &[
                (setting::ENABLE_PUSH, 0),
                (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST as u32),
            ],
        );
        frame::put_window_update(&mut out, 0, CONNECTION_WINDOW - DEFAULT_WINDOW);
        Rc::new(Connection {
            state: RefCell::new(State {
                out,
                writer: None,
                waiting: Vec::new(),
                encoder: Encoder::new(),
                decoder: Decoder::new(DEFAULT_TABLE_SIZE),
                streams: HashMap::default(),
                next_id: 1,
                peer_max_streams: u32::MAX,
                peer_window: DEFAULT_WINDOW,
                peer_max_frame: DEFAULT_MAX_FRAME,
                send_window: i64::from(DEFAULT_WINDOW),
                recv_window: i64::from(CONNECTION_WINDOW),
                recv_consumed: 0,
                going_away: false,
                closing: false,
                closed: false,
                partial: None,
            }),
        })
    }

    /// New streams may be opened (not retired, not going away, not closed).
    pub fn is_usable(&self) -> bool {
        let s = self.state.borrow();
        !s.going_away && !s.closed
    }

    /// The endpoint's limit of concurrent streams (unlimited until it says).
    pub fn peer_max_streams(&self) -> usize {
        usize::try_from(self.state.borrow().peer_max_streams).unwrap_or(usize::MAX)
    }

    /// No new streams: the connection sends GOAWAY and closes once the open ones
    /// are done.
    pub fn retire(&self) {
        let mut s = self.state.borrow_mut();
        s.going_away = true;
        s.wake_writer();
    }

    /// Ready once a stream can be opened under the endpoint's limit; an error when
    /// the connection will take none (the request was not sent).
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<Result<(), StreamError>> {
        let mut s = self.state.borrow_mut();
        if s.going_away || s.closed {
            return Poll::Ready(Err(StreamError::Refused));
        }
        if (s.streams.len() as u64) < u64::from(s.peer_max_streams) {
            return Poll::Ready(Ok(()));
        }
        s.waiting.push(cx.waker().clone());
        Poll::Pending
    }

    /// Opens a stream: `encode(encoder, out)` appends the request's fields to the
    /// header block, which is framed (HEADERS, CONTINUATION) in the output;
    /// `end_stream`: the request has no body. Returns the stream's ID.
    pub fn open_stream(
        &self,
        end_stream: bool,
        head_request: bool,
        encode: impl FnOnce(&mut Encoder, &mut Vec<u8>),
    ) -> Result<u32, StreamError> {
        let mut s = self.state.borrow_mut();
        if s.going_away || s.closed {
            return Err(StreamError::Refused);
        }
        let id = s.next_id;
        if id > MAX_WINDOW - 2 {
            s.going_away = true;
        }
        s.next_id = id + 2;
        let s = &mut *s;
        let start = frame::begin_header_block(&mut s.out);
        s.encoder.begin_block(&mut s.out);
        encode(&mut s.encoder, &mut s.out);
        frame::frame_header_block(&mut s.out, start, id, end_stream, s.peer_max_frame);
        s.streams.insert(
            id,
            Stream {
                send_window: i64::from(s.peer_window),
                recv_window: i64::from(STREAM_WINDOW),
                sent_end: end_stream,
                head_request,
                ..Stream::default()
            },
        );
        s.wake_writer();
        Ok(id)
    }

    /// The response head of stream `id` once it came.
    pub fn poll_head(&self, id: u32, cx: &mut Context<'_>) -> Poll<Result<Head, StreamError>> {
        self.poll_stream(id, cx, |st| {
            let head = st.head.take()?;
            st.head_taken = true;
            Some(head)
        })
    }

    /// Whether the response of stream `id` ended with its head (no body follows).
    pub fn ended(&self, id: u32) -> bool {
        let s = self.state.borrow();
        s.streams
            .get(&id)
            .is_some_and(|st| st.end && st.data.is_empty() && st.trailers.is_none())
    }

    /// The DATA of stream `id` received so far, swapped into `buf` (emptied
    /// first): `Ready(Ok(true))` with data, `Ready(Ok(false))` at the end of the
    /// body. The bytes stay counted against the windows until [`release`](Self::release).
    pub fn poll_data(
        &self,
        id: u32,
        buf: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<bool, StreamError>> {
        self.poll_stream(id, cx, |st| {
            if !st.data.is_empty() {
                buf.clear();
                std::mem::swap(buf, &mut st.data);
                return Some(true);
            }
            st.end.then_some(false)
        })
    }

    /// The relay is done with `n` octets of stream `id`'s DATA: the endpoint may
    /// send that much more (WINDOW_UPDATEs once half a window was consumed).
    pub fn release(&self, id: u32, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let mut s = self.state.borrow_mut();
        let s = &mut *s;
        let mut reopened = false;
        if let Some(st) = s.streams.get_mut(&id) {
            st.held = st.held.saturating_sub(n);
            if !st.end && !st.reset {
                st.recv_consumed += n;
                if st.recv_consumed >= STREAM_WINDOW / 2 {
                    frame::put_window_update(&mut s.out, id, st.recv_consumed);
                    st.recv_window += i64::from(st.recv_consumed);
                    st.recv_consumed = 0;
                    reopened = true;
                }
            }
        }
        if reopened {
            s.wake_writer();
        }
        s.consumed(n);
    }

    /// The trailers of stream `id` after its body: `None` when there were none.
    pub fn poll_trailers(
        &self,
        id: u32,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<FieldList>, StreamError>> {
        self.poll_stream(id, cx, |st| st.end.then(|| st.trailers.take()))
    }

    /// What `ready` takes from stream `id` once it has it; else the stream's
    /// error, or pending until the reader wakes the stream (a stream no longer
    /// there is `Closed`).
    fn poll_stream<T>(
        &self,
        id: u32,
        cx: &mut Context<'_>,
        ready: impl FnOnce(&mut Stream) -> Option<T>,
    ) -> Poll<Result<T, StreamError>> {
        let mut s = self.state.borrow_mut();
        let Some(st) = s.streams.get_mut(&id) else {
            return Poll::Ready(Err(StreamError::Closed));
        };
        if let Some(value) = ready(st) {
            return Poll::Ready(Ok(value));
        }
        if let Some(e) = st.error {
            return Poll::Ready(Err(e));
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// How many octets of DATA stream `id` may send now (at most `want`, one
    /// frame): ready when both windows are open and the output has room;
    /// `Ready(Ok(0))` when the endpoint no longer wants the body (it answered in
    /// full and reset the stream with NO_ERROR).
    pub fn poll_send_capacity(
        &self,
        id: u32,
        want: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, StreamError>> {
        let mut s = self.state.borrow_mut();
        if s.closed || s.closing {
            return Poll::Ready(Err(StreamError::Closed));
        }
        let (conn_window, max_frame, out_len) = (s.send_window, s.peer_max_frame, s.out.len());
        let Some(st) = s.streams.get_mut(&id) else {
            return Poll::Ready(Err(StreamError::Closed));
        };
        if st.reset {
            return Poll::Ready(match st.error {
                None => Ok(0),
                Some(e) => Err(e),
            });
        }
        let window = conn_window.min(st.send_window);
        if window > 0 && out_len < OUTPUT_HIGH_WATER {
            let n = usize::try_from(window)
                .unwrap_or(0)
                .min(max_frame)
                .min(want);
            return Poll::Ready(Ok(n));
        }
        if window > 0 {
            s.waiting.push(cx.waker().clone());
        } else {
            st.send_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Sends `data` (within what [`poll_send_capacity`](Self::poll_send_capacity)
    /// allowed) on stream `id`, ending the stream when `end`.
    pub fn send_data(&self, id: u32, data: &[u8], end: bool) -> Result<(), StreamError> {
        let mut s = self.state.borrow_mut();
        let s = &mut *s;
        if s.closed || s.closing {
            return Err(StreamError::Closed);
        }
        let Some(st) = s.streams.get_mut(&id) else {
            return Err(StreamError::Closed);
        };
        if st.reset || st.sent_end {
            return Err(st.error.unwrap_or(StreamError::Closed));
        }
        let n = data.len() as i64;
        st.send_window -= n;
        st.sent_end = end;
        s.send_window -= n;
        frame::put_data(&mut s.out, id, data, end);
        s.wake_writer();
        Ok(())
    }

    /// The exchange is done with stream `id`: a stream still open is reset
    /// (CANCEL), its DATA's share of the connection window is given back, and its
    /// slot freed.
    pub fn close_stream(&self, id: u32) {
        let mut s = self.state.borrow_mut();
        let s = &mut *s;
        let Some(st) = s.streams.remove(&id) else {
            return;
        };
        if !(st.reset || s.closed || st.end && st.sent_end) {
            frame::put_rst_stream(&mut s.out, id, code::CANCEL);
        }
        s.consumed(st.held);
        s.wake_waiting();
        s.wake_writer();
    }
}

impl Stream {
    /// Wakes whoever waits on this stream: the exchange (head, DATA, trailers)
    /// and the upload (a window).
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        self.wake_sender();
    }

    /// Wakes the upload waiting for a window.
    fn wake_sender(&mut self) {
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
    }
}

impl State {
    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// `n` octets received on the connection are consumed.
    fn consumed(&mut self, n: u32) {
        self.recv_consumed = self.recv_consumed.saturating_add(n);
        if self.recv_consumed >= CONNECTION_WINDOW / 2 {
            frame::put_window_update(&mut self.out, 0, self.recv_consumed);
            self.recv_window += i64::from(self.recv_consumed);
            self.recv_consumed = 0;
            self.wake_writer();
        }
    }

    /// Wakes the tasks waiting for room (output drained, a stream slot freed).
    fn wake_waiting(&mut self) {
        for w in self.waiting.drain(..) {
            w.wake();
        }
    }

    /// A connection error (RFC 9113 §5.4.1): GOAWAY with `error`, then the
    /// connection ends once it is written.
    fn fail(&mut self, error: u32) {
        if !self.closing {
            frame::put_goaway(&mut self.out, 0, error);
        }
        self.closing = true;
        self.going_away = true;
        self.fail_streams(StreamError::Closed);
        self.wake_writer();
    }

    /// Every stream whose response is not complete fails with `e`.
    fn fail_streams(&mut self, e: StreamError) {
        for st in self.streams.values_mut() {
            if !st.end && st.error.is_none() {
                st.error = Some(e);
            }
            st.reset = true;
            st.wake();
        }
        self.wake_waiting();
    }

    /// A stream error (§5.4.2): the stream is reset with `error` and fails as
    /// malformed.
    fn reset_stream(&mut self, id: u32, error: u32) {
        frame::put_rst_stream(&mut self.out, id, error);
        if let Some(st) = self.streams.get_mut(&id) {
            st.reset = true;
            if st.error.is_none() {
                st.error = Some(StreamError::Malformed);
            }
            st.end = false;
            st.wake();
        }
        self.wake_writer();
    }

    /// The connection has ended: every stream not complete fails.
    fn end(&mut self) {
        self.closed = true;
        self.going_away = true;
        self.out.clear();
        self.fail_streams(StreamError::Closed);
    }
}
