//! HPACK encoding of request header blocks (RFC 7541 §6), for a gateway that sends
//! the same few fields to an upstream over and over: a field already in the static
//! or dynamic table is one index; a field worth keeping is sent once as a literal
//! with incremental indexing and is an index from then on; a field whose value
//! changes with every request (IDs, trace context, lengths, dates) or that carries
//! a secret (credentials, cookies) is a literal that does not enter the table
//! (secrets as never-indexed, §7.1.3). Strings are sent without Huffman coding: it
//! saves a fifth of a literal's octets at a cost per octet, and the literals the
//! table keeps are sent once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::integer::encode_int;
use super::static_table::{field_index, name_index, STATIC};
use super::table::DynamicTable;

/// The table size the encoder uses when the peer allows it (RFC 9113's default).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Fields longer than this (name + value) never enter the table: one would evict
/// most of it.
const MAX_INDEXED_FIELD: usize = 512;

/// The encoding side of one connection.
#[derive(Debug)]
pub struct Encoder {
    table: DynamicTable,
    /// Entry number of each (name, value) in the table, by their hash.
    numbers: HashMap<u64, u64, BuildHasherDefault<FieldHasher>>,
    /// A size update to announce at the start of the next block (§4.2).
    pending_update: Option<usize>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// An encoder with the default 4,096-octet table.
    pub fn new() -> Self {
        Encoder {
            table: DynamicTable::new(DEFAULT_TABLE_SIZE),
            numbers: HashMap::default(),
            pending_update: None,
        }
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE: the table shrinks to it (never grows
    /// past the default) and the change is announced in the next block.
    pub fn set_peer_limit(&mut self, limit: usize) {
        let size = limit.min(DEFAULT_TABLE_SIZE);
        if size != self.table.max_size() {
            self.table.set_max_size(size);
            self.pending_update = Some(size);
        }
    }

    /// Starts a header block in `out`: a pending table size update.
    pub fn begin_block(&mut self, out: &mut Vec<u8>) {
        if let Some(size) = self.pending_update.take() {
            encode_int(size, 5, 0x20, out);
        }
    }

    /// Appends the field `name: value` (`name` lowercase, already checked) to the
    /// block in `out`.
    pub fn field(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        if let Some(i) = field_index(name, value) {
            encode_int(i, 7, 0x80, out);
            return;
        }
        let kind = indexing(name, value);
        let hash = (kind == Indexing::Incremental).then(|| field_hash(name, value));
        if let Some(hash) = hash {
            if let Some(i) = self.dynamic_index(hash, name, value) {
                encode_int(STATIC.len() + i, 7, 0x80, out);
                return;
            }
        }
        let name_ref = name_index(name).unwrap_or(0);
        match kind {
            Indexing::Incremental => encode_int(name_ref, 6, 0x40, out),
            Indexing::Without => encode_int(name_ref, 4, 0x00, out),
            Indexing::Never => encode_int(name_ref, 4, 0x10, out),
        }
        if name_ref == 0 {
            put_string(name, out);
        }
        put_string(value, out);
        if let Some(hash) = hash {
            if let Some(number) = self.table.insert(name, value) {
                self.numbers.insert(hash, number);
            }
            if self.numbers.len() > 4 * DEFAULT_TABLE_SIZE / 32 {
                // Numbers of evicted entries: forget them now and then.
                let table = &self.table;
                self.numbers
                    .retain(|_, n| table.number_to_index(*n).is_some());
            }
        }
    }

    /// The dynamic index of `name: value` if the table holds it.
    fn dynamic_index(&self, hash: u64, name: &[u8], value: &[u8]) -> Option<usize> {
        let number = *self.numbers.get(&hash)?;
        let i = self.table.number_to_index(number)?;
        let e = self.table.get(i)?;
        (e.name() == name && e.value() == value).then_some(i)
    }
}

/// How a literal is sent (RFC 7541 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Indexing {
    Incremental,
    Without,
    Never,
}

/// Which literals enter the table: not the secrets, not those that differ on
/// every request, not large ones.
fn indexing(name: &[u8], value: &[u8]) -> Indexing {
    match name {
        b"authorization" | b"proxy-authorization" | b"cookie" | b"set-cookie" => Indexing::Never,
        b":path" if value.len() > 64 => Indexing::Without,
        b"content-length"
        | b"date"
        | b"x-request-id"
        | b"traceparent"
        | b"tracestate"
        | b"grpc-timeout"
        | b"if-none-match"
        | b"if-modified-since"
        | b"if-match"
        | b"if-unmodified-since"
        | b"range"
        | b"x-correlation-id"
        | b"x-amzn-trace-id"
        | b"x-b3-traceid"
        | b"x-b3-spanid"
        | b"x-b3-parentspanid"
        | b"b3"
        | b"etag"
        | b"x-cloud-trace-context"
        | b"baggage" => Indexing::Without,
        _ if name.len() + value.len() > MAX_INDEXED_FIELD => Indexing::Without,
        _ => Indexing::Incremental,
    }
}

/// A string literal without Huffman coding (§5.2).
fn put_string(s: &[u8], out: &mut Vec<u8>) {
    encode_int(s.len(), 7, 0, out);
    out.extend_from_slice(s);
}

/// A hash of name and value, eight bytes at a step (the multiply-rotate of
/// rustc's FxHasher); collisions only cost a missed index, as the entry is
/// compared before use.
fn field_hash(name: &[u8], value: &[u8]) -> u64 {
    let h = mix(0, name);
    mix(h.rotate_left(5) ^ 0xff, value)
}

fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let (words, tail) = bytes.as_chunks::<8>();
    for w in words {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(*w)).wrapping_mul(K);
    }
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    h = (h.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    (h.rotate_left(5) ^ bytes.len() as u64).wrapping_mul(K)
}

/// The map's hasher: its keys are hashes already.
#[derive(Default)]
struct FieldHasher(u64);

impl Hasher for FieldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = mix(self.0, bytes);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
