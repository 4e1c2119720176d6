//! The request-head parser under every `headers_with_underscores` rule, and the
//! round trip of what the gateway writes upstream: a head that parses, written
//! upstream and parsed again, gives the same method, path, query, authority,
//! version and body framing.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use portico::http::{
    check_authority, parse_request, write_upstream_request, FieldList, HeadLimits, HeaderEdit,
    Parsed, RequestHead, TraceFields, UnderscoreHeaders, UpstreamRequest,
};
use portico::route::{normalize_path, PathParameters};

const TRACEPARENT: &[u8] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

const RULES: [UnderscoreHeaders; 3] = [
    UnderscoreHeaders::Drop,
    UnderscoreHeaders::Reject,
    UnderscoreHeaders::Allow,
];

fn limits(underscores: UnderscoreHeaders) -> HeadLimits {
    HeadLimits {
        max_header_bytes: 16384,
        max_headers: 100,
        max_uri_bytes: 8192,
        underscores,
    }
}

fuzz_target!(|data: &[u8]| {
    for rule in RULES {
        let mut head = RequestHead::default();
        if let Ok(Parsed::Complete) = parse_request(data, &limits(rule), &mut head) {
            check_ranges(data, &head);
            round_trip(data, &head);
        }
    }
});

fn check_ranges(data: &[u8], head: &RequestHead) {
    assert!(head.head_len <= data.len());
    let src = &data[..head.head_len];
    assert!(src.get(head.method.clone()).is_some());
    assert!(src.get(head.target.clone()).is_some());
    assert!(src.get(head.path_and_query.clone()).is_some());
    for h in &head.headers {
        assert!(src.get(h.name.clone()).is_some() && src.get(h.value.clone()).is_some());
    }
    if let Some(authority) = head.authority(src) {
        assert!(check_authority(authority).is_ok());
    } else {
        assert_eq!(head.minor_version, 0, "HTTP/1.1 always has an authority");
    }
}

fn round_trip(data: &[u8], head: &RequestHead) {
    let src = &data[..head.head_len];
    let Ok(target) = normalize_path(head.path_and_query(src), PathParameters::Strip) else {
        return;
    };
    let host = head.authority(src).unwrap_or(b"upstream.internal");
    let mut identity = FieldList::new();
    identity.push(b"x-user-id", b"alice");
    let req = UpstreamRequest {
        method: &src[head.method.clone()],
        path: &target.path,
        query: target.query.as_deref(),
        host,
        client_host: head.authority(src),
        client_ip: &portico::text::ip_text(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        secure: false,
        http10: head.minor_version == 0,
        body: head.body,
        upgrade: None,
        added: &[&identity],
        request_id: b"0123456789abcdef",
        // Half the inputs as a traced request: the gateway's own traceparent goes up.
        trace: if src.len() % 2 == 1 {
            TraceFields::Replace {
                traceparent: TRACEPARENT,
                tracestate: None,
            }
        } else {
            TraceFields::PassThrough
        },
    };
    let mut out = Vec::new();
    let marks = write_upstream_request(&mut out, &head.fields(src), &req, |_, _| HeaderEdit::Keep);
    assert_eq!(&out[marks.host], host);
    if let TraceFields::Replace { traceparent, .. } = req.trace {
        let at = marks.traceparent.expect("a traceparent was written");
        assert_eq!(&out[at], traceparent);
    }
    let mut again = RequestHead::default();
    let big = HeadLimits {
        max_header_bytes: 1 << 20,
        max_headers: 1000,
        max_uri_bytes: 1 << 20,
        underscores: UnderscoreHeaders::Allow,
    };
    let parsed = parse_request(&out, &big, &mut again);
    assert_eq!(
        parsed,
        Ok(Parsed::Complete),
        "the upstream head does not parse: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(again.head_len, out.len());
    assert_eq!(&out[again.method.clone()], &src[head.method.clone()]);
    let mut path_and_query = target.path.clone().into_bytes();
    if let Some(q) = &target.query {
        path_and_query.push(b'?');
        path_and_query.extend_from_slice(q.as_bytes());
    }
    assert_eq!(again.path_and_query(&out), &path_and_query[..]);
    assert_eq!(again.authority(&out), Some(host));
    assert_eq!(again.minor_version, head.minor_version);
    assert_eq!(again.body, head.body);
    let again_target =
        normalize_path(again.path_and_query(&out), PathParameters::Reject).expect("normal form");
    assert_eq!(again_target, target);
}
