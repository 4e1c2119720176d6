//! HPACK decoding (RFC 7541) of arbitrary header blocks, twice on one decoder (the
//! dynamic table carries over), and Huffman decoding of arbitrary strings; what
//! decodes must re-encode and decode to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::http::http2::hpack::{huffman, Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(4096);
    let mut fields = Vec::new();
    let ok = d
        .decode(data, &mut |n, v| fields.push((n.to_vec(), v.to_vec())))
        .is_ok();
    let _ = d.decode(data, &mut |_, _| {});
    let mut out = Vec::new();
    if huffman::decode(data, &mut out).is_ok() {
        let mut again = Vec::new();
        huffman::encode(&out, &mut again);
        let mut back = Vec::new();
        assert!(huffman::decode(&again, &mut back).is_ok());
        assert_eq!(back, out);
    }
    if ok {
        let mut e = Encoder::new();
        let mut block = Vec::new();
        e.begin_block(&mut block);
        for (n, v) in &fields {
            e.field(n, v, &mut block);
        }
        let mut again = Vec::new();
        assert!(Decoder::new(4096)
            .decode(&block, &mut |n, v| again.push((n.to_vec(), v.to_vec())))
            .is_ok());
        assert_eq!(again, fields);
    }
});
