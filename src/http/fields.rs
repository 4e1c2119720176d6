//! Header fields as the stages see them, whatever protocol carried them: a read
//! view of a request's fields ([`HeaderLookup`]) and a small owned list of fields
//! the gateway adds to a message ([`FieldList`]). Neither spells a wire format:
//! the HTTP/1.1 writers of this module (and, later, HTTP/2 frames) render them.

use std::ops::Range;

/// Read access to a request's header fields, by lowercase name.
///
/// HTTP/1.1 heads implement it over offsets into the connection's buffer (no copy);
/// HTTP/2 streams will implement it over their decoded header list.
pub trait HeaderLookup {
    /// The value of the field `lowercase_name`, if the request has it. With repeated
    /// fields, the implementation decides which value is returned (HTTP/1.1: the
    /// first).
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]>;

    /// Calls `f(name, value)` for every field in order, repeated names included.
    /// Names are as the client spelled them (compare without case).
    fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8]));
}

/// An owned, ordered list of `(name, value)` fields in one buffer: what a stage adds
/// to a message (identity headers from verified claims, `RateLimit` fields, a static
/// response's configured headers). Appending allocates only when the buffer grows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldList {
    bytes: Vec<u8>,
    fields: Vec<(Range<usize>, Range<usize>)>,
}

impl FieldList {
    pub fn new() -> Self {
        FieldList::default()
    }

    /// An empty list with room for `bytes` octets of names and values and
    /// `fields` fields.
    pub fn with_capacity(bytes: usize, fields: usize) -> Self {
        FieldList {
            bytes: Vec::with_capacity(bytes),
            fields: Vec::with_capacity(fields),
        }
    }

    /// Appends one field. The caller has checked that `name` is a token and `value`
    /// holds no CR, LF or NUL (a field list is written as it is).
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let n = self.bytes.len()..self.bytes.len() + name.len();
        self.bytes.extend_from_slice(name);
        let v = self.bytes.len()..self.bytes.len() + value.len();
        self.bytes.extend_from_slice(value);
        self.fields.push((n, v));
    }

    /// Appends every field of `other`.
    pub fn extend(&mut self, other: &FieldList) {
        for (name, value) in other.iter() {
            self.push(name, value);
        }
    }

    /// The fields in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields
            .iter()
            .map(|(n, v)| (&self.bytes[n.clone()], &self.bytes[v.clone()]))
    }

    /// The value of the first field named `name` (any case).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Removes the fields whose name `drop` selects; returns how many went. The
    /// removed fields' bytes stay in the buffer until it is cleared.
    pub fn remove(&mut self, drop: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        let before = self.fields.len();
        let bytes = &self.bytes;
        self.fields.retain(|(n, _)| !drop(&bytes[n.clone()]));
        before - self.fields.len()
    }

    /// Empties the list, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.fields.clear();
    }
}

/// HTTP/2 fields as the `h2` crate decodes them (names lowercase, pseudo-fields
/// apart). With repeated names, `get` returns the first value.
impl HeaderLookup for ::http::HeaderMap {
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]> {
        let name = std::str::from_utf8(lowercase_name).ok()?;
        ::http::HeaderMap::get(self, name).map(::http::HeaderValue::as_bytes)
    }

    fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
        for (name, value) in self.iter() {
            f(name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

/// Removes the fields of `map` whose name `drop` selects, every value of each;
/// returns how many values went.
pub fn remove_from_map(map: &mut ::http::HeaderMap, drop: &mut dyn FnMut(&[u8]) -> bool) -> usize {
    let names: Vec<_> = map
        .keys()
        .filter(|n| drop(n.as_str().as_bytes()))
        .cloned()
        .collect();
    let mut removed = 0;
    for name in names {
        if let ::http::header::Entry::Occupied(e) = map.entry(name) {
            removed += e.remove_entry_mult().1.count();
        }
    }
    removed
}

/// A field list read as a request's fields (tests, and requests the gateway makes
/// itself).
impl HeaderLookup for FieldList {
    fn get(&self, lowercase_name: &[u8]) -> Option<&[u8]> {
        FieldList::get(self, lowercase_name)
    }

    fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
        for (name, value) in self.iter() {
            f(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_order_and_repeats() {
        let mut f = FieldList::new();
        f.push(b"a", b"1");
        f.push(b"B", b"2");
        f.push(b"a", b"3");
        let all: Vec<_> = f.iter().collect();
        assert_eq!(
            all,
            vec![(&b"a"[..], &b"1"[..]), (b"B", b"2"), (b"a", b"3")]
        );
        assert_eq!(f.get(b"b"), Some(&b"2"[..]));
        let mut g = FieldList::new();
        g.push(b"c", b"4");
        g.extend(&f);
        assert_eq!(g.len(), 4);
        g.clear();
        assert!(g.is_empty());
    }
}
