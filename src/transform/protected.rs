//! The fields header rules may not name: framing and hop-by-hop fields (the gateway
//! writes them for each hop), `Host` (`preserve_host` and the endpoint decide it),
//! the gateway's forwarding and trace fields, the identity fields only it may set,
//! and on responses the CORS and rate-limit fields it answers with. `portico check`
//! refuses a rule on any of them, saying which group it is in.

use crate::auth::{is_identity_header, AuthSettings};
use crate::http::is_hop_by_hop;

/// Which message a rule edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The request sent upstream (`request_headers`).
    Request,
    /// The response relayed to the client (`response_headers`).
    Response,
}

/// Why a rule may not touch the field `name` (lowercase) in `direction`, or `None`
/// when it may.
pub fn why_protected(
    name: &str,
    direction: Direction,
    auth: &AuthSettings,
) -> Option<&'static str> {
    let starts = |prefix: &str| name.len() > prefix.len() && name.starts_with(prefix);
    if name == "host" {
        return Some("Host is decided by preserve_host and the endpoint");
    }
    if is_hop_by_hop(name.as_bytes()) {
        return Some("it frames the message or describes one connection (hop-by-hop): the gateway writes it for each hop");
    }
    if starts("x-forwarded-") || ["forwarded", "x-real-ip", "x-request-id"].contains(&name) {
        return Some("it is forwarding information the gateway writes");
    }
    if ["traceparent", "tracestate"].contains(&name) {
        return Some("it is the trace context the gateway propagates");
    }
    if is_identity_header(auth, name.as_bytes()) {
        return Some("it is an identity field only the gateway sets (claims_to_headers, client_subject_header, x-portico-*)");
    }
    if direction == Direction::Response {
        if starts("access-control-") {
            return Some("CORS fields are the route's `cors` block's to answer");
        }
        if starts("x-ratelimit-") || ["ratelimit", "ratelimit-policy"].contains(&name) {
            return Some("rate-limit fields are the gateway's (rate_limit_headers)");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_forwarding_and_identity_fields_are_protected() {
        let auth = AuthSettings {
            providers: Vec::new(),
            identity_headers: vec![b"x-user-id".to_vec()],
        };
        let req = |n| why_protected(n, Direction::Request, &auth);
        for name in [
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
            "trailer",
            "upgrade",
            "host",
            "x-forwarded-for",
            "forwarded",
            "x-real-ip",
            "x-request-id",
            "x-user-id",
            "x-portico-anything",
            "traceparent",
        ] {
            assert!(req(name).is_some(), "{name}");
        }
        for name in ["authorization", "x-api-key", "cookie", "x-forwarded"] {
            assert!(req(name).is_none(), "{name}");
        }
        let resp = |n| why_protected(n, Direction::Response, &auth);
        assert!(resp("access-control-allow-origin").is_some());
        assert!(resp("ratelimit").is_some());
        assert!(resp("x-ratelimit-remaining").is_some());
        assert!(resp("server").is_none());
        assert!(req("access-control-allow-origin").is_none());
    }
}
