//! A small blocking HTTP/1.1 client for the exporter thread: POSTs to the OTLP
//! collector over one keep-alive connection (opened again when the collector
//! closed it), with the head written and the answer read by `crate::http`'s codec.
//! It runs on the exporter's own thread, never on a worker.

use std::io::{IoSlice, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::http::{parse_response, write_request_head, BodyProgress, FieldList, ResponseHead};
use crate::observe::OtlpEndpoint;

/// Largest answer read from the collector (head and body).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The collector's answer to one POST.
pub struct Answer {
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// A connection (when open) to the collector.
pub struct CollectorClient {
    endpoint: OtlpEndpoint,
    authority: String,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl CollectorClient {
    pub fn new(endpoint: OtlpEndpoint) -> Self {
        CollectorClient {
            authority: endpoint.authority(),
            endpoint,
            conn: None,
            buf: Vec::new(),
        }
    }

    /// POSTs the body made of `body`'s parts, one after the other (written with
    /// `writev(2)`, never copied into one buffer), with `content_type`, within
    /// `timeout` in all. A kept-alive connection the collector had closed is
    /// replaced once, before any answer.
    pub fn post(
        &mut self,
        content_type: &str,
        body: &[&[u8]],
        timeout: Duration,
    ) -> Result<Answer, String> {
        let deadline = Instant::now() + timeout;
        let mut fields = FieldList::new();
        fields.push(b"content-type", content_type.as_bytes());
        fields.push(
            b"user-agent",
            concat!("portico/", env!("CARGO_PKG_VERSION")).as_bytes(),
        );
        let mut head = Vec::with_capacity(256);
        write_request_head(
            &mut head,
            "POST",
            &self.endpoint.path,
            &self.authority,
            &fields,
            Some(body.iter().map(|part| part.len()).sum()),
        );
        let mut request = Vec::with_capacity(1 + body.len());
        request.push(head.as_slice());
        request.extend_from_slice(body);
        let reused = self.conn.is_some();
        match self.exchange(&request, deadline) {
            Err(Failure::Stale) if reused => {
                self.conn = None;
                self.exchange(&request, deadline)
            }
            other => other,
        }
        .map_err(|f| match f {
            Failure::Stale => "the collector closed the connection".to_string(),
            Failure::Other(e) => e,
        })
    }

    fn exchange(&mut self, request: &[&[u8]], deadline: Instant) -> Result<Answer, Failure> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect(deadline)?,
        };
        set_deadline(&conn, deadline)?;
        if write_all_parts(&mut conn, request).is_err() {
            return Err(Failure::Stale);
        }
        self.buf.clear();
        let mut head = ResponseHead::default();
        loop {
            match parse_response(&self.buf, false, &mut head) {
                Ok(Some(())) if head.status >= 200 => break,
                Ok(Some(())) => {
                    self.buf.drain(..head.head_len);
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::Other(e.to_string())),
            }
            if self.read_more(&mut conn, deadline)? == 0 {
                return Err(if self.buf.is_empty() {
                    Failure::Stale
                } else {
                    Failure::Other("the collector closed the connection mid-answer".into())
                });
            }
        }
        let mut progress = BodyProgress::new(head.body);
        let mut body_at = head.head_len;
        let mut body = Vec::new();
        loop {
            let taken = progress
                .advance(&self.buf[body_at..])
                .map_err(|e| Failure::Other(e.reason().to_string()))?
                .consumed;
            body.extend_from_slice(&self.buf[body_at..body_at + taken]);
            body_at += taken;
            if progress.is_complete() {
                break;
            }
            if self.read_more(&mut conn, deadline)? == 0 {
                progress.close();
                if progress.is_complete() {
                    break;
                }
                return Err(Failure::Other(
                    "the collector's answer was cut short".into(),
                ));
            }
        }
        let body = crate::http::decode_whole(head.body, &body)
            .map_err(|e| Failure::Other(e.to_string()))?;
        if head.keep_alive && !progress.ends_at_close() && body_at == self.buf.len() {
            self.conn = Some(conn);
        }
        Ok(Answer {
            status: head.status,
            body,
        })
    }

    fn read_more(&mut self, conn: &mut TcpStream, deadline: Instant) -> Result<usize, Failure> {
        if self.buf.len() > MAX_ANSWER_BYTES {
            return Err(Failure::Other("the collector's answer is too large".into()));
        }
        set_deadline(conn, deadline)?;
        let mut chunk = [0u8; 8192];
        loop {
            match conn.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionReset && self.buf.is_empty() =>
                {
                    return Ok(0)
                }
                Err(e) => return Err(Failure::Other(format!("reading the answer: {e}"))),
            }
        }
    }

    fn connect(&self, deadline: Instant) -> Result<TcpStream, Failure> {
        let conn = crate::side_net::connect(&self.endpoint.host, self.endpoint.port, deadline)
            .map_err(Failure::Other)?;
        let _ = conn.set_nodelay(true);
        Ok(conn)
    }
}

/// Writes `parts` one after the other with `writev(2)`, at most `IOV_MAX` (1,024)
/// at a time.
fn write_all_parts(conn: &mut TcpStream, parts: &[&[u8]]) -> std::io::Result<()> {
    const IOV_MAX: usize = 1024;
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|part| !part.is_empty())
        .map(|part| IoSlice::new(part))
        .collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        let upto = left.len().min(IOV_MAX);
        match conn.write_vectored(&left[..upto]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

enum Failure {
    /// The connection was closed before any answer (a kept-alive one may be).
    Stale,
    Other(String),
}

fn set_deadline(conn: &TcpStream, deadline: Instant) -> Result<(), Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::Other("timed out".into()));
    }
    conn.set_read_timeout(Some(left))
        .and_then(|()| conn.set_write_timeout(Some(left)))
        .map_err(|e| Failure::Other(e.to_string()))
}
