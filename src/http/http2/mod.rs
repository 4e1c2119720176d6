//! HTTP/2's wire format for the gateway's own client to upstreams
//! (`crate::upstream::h2`): frames ([`frame`], RFC 9113 §4, §6) and header
//! compression ([`hpack`], RFC 7541). No I/O. Client connections are served by the
//! `h2` crate (`crate::downstream::h2`; docs/http2.md says why the two differ).

pub mod frame;
pub mod hpack;
