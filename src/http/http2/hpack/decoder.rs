//! HPACK decoding of a header block (RFC 7541 §6): indexed fields, literals with
//! and without indexing (Huffman-coded or not), and dynamic table size updates at
//! the block's start, bounded by the size this side announced.

use super::error::DecodeError;
use super::huffman;
use super::integer::decode_int;
use super::static_table::STATIC;
use super::table::DynamicTable;

/// The decoding side of one connection.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// The largest table size the peer may ask for (our SETTINGS_HEADER_TABLE_SIZE).
    limit: usize,
    name: Vec<u8>,
    value: Vec<u8>,
    /// Recently decoded Huffman strings: a peer that does not index its fields
    /// (nginx) sends the same `server` and `date` strings response after response.
    recent: HuffmanCache,
}

impl Decoder {
    /// A decoder whose peer may use a dynamic table of up to `limit` octets.
    pub fn new(limit: usize) -> Self {
        Decoder {
            table: DynamicTable::new(limit),
            limit,
            name: Vec::new(),
            value: Vec::new(),
            recent: HuffmanCache::default(),
        }
    }

    /// Decodes one whole header block, calling `field(name, value)` for each field
    /// in order. The whole block is always decoded (the table must stay in step
    /// with the peer's) even when the caller ignores what it gets.
    pub fn decode(
        &mut self,
        mut block: &[u8],
        field: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let mut at_start = true;
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                // §6.1 indexed field.
                let (index, rest) = decode_int(block, 7)?;
                block = rest;
                self.emit_indexed(index, field)?;
            } else if first & 0xc0 == 0x40 {
                // §6.2.1 literal with incremental indexing.
                let (index, rest) = decode_int(block, 6)?;
                block = self.read_literal(index, rest)?;
                field(&self.name, &self.value);
                self.table.insert(&self.name, &self.value);
            } else if first & 0xe0 == 0x20 {
                // §6.3 dynamic table size update: only before the first field.
                if !at_start {
                    return Err(DecodeError("table size update after a field"));
                }
                let (size, rest) = decode_int(block, 5)?;
                block = rest;
                if size > self.limit {
                    return Err(DecodeError("table size update past the limit"));
                }
                self.table.set_max_size(size);
                continue;
            } else {
                // §6.2.2 without indexing, §6.2.3 never indexed: 4-bit prefix.
                let (index, rest) = decode_int(block, 4)?;
                block = self.read_literal(index, rest)?;
                field(&self.name, &self.value);
            }
            at_start = false;
        }
        Ok(())
    }

    fn emit_indexed(
        &self,
        index: usize,
        field: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let (name, value) = entry(&self.table, index)?;
        field(name, value);
        Ok(())
    }

    /// Reads a literal's name (indexed when `index` > 0, else a string) and value
    /// into `self.name` and `self.value`; returns the rest of the block.
    fn read_literal<'b>(&mut self, index: usize, block: &'b [u8]) -> Result<&'b [u8], DecodeError> {
        self.name.clear();
        let block = if index == 0 {
            read_string(block, &mut self.name, &mut self.recent)?
        } else {
            let (name, _) = entry(&self.table, index)?;
            self.name.extend_from_slice(name);
            block
        };
        self.value.clear();
        read_string(block, &mut self.value, &mut self.recent)
    }
}

/// The field at HPACK index `index` (§2.3.3): the static table's first, then
/// `table`'s, newest first.
fn entry(table: &DynamicTable, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
    if index == 0 {
        return Err(DecodeError("index 0"));
    }
    if let Some(&(name, value)) = STATIC.get(index - 1) {
        return Ok((name, value));
    }
    let e = table
        .get(index - STATIC.len())
        .ok_or(DecodeError("index past the table"))?;
    Ok((e.name(), e.value()))
}

/// Reads one string literal (§5.2) into `out`; returns the rest of the block.
fn read_string<'b>(
    block: &'b [u8],
    out: &mut Vec<u8>,
    recent: &mut HuffmanCache,
) -> Result<&'b [u8], DecodeError> {
    let huffman_coded = block.first().is_some_and(|b| b & 0x80 != 0);
    let (len, rest) = decode_int(block, 7)?;
    if len > rest.len() {
        return Err(DecodeError("string past the block"));
    }
    let (bytes, rest) = rest.split_at(len);
    if huffman_coded {
        recent.decode(bytes, out)?;
    } else {
        out.extend_from_slice(bytes);
    }
    Ok(rest)
}

/// Slots of [`HuffmanCache`], and the longest string it keeps.
const CACHE_SLOTS: usize = 16;
const CACHE_MAX: usize = 64;

/// A few Huffman strings and their decoding, by length and last octet.
#[derive(Debug, Default)]
struct HuffmanCache {
    slots: [(Vec<u8>, Vec<u8>); CACHE_SLOTS],
}

impl HuffmanCache {
    /// Appends the decoding of `coded` to `out`, from the cache when it holds it.
    fn decode(&mut self, coded: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let Some(&last) = coded.last().filter(|_| coded.len() <= CACHE_MAX) else {
            return huffman::decode(coded, out).map_err(|_| DecodeError("bad Huffman string"));
        };
        let slot = &mut self.slots[(coded.len() ^ usize::from(last)) % CACHE_SLOTS];
        if slot.0 == coded {
            out.extend_from_slice(&slot.1);
            return Ok(());
        }
        let start = out.len();
        huffman::decode(coded, out).map_err(|_| DecodeError("bad Huffman string"))?;
        slot.0.clear();
        slot.0.extend_from_slice(coded);
        slot.1.clear();
        slot.1.extend_from_slice(&out[start..]);
        Ok(())
    }
}
