//! Identity headers: the ones only the gateway may set. Client copies are removed
//! from every request before routing; verified values are added on the way out;
//! and with `forward_token = false` the token itself is taken out of the request.

use std::borrow::Cow;

use crate::http::{has_prefix_folded, same_name, FieldList, HeaderEdit};

use super::caller::Caller;
use super::settings::{AuthSettings, RESERVED_PREFIX};
use super::token::{cookie_values, TokenSource};

/// True for a field only the gateway may set: a configured `claims_to_headers`
/// name, the `x-portico-` prefix, or another reserved name (the client-certificate
/// subject field). Client copies are removed from every request before routing.
/// Compared in any spelling a server behind the gateway may read as the same
/// name: any case, and `_` (or any other non-alphanumeric character) for `-`
/// (CGI, WSGI and PHP read `X_User_Id` as `HTTP_X_USER_ID`, as they read
/// `X-User-Id`).
pub fn is_identity_header(settings: &AuthSettings, name: &[u8]) -> bool {
    has_prefix_folded(name, RESERVED_PREFIX)
        || settings.identity_headers.iter().any(|h| same_name(h, name))
}

/// What authentication changes in the request that goes upstream.
#[derive(Clone, Copy, Default)]
pub struct Outbound<'a> {
    pub caller: Option<&'a Caller>,
    /// Where the token may have come from, when `forward_token = false`.
    pub drop_token: &'a [TokenSource],
}

impl<'a> Outbound<'a> {
    /// The identity fields to append to the upstream request.
    pub fn identity_headers(&self) -> Option<&'a FieldList> {
        self.caller.map(|c| &c.identity_headers)
    }

    /// What happens to one client header upstream: only the token's own header or
    /// cookie is touched (`Replace` = a `Cookie` line without the token cookie).
    pub fn header_fate(&self, name: &[u8], value: &[u8]) -> HeaderEdit {
        for source in self.drop_token {
            match source {
                TokenSource::Header(h) if name.eq_ignore_ascii_case(h.as_bytes()) => {
                    return HeaderEdit::Drop
                }
                TokenSource::Cookie(c) if name.eq_ignore_ascii_case(b"cookie") => {
                    if cookie_values(value, c.as_bytes()).next().is_none() {
                        continue;
                    }
                    let kept: Vec<&[u8]> = value
                        .split(|&b| b == b';')
                        .map(<[u8]>::trim_ascii)
                        .filter(|pair| !pair.is_empty() && !is_cookie_named(pair, c.as_bytes()))
                        .collect();
                    return if kept.is_empty() {
                        HeaderEdit::Drop
                    } else {
                        HeaderEdit::Replace(kept.join(&b"; "[..]))
                    };
                }
                _ => {}
            }
        }
        HeaderEdit::Keep
    }

    /// The query to send upstream: without the token's parameter when it is dropped.
    pub fn query<'q>(&self, query: &'q str) -> Cow<'q, str> {
        let names: Vec<&str> = self
            .drop_token
            .iter()
            .filter_map(|s| match s {
                TokenSource::Query(q) => Some(q.as_str()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Cow::Borrowed(query);
        }
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
                !names.contains(&key)
            })
            .collect();
        Cow::Owned(kept.join("&"))
    }
}

/// `name=...` for exactly this cookie name.
fn is_cookie_named(pair: &[u8], name: &[u8]) -> bool {
    pair.starts_with(name) && pair.get(name.len()) == Some(&b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_prefix_and_configured_names_are_identity_headers() {
        let s = AuthSettings {
            providers: Vec::new(),
            identity_headers: vec![b"x-user-id".to_vec()],
        };
        assert!(is_identity_header(&s, b"X-User-Id"));
        assert!(is_identity_header(&s, b"X_User_Id"));
        assert!(is_identity_header(&s, b"x-user_id"));
        assert!(is_identity_header(&s, b"X.User.Id"));
        assert!(is_identity_header(&s, b"X-Portico-Anything"));
        assert!(is_identity_header(&s, b"X_Portico_Role"));
        assert!(!is_identity_header(&s, b"x-user"));
        assert!(!is_identity_header(&s, b"x-porti"));
    }

    #[test]
    fn dropped_token_leaves_the_rest() {
        let sources = [
            TokenSource::Cookie("tok".into()),
            TokenSource::Query("access_token".into()),
            TokenSource::Header("authorization".into()),
        ];
        let out = Outbound {
            caller: None,
            drop_token: &sources,
        };
        assert!(matches!(
            out.header_fate(b"Authorization", b"Bearer x"),
            HeaderEdit::Drop
        ));
        match out.header_fate(b"Cookie", b"a=1; tok=xyz; b=2") {
            HeaderEdit::Replace(v) => assert_eq!(v, b"a=1; b=2"),
            _ => panic!("cookie rewritten"),
        }
        assert!(matches!(
            out.header_fate(b"Cookie", b"tok=xyz"),
            HeaderEdit::Drop
        ));
        assert!(matches!(
            out.header_fate(b"Cookie", b"a=1"),
            HeaderEdit::Keep
        ));
        assert_eq!(out.query("a=1&access_token=t&b=2"), "a=1&b=2");
    }
}
