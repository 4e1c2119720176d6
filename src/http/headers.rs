//! Header classification: which headers stop at this hop, which names the gateway
//! owns (sets itself, never forwards as a client sent them), and what becomes of
//! other spellings of those names. CGI, WSGI, Rack and PHP read `X_User_Id` as
//! `HTTP_X_USER_ID`, like `X-User-Id`; old Apache CGI did the same with any
//! character that is not a letter or a digit (`X.User.Id`). So a name is
//! compared *folded*: letter case ignored, and every character other than a
//! letter or a digit read as `-`.

use super::HttpError;

/// RFC 9110 `tchar` (§5.6.2): what tokens are made of (field names, chunk
/// extension names and values, method names).
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// RFC 9110 `token` (§5.6.2): one or more `tchar` (method and field names, the
/// names and values configuration takes where HTTP wants a token).
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// `tchar` by byte: one load per byte on paths that check every name.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let allowed = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut i = 0;
    while i < allowed.len() {
        t[allowed[i] as usize] = true;
        i += 1;
    }
    t
};

/// Headers that describe one connection and are never forwarded (RFC 9110 §7.6.1),
/// plus the framing and expectation headers the gateway re-creates itself.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: &[&[u8]] = &[
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"content-length",
        b"expect",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name)) || has_prefix(name, b"proxy-")
}

/// What the codec does with a client header whose name contains `_`
/// (`[server] headers_with_underscores`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    /// Removed from the request before anything reads it (nginx's default).
    #[default]
    Drop,
    /// The request is refused with 400 (Envoy's `REJECT_REQUEST`).
    Reject,
    /// Forwarded (a name that folds onto a reserved one is still removed, in
    /// every mode: see [`folds_onto_reserved`]).
    Allow,
}

/// What becomes of a client field named `name`, by the rules above: `Ok(true)`
/// kept; `Ok(false)` left out of the request before anything reads it (a name
/// with `_` under [`UnderscoreHeaders::Drop`], or another spelling of a name the
/// gateway owns or that stops at this hop, in every mode); `Err` the request is
/// refused with 400 (a name with `_` under [`UnderscoreHeaders::Reject`]). The
/// HTTP/1.1 head parser applies it to every field; an HTTP/2 stream must apply
/// it to its decoded header list the same way. Costs one scan of the name.
pub fn screen_field_name(name: &[u8], underscores: UnderscoreHeaders) -> Result<bool, HttpError> {
    if !needs_folding(name) {
        return Ok(true);
    }
    if name.contains(&b'_') {
        match underscores {
            UnderscoreHeaders::Drop => return Ok(false),
            UnderscoreHeaders::Reject => {
                return Err(HttpError::bad_request("header name with an underscore"))
            }
            UnderscoreHeaders::Allow => {}
        }
    }
    // Another spelling of a name the gateway owns or stops at this hop
    // (`Transfer_Encoding`, `X.Forwarded.For`): removed in every mode.
    Ok(!folds_onto_reserved(name))
}

/// Names the gateway sets itself on the way upstream, so a client's copy never
/// passes as sent: `Host` (the request's authority), every `X-Forwarded-*`
/// (`-For` is appended to, `-Proto` and `-Host` set, the rest dropped),
/// `Forwarded` and `X-Real-IP` (replaced), `X-Request-Id` (adopted when sane,
/// then set); and, dropped, overrides some frameworks obey instead of the
/// request line or `Host`: `X-Original-URL`, `X-Rewrite-URL` (path),
/// `X-Host`, `X-Original-Host`, `X-HTTP-Host-Override` (host),
/// `X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override` (method).
/// `name` as received, any case.
pub fn is_gateway_owned(name: &[u8]) -> bool {
    const OWNED: &[&[u8]] = &[
        b"host",
        b"forwarded",
        b"x-real-ip",
        b"x-request-id",
        b"x-original-url",
        b"x-rewrite-url",
        b"x-host",
        b"x-original-host",
        b"x-http-host-override",
        b"x-http-method-override",
        b"x-http-method",
        b"x-method-override",
    ];
    has_prefix(name, b"x-forwarded-") || OWNED.iter().any(|o| o.eq_ignore_ascii_case(name))
}

/// `name` starts with `prefix` (lowercase), any case.
pub fn has_prefix(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The same header name once folded (see the module doc): ASCII
/// case-insensitive, and any two non-alphanumeric characters equal.
pub fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| fold(x) == fold(y))
}

/// `name` starts with `prefix`, both folded.
pub fn has_prefix_folded(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && same_name(&name[..prefix.len()], prefix)
}

/// `name` has a character that folding changes into `-` (anything but a letter,
/// a digit or `-`): only such a name can be another spelling of a reserved one.
pub fn needs_folding(name: &[u8]) -> bool {
    name.iter()
        .any(|&b| !b.is_ascii_alphanumeric() && b != b'-')
}

/// Folded, `name` is a hop-by-hop name or one the gateway owns. (Identity
/// headers are configured names, checked by the auth stage.)
pub fn folds_onto_reserved(name: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    let n = name.len().min(buf.len());
    for (o, &b) in buf.iter_mut().zip(&name[..n]) {
        *o = fold(b);
    }
    // A name longer than the buffer can only match by prefix, which the first
    // 64 bytes decide.
    let folded = &buf[..n];
    is_hop_by_hop(folded) || is_gateway_owned(folded)
}

fn fold(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// The header names listed in `Connection` headers, which are hop-by-hop too.
/// Kept as a small list of byte strings borrowed from the head.
#[derive(Default)]
pub struct ConnectionTokens<'a> {
    names: Vec<&'a [u8]>,
}

impl<'a> ConnectionTokens<'a> {
    /// Adds the comma-separated tokens of one `Connection` header value.
    pub fn add(&mut self, value: &'a [u8]) {
        for token in value.split(|&b| b == b',') {
            let t = token.trim_ascii();
            if !t.is_empty() {
                self.names.push(t);
            }
        }
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_token` is RFC 9110's `1*tchar`: every byte value alone, the empty string,
    /// and a bad byte after good ones.
    #[test]
    fn tokens_are_one_or_more_tchars() {
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        for b in 0..=255u8 {
            assert_eq!(is_tchar(b), tchar(b), "byte {b}");
            assert_eq!(is_token(&[b]), tchar(b), "byte {b}");
        }
        assert!(!is_token(b""));
        assert!(is_token(b"X-Request-Id"));
        assert!(!is_token(b"x-request id"));
        assert!(!is_token(b"name:"));
    }

    #[test]
    fn hop_by_hop_headers() {
        for h in [
            "Connection",
            "keep-alive",
            "TE",
            "Trailer",
            "Upgrade",
            "Proxy-Authorization",
            "Proxy-Foo",
        ] {
            assert!(is_hop_by_hop(h.as_bytes()), "{h}");
        }
        for h in ["host", "x-proxy", "content-type", "authorization"] {
            assert!(!is_hop_by_hop(h.as_bytes()), "{h}");
        }
    }

    #[test]
    fn owned_names_in_every_spelling() {
        for owned in [
            "Host",
            "X-Forwarded-For",
            "x-forwarded-prefix",
            "X-FORWARDED-PORT",
            "Forwarded",
            "X-Real-IP",
            "X-Request-Id",
            "X-Original-URL",
            "x-rewrite-url",
        ] {
            assert!(is_gateway_owned(owned.as_bytes()), "{owned}");
        }
        assert!(!is_gateway_owned(b"x-forwarded"));
        assert!(!is_gateway_owned(b"x-user-id"));
        for folded in [
            "X_Forwarded_For",
            "x_forwarded_host",
            "X_Real_IP",
            "X_Request_Id",
            "Transfer_Encoding",
            "Content_Length",
            "Proxy_Authorization",
            "X_Original_URL",
            "X.Forwarded.For",
            "x~real~ip",
            "X-HTTP-Method-Override",
            "X_Host",
        ] {
            assert!(folds_onto_reserved(folded.as_bytes()), "{folded}");
        }
        assert!(!folds_onto_reserved(b"X_Api_Key"));
        let long = format!("X_Forwarded_{}", "a".repeat(100));
        assert!(folds_onto_reserved(long.as_bytes()));
        assert!(same_name(b"X_User_Id", b"x-user-id"));
        assert!(!same_name(b"X_User_Idx", b"x-user-id"));
        assert!(has_prefix_folded(b"X_Portico_Role", b"x-portico-"));
        assert!(same_name(b"X.User+Id", b"x-user-id"));
        assert!(needs_folding(b"X_A") && needs_folding(b"X.A") && !needs_folding(b"X-A9"));
    }

    #[test]
    fn connection_tokens() {
        let mut t = ConnectionTokens::default();
        t.add(b"close, X-Secret ,, keep-alive");
        assert!(t.contains(b"x-secret"));
        assert!(t.contains(b"CLOSE"));
        assert!(!t.contains(b"x-other"));
    }
}
