//! One HTTP/1.1 request as a [`Downstream`]: the parsed head read in place from
//! the connection's buffer, the body pulled from it, and the response written in
//! HTTP/1.1 by `crate::http`. Keep-alive is decided in [`H1Request::keep_alive`].

use std::io;

use crate::config::Limits;
use crate::http::{
    self, write_chunk_head, write_client_response, write_last_chunk, write_local_reply,
    BodyFraming, BodyProgress, ChunkedScanner, FieldList, HeaderLookup, LocalReply, ResponseParts,
    CHUNK_END,
};

use super::super::tunnel::relay;
use super::super::{
    BodyError, BodySource, ConnInfo, Downstream, DrainSignal, Duplex, Piece, TunnelBytes, TunnelEnd,
};
use super::conn::{ClientConn, Io};

/// The request whose head `conn` holds, with its body and response state.
pub struct H1Request<'c, S> {
    conn: &'c mut ClientConn<S>,
    limits: &'c Limits,
    drain: &'c DrainSignal,
    /// The codec refused the head: the head accessors answer empty values.
    refused: bool,
    body: BodyProgress,
    continue_sent: bool,
    /// Decided when the response head is written; `false` closes after it.
    keep: bool,
    bytes_sent: u64,
    /// An HTTP/1.0 client of a chunked response: the payload is sent de-chunked.
    dechunk: Option<ChunkedScanner>,
    /// A response body of unknown length from an HTTP/2 upstream to an HTTP/1.1
    /// client: each piece is framed as a chunk here, and the last chunk ends it.
    frame_chunks: bool,
    /// The client said `TE: trailers` (noted before the head is consumed).
    te_trailers: Option<bool>,
}

impl<'c, S: Io> H1Request<'c, S> {
    /// The request whose head was just read into `conn`.
    pub fn new(conn: &'c mut ClientConn<S>, limits: &'c Limits, drain: &'c DrainSignal) -> Self {
        let body = BodyProgress::new(conn.head.body);
        H1Request {
            conn,
            limits,
            drain,
            refused: false,
            body,
            continue_sent: false,
            keep: false,
            bytes_sent: 0,
            dechunk: None,
            frame_chunks: false,
            te_trailers: None,
        }
    }

    /// A request the codec refused: only the reply to it is written.
    pub fn refused(
        conn: &'c mut ClientConn<S>,
        limits: &'c Limits,
        drain: &'c DrainSignal,
    ) -> Self {
        let mut r = H1Request::new(conn, limits, drain);
        r.refused = true;
        r.body = BodyProgress::new(BodyFraming::None);
        r
    }

    /// The connection may carry another request after this one.
    pub fn keep_alive(&self) -> bool {
        self.keep
    }

    /// Consumes the head (body bytes follow it), noting first what the response
    /// will need of it.
    fn consume_head(&mut self) {
        self.note_te_trailers();
        self.conn.consume_head();
    }

    /// Notes whether the client accepts trailers (`TE: trailers`, RFC 9110 §10.1.4),
    /// while the head can still be read.
    fn note_te_trailers(&mut self) {
        if self.te_trailers.is_none() && !self.conn.head_consumed {
            let te = self.get(b"te").unwrap_or(b"");
            let wants = te.split(|&b| b == b',').any(|t| {
                t.split(|&b| b == b';')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"trailers")
            });
            self.te_trailers = Some(wants);
        }
    }

    fn minor(&self) -> u8 {
        if self.refused {
            1
        } else {
            self.conn.head.minor_version
        }
    }

    fn field(&self, range: &std::ops::Range<usize>) -> &[u8] {
        if self.refused {
            return b"";
        }
        self.conn.head_bytes().get(range.clone()).unwrap_or(b"")
    }

    /// Keep-alive for a reply that did not read the body: the connection carries on
    /// only if there was no body, or all of it already arrived (it is skipped).
    fn keep_after_unread_body(&mut self) -> bool {
        if self.body.is_complete() {
            return true;
        }
        match self.conn.head.body {
            BodyFraming::Length(n) if !self.conn.head_consumed => {
                let buffered = self
                    .conn
                    .unread()
                    .len()
                    .saturating_sub(self.conn.head.head_len) as u64;
                if n <= buffered {
                    self.consume_head();
                    self.conn.consume(n as usize);
                    self.body = BodyProgress::new(BodyFraming::None);
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    /// The one keep-alive decision: what the client asked, the drain, the reply.
    fn decide_keep_alive(&mut self, allowed: bool) -> bool {
        self.keep = allowed
            && !self.refused
            && self.conn.head.keep_alive
            && !self.drain.is_raised()
            && self.keep_after_unread_body();
        self.keep
    }

    async fn write_out(&mut self) -> io::Result<()> {
        let len = self.conn.wbuf.len() as u64;
        let res = self.conn.write_wbuf().await;
        if res.is_ok() {
            self.bytes_sent += len;
        } else {
            self.keep = false;
        }
        res.map(|_| ())
    }

    /// Appends response body bytes to the write buffer: as they are, framed as a
    /// chunk (a body of unknown length from HTTP/2), or de-chunked for an HTTP/1.0
    /// client (the upstream's framing was checked by the relay).
    fn push_body(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = &mut self.conn.wbuf;
        match &mut self.dechunk {
            None if self.frame_chunks => {
                if !bytes.is_empty() {
                    write_chunk_head(w, bytes.len());
                    w.extend_from_slice(bytes);
                    w.extend_from_slice(CHUNK_END);
                }
            }
            None => w.extend_from_slice(bytes),
            Some(scanner) => {
                scanner
                    .scan_with(bytes, |data| w.extend_from_slice(data))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.reason()))?;
            }
        }
        Ok(())
    }

    /// `BodyProgress::advance` with the request's rules: broken chunk framing is a
    /// 400, a body growing past `max_body_bytes` a 413.
    fn advance_body(&mut self, input_len: usize) -> Result<usize, BodyError> {
        let start = self.conn.pos;
        let input = self.conn.rbuf.get(start..start + input_len).unwrap_or(&[]);
        let take = self
            .body
            .advance(input)
            .map_err(|e| BodyError::Malformed(e.reason()))?;
        if self.body.payload_bytes() > self.limits.max_body_bytes {
            return Err(BodyError::TooLarge);
        }
        Ok(take)
    }
}

impl<S: Io> HeaderLookup for H1Request<'_, S> {
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]> {
        if self.refused {
            return None;
        }
        self.conn
            .head
            .header(self.conn.head_bytes(), lowercase_name)
    }

    fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
        if self.refused {
            return;
        }
        let bytes = self.conn.head_bytes();
        for h in &self.conn.head.headers {
            if let (Some(name), Some(value)) =
                (bytes.get(h.name.clone()), bytes.get(h.value.clone()))
            {
                f(name, value);
            }
        }
    }
}

impl<S: Io> Downstream for H1Request<'_, S> {
    fn conn(&self) -> &ConnInfo {
        &self.conn.info
    }

    fn method(&self) -> &[u8] {
        self.field(&self.conn.head.method)
    }

    fn target(&self) -> &[u8] {
        self.field(&self.conn.head.target)
    }

    fn host(&self) -> Option<&[u8]> {
        if self.refused {
            return None;
        }
        let range = self.conn.head.host.clone()?;
        self.conn.head_bytes().get(range)
    }

    fn is_head(&self) -> bool {
        !self.refused && self.conn.head.is_head
    }

    fn http10(&self) -> bool {
        !self.refused && self.conn.head.minor_version == 0
    }

    fn remove_fields(&mut self, drop: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        if self.refused || self.conn.head_consumed {
            return 0;
        }
        let start = self.conn.pos;
        let bytes = self
            .conn
            .rbuf
            .get(start..start + self.conn.head.head_len)
            .unwrap_or(&[]);
        let before = self.conn.head.headers.len();
        self.conn
            .head
            .headers
            .retain(|h| !drop(bytes.get(h.name.clone()).unwrap_or(b"")));
        before - self.conn.head.headers.len()
    }

    async fn send_reply(
        &mut self,
        reply: &LocalReply<'_>,
        extra: &FieldList,
        request_id: &str,
    ) -> io::Result<()> {
        let keep = self.decide_keep_alive(!reply.close);
        let (minor, is_head) = (self.minor(), self.is_head());
        write_local_reply(
            &mut self.conn.wbuf,
            reply,
            extra,
            request_id,
            keep,
            minor,
            is_head,
        );
        self.write_out().await
    }

    async fn send_response_head(
        &mut self,
        head: &ResponseParts<'_>,
        body_prefix: &[u8],
        extra: &FieldList,
        request_id: &str,
    ) -> io::Result<()> {
        let minor = self.minor();
        // A close-delimited body ends only when the connection does, and an
        // HTTP/1.0 client cannot read chunked framing: both close after.
        let unframed_for_10 =
            minor == 0 && matches!(head.body, BodyFraming::Chunked | BodyFraming::EndStream);
        let framing_allows = head.body != BodyFraming::UntilClose && !unframed_for_10;
        if head.body == BodyFraming::EndStream {
            self.note_te_trailers();
        }
        let keep = self.decide_keep_alive(framing_allows);
        write_client_response(&mut self.conn.wbuf, head, extra, request_id, keep, minor);
        if head.body == BodyFraming::Chunked && minor == 0 {
            self.dechunk = Some(ChunkedScanner::new());
        }
        self.frame_chunks = head.body == BodyFraming::EndStream && minor == 1 && !self.is_head();
        self.push_body(body_prefix)?;
        self.write_out().await
    }

    async fn send_piece(&mut self, piece: Piece) -> (io::Result<()>, Piece) {
        if self.dechunk.is_some() || self.frame_chunks {
            self.conn.wbuf.clear();
            let pushed = self.push_body(&piece.buf[piece.range.clone()]);
            let res = match pushed {
                Ok(()) => self.write_out().await,
                Err(e) => Err(e),
            };
            return (res, piece);
        }
        let Piece { buf, range } = piece;
        let (res, buf) = self.conn.write_range(buf, range.clone()).await;
        match &res {
            Ok(_) => self.bytes_sent += range.len() as u64,
            Err(_) => self.keep = false,
        }
        (res.map(|_| ()), Piece { buf, range })
    }

    async fn finish_response(&mut self, trailers: Option<&dyn HeaderLookup>) -> io::Result<()> {
        if !self.frame_chunks {
            return Ok(());
        }
        self.frame_chunks = false;
        let trailers = trailers.filter(|_| self.te_trailers == Some(true));
        self.conn.wbuf.clear();
        write_last_chunk(&mut self.conn.wbuf, trailers);
        self.write_out().await
    }

    fn abort(&mut self) {
        self.keep = false;
    }

    async fn tunnel<U: Duplex>(
        &mut self,
        upstream: &mut U,
        upstream_early: &[u8],
        idle: std::time::Duration,
    ) -> (TunnelEnd, TunnelBytes) {
        self.keep = false;
        self.consume_head();
        // What the client sent after its upgrade request is the tunnel's already.
        let client_early = self.conn.unread().to_vec();
        self.conn.consume(client_early.len());
        let io = &mut self.conn.io;
        let (end, bytes) = relay(
            io,
            &client_early,
            upstream,
            upstream_early,
            idle,
            self.drain,
        )
        .await;
        self.bytes_sent += bytes.to_client;
        (end, bytes)
    }

    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
}

impl<S: Io> BodySource for H1Request<'_, S> {
    fn body_framing(&self) -> BodyFraming {
        if self.refused {
            BodyFraming::None
        } else {
            self.conn.head.body
        }
    }

    fn is_complete(&self) -> bool {
        self.body.is_complete()
    }

    fn take_buffered(&mut self, out: &mut Vec<u8>) -> Result<(), BodyError> {
        self.consume_head();
        if self.body.is_complete() || self.conn.unread().is_empty() {
            return Ok(());
        }
        let take = self.advance_body(self.conn.unread().len())?;
        let start = self.conn.pos;
        out.extend_from_slice(&self.conn.rbuf[start..start + take]);
        self.conn.consume(take);
        Ok(())
    }

    async fn next_piece(&mut self) -> Result<Option<Piece>, BodyError> {
        self.consume_head();
        if self.body.is_complete() {
            return Ok(None);
        }
        // No interim responses to an HTTP/1.0 client (RFC 9110 §15.2).
        if self.conn.head.expect_continue
            && self.conn.head.minor_version == 1
            && !self.continue_sent
            && self.conn.unread().is_empty()
        {
            self.continue_sent = true;
            self.conn.wbuf.clear();
            self.conn.wbuf.extend_from_slice(http::CONTINUE);
            if self.conn.write_wbuf().await.is_err() {
                return Err(BodyError::Closed);
            }
        }
        if self.conn.unread().is_empty() {
            match monoio::time::timeout(self.limits.body_read_timeout, self.conn.fill_for_body())
                .await
            {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Err(BodyError::Closed),
                Err(_) => return Err(BodyError::TimedOut),
            }
        }
        let take = self.advance_body(self.conn.unread().len())?;
        let start = self.conn.pos;
        let buf = std::mem::take(&mut self.conn.rbuf);
        Ok(Some(Piece {
            buf,
            range: start..start + take,
        }))
    }

    fn give_back(&mut self, piece: Piece) {
        self.conn.rbuf = piece.buf;
        self.conn.consume(piece.range.len());
    }
}
