//! The upstream response-head parser, and the chunked scan of what follows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::http::{parse_response, BodyFraming, BodyProgress, ResponseHead};

fuzz_target!(|data: &[u8]| {
    for was_head in [false, true] {
        let mut head = ResponseHead::default();
        if let Ok(Some(())) = parse_response(data, was_head, &mut head) {
            assert!(head.head_len <= data.len());
            let src = &data[..head.head_len];
            assert!(src.get(head.reason.clone()).is_some());
            for h in &head.headers {
                assert!(src.get(h.name.clone()).is_some() && src.get(h.value.clone()).is_some());
            }
            if was_head {
                assert_eq!(head.body, BodyFraming::None);
            }
            let mut body = BodyProgress::new(head.body);
            if let Ok(step) = body.advance(&data[head.head_len..]) {
                assert_eq!(step.forward, step.consumed);
                assert_eq!(step.tail, 0);
            }
        }
    }
});
