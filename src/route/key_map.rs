//! The map behind the route table's lookups by host and by path.
//!
//! Every key stored comes from the config; a request only probes. An attacker
//! therefore cannot fill a bucket, so the flood resistance of std's SipHash buys
//! nothing here, and an Fx-style word-at-a-time mix is several times faster on
//! the short keys (hosts, paths) looked up per request. Most probes miss (a
//! path is probed at every `/`), so the map also remembers which key lengths it
//! holds and answers a miss on any other length without hashing.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from a byte-string key (lowercase host, normalized path) to `V`.
#[derive(Debug)]
pub(super) struct KeyMap<V> {
    map: HashMap<Box<[u8]>, V, BuildHasherDefault<KeyHasher>>,
    /// `has_len[n]`: some key is `n` bytes long.
    has_len: Vec<bool>,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            map: HashMap::default(),
            has_len: Vec::new(),
        }
    }
}

impl<V> KeyMap<V> {
    #[inline]
    pub(super) fn get(&self, key: &[u8]) -> Option<&V> {
        if self.has_len.get(key.len()) != Some(&true) {
            return None;
        }
        self.map.get(key)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<V: Default> KeyMap<V> {
    /// The value for `key`, inserted as `V::default()` if absent.
    pub(super) fn entry(&mut self, key: &[u8]) -> &mut V {
        if self.has_len.len() <= key.len() {
            self.has_len.resize(key.len() + 1, false);
        }
        self.has_len[key.len()] = true;
        self.map.entry(key.into()).or_default()
    }
}

/// Fx-style hasher: rotate, xor a word, multiply.
#[derive(Default)]
struct KeyHasher {
    hash: u64,
}

const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.add(u64::from_le_bytes(buf));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut buf = [0u8; 8];
            buf[..tail.len()].copy_from_slice(tail);
            self.add(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_differ_only_in_length_or_tail_are_distinct() {
        let mut map: KeyMap<usize> = KeyMap::default();
        for (i, key) in ["/a", "/a\0", "/abcdefg", "/abcdefgh", "/abcdefgh/"]
            .iter()
            .enumerate()
        {
            *map.entry(key.as_bytes()) = i;
        }
        assert_eq!(map.get(b"/a"), Some(&0));
        assert_eq!(map.get(b"/a\0"), Some(&1));
        assert_eq!(map.get(b"/abcdefgh"), Some(&3));
        assert_eq!(map.get(b"/abcdefgh/"), Some(&4));
        assert_eq!(map.get(b"/b"), None);
        assert_eq!(map.get(b"/abcdefghijk"), None);
        assert_eq!(map.get(b""), None);
    }
}
