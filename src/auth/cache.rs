//! The per-worker cache of verified tokens: a bounded LRU keyed by the SHA-256 of
//! the token, each entry good until the token's `exp` (+ leeway), emptied when the
//! provider's key set changes. A client reusing its token pays for the signature
//! check once per worker.

use std::num::NonZeroUsize;
use std::rc::Rc;

use lru::LruCache;
use ring::digest;

use super::caller::Caller;

pub type TokenHash = [u8; 32];

pub fn token_hash(token: &[u8]) -> TokenHash {
    let d = digest::digest(&digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub struct VerifiedCache {
    entries: Option<LruCache<TokenHash, Rc<Caller>>>,
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens; 0 = no caching.
    pub fn new(capacity: usize) -> Self {
        VerifiedCache {
            entries: NonZeroUsize::new(capacity).map(LruCache::new),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The caller a token verified to, if still good at `now` (Unix seconds).
    pub fn get(&mut self, hash: &TokenHash, now: u64) -> Option<Rc<Caller>> {
        let entries = self.entries.as_mut()?;
        match entries.get(hash) {
            Some(c) if c.valid_until.is_some_and(|t| now <= t) => Some(c.clone()),
            Some(_) => {
                entries.pop(hash);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token. Tokens without `exp` are not cached: nothing
    /// would bound how long the verification is reused.
    pub fn put(&mut self, hash: TokenHash, caller: Rc<Caller>) {
        if let (Some(entries), Some(_)) = (self.entries.as_mut(), caller.valid_until) {
            entries.put(hash, caller);
        }
    }

    pub fn clear(&mut self) {
        if let Some(e) = self.entries.as_mut() {
            e.clear();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, LruCache::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(until: Option<u64>) -> Rc<Caller> {
        Rc::new(Caller {
            claims: Default::default(),
            identity_headers: Default::default(),
            valid_until: until,
        })
    }

    #[test]
    fn bounded_expiring_and_cleared() {
        let mut c = VerifiedCache::new(2);
        let (a, b, d) = (token_hash(b"a"), token_hash(b"b"), token_hash(b"d"));
        c.put(a, caller(Some(100)));
        c.put(b, caller(Some(100)));
        assert!(c.get(&a, 50).is_some());
        c.put(d, caller(Some(100)));
        assert!(c.get(&b, 50).is_none(), "least recently used is evicted");
        assert!(c.get(&a, 101).is_none(), "expired entries are not served");
        assert_eq!(c.len(), 1);
        c.put(b, caller(None));
        assert!(c.get(&b, 50).is_none(), "no exp, no caching");
        c.clear();
        assert_eq!(c.len(), 0);
    }
}
