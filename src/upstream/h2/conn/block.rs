//! A decoded header block checked as a response head or as trailers.

use crate::http::http2::hpack::ENTRY_OVERHEAD;
use crate::http::{is_tchar, parse_length, FieldList};

use super::MAX_HEADER_LIST;

/// A decoded header block checked as a response head or trailers (RFC 9113 §8.3,
/// §8.2): one `:status` before any field, lowercase names, no connection-specific
/// fields, values without CR, LF, NUL or surrounding whitespace.
pub(super) struct BlockReader {
    pub(super) status: Option<u16>,
    pub(super) fields: FieldList,
    pub(super) content_length: Option<u64>,
    pub(super) size: usize,
    pub(super) malformed: bool,
}

impl Default for BlockReader {
    fn default() -> Self {
        BlockReader {
            status: None,
            fields: FieldList::with_capacity(256, 8),
            content_length: None,
            size: 0,
            malformed: false,
        }
    }
}

impl BlockReader {
    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
        self.size += name.len() + value.len() + ENTRY_OVERHEAD;
        if self.malformed || self.size > MAX_HEADER_LIST {
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            let status = (pseudo == b"status" && self.status.is_none() && self.fields.is_empty())
                .then(|| three_digits(value))
                .flatten();
            match status {
                Some(s) => self.status = Some(s),
                None => self.malformed = true,
            }
            return;
        }
        // A token, lowercase (RFC 9113 §8.2.1).
        let bad_name =
            name.is_empty() || !name.iter().all(|&b| is_tchar(b) && !b.is_ascii_uppercase());
        let bad_value = !crate::text::every_word(value, no_cr_lf_nul)
            || value.first().is_some_and(|b| *b == b' ' || *b == b'\t')
            || value.last().is_some_and(|b| *b == b' ' || *b == b'\t');
        let connection_specific = matches!(
            name,
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
        );
        if bad_name || bad_value || connection_specific {
            self.malformed = true;
            return;
        }
        if name == b"content-length" {
            match (parse_length(value), self.content_length) {
                (Some(n), None) => self.content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => {
                    self.malformed = true;
                    return;
                }
            }
        }
        self.fields.push(name, value);
    }
}

/// No byte of the word is CR, LF or NUL (the zero-byte test on the word and on
/// it xored with each).
fn no_cr_lf_nul(w: u64) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LOW) & !x & HIGH != 0;
    !(zero(w) || zero(w ^ (LOW * 0x0d)) || zero(w ^ (LOW * 0x0a)))
}

fn three_digits(v: &[u8]) -> Option<u16> {
    match v {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}
