//! Request heads the gateway writes as a client on its own behalf (the span
//! exporter's POSTs to a collector), as opposed to the proxied heads of
//! `forwarded.rs`.

use std::io::Write as _;

use super::forwarded::header;
use super::FieldList;

/// Writes an HTTP/1.1 request head into `w` (cleared first): `method target`,
/// `host`, `fields` in order, then `content-length: body_len` when a body
/// follows. The connection is kept alive (HTTP/1.1's default).
pub fn write_request_head(
    w: &mut Vec<u8>,
    method: &str,
    target: &str,
    host: &str,
    fields: &FieldList,
    body_len: Option<usize>,
) {
    w.clear();
    let _ = write!(w, "{method} {target} HTTP/1.1\r\n");
    header(w, b"host", host.as_bytes());
    for (name, value) in fields.iter() {
        header(w, name, value);
    }
    if let Some(n) = body_len {
        let _ = write!(w, "content-length: {n}\r\n");
    }
    w.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_head() {
        let mut fields = FieldList::new();
        fields.push(b"content-type", b"application/x-protobuf");
        let mut w = b"old".to_vec();
        write_request_head(&mut w, "POST", "/v1/traces", "c:4318", &fields, Some(12));
        assert_eq!(
            w,
            b"POST /v1/traces HTTP/1.1\r\nhost: c:4318\r\ncontent-type: application/x-protobuf\r\ncontent-length: 12\r\n\r\n"
        );
    }
}
