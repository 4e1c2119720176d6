//! The HPACK dynamic table (RFC 7541 §2.3.2, §4): fields in insertion order, the
//! newest at index 62, evicted oldest first when their size (name + value + 32
//! octets each) would pass the table's maximum.

use std::collections::VecDeque;

/// Octets every entry counts beyond its name and value (RFC 7541 §4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// One side's dynamic table.
#[derive(Debug, Default)]
pub struct DynamicTable {
    /// Newest first.
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
    /// Entries ever inserted: gives each entry a number that never changes.
    inserted: u64,
}

#[derive(Debug)]
pub struct Entry {
    /// Name then value, in one allocation.
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    pub fn name(&self) -> &[u8] {
        &self.bytes[..self.name_len]
    }

    pub fn value(&self) -> &[u8] {
        &self.bytes[self.name_len..]
    }

    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

impl DynamicTable {
    /// An empty table of at most `max` octets.
    pub fn new(max: usize) -> Self {
        DynamicTable {
            max,
            ..DynamicTable::default()
        }
    }

    /// The entry at dynamic index `i` (1 = newest; the HPACK index minus the static
    /// table's 61).
    pub fn get(&self, i: usize) -> Option<&Entry> {
        self.entries.get(i.checked_sub(1)?)
    }

    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Changes the maximum size, evicting what no longer fits.
    pub fn set_max_size(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    /// Inserts `name: value` as the newest entry, after evicting what it needs; an
    /// entry larger than the whole table empties it and is not kept (§4.4).
    /// Returns the entry's number, or `None` when it was not kept.
    pub fn insert(&mut self, name: &[u8], value: &[u8]) -> Option<u64> {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max {
            self.evict_to(0);
            return None;
        }
        self.evict_to(self.max - size);
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        let number = self.inserted;
        self.inserted += 1;
        self.entries.push_front(Entry {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        });
        self.size += size;
        Some(number)
    }

    /// The dynamic index (1 = newest) of the entry numbered `number`, while it is in
    /// the table.
    pub fn number_to_index(&self, number: u64) -> Option<usize> {
        let back = self.inserted.checked_sub(number)?;
        let i = usize::try_from(back).ok()?;
        (i >= 1 && i <= self.entries.len()).then_some(i)
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size(),
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}
