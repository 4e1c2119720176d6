//! Replies the gateway writes itself: errors (`{"error": ..., "request_id": ...}`),
//! static `respond` routes, redirects and 405s.

use std::io::Write as _;

use crate::config::FixedResponse;
use crate::http::{finish_head, reason_phrase};
use crate::server::{ClientConn, Io};

use super::{Outcome, RequestId};

/// A reply built by the gateway.
pub struct LocalReply<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// Extra headers, e.g. `Allow` or `Location`.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Writes `reply` to the client.
pub async fn send_reply<S: Io>(
    conn: &mut ClientConn<S>,
    reply: &LocalReply<'_>,
    request_id: RequestId,
    keep_alive: bool,
) -> Outcome {
    let is_head = conn.head.is_head;
    let minor = conn.head.minor_version;
    let w = &mut conn.wbuf;
    w.clear();
    let _ = write!(
        w,
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
        reply.status,
        reason_phrase(reply.status),
        reply.content_type,
        reply.body.len()
    );
    for (name, value) in reply.headers {
        w.extend_from_slice(name.as_bytes());
        w.extend_from_slice(b": ");
        w.extend_from_slice(value);
        w.extend_from_slice(b"\r\n");
    }
    finish_head(
        w,
        &conn.response_headers,
        request_id.as_str(),
        keep_alive,
        minor,
    );
    if !is_head {
        w.extend_from_slice(reply.body);
    }
    write_out(conn, reply.status, request_id, keep_alive).await
}

/// Writes a JSON error reply naming `message` and the request ID.
pub async fn send_error<S: Io>(
    conn: &mut ClientConn<S>,
    status: u16,
    message: &str,
    request_id: RequestId,
    keep_alive: bool,
    headers: &[(&str, &[u8])],
) -> Outcome {
    let body = format!(
        "{{\"error\": \"{}\", \"request_id\": \"{}\"}}\n",
        message.escape_default(),
        request_id
    );
    let reply = LocalReply {
        status,
        content_type: "application/json",
        body: body.as_bytes(),
        headers,
    };
    send_reply(conn, &reply, request_id, keep_alive).await
}

/// Writes a route's static response.
pub async fn send_fixed<S: Io>(
    conn: &mut ClientConn<S>,
    fixed: &FixedResponse,
    request_id: RequestId,
    keep_alive: bool,
) -> Outcome {
    let is_head = conn.head.is_head;
    let minor = conn.head.minor_version;
    let w = &mut conn.wbuf;
    w.clear();
    w.extend_from_slice(&fixed.head);
    finish_head(
        w,
        &conn.response_headers,
        request_id.as_str(),
        keep_alive,
        minor,
    );
    if !is_head {
        w.extend_from_slice(&fixed.body);
    }
    write_out(conn, fixed.status, request_id, keep_alive).await
}

async fn write_out<S: Io>(
    conn: &mut ClientConn<S>,
    status: u16,
    request_id: RequestId,
    keep_alive: bool,
) -> Outcome {
    let len = conn.wbuf.len() as u64;
    let ok = conn.write_wbuf().await.is_ok();
    Outcome {
        status,
        bytes_sent: if ok { len } else { 0 },
        keep_alive: keep_alive && ok,
        upstream: None,
        request_id,
    }
}
