//! The HTTP/1.1 codec: strict request-head parsing (RFC 9112, with the request
//! smuggling defences of §6), body framing, upstream response heads, the heads a
//! proxied exchange writes, and the gateway's own replies; plus the
//! protocol-neutral parts the stages work with ([`HeaderLookup`], [`FieldList`],
//! [`LocalReply`]).
//!
//! This is the only module that knows the HTTP/1.1 wire format. It works on byte
//! slices and offsets into the connection's read buffer; it never does I/O.

mod body;
mod chunked;
mod client;
mod error;
mod fields;
mod forwarded;
mod headers;
mod reply;
mod request;
mod response;
mod status;

pub use body::{decode_whole, BodyProgress};
pub use chunked::{ChunkedError, ChunkedScanner};
pub use client::write_request_head;
pub use error::HttpError;
pub use fields::{FieldList, HeaderLookup};
pub use forwarded::{
    finish_head, write_client_response, write_upstream_request, HeaderEdit, TraceFields,
    UpstreamHeadMarks, UpstreamRequest,
};
pub use headers::{is_hop_by_hop, ConnectionTokens};
pub use reply::{
    write_local_reply, write_simple_response, write_simple_response_with, LocalReply, CONTINUE,
    OVERLOADED, OVERLOADED_NO_FD,
};
pub use request::{find_header, parse_request, HeadLimits, Parsed, RequestHead};
pub use response::{parse_response, ResponseHead};
pub use status::reason_phrase;

use std::ops::Range;

/// How the end of a message body is found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyFraming {
    #[default]
    None,
    Length(u64),
    Chunked,
    /// Responses only: the body ends when the upstream closes the connection.
    UntilClose,
}

/// One header line as offsets into the buffer the head was parsed from.
#[derive(Clone, Debug)]
pub struct HeaderRange {
    pub name: Range<usize>,
    pub value: Range<usize>,
}
