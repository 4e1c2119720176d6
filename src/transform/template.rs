//! Header-rule values with placeholders from the request context, compiled once at
//! load: `{request_id}`, `{client_ip}`, `{trace_id}`, `{claim.NAME}`, and `{route}`
//! and `{upstream}` (the same for every request of a route, so written in at load).
//! `{{` and `}}` are literal braces. A value without a per-request placeholder is a
//! literal and costs nothing to render.

use std::net::IpAddr;

use crate::auth::Caller;
use crate::text;

/// One rule's value, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTemplate {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(Box<[u8]>),
    RequestId,
    ClientIp,
    TraceId,
    /// A claim of the verified caller, by name.
    Claim(Box<str>),
}

/// What a value may read that is the same for every request of a route, written
/// into the template at load.
#[derive(Clone, Copy, Debug)]
pub struct RouteValues<'a> {
    /// The route's `name`.
    pub route: &'a str,
    /// The name of the `[[upstream]]` the route forwards to.
    pub upstream: &'a str,
}

/// What a value may read from one request.
#[derive(Clone, Copy)]
pub struct RequestValues<'a> {
    /// The request's ID (the client's `X-Request-Id`, or the one the gateway gave).
    pub request_id: &'a str,
    /// The address of the client's connection.
    pub client_ip: IpAddr,
    /// The verified caller; `None` on a route without `auth` or for an anonymous one.
    pub caller: Option<&'a Caller>,
    /// The W3C trace ID, when the request has a trace context.
    pub trace_id: Option<&'a [u8; 16]>,
}

/// The placeholders a value may hold, for error messages.
pub const PLACEHOLDERS: &str =
    "{request_id}, {client_ip}, {trace_id}, {claim.NAME}, {route}, {upstream}";

impl FieldTemplate {
    /// Compiles `text`. A value is visible ASCII, spaces and tabs (RFC 9110 §5.5;
    /// no control characters, no bytes past ASCII), does not start or end with
    /// whitespace, and is not empty. `Err` says why it is refused.
    pub fn parse(text: &str, fixed: RouteValues<'_>) -> Result<FieldTemplate, String> {
        if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(format!(
                "the value holds the control character {c:?}: header values cannot carry it"
            ));
        }
        if !text.is_ascii() {
            return Err("the value holds characters past ASCII (RFC 9110 §5.5)".to_string());
        }
        if text.trim() != text {
            return Err("the value starts or ends with whitespace".to_string());
        }
        if text.is_empty() {
            return Err("the value is empty: to drop a field, use remove".to_string());
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                literal.push('{');
                rest = after;
                continue;
            }
            if let Some(after) = tail.strip_prefix("}}") {
                literal.push('}');
                rest = after;
                continue;
            }
            if tail.starts_with('}') {
                return Err("a `}` without its `{`: write `}}` for a literal brace".to_string());
            }
            let Some(end) = tail.find('}') else {
                return Err("a `{` is not closed: write `{{` for a literal brace".to_string());
            };
            let name = &tail[1..end];
            rest = &tail[end + 1..];
            let piece = match name {
                "request_id" => Piece::RequestId,
                "client_ip" => Piece::ClientIp,
                "trace_id" => Piece::TraceId,
                "route" => {
                    literal.push_str(fixed.route);
                    continue;
                }
                "upstream" => {
                    literal.push_str(fixed.upstream);
                    continue;
                }
                _ => match name.strip_prefix("claim.") {
                    Some(claim) if !claim.is_empty() && !claim.contains('{') => {
                        Piece::Claim(claim.into())
                    }
                    _ => {
                        return Err(format!(
                            "unknown placeholder {{{name}}}; a value may use {PLACEHOLDERS}"
                        ))
                    }
                },
            };
            flush(&mut literal, &mut pieces);
            pieces.push(piece);
        }
        literal.push_str(rest);
        flush(&mut literal, &mut pieces);
        // A route or upstream name is written in as it is: it must be a value too.
        for p in &pieces {
            if let Piece::Literal(bytes) = p {
                if bytes.iter().any(|&b| !is_value_byte(b)) {
                    return Err(
                        "{route} or {upstream} names something whose name cannot be a header value"
                            .to_string(),
                    );
                }
            }
        }
        Ok(FieldTemplate { pieces })
    }

    /// The value, when it holds no per-request placeholder.
    pub fn literal(&self) -> Option<&[u8]> {
        match self.pieces.as_slice() {
            [Piece::Literal(bytes)] => Some(bytes),
            [] => Some(b""),
            _ => None,
        }
    }

    /// Appends the value rendered for one request to `out`, leading and trailing
    /// whitespace trimmed. Returns `false`, leaving `out` as it was, when the value
    /// cannot be sent: empty once rendered (e.g. `{claim.sub}` of an anonymous
    /// caller, `{trace_id}` without a trace context), or a claim holding control
    /// characters.
    pub fn render(&self, values: &RequestValues<'_>, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => out.extend_from_slice(bytes),
                Piece::RequestId => out.extend_from_slice(values.request_id.as_bytes()),
                Piece::ClientIp => text::push_ip(out, values.client_ip),
                Piece::TraceId => {
                    if let Some(id) = values.trace_id {
                        push_hex(out, id);
                    }
                }
                Piece::Claim(name) => {
                    let text = values.caller.and_then(|c| c.claim_text(name));
                    if let Some(text) = text {
                        if !text.bytes().all(is_value_byte) {
                            out.truncate(start);
                            return false;
                        }
                        out.extend_from_slice(text.as_bytes());
                    }
                }
            }
        }
        let rendered = &out[start..];
        let Some(first) = rendered.iter().position(|b| !b.is_ascii_whitespace()) else {
            out.truncate(start);
            return false;
        };
        let last = rendered
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .unwrap_or(first);
        out.truncate(start + last + 1);
        out.drain(start..start + first);
        true
    }
}

/// Moves the literal text gathered so far into `pieces`.
fn flush(literal: &mut String, pieces: &mut Vec<Piece>) {
    if !literal.is_empty() {
        pieces.push(Piece::Literal(std::mem::take(literal).into_bytes().into()));
    }
}

/// A byte a field value may carry as the gateway writes it: visible ASCII, space,
/// tab (obs-text, bytes past ASCII, is not written).
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b)
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXED: RouteValues<'static> = RouteValues {
        route: "users",
        upstream: "users-svc",
    };

    fn values() -> RequestValues<'static> {
        RequestValues {
            request_id: "abc",
            client_ip: "10.0.0.7".parse().unwrap(),
            caller: None,
            trace_id: None,
        }
    }

    fn render(text: &str, v: &RequestValues<'_>) -> Option<String> {
        let t = FieldTemplate::parse(text, FIXED).unwrap();
        let mut out = b"x".to_vec();
        t.render(v, &mut out)
            .then(|| String::from_utf8(out[1..].to_vec()).unwrap())
    }

    #[test]
    fn literals_and_route_values_are_compiled_once() {
        let t = FieldTemplate::parse("gw {route}/{upstream} {{x}}", FIXED).unwrap();
        assert_eq!(t.literal(), Some(&b"gw users/users-svc {x}"[..]));
        let t = FieldTemplate::parse("{request_id}", FIXED).unwrap();
        assert_eq!(t.literal(), None);
    }

    #[test]
    fn request_values_render() {
        let trace = [0xab; 16];
        let v = RequestValues {
            trace_id: Some(&trace),
            ..values()
        };
        assert_eq!(
            render("id={request_id} ip={client_ip} t={trace_id}", &v).unwrap(),
            format!("id=abc ip=10.0.0.7 t={}", "ab".repeat(16))
        );
        // Absent values render empty; a value empty once rendered is not sent.
        assert_eq!(render("{trace_id}", &values()), None);
        assert_eq!(render("{claim.sub}", &values()), None);
        assert_eq!(
            render("user {claim.sub}", &values()).as_deref(),
            Some("user")
        );
    }

    #[test]
    fn claims_render_and_unsafe_claims_are_not_sent() {
        let claims = serde_json::from_str(r#"{"sub": "u1", "bad": "a\r\nx: 1"}"#).unwrap();
        let caller = Caller {
            claims,
            identity_headers: Default::default(),
            valid_until: None,
        };
        let v = RequestValues {
            caller: Some(&caller),
            ..values()
        };
        assert_eq!(render("u={claim.sub}", &v).as_deref(), Some("u=u1"));
        assert_eq!(render("u={claim.bad}", &v), None);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let refused = |text: &str| FieldTemplate::parse(text, FIXED).unwrap_err();
        assert!(refused("a\r\nb").contains("control character"));
        assert!(refused("a\u{0}").contains("control character"));
        assert!(refused("café").contains("past ASCII"));
        assert!(refused(" a").contains("whitespace"));
        assert!(refused("").contains("remove"));
        assert!(refused("{nope}").contains("unknown placeholder {nope}"));
        assert!(refused("{claim.}").contains("unknown placeholder"));
        assert!(refused("{request_id").contains("not closed"));
        assert!(refused("a}b").contains("without its"));
        let odd = RouteValues {
            route: "a\nb",
            upstream: "u",
        };
        assert!(FieldTemplate::parse("{route}", odd).is_err());
    }
}
