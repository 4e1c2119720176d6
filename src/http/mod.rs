//! The HTTP/1.1 codec: strict request-head parsing (RFC 9112, with the request
//! smuggling defences of §6), body framing, upstream response heads, and the
//! gateway's own error responses.
//!
//! This is the only module that knows the HTTP/1.1 wire format. It works on byte
//! slices and offsets into the connection's read buffer; it never does I/O.

mod body;
mod chunked;
mod error;
mod forwarded;
mod headers;
mod request;
mod response;
mod status;

pub use body::BodyProgress;
pub use chunked::{ChunkedError, ChunkedScanner};
pub use error::HttpError;
pub use forwarded::{
    finish_head, write_client_response, write_upstream_request, HeaderEdit, UpstreamRequest,
};
pub use headers::{is_hop_by_hop, ConnectionTokens};
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
