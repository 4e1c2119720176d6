//! RFC 7541 Appendix C's examples, and the encoder read back by the decoder.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn decode_all(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    d.decode(block, &mut |n, v| {
        out.push((
            String::from_utf8_lossy(n).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ))
    })
    .unwrap();
    out
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn requests_of_appendix_c3_and_c4_decode() {
    let first = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    let mut second = first.to_vec();
    second.push(("cache-control", "no-cache"));
    let third = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    for blocks in [
        [
            "828684410f7777772e6578616d706c652e636f6d",
            "828684be58086e6f2d6361636865",
            "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
        ],
        [
            "828684418cf1e3c2e5f23a6ba0ab90f4ff",
            "828684be5886a8eb10649cbf",
            "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
        ],
    ] {
        let mut d = Decoder::new(4096);
        assert_eq!(decode_all(&mut d, &hex(blocks[0])), pairs(&first));
        assert_eq!(decode_all(&mut d, &hex(blocks[1])), pairs(&second));
        assert_eq!(decode_all(&mut d, &hex(blocks[2])), pairs(&third));
    }
}

#[test]
fn responses_of_appendix_c6_decode_with_eviction() {
    let mut d = Decoder::new(4096);
    // C.6 runs with a 256-octet table: the peer announces it first.
    let mut update = Vec::new();
    encode_int(256, 5, 0x20, &mut update);
    let mut first = update.clone();
    first.extend(hex("488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3"));
    let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
    assert_eq!(
        decode_all(&mut d, &first),
        pairs(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", "https://www.example.com"),
        ])
    );
    assert_eq!(
        decode_all(&mut d, &hex("4883640effc1c0bf")),
        pairs(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", "https://www.example.com"),
        ])
    );
    assert_eq!(
        decode_all(&mut d, &hex("88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007")),
        pairs(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
        ])
    );
}

#[test]
fn broken_blocks_are_compression_errors() {
    let mut d = Decoder::new(4096);
    let mut ignore = |_: &[u8], _: &[u8]| {};
    for bad in [
        &[0x80][..],                         // index 0
        &[0xbf][..],                         // index 62, table empty
        &[0x82, 0x3f, 0xe1, 0x1f][..],       // size update after a field
        &[0x3f, 0xe2, 0x1f][..],             // size update past 4,096
        &[0x40, 0x05, b'a'][..],             // name string past the block
        &[0x0f, 0x2f, 0x01, 0x81, 0x00][..], // Huffman string of bad padding
    ] {
        assert!(d.decode(bad, &mut ignore).is_err(), "{bad:02x?}");
    }
}

#[test]
fn repeated_requests_become_indexes() {
    let fields: [(&[u8], &[u8]); 7] = [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"svc.internal:8080"),
        (b":path", b"/api/items"),
        (b"user-agent", b"curl/8.1"),
        (b"x-request-id", b"0123456789abcdef"),
        (b"authorization", b"Bearer secret"),
    ];
    let mut e = Encoder::new();
    let mut d = Decoder::new(4096);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let mut block = Vec::new();
        e.begin_block(&mut block);
        for (n, v) in fields {
            e.field(n, v, &mut block);
        }
        sizes.push(block.len());
        let got = decode_all(&mut d, &block);
        let want: Vec<_> = fields
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        assert_eq!(got, want);
    }
    // After the first block, five fields are one octet each; the ID (a new name:
    // 1 + 1 + 12 + 1 + 16) and the credentials (name index 23 in two octets, then
    // 1 + 13) are literals.
    assert_eq!(sizes[1..], [5 + 31 + 16, 5 + 31 + 16], "{sizes:?}");
    // The credentials never enter the table: marked never-indexed (0x1_).
    let mut block = Vec::new();
    e.field(b"authorization", b"x", &mut block);
    assert_eq!(block[0] & 0xf0, 0x10);
}

#[test]
fn a_smaller_peer_table_is_announced_and_kept() {
    let mut e = Encoder::new();
    let mut d = Decoder::new(4096);
    e.set_peer_limit(64);
    for i in 0..20 {
        let mut block = Vec::new();
        e.begin_block(&mut block);
        let value = format!("value-{i}");
        e.field(b"x-a", value.as_bytes(), &mut block);
        e.field(b"x-b", b"constant", &mut block);
        let got = decode_all(&mut d, &block);
        assert_eq!(got[0].1, value);
        assert_eq!(got[1].1, "constant");
    }
}

#[test]
fn repeated_huffman_strings_decode_the_same_from_the_cache() {
    // Literal without indexing, name `date` (static 33), Huffman value; then one
    // of the same length and last octet but other bytes (same cache slot).
    let block = |value: &[u8]| {
        let mut b = Vec::new();
        encode_int(33, 4, 0x00, &mut b);
        let mut coded = Vec::new();
        huffman::encode(value, &mut coded);
        encode_int(coded.len(), 7, 0x80, &mut b);
        b.extend_from_slice(&coded);
        b
    };
    let mut d = Decoder::new(4096);
    for value in [
        &b"Mon, 21 Oct 2013 20:13:21 GMT"[..],
        b"Mon, 21 Oct 2013 20:13:21 GMT",
        b"Mon, 21 Oct 2013 20:13:31 GMT",
    ] {
        let got = decode_all(&mut d, &block(value));
        assert_eq!(got, pairs(&[("date", std::str::from_utf8(value).unwrap())]));
    }
}
