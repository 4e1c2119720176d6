//! What goes wrong reading a header block.

/// Why a header block does not decode: a COMPRESSION_ERROR for the connection
/// (RFC 9113 §4.3), with what went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);
