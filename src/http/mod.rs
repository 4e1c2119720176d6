//! The HTTP/1.1 codec: strict request-head parsing (RFC 9112, with the request
//! smuggling defences of §6), the request's one validated authority
//! (`authority.rs`, `target.rs`), the names the gateway owns in every spelling
//! (`headers.rs`), body framing (a request's chunked trailers left out), upstream
//! response heads, the heads a proxied exchange writes, and the gateway's own
//! replies; plus the protocol-neutral parts the stages and both protocols work with
//! ([`HeaderLookup`], [`FieldList`], [`LocalReply`], [`ResponseParts`], and the gRPC
//! status of a reply, [`grpc`]).
//!
//! This is the only module that knows the HTTP/1.1 wire format. It works on byte
//! slices and offsets into the connection's read buffer; it never does I/O. HTTP/2
//! frames and HPACK for the gateway's client to upstreams are [`http2`]'s; client
//! connections' HTTP/2 is the `h2` crate's (`crate::downstream::h2`).

mod authority;
mod body;
mod chunked;
mod client;
mod error;
mod fields;
mod forwarded;
mod framing;
pub mod grpc;
mod headers;
pub mod http2;
mod parts;
mod reply;
mod request;
mod response;
mod status;
mod target;

pub use authority::{authority_host, check_authority, https_location};
pub use body::{decode_whole, BodyProgress, BodyStep};
pub use chunked::{ChunkedError, ChunkedScanner, Scan};
pub use client::write_request_head;
pub use error::HttpError;
pub use fields::{remove_from_map, FieldList, HeaderLookup};
pub use forwarded::{
    finish_head, write_client_response, write_upstream_request, HeaderEdit, TraceFields,
    UpstreamHeadMarks, UpstreamRequest,
};
pub use framing::{write_chunk_head, write_last_chunk, CHUNK_END};
pub use headers::{
    has_prefix_folded, is_gateway_owned, is_hop_by_hop, is_tchar, is_token, same_name,
    screen_field_name, ConnectionTokens, UnderscoreHeaders,
};
pub use parts::ResponseParts;
pub use reply::{
    write_local_reply, write_simple_response, write_simple_response_with, LocalReply, CONTINUE,
    OVERLOADED, OVERLOADED_NO_FD,
};
pub(crate) use request::parse_length;
pub use request::{find_header, parse_request, HeadFields, HeadLimits, Parsed, RequestHead};
pub use response::{parse_response, FieldRanges, ResponseHead};
pub use status::reason_phrase;

use std::ops::Range;

/// How the end of a message body is found, and so how the pieces of a body that
/// passes through are encoded: `Chunked` pieces are HTTP/1.1 chunked framing (passed
/// byte for byte between HTTP/1.1 peers); all others are payload. The side that
/// writes a body in another protocol converts it: an HTTP/1.1 writer frames
/// `EndStream` payload as chunks, an HTTP/2 writer de-chunks `Chunked` pieces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyFraming {
    #[default]
    None,
    Length(u64),
    Chunked,
    /// Responses only: the body ends when the upstream closes the connection.
    UntilClose,
    /// An HTTP/2 message without `content-length`: payload of unknown length that
    /// ends with its stream (END_STREAM).
    EndStream,
}

/// One header line as offsets into the buffer the head was parsed from.
#[derive(Clone, Debug)]
pub struct HeaderRange {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// Where `part`, a slice httparse returned for `buf`, lies in `buf`. httparse may
/// return an empty slice that is not inside `buf` (a status line without a reason
/// phrase): that, or anything else outside `buf`, is the empty range `0..0`.
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if start <= buf.len() && end <= buf.len() => start..end,
        _ => 0..0,
    }
}
