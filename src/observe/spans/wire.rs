//! The few protobuf encodings spans need (varints, length-delimited fields,
//! nested messages; `record.rs` writes the fixed-width fields and attribute heads
//! itself), written straight into a byte buffer: a worker encodes a sampled
//! request's spans as it finishes, with no message structs, no owned strings and
//! no second pass. The wire format is protobuf's
//! (https://protobuf.dev/programming-guides/encoding/); `otlp.rs`'s tests decode
//! what is written here with the official messages (prost) to hold it to that.

/// Wire types (protobuf encoding, "Message Structure").
pub const VARINT: u32 = 0;
pub const I64: u32 = 1;
pub const LEN: u32 = 2;
pub const I32: u32 = 5;

/// The key of field `field` of wire type `wire_type` as a varint's value.
pub const fn key_value(field: u32, wire_type: u32) -> u32 {
    (field << 3) | wire_type
}

/// The one-byte key of field `field` (1–15) of wire type `wire_type`, for arrays
/// made at compile time.
pub const fn field_key(field: u32, wire_type: u32) -> u8 {
    assert!(field < 16);
    key_value(field, wire_type) as u8
}

/// Appends `v` as a base-128 varint. Inlined with a one-byte fast path: a
/// request's spans write about a hundred varints, nearly all of them keys and
/// short lengths (a status code and most lengths take two).
#[inline]
pub fn varint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 0x4000 {
        out.extend_from_slice(&[(v as u8) | 0x80, (v >> 7) as u8]);
    } else {
        varint_long(out, v);
    }
}

fn varint_long(out: &mut Vec<u8>, v: u64) {
    let (bytes, n) = varint_bytes(v);
    out.extend_from_slice(&bytes[..n]);
}

/// `v` as a base-128 varint: the bytes and how many of them there are.
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        bytes[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    (bytes, n + 1)
}

#[inline]
fn key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    varint(out, u64::from(key_value(field, wire_type)));
}

/// Bytes `v` takes as a varint.
#[inline]
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes a length-delimited field `field` with `len` bytes of payload takes.
#[inline]
pub fn len_field_size(field: u32, len: usize) -> usize {
    varint_len(u64::from(field) << 3) + varint_len(len as u64) + len
}

/// The key and length of a length-delimited field whose `len` payload bytes the
/// caller writes next (for a nested message whose size is known in advance).
/// A field under 16 with a payload under 128 bytes, nearly every one a span has,
/// takes one two-byte write.
#[inline]
pub fn len_prefix(out: &mut Vec<u8>, field: u32, len: usize) {
    let key_value = key_value(field, LEN);
    if key_value < 0x80 && len < 0x80 {
        out.extend_from_slice(&[key_value as u8, len as u8]);
    } else {
        key(out, field, LEN);
        varint(out, len as u64);
    }
}

/// A `uint32`/`uint64`/`int64`/enum field (an `int64` is written as its two's
/// complement, as protobuf does).
#[inline]
pub fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, VARINT);
    varint(out, v);
}

/// A `bytes` or `string` field (a `string` must be UTF-8: the caller's to ensure).
#[inline]
pub fn bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
    len_prefix(out, field, v.len());
    out.extend_from_slice(v);
}

/// A nested message field whose body `body` writes; its length is filled in after.
/// Room for a one-byte length is kept, and the body moved (one `memmove`) when it
/// needs more; [`long_message`] is for bodies that are nearly always longer.
pub fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    message_in(out, field, 1, body);
}

/// [`message`] for a body that is nearly always 128 to 16,383 bytes long (a span):
/// room for a two-byte length is kept.
pub fn long_message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    message_in(out, field, 2, body);
}

#[inline]
fn message_in(out: &mut Vec<u8>, field: u32, kept: usize, body: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let at = out.len();
    // `kept` is 1 or 2 (the two callers above): a copy of a known size rather
    // than `resize`'s fill.
    debug_assert!(kept == 1 || kept == 2);
    out.extend_from_slice(&[0u8; 2][..kept]);
    body(out);
    let len = out.len() - at - kept;
    let (prefix, n) = varint_bytes(len as u64);
    if n != kept {
        let end = out.len();
        if n > kept {
            out.resize(end + n - kept, 0);
        }
        out.copy_within(at + kept..end, at + n);
        out.truncate(at + n + len);
    }
    out[at..at + n].copy_from_slice(&prefix[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_nested_lengths() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        message(&mut out, 2, |o| bytes(o, 1, &[7u8; 200]));
        // key 2/LEN, length 203 (2 bytes), then key 1/LEN, length 200 (2 bytes).
        assert_eq!(&out[..6], &[0x12, 0xcb, 0x01, 0x0a, 0xc8, 0x01]);
        assert_eq!(out.len(), 3 + 3 + 200);
        assert_eq!(len_field_size(2, 203), out.len());
        // A long message's kept two bytes, when the body is shorter or longer.
        for body_len in [0, 5, 127, 128, 300, 16_383, 16_384, 20_000] {
            let mut long = vec![9u8];
            long_message(&mut long, 2, |o| {
                o.extend(std::iter::repeat_n(7u8, body_len))
            });
            let mut short = vec![9u8];
            message(&mut short, 2, |o| {
                o.extend(std::iter::repeat_n(7u8, body_len))
            });
            assert_eq!(long, short, "{body_len}");
            assert_eq!(long.len(), 1 + len_field_size(2, body_len), "{body_len}");
            let mut expected = vec![9u8, 0x12];
            varint(&mut expected, body_len as u64);
            expected.extend(std::iter::repeat_n(7u8, body_len));
            assert_eq!(long, expected, "{body_len}");
        }
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(varint_len(v), out.len(), "{v}");
        }
    }
}
