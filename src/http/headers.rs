//! Header classification: which headers stop at this hop.

/// Headers that describe one connection and are never forwarded (RFC 9110 §7.6.1),
/// plus the framing and expectation headers the gateway re-creates itself.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: &[&[u8]] = &[
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"content-length",
        b"expect",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
        || (name.len() > 6 && name[..6].eq_ignore_ascii_case(b"proxy-"))
}

/// The header names listed in `Connection` headers, which are hop-by-hop too.
/// Kept as a small list of byte strings borrowed from the head.
#[derive(Default)]
pub struct ConnectionTokens<'a> {
    names: Vec<&'a [u8]>,
}

impl<'a> ConnectionTokens<'a> {
    /// Adds the comma-separated tokens of one `Connection` header value.
    pub fn add(&mut self, value: &'a [u8]) {
        for token in value.split(|&b| b == b',') {
            let t = token.trim_ascii();
            if !t.is_empty() {
                self.names.push(t);
            }
        }
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers() {
        for h in [
            "Connection",
            "keep-alive",
            "TE",
            "Trailer",
            "Upgrade",
            "Proxy-Authorization",
            "Proxy-Foo",
        ] {
            assert!(is_hop_by_hop(h.as_bytes()), "{h}");
        }
        for h in ["host", "x-proxy", "content-type", "authorization"] {
            assert!(!is_hop_by_hop(h.as_bytes()), "{h}");
        }
    }

    #[test]
    fn connection_tokens() {
        let mut t = ConnectionTokens::default();
        t.add(b"close, X-Secret ,, keep-alive");
        assert!(t.contains(b"x-secret"));
        assert!(t.contains(b"CLOSE"));
        assert!(!t.contains(b"x-other"));
    }
}
