//! The hash map used for the route table's lookups by host and by path.
//!
//! Every key stored comes from the config; a request only probes. An attacker
//! therefore cannot fill a bucket, so the flood resistance of std's SipHash buys
//! nothing here, and an Fx-style word-at-a-time mix is several times faster on
//! the short keys (hosts, path prefixes) looked up per request.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from a byte-string key (lowercase host, normalized path) to `V`.
pub(super) type KeyMap<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<KeyHasher>>;

/// Fx-style hasher: rotate, xor a word, multiply.
#[derive(Default)]
pub(super) struct KeyHasher {
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
        let mut map: KeyMap<u8> = KeyMap::default();
        for (i, key) in ["/a", "/a\0", "/abcdefg", "/abcdefgh", "/abcdefgh/"]
            .iter()
            .enumerate()
        {
            map.insert(key.as_bytes().into(), i as u8);
        }
        assert_eq!(map.get(&b"/a"[..]), Some(&0));
        assert_eq!(map.get(&b"/a\0"[..]), Some(&1));
        assert_eq!(map.get(&b"/abcdefgh"[..]), Some(&3));
        assert_eq!(map.get(&b"/abcdefgh/"[..]), Some(&4));
        assert_eq!(map.get(&b"/b"[..]), None);
    }
}
