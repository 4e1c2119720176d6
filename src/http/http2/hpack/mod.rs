//! HPACK, HTTP/2's header compression (RFC 7541), for the gateway's own HTTP/2
//! client to upstreams (`crate::upstream::h2`): an [`Encoder`] for request blocks
//! and a [`Decoder`] for response blocks, each owning its side's dynamic table.
//! No I/O; blocks in, fields out (and the other way).

mod decoder;
mod encoder;
mod error;
pub mod huffman;
mod integer;
mod static_table;
mod table;

pub use decoder::Decoder;
pub use encoder::{Encoder, DEFAULT_TABLE_SIZE};
pub use error::DecodeError;
pub use integer::encode_int;
pub use table::ENTRY_OVERHEAD;

#[cfg(test)]
mod tests;
