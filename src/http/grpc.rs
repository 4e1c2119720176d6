//! gRPC as the gateway sees it: which requests are gRPC calls, the deadline a call
//! carries (`grpc-timeout`), and the gateway's own replies as gRPC errors — a
//! trailers-only response (HTTP 200, `content-type: application/grpc`,
//! `grpc-status`, `grpc-message`, no body), following
//! <https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md>.

use std::borrow::Cow;
use std::time::Duration;

use super::{reason_phrase, FieldList, LocalReply};

/// gRPC status codes the gateway answers with (`grpc/status.h`).
pub mod code {
    pub const UNKNOWN: u8 = 2;
    pub const DEADLINE_EXCEEDED: u8 = 4;
    pub const PERMISSION_DENIED: u8 = 7;
    pub const UNIMPLEMENTED: u8 = 12;
    pub const INTERNAL: u8 = 13;
    pub const UNAVAILABLE: u8 = 14;
    pub const UNAUTHENTICATED: u8 = 16;
}

/// A request whose `content-type` is `application/grpc`, or `application/grpc+…`
/// / `application/grpc-web…` (any case): its errors are answered as gRPC errors.
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    const PREFIX: &[u8] = b"application/grpc";
    content_type
        .is_some_and(|t| t.len() >= PREFIX.len() && t[..PREFIX.len()].eq_ignore_ascii_case(PREFIX))
}

/// The gRPC status for an HTTP status the gateway answers with: Google's mapping
/// (`doc/http-grpc-status-mapping.md`): 400 → INTERNAL, 401 → UNAUTHENTICATED,
/// 403 → PERMISSION_DENIED, 404 → UNIMPLEMENTED, 429/502/503/504 → UNAVAILABLE,
/// anything else → UNKNOWN.
pub fn status_for(http_status: u16) -> u8 {
    match http_status {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// `local` as a gRPC error for a gRPC caller: trailers-only, `grpc-status` from
/// [`status_for`] (DEADLINE_EXCEEDED instead when the call's own deadline ran out),
/// `grpc-message` the reply's message, percent-encoded. The reply's other fields
/// (`www-authenticate`, `retry-after`, …) stay; its body goes.
pub fn error_reply(local: &LocalReply<'_>, deadline_exceeded: bool) -> LocalReply<'static> {
    let status = if deadline_exceeded {
        code::DEADLINE_EXCEEDED
    } else {
        status_for(local.status)
    };
    let mut fields = FieldList::new();
    fields.push(b"content-type", b"application/grpc");
    fields.push(b"grpc-status", status.to_string().as_bytes());
    let message = if local.message.is_empty() {
        reason_phrase(local.status)
    } else {
        &local.message
    };
    fields.push(b"grpc-message", &percent_encode(message.as_bytes()));
    for (name, value) in local.fields.iter() {
        if !name.eq_ignore_ascii_case(b"content-type") {
            fields.push(name, value);
        }
    }
    LocalReply {
        status: 200,
        fields: Cow::Owned(fields),
        body: Cow::Borrowed(b""),
        message: Cow::Owned(message.to_string()),
        close: local.close,
    }
}

/// The deadline of a call, from its `grpc-timeout` value: 1 to 8 digits and a
/// unit (`H`, `M`, `S`, `m`, `u`, `n`). `None` when malformed (the call then has
/// only the route's timeout).
pub fn timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for &b in text {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc(Some(b"application/grpc")));
        assert!(is_grpc(Some(b"application/grpc+proto")));
        assert!(is_grpc(Some(b"Application/GRPC-web")));
        assert!(!is_grpc(Some(b"application/json")));
        assert!(!is_grpc(None));
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout(b"5n"), Some(Duration::from_nanos(5)));
        assert_eq!(timeout(b"123456789m"), None);
        assert_eq!(timeout(b"m"), None);
        assert_eq!(timeout(b"10x"), None);
        assert_eq!(timeout(b"-1S"), None);
    }

    #[test]
    fn errors_become_trailers_only() {
        let local = LocalReply::error(401, "no token 100%", "id")
            .with_field(b"www-authenticate", b"Bearer");
        let g = error_reply(&local, false);
        assert_eq!(g.status, 200);
        assert!(g.body.is_empty());
        assert_eq!(g.fields.get(b"grpc-status"), Some(&b"16"[..]));
        assert_eq!(g.fields.get(b"grpc-message"), Some(&b"no token 100%25"[..]));
        assert_eq!(
            g.fields.get(b"content-type"),
            Some(&b"application/grpc"[..])
        );
        assert_eq!(g.fields.get(b"www-authenticate"), Some(&b"Bearer"[..]));
        let late = error_reply(&LocalReply::error(504, "upstream timed out", "id"), true);
        assert_eq!(late.fields.get(b"grpc-status"), Some(&b"4"[..]));
        for (http, grpc) in [
            (404, 12),
            (429, 14),
            (502, 14),
            (503, 14),
            (500, 2),
            (400, 13),
        ] {
            assert_eq!(status_for(http), grpc);
        }
    }
}
