//! Finding the bearer token in a request: `Authorization: Bearer`, another header,
//! a query parameter or a cookie, as a provider's `token_from` lists them.
//!
//! Every listed place is looked at. Two *different* tokens in one request are an
//! error (RFC 6750 §2: a client uses one method), the same token twice is not.

use crate::http::HeaderLookup;

/// One `token_from` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `header:NAME`, lowercase. For `authorization` the value must use the
    /// `Bearer` scheme; any other header carries the bare token.
    Header(String),
    /// `query:NAME`: a query parameter, taken verbatim (JWTs need no escaping).
    Query(String),
    /// `cookie:NAME`.
    Cookie(String),
}

impl TokenSource {
    /// Parses `header:NAME`, `query:NAME` or `cookie:NAME`.
    pub fn parse(s: &str) -> Option<TokenSource> {
        let (kind, name) = s.split_once(':')?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"=;,\"".contains(&b))
        {
            return None;
        }
        match kind {
            "header" => Some(TokenSource::Header(name.to_ascii_lowercase())),
            "query" => Some(TokenSource::Query(name.to_string())),
            "cookie" => Some(TokenSource::Cookie(name.to_string())),
            _ => None,
        }
    }
}

/// What the request carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    Nothing,
    Token(&'a [u8]),
    /// Two different tokens.
    Conflicting,
}

/// The request parts authentication looks at, whatever protocol carried them.
pub struct RequestParts<'a> {
    pub method: &'a [u8],
    pub headers: &'a dyn HeaderLookup,
    pub query: Option<&'a str>,
}

impl<'a> RequestParts<'a> {
    /// Calls `f(name, value)` for every field, repeated names included.
    pub fn each_field(&self, f: &mut dyn FnMut(&'a [u8], &'a [u8])) {
        self.headers.each(f);
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers.get(name)
    }
}

/// Looks in every place `sources` lists.
pub fn find<'a>(sources: &'a [TokenSource], req: &RequestParts<'a>) -> Found<'a> {
    let mut found: Option<&'a [u8]> = None;
    let mut conflict = false;
    let mut note = |t: &'a [u8]| match found {
        None => found = Some(t),
        Some(prev) if prev != t => conflict = true,
        Some(_) => {}
    };
    for source in sources {
        match source {
            TokenSource::Header(name) => req.each_field(&mut |n, v| {
                if n.eq_ignore_ascii_case(name.as_bytes()) {
                    if let Some(t) = header_token(name == "authorization", v) {
                        note(t);
                    }
                }
            }),
            TokenSource::Query(name) => {
                for pair in req.query.unwrap_or("").split('&') {
                    if let Some((k, v)) = pair.split_once('=') {
                        if k == name && !v.is_empty() {
                            note(v.as_bytes());
                        }
                    }
                }
            }
            TokenSource::Cookie(name) => req.each_field(&mut |n, v| {
                if n.eq_ignore_ascii_case(b"cookie") {
                    for t in cookie_values(v, name.as_bytes()) {
                        note(t);
                    }
                }
            }),
        }
    }
    match (found, conflict) {
        (_, true) => Found::Conflicting,
        (Some(t), false) => Found::Token(t),
        (None, false) => Found::Nothing,
    }
}

/// The token in one header value; `None` if the value holds none.
fn header_token(bearer_scheme: bool, value: &[u8]) -> Option<&[u8]> {
    let v = value.trim_ascii();
    let token = if bearer_scheme {
        // RFC 6750 §2.1: "Bearer" (case-insensitive), one or more spaces, the token.
        if v.len() < 7 || !v[..6].eq_ignore_ascii_case(b"bearer") || v[6] != b' ' {
            return None;
        }
        v[7..].trim_ascii_start()
    } else {
        v
    };
    (!token.is_empty()).then_some(token)
}

/// The values of cookie `name` in one `Cookie` header.
pub fn cookie_values<'a>(value: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    value.split(|&b| b == b';').filter_map(move |pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (&pair[..eq], &pair[eq + 1..]);
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v);
        (k == name && !v.is_empty()).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `find` over a head made of `lines`.
    fn find_in(sources: &[&str], lines: &[(&str, &str)], query: Option<&str>) -> Option<String> {
        let sources: Vec<TokenSource> = sources
            .iter()
            .filter_map(|s| TokenSource::parse(s))
            .collect();
        let mut fields = crate::http::FieldList::new();
        for (n, v) in lines {
            fields.push(n.as_bytes(), v.as_bytes());
        }
        let req = RequestParts {
            method: b"GET",
            headers: &fields,
            query,
        };
        match find(&sources, &req) {
            Found::Nothing => None,
            Found::Token(t) => Some(String::from_utf8_lossy(t).to_string()),
            Found::Conflicting => Some("CONFLICT".to_string()),
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let a = ["header:authorization"];
        assert_eq!(
            find_in(&a, &[("Authorization", "bearer abc")], None).as_deref(),
            Some("abc")
        );
        assert_eq!(
            find_in(&a, &[("authorization", "Bearer  abc ")], None).as_deref(),
            Some("abc")
        );
        assert_eq!(find_in(&a, &[("authorization", "Basic abc")], None), None);
        assert_eq!(find_in(&a, &[("authorization", "Bearer")], None), None);
    }

    #[test]
    fn two_different_tokens_conflict_and_the_same_twice_does_not() {
        let s = ["header:authorization", "query:access_token", "cookie:tok"];
        let same = find_in(
            &s,
            &[("authorization", "Bearer t1"), ("cookie", "a=b; tok=t1")],
            Some("access_token=t1"),
        );
        assert_eq!(same.as_deref(), Some("t1"));
        let two = find_in(
            &s,
            &[("authorization", "Bearer t1")],
            Some("x=1&access_token=t2"),
        );
        assert_eq!(two.as_deref(), Some("CONFLICT"));
        let two_headers = find_in(
            &s,
            &[
                ("authorization", "Bearer t1"),
                ("authorization", "Bearer t2"),
            ],
            None,
        );
        assert_eq!(two_headers.as_deref(), Some("CONFLICT"));
    }

    #[test]
    fn sources_parse() {
        assert_eq!(
            TokenSource::parse("header:X-Token"),
            Some(TokenSource::Header("x-token".into()))
        );
        assert_eq!(
            TokenSource::parse("cookie:session"),
            Some(TokenSource::Cookie("session".into()))
        );
        assert_eq!(TokenSource::parse("query:"), None);
        assert_eq!(TokenSource::parse("body:x"), None);
    }
}
