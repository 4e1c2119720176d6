//! What a client is told about its limits: `Retry-After` on a 429, and the
//! `RateLimit-Policy` / `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers
//! (or the legacy `X-RateLimit-*` trio) for the policy with the least remaining.
//!
//! - `RateLimit-Policy: "NAME";q=BURST;w=SECONDS` — the bucket holds `q` tokens
//!   and the rate refills all of them in `w` seconds.
//! - `RateLimit: "NAME";r=REMAINING;t=SECONDS` — `r` tokens left (an estimate on
//!   a worker: its lease plus what the limiter last said the bucket held); `t` is
//!   the `Retry-After` on a 429, else the seconds until the bucket is full again.

use std::io::Write as _;

use crate::http::FieldList;

use super::policy::{HeaderStyle, Policy};

/// One policy's standing for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub policy: usize,
    pub remaining: u64,
    pub reset_secs: u64,
}

/// The quota with the least remaining among the policies a request passed.
#[derive(Debug, Default)]
pub struct LeastRemaining(Option<Quota>);

impl LeastRemaining {
    pub fn offer(&mut self, q: Quota) {
        if self.0.is_none_or(|have| q.remaining < have.remaining) {
            self.0 = Some(q);
        }
    }

    pub fn get(&self) -> Option<Quota> {
        self.0
    }
}

/// A refusal: the policy that refused and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub policy: usize,
    pub retry_after_secs: u64,
}

/// The header fields of a 429 (`Retry-After` first), as `(name, value)` pairs.
pub fn denied_fields(
    style: HeaderStyle,
    policy: &Policy,
    d: &Denial,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![("retry-after", d.retry_after_secs.to_string().into_bytes())];
    let q = Quota {
        policy: d.policy,
        remaining: 0,
        reset_secs: d.retry_after_secs,
    };
    push_fields(style, policy, &q, &mut out);
    out
}

/// Adds the fields for an allowed response to `out`.
pub fn write_allowed(style: HeaderStyle, policy: &Policy, q: &Quota, out: &mut FieldList) {
    let mut fields = Vec::new();
    push_fields(style, policy, q, &mut fields);
    for (name, value) in fields {
        out.push(name.as_bytes(), &value);
    }
}

fn push_fields(
    style: HeaderStyle,
    policy: &Policy,
    q: &Quota,
    out: &mut Vec<(&'static str, Vec<u8>)>,
) {
    let remaining = q.remaining.min(policy.quota());
    match style {
        HeaderStyle::Draft => {
            let mut p = Vec::new();
            let _ = write!(
                p,
                "\"{}\";q={};w={}",
                policy.name,
                policy.quota(),
                policy.window_secs()
            );
            let mut r = Vec::new();
            let _ = write!(r, "\"{}\";r={};t={}", policy.name, remaining, q.reset_secs);
            out.push(("ratelimit-policy", p));
            out.push(("ratelimit", r));
        }
        HeaderStyle::Legacy => {
            out.push(("x-ratelimit-limit", policy.quota().to_string().into_bytes()));
            out.push(("x-ratelimit-remaining", remaining.to_string().into_bytes()));
            out.push(("x-ratelimit-reset", q.reset_secs.to_string().into_bytes()));
        }
        HeaderStyle::None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::policy::{Fallback, KeyPart, Scope};

    fn policy() -> Policy {
        Policy {
            name: "per-ip".into(),
            key: vec![KeyPart::Ip],
            fallback: Fallback::Key(KeyPart::Ip),
            rate: 100.0,
            burst: 200.0,
            scope: Scope::Instance,
            before_auth: true,
            max_keys: 10,
        }
    }

    fn text(fields: &[(&str, Vec<u8>)]) -> Vec<String> {
        fields
            .iter()
            .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
            .collect()
    }

    #[test]
    fn draft_fields_on_a_429() {
        let d = Denial {
            policy: 0,
            retry_after_secs: 1,
        };
        assert_eq!(
            text(&denied_fields(HeaderStyle::Draft, &policy(), &d)),
            [
                "retry-after: 1",
                "ratelimit-policy: \"per-ip\";q=200;w=2",
                "ratelimit: \"per-ip\";r=0;t=1"
            ]
        );
        assert_eq!(
            text(&denied_fields(HeaderStyle::None, &policy(), &d)),
            ["retry-after: 1"]
        );
    }

    #[test]
    fn legacy_fields_on_an_allowed_response() {
        let mut out = FieldList::new();
        let q = Quota {
            policy: 0,
            remaining: 150,
            reset_secs: 1,
        };
        write_allowed(HeaderStyle::Legacy, &policy(), &q, &mut out);
        let fields: Vec<(&[u8], &[u8])> = out.iter().collect();
        assert_eq!(
            fields,
            vec![
                (&b"x-ratelimit-limit"[..], &b"200"[..]),
                (b"x-ratelimit-remaining", b"150"),
                (b"x-ratelimit-reset", b"1"),
            ]
        );
    }

    #[test]
    fn the_least_remaining_wins() {
        let mut least = LeastRemaining::default();
        least.offer(Quota {
            policy: 0,
            remaining: 10,
            reset_secs: 1,
        });
        least.offer(Quota {
            policy: 1,
            remaining: 3,
            reset_secs: 1,
        });
        least.offer(Quota {
            policy: 2,
            remaining: 7,
            reset_secs: 1,
        });
        assert_eq!(least.get().map(|q| q.policy), Some(1));
    }
}
