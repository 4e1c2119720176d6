//! A bounded map from key bytes to a value that evicts the least recently used
//! entry when full, and counts evictions.
//!
//! Entries live in a slab threaded by a doubly linked list (most recent at the
//! head); the hash map points into the slab. Lookups that find an entry move it to
//! the head: O(1) everywhere. A [`Slot`] names an entry and goes stale when that
//! entry is evicted, so a queue can refer to entries without keeping them alive.
//!
//! Keys may come from clients (header values), so the hash is std's SipHash with a
//! random seed.

use std::collections::HashMap;

const NIL: u32 = u32::MAX;

/// A handle to an entry, valid until the entry is evicted or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    index: u32,
    generation: u32,
}

struct Node<V> {
    key: Box<[u8]>,
    value: V,
    prev: u32,
    next: u32,
    generation: u32,
}

pub struct LruMap<V> {
    index: HashMap<Box<[u8]>, u32>,
    nodes: Vec<Node<V>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    capacity: usize,
    evictions: u64,
}

impl<V> LruMap<V> {
    /// A map holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> LruMap<V> {
        LruMap {
            index: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.clamp(1, u32::MAX as usize - 1),
            evictions: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Entries evicted to make room, since the map was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// The entry for `key`, marked most recently used.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<(Slot, &mut V)> {
        let i = *self.index.get(key)?;
        self.touch(i);
        let node = &mut self.nodes[i as usize];
        Some((
            Slot {
                index: i,
                generation: node.generation,
            },
            &mut node.value,
        ))
    }

    /// The entry for `key`, made with `make` if absent (evicting the least recently
    /// used entry when full); marked most recently used.
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> (Slot, &mut V) {
        if let Some(&i) = self.index.get(key) {
            self.touch(i);
            let node = &mut self.nodes[i as usize];
            let slot = Slot {
                index: i,
                generation: node.generation,
            };
            return (slot, &mut node.value);
        }
        if self.index.len() >= self.capacity {
            self.evict_oldest();
        }
        let boxed: Box<[u8]> = key.into();
        let value = make();
        let i = match self.free.pop() {
            Some(i) => {
                let node = &mut self.nodes[i as usize];
                node.key = boxed.clone();
                node.value = value;
                node.generation = node.generation.wrapping_add(1);
                i
            }
            None => {
                self.nodes.push(Node {
                    key: boxed.clone(),
                    value,
                    prev: NIL,
                    next: NIL,
                    generation: 0,
                });
                (self.nodes.len() - 1) as u32
            }
        };
        self.index.insert(boxed, i);
        self.push_front(i);
        let node = &mut self.nodes[i as usize];
        (
            Slot {
                index: i,
                generation: node.generation,
            },
            &mut node.value,
        )
    }

    /// The entry a slot names, if it is still there (does not change recency).
    pub fn get_slot_mut(&mut self, slot: Slot) -> Option<(&[u8], &mut V)> {
        let node = self.nodes.get_mut(slot.index as usize)?;
        if node.generation != slot.generation || !self.index.contains_key(&node.key) {
            return None;
        }
        Some((&node.key, &mut node.value))
    }

    /// Removes the entry a slot names.
    pub fn remove_slot(&mut self, slot: Slot) -> Option<Box<[u8]>> {
        let node = self.nodes.get(slot.index as usize)?;
        if node.generation != slot.generation {
            return None;
        }
        self.index.remove(&node.key)?;
        self.unlink(slot.index);
        self.free.push(slot.index);
        let node = &mut self.nodes[slot.index as usize];
        node.generation = node.generation.wrapping_add(1);
        Some(std::mem::take(&mut node.key))
    }

    fn evict_oldest(&mut self) {
        let i = self.tail;
        if i == NIL {
            return;
        }
        let generation = self.nodes[i as usize].generation;
        if self
            .remove_slot(Slot {
                index: i,
                generation,
            })
            .is_some()
        {
            self.evictions += 1;
        }
    }

    fn touch(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        let n = &mut self.nodes[i as usize];
        n.prev = NIL;
        n.next = NIL;
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        if old == NIL {
            self.tail = i;
        } else {
            self.nodes[old as usize].prev = i;
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut m = LruMap::new(2);
        m.get_or_insert_with(b"a", || 1);
        m.get_or_insert_with(b"b", || 2);
        assert!(m.get_mut(b"a").is_some(), "a is now the most recent");
        m.get_or_insert_with(b"c", || 3);
        assert!(m.get_mut(b"b").is_none(), "b was the oldest");
        assert_eq!(m.get_mut(b"a").map(|(_, v)| *v), Some(1));
        assert_eq!(m.get_mut(b"c").map(|(_, v)| *v), Some(3));
        assert_eq!(m.len(), 2);
        assert_eq!(m.evictions(), 1);
    }

    #[test]
    fn slots_go_stale_when_their_entry_leaves() {
        let mut m = LruMap::new(1);
        let (a, _) = m.get_or_insert_with(b"a", || 1);
        assert_eq!(
            m.get_slot_mut(a).map(|(k, v)| (k.to_vec(), *v)),
            Some((b"a".to_vec(), 1))
        );
        m.get_or_insert_with(b"b", || 2);
        assert!(
            m.get_slot_mut(a).is_none(),
            "a was evicted; its slot now holds b"
        );
        let (b, _) = m.get_or_insert_with(b"b", || 0);
        assert_eq!(m.remove_slot(b).as_deref(), Some(&b"b"[..]));
        assert!(m.is_empty());
        assert!(m.remove_slot(b).is_none());
    }

    #[test]
    fn many_inserts_stay_bounded() {
        let mut m = LruMap::new(100);
        for i in 0..10_000u32 {
            m.get_or_insert_with(&i.to_be_bytes(), || i);
        }
        assert_eq!(m.len(), 100);
        assert_eq!(m.evictions(), 9_900);
        assert!(m.get_mut(&9_899u32.to_be_bytes()).is_none());
        assert!(m.get_mut(&9_900u32.to_be_bytes()).is_some());
    }
}
