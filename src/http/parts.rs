//! A response head as parts, whichever protocol carried it: what an upstream
//! exchange hands the client side (HTTP/1.1 responses parsed by `response.rs`,
//! HTTP/2 responses decoded by the `h2` crate) and what both client protocols
//! render (`forwarded.rs` as HTTP/1.1 text, `crate::downstream::h2` as HEADERS).

use super::{BodyFraming, HeaderLookup};

/// A response head: status, the reason phrase if the protocol has one, every field
/// as received (the writer drops the ones that stop at this hop), and how the body
/// that follows is framed — which also says how its pieces are encoded
/// ([`BodyFraming`]).
#[derive(Clone, Copy)]
pub struct ResponseParts<'a> {
    pub status: u16,
    /// The HTTP/1.1 reason phrase as received; empty from HTTP/2 (the writer then
    /// uses the standard phrase).
    pub reason: &'a [u8],
    pub fields: &'a dyn HeaderLookup,
    pub body: BodyFraming,
}
