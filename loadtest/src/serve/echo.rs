//! The `--echo` response: a JSON description of the request, and the FNV-1a 64
//! checksum that lets tests verify large uploads without the server keeping them.
//!
//! Shape: `{"method": "POST", "path": "/a?b", "headers": [["Name", "value"], ...],
//! "body": "..." | null, "body_bytes": N, "body_fnv1a64": "16 hex digits"}`.

use super::response::push_decimal;

/// Bodies up to this size are echoed as a string; larger ones as `null`.
pub const MAX_ECHOED_BODY: usize = 64 * 1024;

/// FNV-1a 64 offset basis (the checksum of an empty body).
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues an FNV-1a 64 checksum over `data`.
pub fn fnv1a64(mut hash: u64, data: &[u8]) -> u64 {
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Clears `out` and writes the JSON up to and including the headers array.
pub fn write_prefix(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    headers: &[httparse::Header<'_>],
) {
    out.clear();
    out.extend_from_slice(b"{\"method\": ");
    push_json_string(out, method.as_bytes());
    out.extend_from_slice(b", \"path\": ");
    push_json_string(out, target.as_bytes());
    out.extend_from_slice(b", \"headers\": [");
    for (i, header) in headers.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.push(b'[');
        push_json_string(out, header.name.as_bytes());
        out.extend_from_slice(b", ");
        push_json_string(out, header.value);
        out.push(b']');
    }
    out.push(b']');
}

/// Completes the JSON started by `write_prefix`. `body` is `None` when it was too
/// large to keep.
pub fn write_suffix(out: &mut Vec<u8>, body: Option<&[u8]>, body_bytes: u64, fnv: u64) {
    out.extend_from_slice(b", \"body\": ");
    match body {
        Some(body) => push_json_string(out, body),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b", \"body_bytes\": ");
    push_decimal(out, body_bytes);
    out.extend_from_slice(b", \"body_fnv1a64\": \"");
    push_hex_padded(out, fnv);
    out.extend_from_slice(b"\"}");
}

/// Appends `s` as a JSON string; invalid UTF-8 becomes U+FFFD.
pub fn push_json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..0x20 | 0x7f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                _ => out.push(b),
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
}

fn push_hex_padded(out: &mut Vec<u8>, n: u64) {
    for shift in (0..16).rev() {
        out.push(b"0123456789abcdef"[((n >> (shift * 4)) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(FNV_OFFSET, b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(FNV_OFFSET, b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(FNV_OFFSET, b"foobar"), 0x85944171f73967e8);
        assert_eq!(
            fnv1a64(fnv1a64(FNV_OFFSET, b"foo"), b"bar"),
            0x85944171f73967e8
        );
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        push_hex_padded(&mut out, 0xab);
        assert_eq!(out, b"00000000000000ab");
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        push_json_string(&mut out, b"a\"b\\c\n\x01\xffz\xc3\xa9");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\n\\u0001\u{fffd}z\u{e9}\""
        );
    }
}
