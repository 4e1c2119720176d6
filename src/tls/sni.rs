//! Certificate choice by SNI: exact names, then `*.example.com` wildcards (longest
//! suffix first), then the listener's default certificate for clients that send no
//! SNI. A name that matches nothing gets the default too, if there is one; with no
//! default the handshake is refused.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `(".example.com", key)`, longest suffix first.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// `names` are `(pattern, key)` pairs; patterns are lowercase exact names or `*.suffix`.
    pub fn new(
        names: Vec<(String, Arc<CertifiedKey>)>,
        default: Option<Arc<CertifiedKey>>,
    ) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        for (pattern, key) in names {
            match pattern.strip_prefix('*') {
                Some(suffix) => wildcard.push((suffix.to_string(), key)),
                None => {
                    exact.entry(pattern).or_insert(key);
                }
            }
        }
        wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        SniResolver {
            exact,
            wildcard,
            default,
        }
    }

    /// The certificate for a (lowercase) server name, or for no name.
    pub fn lookup(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = name else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(name) {
            return Some(k.clone());
        }
        for (suffix, key) in &self.wildcard {
            if name.len() > suffix.len() && name.ends_with(suffix.as_str()) {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello
            .server_name()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        self.lookup(name.as_deref())
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field(
                "wildcard",
                &self.wildcard.iter().map(|w| &w.0).collect::<Vec<_>>(),
            )
            .field("default", &self.default.is_some())
            .finish()
    }
}
