//! Rendering a part's templates from the request: `{path.NAME}` (a named segment of
//! the route's path), `{query.NAME}`, `{header.NAME}` and `{claim.NAME}` (the
//! verified caller's). Values are decoded from the form they arrived in, then
//! encoded for where they go: percent-encoded into a path segment or a query
//! component, as is into a header field. A value that is absent or empty stops the
//! call before any part is sent (400 naming it).

use std::borrow::Cow;

use crate::auth::Caller;
use crate::config::{Encoding, Template, TemplatePiece, ValueSource};
use crate::http::HeaderLookup;
use crate::route::path_segment;

/// What templates read from the request.
pub struct RequestValues<'a> {
    /// The normalized path (escapes of reserved characters kept).
    pub path: &'a str,
    /// The query as received, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a dyn HeaderLookup,
    pub caller: Option<&'a Caller>,
}

/// A placeholder whose value cannot be used: the client gets 400 naming it.
#[derive(Debug, PartialEq, Eq)]
pub struct Unrenderable {
    /// The placeholder as written, e.g. `query.for`.
    pub placeholder: String,
    pub why: &'static str,
}

/// Appends `template` rendered from `values` to `out`.
pub fn render(
    template: &Template,
    values: &RequestValues<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Unrenderable> {
    for piece in &template.pieces {
        match piece {
            TemplatePiece::Literal(text) => out.extend_from_slice(text.as_bytes()),
            TemplatePiece::Value(p) => {
                let fail = |why| Unrenderable {
                    placeholder: p.text.clone(),
                    why,
                };
                let value = lookup(&p.source, values).ok_or_else(|| fail("missing"))?;
                if value.is_empty() {
                    return Err(fail("empty"));
                }
                match p.encoding {
                    Encoding::PathSegment => {
                        if *value == *b"." || *value == *b".." {
                            return Err(fail("not allowed as a path segment"));
                        }
                        percent_encode(&value, out);
                    }
                    Encoding::QueryComponent => percent_encode(&value, out),
                    Encoding::FieldValue => {
                        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                            return Err(fail("holds characters not allowed in a header"));
                        }
                        out.extend_from_slice(&value);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The decoded value of one placeholder, if the request has it.
fn lookup<'a>(source: &ValueSource, values: &RequestValues<'a>) -> Option<Cow<'a, [u8]>> {
    match source {
        ValueSource::Path(index) => path_segment(values.path, *index).map(|s| decode(s, false)),
        ValueSource::Query(name) => query_value(values.query?, name),
        ValueSource::Header(name) => values.headers.get(name.as_bytes()).map(Cow::Borrowed),
        ValueSource::Claim(name) => values
            .caller?
            .claim_text(name)
            .map(|text| Cow::Owned(text.into_bytes())),
    }
}

/// The first value of parameter `name` in `query`, decoded as HTML forms encode
/// (`+` is a space, `%XX` a byte), names compared after decoding.
fn query_value<'a>(query: &'a str, name: &str) -> Option<Cow<'a, [u8]>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (*decode(key, true) == *name.as_bytes()).then(|| decode(value, true))
    })
}

/// Percent-decodes `text` (`+` as a space when `form`); a `%` without two hex
/// digits stays as it is.
fn decode(text: &str, form: bool) -> Cow<'_, [u8]> {
    let bytes = text.as_bytes();
    let escaped = bytes.contains(&b'%') || (form && bytes.contains(&b'+'));
    if !escaped {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if form => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Appends `value` with every byte but `A-Z a-z 0-9 - . _ ~` percent-encoded
/// (RFC 3986 §2.3), so it stays one path segment or one query component.
fn percent_encode(value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Placeholder;

    struct Headers(&'static [(&'static str, &'static str)]);

    impl HeaderLookup for Headers {
        fn get(&self, name: &[u8]) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(n, _)| n.as_bytes() == name)
                .map(|(_, v)| v.as_bytes())
        }
        fn each<'s>(&'s self, f: &mut dyn FnMut(&'s [u8], &'s [u8])) {
            for (n, v) in self.0 {
                f(n.as_bytes(), v.as_bytes());
            }
        }
    }

    fn value(source: ValueSource, encoding: Encoding) -> TemplatePiece {
        TemplatePiece::Value(Placeholder {
            source,
            encoding,
            text: "x".into(),
        })
    }

    fn rendered(
        pieces: Vec<TemplatePiece>,
        values: &RequestValues<'_>,
    ) -> Result<String, Unrenderable> {
        let mut out = Vec::new();
        render(&Template { pieces }, values, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    const HEADERS: Headers = Headers(&[("x-lang", "de-CH"), ("x-bad", "a\u{1}b")]);

    fn values() -> RequestValues<'static> {
        RequestValues {
            path: "/screens/a%2Cb/42",
            query: Some("for=x+y%2Fz&empty=&dot=..&q%20k=1"),
            headers: &HEADERS,
            caller: None,
        }
    }

    #[test]
    fn values_are_decoded_then_encoded_for_their_place() {
        let v = values();
        let path = rendered(
            vec![
                TemplatePiece::Literal("/u/".into()),
                value(ValueSource::Path(1), Encoding::PathSegment),
                TemplatePiece::Literal("?for=".into()),
                value(ValueSource::Query("for".into()), Encoding::QueryComponent),
                TemplatePiece::Literal("&k=".into()),
                value(ValueSource::Query("q k".into()), Encoding::QueryComponent),
            ],
            &v,
        );
        assert_eq!(path.unwrap(), "/u/a%2Cb?for=x%20y%2Fz&k=1");
        let header = rendered(
            vec![
                TemplatePiece::Literal("lang=".into()),
                value(ValueSource::Header("x-lang".into()), Encoding::FieldValue),
            ],
            &v,
        );
        assert_eq!(header.unwrap(), "lang=de-CH");
    }

    #[test]
    fn missing_empty_and_unsafe_values_are_refused() {
        let v = values();
        let why = |source, encoding| rendered(vec![value(source, encoding)], &v).unwrap_err().why;
        assert_eq!(
            why(ValueSource::Query("nope".into()), Encoding::QueryComponent),
            "missing"
        );
        assert_eq!(
            why(ValueSource::Query("empty".into()), Encoding::QueryComponent),
            "empty"
        );
        assert_eq!(
            why(ValueSource::Query("dot".into()), Encoding::PathSegment),
            "not allowed as a path segment"
        );
        assert_eq!(why(ValueSource::Path(7), Encoding::PathSegment), "missing");
        assert_eq!(
            why(ValueSource::Claim("sub".into()), Encoding::PathSegment),
            "missing"
        );
        assert_eq!(
            why(ValueSource::Header("x-bad".into()), Encoding::FieldValue),
            "holds characters not allowed in a header"
        );
    }
}
