//! The bucket key of a request under one policy.
//!
//! A key is written as text into a reused buffer, one length-prefixed field per key
//! part: `ip9=127.0.0.1`, `net11=10.1.2.0/24`, `h6=abc123`, `c5=alice`, `r5=users`,
//! `g`. The length prefix makes keys unambiguous whatever bytes a header or claim
//! carries, and the tag keeps a fallback address apart from a header value that
//! happens to look like one. The same bytes name the key in the limiter thread
//! and (after a prefix and the policy name) in Redis.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::IpAddr;

use crate::http::HeaderLookup;
use crate::text;

use super::policy::{Fallback, KeyPart, Policy};

/// Header and claim values longer than this do not key a bucket (the fallback is
/// used), so a client cannot grow the key tables with huge values.
pub const MAX_KEY_VALUE_BYTES: usize = 256;

/// Verified claims of the caller, as the authentication stage provides them.
///
/// The rate-limit stage asks only for single values by claim name: a string claim
/// gives its text (borrowed), a number or boolean its printed form (owned). Where
/// the pipeline has no verified caller it passes no claims, and `claim:` keys use
/// the policy's fallback.
pub trait ClaimLookup {
    fn claim(&self, name: &str) -> Option<Cow<'_, [u8]>>;
}

/// What a request offers to key a bucket.
pub struct RequestFacts<'a> {
    pub client: IpAddr,
    pub route: &'a str,
    pub headers: &'a dyn HeaderLookup,
    /// `None` before authentication (or on a route without it).
    pub claims: Option<&'a dyn ClaimLookup>,
}

/// Writes the key of `facts` under `policy` into `out` (cleared first). `false`
/// means the policy does not apply (a part is missing and the fallback is `skip`).
pub fn write_key(policy: &Policy, facts: &RequestFacts<'_>, out: &mut Vec<u8>) -> bool {
    out.clear();
    for part in &policy.key {
        if !write_part(part, facts, out) {
            match &policy.fallback {
                Fallback::Skip => return false,
                Fallback::Key(address) => {
                    write_part(address, facts, out);
                }
            }
        }
    }
    true
}

/// Writes one part; `false` when the request has no (usable) value for it.
fn write_part(part: &KeyPart, facts: &RequestFacts<'_>, out: &mut Vec<u8>) -> bool {
    match part {
        KeyPart::Ip => field(
            out,
            b"ip",
            text::ip_text(canonical(facts.client)).as_bytes(),
        ),
        KeyPart::IpPrefix { v4, v6 } => {
            let (net, bits) = masked(canonical(facts.client), *v4, *v6);
            let mut text = [0u8; 56];
            let len = {
                let mut w = &mut text[..];
                let _ = write!(w, "{net}/{bits}");
                56 - w.len()
            };
            field(out, b"net", &text[..len]);
        }
        KeyPart::Header(name) => match facts.headers.get(name.as_bytes()) {
            Some(v) if usable(v) => field(out, b"h", v),
            _ => return false,
        },
        KeyPart::Claim(name) => match facts.claims.and_then(|c| c.claim(name)) {
            Some(v) if usable(&v) => field(out, b"c", &v),
            _ => return false,
        },
        KeyPart::Route => field(out, b"r", facts.route.as_bytes()),
        KeyPart::Global => {
            if !out.is_empty() {
                out.push(b';');
            }
            out.push(b'g');
        }
    }
    true
}

fn usable(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= MAX_KEY_VALUE_BYTES
}

fn field(out: &mut Vec<u8>, tag: &[u8], value: &[u8]) {
    if !out.is_empty() {
        out.push(b';');
    }
    out.extend_from_slice(tag);
    text::push_u64(out, value.len() as u64);
    out.push(b'=');
    out.extend_from_slice(value);
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack listeners) are the
/// IPv4 client they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn masked(ip: IpAddr, v4_bits: u8, v6_bits: u8) -> (IpAddr, u8) {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(v4_bits.min(32));
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            (IpAddr::V4((u32::from(a) & mask).into()), bits as u8)
        }
        IpAddr::V6(a) => {
            let bits = u32::from(v6_bits.min(128));
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            (IpAddr::V6((u128::from(a) & mask).into()), bits as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::policy::Scope;

    struct Headers(Vec<(&'static str, &'static str)>);
    impl HeaderLookup for Headers {
        fn get(&self, name: &[u8]) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(n, _)| n.as_bytes() == name)
                .map(|(_, v)| v.as_bytes())
        }
        fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
            for (n, v) in &self.0 {
                f(n.as_bytes(), v.as_bytes());
            }
        }
    }

    struct Claims(Vec<(&'static str, &'static str)>);
    impl ClaimLookup for Claims {
        fn claim(&self, name: &str) -> Option<Cow<'_, [u8]>> {
            self.0
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| Cow::Borrowed(v.as_bytes()))
        }
    }

    fn policy(key: &[&str], fallback: &str) -> Policy {
        Policy {
            name: "p".into(),
            key: key.iter().map(|k| KeyPart::parse(k).unwrap()).collect(),
            fallback: Fallback::parse(fallback).unwrap(),
            rate: 1.0,
            burst: 1.0,
            scope: Scope::Instance,
            before_auth: false,
            max_keys: 10,
        }
    }

    fn key(p: &Policy, client: &str, headers: &Headers, claims: Option<&Claims>) -> Option<String> {
        let facts = RequestFacts {
            client: client.parse().unwrap(),
            route: "users",
            headers,
            claims: claims.map(|c| c as &dyn ClaimLookup),
        };
        let mut out = Vec::new();
        write_key(p, &facts, &mut out).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn address_keys() {
        let h = Headers(vec![]);
        assert_eq!(
            key(&policy(&["ip"], "ip"), "10.1.2.3", &h, None).as_deref(),
            Some("ip8=10.1.2.3")
        );
        assert_eq!(
            key(&policy(&["ip"], "ip"), "::ffff:10.1.2.3", &h, None).as_deref(),
            Some("ip8=10.1.2.3"),
            "IPv4-mapped addresses are the IPv4 client"
        );
        assert_eq!(
            key(&policy(&["ip_prefix:/24,/64"], "ip"), "10.1.2.3", &h, None).as_deref(),
            Some("net11=10.1.2.0/24")
        );
        assert_eq!(
            key(
                &policy(&["ip_prefix:/24,/64"], "ip"),
                "2001:db8:1:2:3::4",
                &h,
                None
            )
            .as_deref(),
            Some("net17=2001:db8:1:2::/64")
        );
        assert_eq!(
            key(&policy(&["route"], "ip"), "10.1.2.3", &h, None).as_deref(),
            Some("r5=users")
        );
        assert_eq!(
            key(&policy(&["global"], "ip"), "10.1.2.3", &h, None).as_deref(),
            Some("g")
        );
    }

    #[test]
    fn header_and_composite_keys() {
        let h = Headers(vec![("x-api-key", "k1")]);
        assert_eq!(
            key(&policy(&["header:X-Api-Key"], "ip"), "10.0.0.1", &h, None).as_deref(),
            Some("h2=k1")
        );
        assert_eq!(
            key(
                &policy(&["header:x-api-key", "route"], "ip"),
                "10.0.0.1",
                &h,
                None
            )
            .as_deref(),
            Some("h2=k1;r5=users")
        );
    }

    #[test]
    fn missing_values_use_the_fallback() {
        let none = Headers(vec![]);
        let p = policy(&["header:x-api-key", "route"], "ip");
        assert_eq!(
            key(&p, "10.0.0.1", &none, None).as_deref(),
            Some("ip8=10.0.0.1;r5=users")
        );
        let skip = policy(&["header:x-api-key"], "skip");
        assert_eq!(key(&skip, "10.0.0.1", &none, None), None);
        let huge = Headers(vec![(
            "x-api-key",
            Box::leak("k".repeat(300).into_boxed_str()),
        )]);
        assert_eq!(
            key(
                &policy(&["header:x-api-key"], "global"),
                "10.0.0.1",
                &huge,
                None
            )
            .as_deref(),
            Some("g"),
            "an oversized value does not key a bucket"
        );
    }

    #[test]
    fn claim_keys_come_from_the_claims_hook() {
        let h = Headers(vec![]);
        let p = policy(&["claim:sub", "route"], "ip");
        let claims = Claims(vec![("sub", "alice")]);
        assert_eq!(
            key(&p, "10.0.0.1", &h, Some(&claims)).as_deref(),
            Some("c5=alice;r5=users")
        );
        assert_eq!(
            key(&p, "10.0.0.1", &h, None).as_deref(),
            Some("ip8=10.0.0.1;r5=users"),
            "no verified claims: the fallback"
        );
    }

    #[test]
    fn a_header_value_cannot_pose_as_an_address() {
        let h = Headers(vec![("x-k", "10.0.0.1")]);
        let p = policy(&["header:x-k"], "ip");
        let from_header = key(&p, "10.0.0.9", &h, None).unwrap();
        let from_fallback = key(&p, "10.0.0.1", &Headers(vec![]), None).unwrap();
        assert_ne!(from_header, from_fallback);
    }
}
