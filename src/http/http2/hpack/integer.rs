//! HPACK's prefixed integers (RFC 7541 §5.1).

use super::error::DecodeError;

/// Largest integer accepted: indexes, lengths and sizes never need more (a
/// string can never be longer than the block holding it).
const MAX: usize = (1 << 28) - 1;

/// Decodes an integer with an `n`-bit prefix (1–8) at the start of `block`
/// (the prefix's other bits are the caller's); returns it and the rest.
pub fn decode_int(block: &[u8], n: u32) -> Result<(usize, &[u8]), DecodeError> {
    let (&first, mut rest) = block
        .split_first()
        .ok_or(DecodeError("integer past the block"))?;
    let mask = (1usize << n) - 1;
    let mut value = usize::from(first) & mask;
    if value < mask {
        return Ok((value, rest));
    }
    let mut shift = 0;
    loop {
        let (&b, tail) = rest
            .split_first()
            .ok_or(DecodeError("integer past the block"))?;
        rest = tail;
        value += usize::from(b & 0x7f) << shift;
        if value > MAX {
            return Err(DecodeError("integer too large"));
        }
        if b & 0x80 == 0 {
            return Ok((value, rest));
        }
        shift += 7;
        if shift > 28 {
            return Err(DecodeError("integer too long"));
        }
    }
}

/// Appends `value` with an `n`-bit prefix whose high bits are `flags`.
pub fn encode_int(value: usize, n: u32, flags: u8, out: &mut Vec<u8>) {
    let mask = (1usize << n) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_examples() {
        // C.1.1–C.1.3: 10 and 1337 with a 5-bit prefix, 42 with 8 bits.
        for (value, n, bytes) in [
            (10usize, 5u32, &[0x0a][..]),
            (1337, 5, &[0x1f, 0x9a, 0x0a][..]),
            (42, 8, &[0x2a][..]),
        ] {
            let mut out = Vec::new();
            encode_int(value, n, 0, &mut out);
            assert_eq!(out, bytes);
            assert_eq!(decode_int(bytes, n).unwrap(), (value, &[][..]));
        }
        assert!(decode_int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f], 5).is_err());
        assert!(decode_int(&[0x1f, 0x9a], 5).is_err());
    }
}
