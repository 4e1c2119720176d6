//! Request IDs: the client's `X-Request-Id` when it is sane, else one generated here.
//!
//! Generated IDs are 24 lowercase hex digits: 8 from a per-process random prefix,
//! 2 for the worker, 14 from the worker's counter. Unique per process without any
//! coordination between workers.

use std::cell::Cell;
use std::fmt;

/// Longest client-supplied ID that is kept.
const MAX_ID_BYTES: usize = 64;

/// A request ID, stored inline.
#[derive(Clone, Copy)]
pub struct RequestId {
    bytes: [u8; MAX_ID_BYTES],
    len: u8,
}

impl RequestId {
    /// The ID's bytes (ASCII: `[A-Za-z0-9._:-]`), for writers that take bytes
    /// (forwarded fields, the access log, spans) and need no UTF-8 check.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (see `from_client` and `RequestIds::next`).
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }

    /// An empty ID, for connections that end before any request.
    pub fn none() -> Self {
        RequestId {
            bytes: [0; MAX_ID_BYTES],
            len: 0,
        }
    }

    /// Keeps a client's ID when it is 1–64 characters of `[A-Za-z0-9._:-]`.
    pub fn from_client(value: &[u8]) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= MAX_ID_BYTES
            && value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b));
        if !ok {
            return None;
        }
        let mut id = RequestId::none();
        id.bytes[..value.len()].copy_from_slice(value);
        id.len = value.len() as u8;
        Some(id)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One worker's ID generator.
pub struct RequestIds {
    prefix: u32,
    worker: u8,
    counter: Cell<u64>,
}

impl RequestIds {
    pub fn new(worker: usize) -> Self {
        RequestIds {
            prefix: process_prefix(),
            worker: worker as u8,
            counter: Cell::new(0),
        }
    }

    pub fn next(&self) -> RequestId {
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        let mut id = RequestId::none();
        let value = (u128::from(self.prefix) << 64)
            | (u128::from(self.worker) << 56)
            | u128::from(n & 0x00ff_ffff_ffff_ffff);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for i in 0..24 {
            id.bytes[23 - i] = HEX[((value >> (4 * i)) & 0xf) as usize];
        }
        id.len = 24;
        id
    }
}

/// A per-process random-ish prefix: time and PID mixed, so restarts differ.
fn process_prefix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = nanos ^ (u64::from(std::process::id()) << 32);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_hex() {
        let ids = RequestIds::new(3);
        let a = ids.next();
        let b = ids.next();
        assert_eq!(a.as_str().len(), 24);
        assert_ne!(a.as_str(), b.as_str());
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn client_ids_are_checked() {
        assert_eq!(
            RequestId::from_client(b"abc-123").unwrap().as_str(),
            "abc-123"
        );
        assert!(RequestId::from_client(b"").is_none());
        assert!(RequestId::from_client(b"a b").is_none());
        assert!(RequestId::from_client(b"a\"b").is_none());
        assert!(RequestId::from_client(&[b'a'; 65]).is_none());
    }
}
