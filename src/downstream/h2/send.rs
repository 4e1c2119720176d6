//! Writing a response on an HTTP/2 stream: heads as `http` types (fields that stop
//! at this hop dropped, names lowercased), and DATA within the client's flow-control
//! window, so a client that does not read holds back only one window's worth.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::task::Poll;
use std::time::Duration;

use ::h2::SendStream;
use ::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

use crate::http::{is_hop_by_hop, ConnectionTokens, FieldList, HeaderLookup};

/// Adds `(name, value)` to `map` unless HTTP/2 cannot carry it: a hop-by-hop field
/// (or one `Connection` lists), a name or value that is not valid (skipped rather
/// than failing the response).
pub fn add_field(
    map: &mut HeaderMap,
    connection: &ConnectionTokens<'_>,
    name: &[u8],
    value: &[u8],
) {
    if is_hop_by_hop(name) || (!connection.is_empty() && connection.contains(name)) {
        return;
    }
    if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
        map.append(name, value);
    }
}

/// The field names a `Connection` field of `fields` lists.
pub fn connection_tokens(fields: &dyn HeaderLookup) -> ConnectionTokens<'_> {
    let mut tokens = ConnectionTokens::default();
    fields.each(&mut |name, value| {
        if name.eq_ignore_ascii_case(b"connection") {
            tokens.add(value);
        }
    });
    tokens
}

/// Appends the fields every response carries: the pipeline's (`extra`) and the
/// request ID.
pub fn add_closing_fields(map: &mut HeaderMap, extra: &FieldList, request_id: &str) {
    let none = ConnectionTokens::default();
    for (name, value) in extra.iter() {
        add_field(map, &none, name, value);
    }
    if let Ok(id) = HeaderValue::from_str(request_id) {
        map.insert(HeaderName::from_static("x-request-id"), id);
    }
}

/// Sends `data` on the stream in `stream` as the peer's window allows, ending the
/// stream after it when `end`; `data` is consumed from the front as it goes out, so
/// a send dropped half-way (a select) leaves exactly what was not sent. Waiting for
/// window longer than `stall` (no byte moved) fails, as does a reset stream or a
/// failed connection. The cell is borrowed only between awaits, so a reset watch
/// may poll the same stream.
pub async fn send_data(
    stream: &RefCell<Option<SendStream<Bytes>>>,
    data: &mut Bytes,
    end: bool,
    stall: Duration,
) -> io::Result<()> {
    let gone = || io::Error::from(io::ErrorKind::BrokenPipe);
    if data.is_empty() {
        let mut s = stream.borrow_mut();
        let chunk = std::mem::take(data);
        return s
            .as_mut()
            .ok_or_else(gone)?
            .send_data(chunk, end)
            .map_err(io::Error::other);
    }
    while !data.is_empty() {
        stream
            .borrow_mut()
            .as_mut()
            .ok_or_else(gone)?
            .reserve_capacity(data.len());
        let capacity = poll_fn(|cx| match stream.borrow_mut().as_mut() {
            Some(s) => s.poll_capacity(cx),
            None => Poll::Ready(None),
        });
        let n = match monoio::time::timeout(stall, capacity).await {
            Ok(Some(Ok(n))) => n.min(data.len()),
            Ok(Some(Err(e))) => return Err(io::Error::other(e)),
            Ok(None) => return Err(gone()),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        };
        if n == 0 {
            continue;
        }
        let chunk = data.split_to(n);
        stream
            .borrow_mut()
            .as_mut()
            .ok_or_else(gone)?
            .send_data(chunk, end && data.is_empty())
            .map_err(io::Error::other)?;
    }
    Ok(())
}
