//! What the endpoint sends, frame by frame (RFC 9113 §6): each whole frame in the
//! read buffer goes to the stream it names or to the connection; a stream error
//! resets that stream, a connection error is returned for the driver to send as
//! GOAWAY (§5.4).

use crate::http::http2::frame::{
    self, code, flag, kind, setting, FrameHead, DEFAULT_MAX_FRAME, HEAD_LEN, MAX_WINDOW,
};

use super::block::BlockReader;
use super::{
    Head, PartialBlock, State, StreamError, MAX_HEADER_BLOCK, MAX_HEADER_LIST, OUTPUT_LIMIT,
};

impl State {
    /// Handles the whole frames at the start of `buf`; returns how many octets
    /// they took. An error is the code of a connection error.
    pub(super) fn receive(&mut self, buf: &[u8]) -> Result<usize, u32> {
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
        if self.out.len() > OUTPUT_LIMIT {
            return Err(code::ENHANCE_YOUR_CALM);
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
                        st.wake();
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
        let data = frame::unpad(&head, payload).ok_or(code::PROTOCOL_ERROR)?;
        let Some(st) = self.streams.get_mut(&head.stream) else {
            self.not_open(head.stream)?;
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
            st.wake();
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
        let content = frame::unpad(&head, payload).ok_or(code::PROTOCOL_ERROR)?;
        // After the padding's length, a PRIORITY flag's 5 octets (ignored).
        let skip = if head.has(flag::PRIORITY) { 5 } else { 0 };
        let fragment = content.get(skip..).ok_or(code::PROTOCOL_ERROR)?;
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
            // An even ID would be a stream the endpoint opened: push is off.
            if id.is_multiple_of(2) {
                return Err(code::PROTOCOL_ERROR);
            }
            return self.not_open(id);
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
        st.wake();
        Ok(())
    }

    /// A frame for stream `id`, which is not open: one we are done with is
    /// ignored; one we never opened (past the last ID we used) is a connection
    /// error (RFC 9113 §5.1).
    fn not_open(&self, id: u32) -> Result<(), u32> {
        if id >= self.next_id {
            Err(code::PROTOCOL_ERROR)
        } else {
            Ok(())
        }
    }

    fn peer_reset(&mut self, id: u32, error: u32) -> Result<(), u32> {
        if id == 0 {
            return Err(code::PROTOCOL_ERROR);
        }
        let Some(st) = self.streams.get_mut(&id) else {
            return self.not_open(id);
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
        st.wake();
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
                        st.wake_sender();
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
        self.wake_waiting();
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
                st.wake_sender();
            }
            return Ok(());
        }
        let Some(st) = self.streams.get_mut(&id) else {
            return self.not_open(id);
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
        st.wake_sender();
        Ok(())
    }
}

/// What becomes of a DATA frame that is not kept.
enum DataVerdict {
    /// The stream was reset already: the octets are consumed at once.
    Drop,
    /// A stream error with this code.
    Reset(u32),
}

/// The first four octets of a payload of 4 octets (RST_STREAM, WINDOW_UPDATE) or of
/// at least 8 (GOAWAY), big-endian.
fn four(payload: &[u8]) -> Option<u32> {
    let b: &[u8; 4] = payload.get(..4)?.try_into().ok()?;
    (payload.len() == 4 || payload.len() >= 8).then(|| u32::from_be_bytes(*b))
}
