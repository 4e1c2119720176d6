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

use std::cell::{RefCell, UnsafeCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use crate::http::http2::frame::{
    self, code, flag, kind, setting, FrameHead, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, HEAD_LEN,
    MAX_WINDOW,
};
use crate::http::http2::hpack::{Decoder, Encoder, DEFAULT_TABLE_SIZE, ENTRY_OVERHEAD};
use crate::http::FieldList;

use super::super::stream::UpstreamStream;

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
    streams: HashMap<u32, Stream, BuildHasherDefault<StreamIdHasher>>,
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

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.state.borrow().streams.len()
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
        let mut s = self.state.borrow_mut();
        let Some(st) = s.streams.get_mut(&id) else {
            return Poll::Ready(Err(StreamError::Closed));
        };
        if let Some(head) = st.head.take() {
            st.head_taken = true;
            return Poll::Ready(Ok(head));
        }
        if let Some(e) = st.error {
            return Poll::Ready(Err(e));
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
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
        let mut s = self.state.borrow_mut();
        let Some(st) = s.streams.get_mut(&id) else {
            return Poll::Ready(Err(StreamError::Closed));
        };
        if !st.data.is_empty() {
            buf.clear();
            std::mem::swap(buf, &mut st.data);
            return Poll::Ready(Ok(true));
        }
        if st.end {
            return Poll::Ready(Ok(false));
        }
        if let Some(e) = st.error {
            return Poll::Ready(Err(e));
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The relay is done with `n` octets of stream `id`'s DATA: the endpoint may
    /// send that much more (WINDOW_UPDATEs once half a window was consumed).
    pub fn release(&self, id: u32, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let mut s = self.state.borrow_mut();
        let s = &mut *s;
        if let Some(st) = s.streams.get_mut(&id) {
            st.held = st.held.saturating_sub(n);
            if !st.end && !st.reset {
                st.recv_consumed += n;
                if st.recv_consumed >= STREAM_WINDOW / 2 {
                    frame::put_window_update(&mut s.out, id, st.recv_consumed);
                    st.recv_window += i64::from(st.recv_consumed);
                    st.recv_consumed = 0;
                    if let Some(w) = s.writer.take() {
                        w.wake();
                    }
                }
            }
        }
        s.consumed(n);
    }

    /// The trailers of stream `id` after its body: `None` when there were none.
    pub fn poll_trailers(
        &self,
        id: u32,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<FieldList>, StreamError>> {
        let mut s = self.state.borrow_mut();
        let Some(st) = s.streams.get_mut(&id) else {
            return Poll::Ready(Err(StreamError::Closed));
        };
        if st.end {
            return Poll::Ready(Ok(st.trailers.take()));
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
        for w in s.waiting.drain(..) {
            w.wake();
        }
        s.wake_writer();
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

    fn wake_stream(st: &mut Stream) {
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        if let Some(w) = st.send_waker.take() {
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
            State::wake_stream(st);
        }
        for w in self.waiting.drain(..) {
            w.wake();
        }
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
            State::wake_stream(st);
        }
        self.wake_writer();
    }

    /// Handles the whole frames at the start of `buf`; returns how many octets
    /// they took. An error is the code of a connection error.
    fn receive(&mut self, buf: &[u8]) -> Result<usize, u32> {
        let mut at = 0;
        while let Some(head) = FrameHead::parse(&buf[at..]) {
            if head.len > DEFAULT_MAX_FRAME {
                return Err(code::FRAME_SIZE_ERROR);
            }
            let end = at + HEAD_LEN + head.len;
            let Some(payload) = buf.get(at + HEAD_LEN..end) else {
                break;
            };
            self.frame(head, payload)?;
            at = end;
        }
        Ok(at)
    }

    fn frame(&mut self, head: FrameHead, payload: &[u8]) -> Result<(), u32> {
        if self.partial.is_some() && head.kind != kind::CONTINUATION {
            return Err(code::PROTOCOL_ERROR);
        }
        match head.kind {
            kind::DATA => self.data(head, payload),
            kind::HEADERS => self.headers(head, payload),
            kind::CONTINUATION => self.continuation(head, payload),
            kind::RST_STREAM => {
                let error = four(payload).ok_or(code::FRAME_SIZE_ERROR)?;
                self.peer_reset(head.stream, error)
            }
            kind::SETTINGS => self.settings(head, payload),
            kind::PING => {
                let data: &[u8; 8] = payload.try_into().map_err(|_| code::FRAME_SIZE_ERROR)?;
                if head.stream != 0 {
                    return Err(code::PROTOCOL_ERROR);
                }
                if !head.has(flag::ACK) {
                    frame::put_ping_ack(&mut self.out, data);
                    self.wake_writer();
                }
                Ok(())
            }
            kind::GOAWAY => {
                if head.stream != 0 || payload.len() < 8 {
                    return Err(code::PROTOCOL_ERROR);
                }
                let last = four(payload).unwrap_or(0) & MAX_WINDOW;
                self.going_away = true;
                for (&id, st) in self.streams.iter_mut() {
                    if id > last && st.error.is_none() {
                        st.error = Some(StreamError::Refused);
                        st.reset = true;
                        State::wake_stream(st);
                    }
                }
                self.wake_writer();
                Ok(())
            }
            kind::WINDOW_UPDATE => {
                let inc = four(payload).ok_or(code::FRAME_SIZE_ERROR)? & MAX_WINDOW;
                self.window_update(head.stream, inc)
            }
            kind::PUSH_PROMISE => Err(code::PROTOCOL_ERROR),
            kind::PRIORITY => {
                if head.stream == 0 {
                    return Err(code::PROTOCOL_ERROR);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn data(&mut self, head: FrameHead, payload: &[u8]) -> Result<(), u32> {
        if head.stream == 0 {
            return Err(code::PROTOCOL_ERROR);
        }
        let len = payload.len() as u32;
        if i64::from(len) > self.recv_window {
            return Err(code::FLOW_CONTROL_ERROR);
        }
        self.recv_window -= i64::from(len);
        let pad = frame::unpad(&head, payload).ok_or(code::PROTOCOL_ERROR)?;
        let data = if head.has(flag::PADDED) {
            &payload[1..payload.len() - pad]
        } else {
            payload
        };
        let next_id = self.next_id;
        let Some(st) = self.streams.get_mut(&head.stream) else {
            if head.stream >= next_id {
                return Err(code::PROTOCOL_ERROR);
            }
            // A stream we are done with: the octets are consumed at once.
            self.consumed(len);
            return Ok(());
        };
        let verdict = if st.reset {
            DataVerdict::Drop
        } else if (!st.head_taken && st.head.is_none()) || st.end {
            DataVerdict::Reset(code::PROTOCOL_ERROR)
        } else if i64::from(len) > st.recv_window {
            DataVerdict::Reset(code::FLOW_CONTROL_ERROR)
        } else {
            st.recv_window -= i64::from(len);
            st.held += data.len() as u32;
            st.data.extend_from_slice(data);
            st.received += data.len() as u64;
            let end = head.has(flag::END_STREAM);
            let too_long = st.content_length.is_some_and(|cl| st.received > cl);
            let too_short = end && st.content_length.is_some_and(|cl| st.received != cl);
            if end {
                st.end = true;
            }
            State::wake_stream(st);
            // Padding is consumed now; the payload when the relay gives it back.
            self.consumed(len - data.len() as u32);
            if too_long || too_short {
                // Kept (the stream gives its octets back when it goes), but the
                // body does not match its content-length (§8.1.1).
                self.reset_stream(head.stream, code::PROTOCOL_ERROR);
            }
            return Ok(());
        };
        if let DataVerdict::Reset(error) = verdict {
            self.reset_stream(head.stream, error);
        }
        self.consumed(len);
        Ok(())
    }

    fn headers(&mut self, head: FrameHead, payload: &[u8]) -> Result<(), u32> {
        if head.stream == 0 {
            return Err(code::PROTOCOL_ERROR);
        }
        let pad = frame::unpad(&head, payload).ok_or(code::PROTOCOL_ERROR)?;
        let mut start = usize::from(head.has(flag::PADDED));
        if head.has(flag::PRIORITY) {
            start += 5;
        }
        let end = payload.len() - pad;
        if start > end {
            return Err(code::PROTOCOL_ERROR);
        }
        let fragment = &payload[start..end];
        let end_stream = head.has(flag::END_STREAM);
        if head.has(flag::END_HEADERS) {
            return self.header_block(head.stream, fragment, end_stream);
        }
        self.partial = Some(PartialBlock {
            stream: head.stream,
            end_stream,
            block: fragment.to_vec(),
        });
        Ok(())
    }

    fn continuation(&mut self, head: FrameHead, payload: &[u8]) -> Result<(), u32> {
        let Some(partial) = self.partial.as_mut() else {
            return Err(code::PROTOCOL_ERROR);
        };
        if partial.stream != head.stream {
            return Err(code::PROTOCOL_ERROR);
        }
        partial.block.extend_from_slice(payload);
        if partial.block.len() > MAX_HEADER_BLOCK {
            return Err(code::PROTOCOL_ERROR);
        }
        if head.has(flag::END_HEADERS) {
            if let Some(p) = self.partial.take() {
                return self.header_block(p.stream, &p.block, p.end_stream);
            }
        }
        Ok(())
    }

    /// A whole header block for `id`: a response head (informational ones
    /// skipped) or trailers.
    fn header_block(&mut self, id: u32, block: &[u8], end_stream: bool) -> Result<(), u32> {
        let mut read = BlockReader::default();
        self.decoder
            .decode(block, &mut |n, v| read.field(n, v))
            .map_err(|_| code::COMPRESSION_ERROR)?;
        let Some(st) = self.streams.get_mut(&id) else {
            if id >= self.next_id || id.is_multiple_of(2) {
                return Err(code::PROTOCOL_ERROR);
            }
            return Ok(());
        };
        if st.reset {
            return Ok(());
        }
        let response_started = st.head.is_some() || st.head_taken;
        let valid = match (response_started, read.status) {
            _ if read.malformed || read.size > MAX_HEADER_LIST => false,
            // A head: final, or informational without END_STREAM (101 has no
            // place in HTTP/2, §8.6).
            (false, Some(status)) => status >= 200 || (status != 101 && !end_stream),
            // Trailers: no pseudo-fields, and they end the stream.
            (true, None) => end_stream && !st.end,
            _ => false,
        };
        if !valid {
            self.reset_stream(id, code::PROTOCOL_ERROR);
            return Ok(());
        }
        if response_started {
            st.trailers = Some(read.fields);
            st.end = true;
            if st.content_length.is_some_and(|cl| cl != st.received) {
                self.reset_stream(id, code::PROTOCOL_ERROR);
                return Ok(());
            }
        } else if let Some(status) = read.status.filter(|&s| s >= 200) {
            if !st.head_request && status != 204 && status != 304 {
                st.content_length = read.content_length;
            }
            st.head = Some(Head {
                status,
                fields: read.fields,
                content_length: read.content_length,
            });
            st.end = end_stream;
            if end_stream && st.content_length.is_some_and(|cl| cl != 0) {
                self.reset_stream(id, code::PROTOCOL_ERROR);
                return Ok(());
            }
        }
        State::wake_stream(st);
        Ok(())
    }

    fn peer_reset(&mut self, id: u32, error: u32) -> Result<(), u32> {
        if id == 0 {
            return Err(code::PROTOCOL_ERROR);
        }
        let Some(st) = self.streams.get_mut(&id) else {
            return if id >= self.next_id {
                Err(code::PROTOCOL_ERROR)
            } else {
                Ok(())
            };
        };
        st.reset = true;
        // A response already complete stands: NO_ERROR only stops the request
        // body (§8.1).
        if !st.end && st.error.is_none() {
            st.error = Some(if error == code::REFUSED_STREAM {
                StreamError::Refused
            } else {
                StreamError::Reset(error)
            });
        }
        State::wake_stream(st);
        Ok(())
    }

    fn settings(&mut self, head: FrameHead, payload: &[u8]) -> Result<(), u32> {
        if head.stream != 0 {
            return Err(code::PROTOCOL_ERROR);
        }
        if head.has(flag::ACK) {
            return if payload.is_empty() {
                Ok(())
            } else {
                Err(code::FRAME_SIZE_ERROR)
            };
        }
        if !payload.len().is_multiple_of(6) {
            return Err(code::FRAME_SIZE_ERROR);
        }
        for s in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                setting::HEADER_TABLE_SIZE => {
                    self.encoder.set_peer_limit(value as usize);
                }
                setting::ENABLE_PUSH if value > 0 => return Err(code::PROTOCOL_ERROR),
                setting::MAX_CONCURRENT_STREAMS => self.peer_max_streams = value,
                setting::INITIAL_WINDOW_SIZE => {
                    if value > MAX_WINDOW {
                        return Err(code::FLOW_CONTROL_ERROR);
                    }
                    let delta = i64::from(value) - i64::from(self.peer_window);
                    self.peer_window = value;
                    for st in self.streams.values_mut() {
                        st.send_window += delta;
                        if st.send_window > i64::from(MAX_WINDOW) {
                            return Err(code::FLOW_CONTROL_ERROR);
                        }
                        if let Some(w) = st.send_waker.take() {
                            w.wake();
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(DEFAULT_MAX_FRAME as u32..=(1 << 24) - 1).contains(&value) {
                        return Err(code::PROTOCOL_ERROR);
                    }
                    self.peer_max_frame = value as usize;
                }
                _ => {}
            }
        }
        frame::put_settings_ack(&mut self.out);
        for w in self.waiting.drain(..) {
            w.wake();
        }
        self.wake_writer();
        Ok(())
    }

    fn window_update(&mut self, id: u32, inc: u32) -> Result<(), u32> {
        if id == 0 {
            if inc == 0 {
                return Err(code::PROTOCOL_ERROR);
            }
            self.send_window += i64::from(inc);
            if self.send_window > i64::from(MAX_WINDOW) {
                return Err(code::FLOW_CONTROL_ERROR);
            }
            for st in self.streams.values_mut() {
                if let Some(w) = st.send_waker.take() {
                    w.wake();
                }
            }
            return Ok(());
        }
        let Some(st) = self.streams.get_mut(&id) else {
            return if id >= self.next_id {
                Err(code::PROTOCOL_ERROR)
            } else {
                Ok(())
            };
        };
        if inc == 0 {
            self.reset_stream(id, code::PROTOCOL_ERROR);
            return Ok(());
        }
        st.send_window += i64::from(inc);
        if st.send_window > i64::from(MAX_WINDOW) {
            self.reset_stream(id, code::FLOW_CONTROL_ERROR);
            return Ok(());
        }
        if let Some(w) = st.send_waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// The connection has ended: every stream not complete fails.
    fn end(&mut self) {
        self.closed = true;
        self.going_away = true;
        self.out.clear();
        self.fail_streams(StreamError::Closed);
    }
}

/// What becomes of a DATA frame that is not kept.
enum DataVerdict {
    /// The stream was reset already: the octets are consumed at once.
    Drop,
    /// A stream error with this code.
    Reset(u32),
}

/// Stream IDs hashed by one multiplication (they are distinct odd numbers).
#[derive(Default)]
struct StreamIdHasher(u64);

impl Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A decoded header block checked as a response head or trailers (RFC 9113 §8.3,
/// §8.2): one `:status` before any field, lowercase names, no connection-specific
/// fields, values without CR, LF, NUL or surrounding whitespace.
struct BlockReader {
    status: Option<u16>,
    fields: FieldList,
    content_length: Option<u64>,
    size: usize,
    malformed: bool,
}

impl Default for BlockReader {
    fn default() -> Self {
        BlockReader {
            status: None,
            fields: FieldList::with_capacity(256, 8),
            content_length: None,
            size: 0,
            malformed: false,
        }
    }
}

impl BlockReader {
    fn field(&mut self, name: &[u8], value: &[u8]) {
        self.size += name.len() + value.len() + ENTRY_OVERHEAD;
        if self.malformed || self.size > MAX_HEADER_LIST {
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            let status = (pseudo == b"status" && self.status.is_none() && self.fields.is_empty())
                .then(|| three_digits(value))
                .flatten();
            match status {
                Some(s) => self.status = Some(s),
                None => self.malformed = true,
            }
            return;
        }
        let bad_name = name.is_empty() || !name.iter().all(|&b| NAME_BYTE[usize::from(b)]);
        let bad_value = !crate::text::every_word(value, no_cr_lf_nul)
            || value.first().is_some_and(|b| *b == b' ' || *b == b'\t')
            || value.last().is_some_and(|b| *b == b' ' || *b == b'\t');
        let connection_specific = matches!(
            name,
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
        );
        if bad_name || bad_value || connection_specific {
            self.malformed = true;
            return;
        }
        if name == b"content-length" {
            match (decimal(value), self.content_length) {
                (Some(n), None) => self.content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => {
                    self.malformed = true;
                    return;
                }
            }
        }
        self.fields.push(name, value);
    }
}

/// The bytes a field name may hold in HTTP/2: a token's, lowercase (RFC 9113
/// §8.2.1, RFC 9110 §5.6.2).
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let allowed = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz";
    let mut i = 0;
    while i < allowed.len() {
        t[allowed[i] as usize] = true;
        i += 1;
    }
    t
};

/// No byte of the word is CR, LF or NUL (the zero-byte test on the word and on
/// it xored with each).
fn no_cr_lf_nul(w: u64) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LOW) & !x & HIGH != 0;
    !(zero(w) || zero(w ^ (LOW * 0x0d)) || zero(w ^ (LOW * 0x0a)))
}

/// A decimal number of 1 to 19 digits (a `content-length`; RFC 9110 §8.6).
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

fn three_digits(v: &[u8]) -> Option<u16> {
    match v {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

fn four(payload: &[u8]) -> Option<u32> {
    let b: &[u8; 4] = payload.get(..4)?.try_into().ok()?;
    (payload.len() == 4 || payload.len() >= 8).then(|| u32::from_be_bytes(*b))
}

/// Runs `conn` over `io` until it ends: the endpoint closed it, I/O failed, a
/// connection error was sent, or it was retired and its last stream finished.
/// Every stream still open then fails.
pub async fn drive(conn: Rc<Connection>, mut io: UpstreamStream) {
    let cell = UnsafeCell::from_mut(&mut io);
    // SAFETY: one read and one write at a time, each by its own loop (`Duplex`:
    // TCP, and the TLS stream's reads never write while a write is in flight);
    // both borrows end with this function.
    let (reader, writer) = unsafe { (&mut *cell.get(), &mut *cell.get()) };
    let mut reading = pin!(read_loop(&conn, reader));
    let mut writing = pin!(write_loop(&conn, writer));
    monoio::select! {
        _ = &mut reading => {}
        _ = &mut writing => {}
    }
    conn.state.borrow_mut().end();
}

/// Reads frames and hands them to the connection's state, until the endpoint
/// closes or reading fails; after a connection error it waits for the writer.
async fn read_loop(conn: &Connection, io: &mut UpstreamStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER);
    loop {
        if buf.capacity() - buf.len() < DEFAULT_MAX_FRAME {
            buf.reserve(READ_BUFFER);
        }
        let len = buf.len();
        let (read, slice) = io.read(buf.slice_mut(len..)).await;
        buf = slice.into_inner();
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let received = conn.state.borrow_mut().receive(&buf);
        let taken = match received {
            Ok(n) => n,
            Err(error) => {
                conn.state.borrow_mut().fail(error);
                std::future::pending::<()>().await;
                return;
            }
        };
        buf.drain(..taken);
    }
}

/// Writes what gathers in the connection's output, one write per wake-up, until
/// writing fails or the connection is closing and everything was written.
async fn write_loop(conn: &Connection, io: &mut UpstreamStream) {
    let mut spare: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        let ready = poll_fn(|cx| {
            let mut s = conn.state.borrow_mut();
            if !s.out.is_empty() {
                return Poll::Ready(true);
            }
            if s.closing {
                return Poll::Ready(false);
            }
            if s.going_away && s.streams.is_empty() {
                frame::put_goaway(&mut s.out, 0, code::NO_ERROR);
                s.closing = true;
                return Poll::Ready(true);
            }
            s.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !ready {
            return;
        }
        let out = {
            let mut s = conn.state.borrow_mut();
            std::mem::replace(&mut s.out, std::mem::take(&mut spare))
        };
        let (written, mut out) = io.write_all(out).await;
        if written.is_err() {
            return;
        }
        out.clear();
        spare = out;
        let mut s = conn.state.borrow_mut();
        for w in s.waiting.drain(..) {
            w.wake();
        }
    }
}

/// Feeds `bytes` to a fresh connection with three streams open, as if the
/// endpoint had sent them, then takes what each stream got: for the fuzz target
/// `h2_client` (fuzz/), which only asks that nothing panics. Returns whether the
/// bytes were a connection error.
#[doc(hidden)]
pub fn feed_for_fuzzing(bytes: &[u8]) -> bool {
    let conn = Connection::new();
    let ids: Vec<u32> = (0..3)
        .filter_map(|i| {
            conn.open_stream(i == 0, i == 1, |e, out| e.field(b":method", b"GET", out))
                .ok()
        })
        .collect();
    let failed = {
        let mut s = conn.state.borrow_mut();
        let mut at = 0;
        let mut failed = false;
        // In reads of up to 100 octets and then the rest, as a socket might give.
        while at < bytes.len() && !failed {
            let end = (at + 100).min(bytes.len());
            match s.receive(&bytes[at..end]) {
                Ok(0) if end == bytes.len() => break,
                Ok(0) => at = bytes.len().min(at + 1),
                Ok(n) => at += n,
                Err(e) => {
                    s.fail(e);
                    failed = true;
                }
            }
        }
        failed
    };
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut buf = Vec::new();
    for id in ids {
        let _ = conn.poll_head(id, &mut cx);
        if let Poll::Ready(Ok(true)) = conn.poll_data(id, &mut buf, &mut cx) {
            conn.release(id, buf.len());
        }
        let _ = conn.poll_trailers(id, &mut cx);
        if let Poll::Ready(Ok(n)) = conn.poll_send_capacity(id, 10, &mut cx) {
            let _ = conn.send_data(id, &vec![0; n], true);
        }
        conn.close_stream(id);
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::http2::hpack::Encoder;

    fn frames(build: impl FnOnce(&mut Vec<u8>, &mut Encoder)) -> Vec<u8> {
        let mut out = Vec::new();
        build(&mut out, &mut Encoder::new());
        out
    }

    fn head(out: &mut Vec<u8>, e: &mut Encoder, id: u32, fields: &[(&[u8], &[u8])], end: bool) {
        let start = frame::begin_header_block(out);
        for (n, v) in fields {
            e.field(n, v, out);
        }
        frame::frame_header_block(out, start, id, end, DEFAULT_MAX_FRAME);
    }

    #[test]
    fn a_response_reaches_its_stream_and_a_false_length_resets_it() {
        let conn = Connection::new();
        let a = conn
            .open_stream(true, false, |e, o| e.field(b":method", b"GET", o))
            .unwrap();
        let b = conn
            .open_stream(true, false, |e, o| e.field(b":method", b"GET", o))
            .unwrap();
        let bytes = frames(|out, e| {
            frame::put_settings(out, &[(setting::MAX_CONCURRENT_STREAMS, 7)]);
            head(
                out,
                e,
                a,
                &[(b":status", b"200"), (b"content-length", b"5")],
                false,
            );
            frame::put_data(out, a, b"hello", true);
            head(
                out,
                e,
                b,
                &[(b":status", b"200"), (b"content-length", b"9")],
                false,
            );
            frame::put_data(out, b, b"short", true);
        });
        let taken = conn.state.borrow_mut().receive(&bytes).unwrap();
        assert_eq!(taken, bytes.len());
        assert_eq!(conn.peer_max_streams(), 7);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let Poll::Ready(Ok(h)) = conn.poll_head(a, &mut cx) else {
            panic!("no head")
        };
        assert_eq!((h.status, h.content_length), (200, Some(5)));
        let mut buf = Vec::new();
        assert!(matches!(
            conn.poll_data(a, &mut buf, &mut cx),
            Poll::Ready(Ok(true))
        ));
        assert_eq!(buf, b"hello");
        assert!(matches!(
            conn.poll_data(a, &mut buf, &mut cx),
            Poll::Ready(Ok(false))
        ));
        // Stream b's body is shorter than its content-length: reset, and an error
        // once the bytes it did get are taken.
        assert!(matches!(conn.poll_head(b, &mut cx), Poll::Ready(Ok(_))));
        assert!(matches!(
            conn.poll_data(b, &mut buf, &mut cx),
            Poll::Ready(Ok(true))
        ));
        assert_eq!(
            conn.poll_data(b, &mut buf, &mut cx),
            Poll::Ready(Err(StreamError::Malformed))
        );
        let out = conn.state.borrow().out.clone();
        let rst = out.windows(4).any(|w| w == [0, 0, 4, kind::RST_STREAM]);
        assert!(rst, "a RST_STREAM was queued");
    }

    #[test]
    fn goaway_refuses_the_streams_above_its_last_and_push_is_a_connection_error() {
        let conn = Connection::new();
        let a = conn
            .open_stream(true, false, |e, o| e.field(b":method", b"GET", o))
            .unwrap();
        let b = conn
            .open_stream(true, false, |e, o| e.field(b":method", b"GET", o))
            .unwrap();
        let mut bytes = Vec::new();
        frame::put_goaway(&mut bytes, a, code::NO_ERROR);
        conn.state.borrow_mut().receive(&bytes).unwrap();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            conn.poll_head(b, &mut cx),
            Poll::Ready(Err(StreamError::Refused))
        ));
        assert!(conn.poll_head(a, &mut cx).is_pending());
        assert!(!conn.is_usable());
        let mut push = Vec::new();
        frame::put_head(&mut push, 4, kind::PUSH_PROMISE, flag::END_HEADERS, a);
        push.extend_from_slice(&[0, 0, 0, 2]);
        assert_eq!(
            conn.state.borrow_mut().receive(&push),
            Err(code::PROTOCOL_ERROR)
        );
        assert!(!feed_for_fuzzing(&bytes));
        assert!(feed_for_fuzzing(&push));
    }
}
