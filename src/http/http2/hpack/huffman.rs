//! HPACK's Huffman code (RFC 7541 §5.2, Appendix B). The code is canonical (codes
//! of one length are consecutive, shorter codes first, symbols in order within a
//! length), so the appendix is fully given by each symbol's code length: the codes
//! are derived from [`LENGTHS`] once, and decoding compares the next 32 bits with
//! the last code of each length.

use std::sync::OnceLock;

/// Code length in bits of symbols 0–255 and EOS (256), from RFC 7541 Appendix B.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// The symbol that ends the code space; never valid inside a string.
const EOS: u16 = 256;

/// Why a Huffman string does not decode (RFC 7541 §5.2): EOS inside it, padding
/// longer than 7 bits or not all ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HuffmanError;

/// Appends the decoding of `input` to `out`.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let code = code();
    // `bits` holds `have` undecoded bits, left-aligned.
    let mut bits: u64 = 0;
    let mut have: u32 = 0;
    let mut input = input.iter();
    loop {
        while have <= 56 {
            match input.next() {
                Some(&b) => {
                    bits |= u64::from(b) << (56 - have);
                    have += 8;
                }
                None => break,
            }
        }
        if have == 0 {
            return Ok(());
        }
        let (symbol, len) = code.fast[(bits >> 56) as usize];
        if len != 0 && u32::from(len) <= have {
            out.push(symbol);
            bits <<= len;
            have -= u32::from(len);
            continue;
        }
        let top = (bits >> 32) as u32;
        let Some((symbol, len)) = code.symbol_at(top) else {
            return Err(HuffmanError);
        };
        if u32::from(len) > have {
            // Not a whole code: the rest is padding, at most 7 bits of ones.
            return padding(top, have);
        }
        if symbol == EOS {
            return Err(HuffmanError);
        }
        out.push(symbol as u8);
        bits <<= len;
        have -= u32::from(len);
    }
}

/// The Huffman encoding of `input` appended to `out` (the encoder does not use it:
/// tests and the fuzz targets make Huffman strings with it).
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    let code = code();
    let mut bits: u64 = 0;
    let mut have: u32 = 0;
    for &b in input {
        let len = u32::from(LENGTHS[usize::from(b)]);
        bits = (bits << len) | u64::from(code.codes[usize::from(b)]);
        have += len;
        while have >= 8 {
            have -= 8;
            out.push((bits >> have) as u8);
        }
    }
    if have > 0 {
        let pad = 8 - have;
        out.push(((bits << pad) as u8) | ((1u8 << pad) - 1));
    }
}

fn padding(top: u32, have: u32) -> Result<(), HuffmanError> {
    let ones = (!0u32) << (32 - have);
    if have <= 7 && top & ones == ones {
        Ok(())
    } else {
        Err(HuffmanError)
    }
}

/// The canonical code, derived once from [`LENGTHS`].
struct Code {
    /// Each symbol's code, right-aligned.
    codes: [u32; 257],
    /// Symbols sorted by (length, symbol).
    sorted: [u16; 257],
    /// Per length `l` (5–30): the first code of that length left-aligned in 32
    /// bits, one past its last, and the index in `sorted` of its first symbol.
    first: [u32; 31],
    limit: [u64; 31],
    offset: [u16; 31],
    /// Codes of 8 bits or fewer by the next 8 bits: symbol and length (0: longer).
    fast: [(u8, u8); 256],
}

fn code() -> &'static Code {
    static CODE: OnceLock<Code> = OnceLock::new();
    CODE.get_or_init(|| {
        let mut sorted = [0u16; 257];
        for (i, s) in sorted.iter_mut().enumerate() {
            *s = i as u16;
        }
        sorted.sort_by_key(|&s| (LENGTHS[usize::from(s)], s));
        let mut c = Code {
            codes: [0; 257],
            sorted,
            first: [0; 31],
            limit: [0; 31],
            offset: [0; 31],
            fast: [(0, 0); 256],
        };
        let mut next: u32 = 0;
        let mut prev_len = LENGTHS[usize::from(sorted[0])];
        for (i, &s) in sorted.iter().enumerate() {
            let len = LENGTHS[usize::from(s)];
            if i > 0 {
                next = (next + 1) << (len - prev_len);
            }
            if i == 0 || len != prev_len {
                c.first[usize::from(len)] = next;
                c.offset[usize::from(len)] = i as u16;
            }
            c.codes[usize::from(s)] = next;
            c.limit[usize::from(len)] = u64::from(next + 1) << (32 - len);
            prev_len = len;
            if len <= 8 {
                let first = (next as usize) << (8 - len);
                for e in &mut c.fast[first..first + (1 << (8 - len))] {
                    *e = (s as u8, len);
                }
            }
        }
        c
    })
}

impl Code {
    /// The symbol whose code starts the left-aligned bits `top`, and its length.
    fn symbol_at(&self, top: u32) -> Option<(u16, u8)> {
        let top64 = u64::from(top);
        for len in 5..=30u8 {
            let l = usize::from(len);
            if self.limit[l] != 0 && top64 < self.limit[l] {
                let index = (top >> (32 - len)) - self.first[l];
                let at = usize::from(self.offset[l]) + index as usize;
                return self.sorted.get(at).map(|&s| (s, len));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_examples_decode() {
        // RFC 7541 C.4.1–C.4.3 and C.6.1.
        let cases: [(&str, &[u8]); 4] = [
            ("f1e3c2e5f23a6ba0ab90f4ff", b"www.example.com"),
            ("a8eb10649cbf", b"no-cache"),
            ("25a849e95ba97d7f", b"custom-key"),
            ("6402", b"302"),
        ];
        for (hex, text) in cases {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let mut out = Vec::new();
            decode(&bytes, &mut out).unwrap();
            assert_eq!(out, text);
            let mut again = Vec::new();
            encode(text, &mut again);
            assert_eq!(again, bytes);
        }
    }

    #[test]
    fn every_byte_round_trips_and_bad_padding_fails() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let mut enc = Vec::new();
        encode(&all, &mut enc);
        let mut out = Vec::new();
        decode(&enc, &mut out).unwrap();
        assert_eq!(out, all);
        // '0' is 00000 (5 bits): padding of 3 zero bits is not EOS's prefix.
        assert_eq!(decode(&[0x00], &mut Vec::new()), Err(HuffmanError));
        // A whole byte of ones is padding longer than 7 bits.
        assert_eq!(decode(&[0x07, 0xff], &mut Vec::new()), Err(HuffmanError));
        // EOS itself (30 ones) is refused.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], &mut Vec::new()),
            Err(HuffmanError)
        );
        let mut out = Vec::new();
        decode(&[0x07], &mut out).unwrap(); // '0' then 3 ones of padding
        assert_eq!(out, b"0");
    }
}
