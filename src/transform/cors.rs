//! CORS (the Fetch standard's CORS protocol) answered at the door, per route: a
//! preflight is answered by the gateway from the route's policy, and an actual
//! request from an allowed origin gets the `Access-Control-Allow-*` fields on
//! whatever response it gets. The policy is static configuration, so answering costs
//! what a static answer costs; docs/transform.md has the decisions.

use crate::http::{is_token, FieldList, HeaderLookup};

/// A route's `cors = { ... }`, compiled.
#[derive(Debug)]
pub struct CorsPolicy {
    origins: AllowOrigins,
    methods: AllowList,
    headers: AllowList,
    credentials: bool,
    /// `access-control-allow-methods` for a listed policy.
    methods_value: Box<[u8]>,
    /// `access-control-expose-headers`, when there are any.
    expose_value: Option<Box<[u8]>>,
    /// `access-control-max-age`, when set.
    max_age_value: Option<Box<[u8]>>,
}

/// `allow_origins`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowOrigins {
    /// `["*"]`: every origin (never with credentials).
    Any,
    Only(Vec<OriginPattern>),
}

/// `allow_methods` or `allow_headers`: `["*"]` (whatever the preflight asks for is
/// allowed and echoed) or a list (methods uppercase, header names lowercase).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowList {
    Any,
    Only(Vec<String>),
}

/// One entry of `allow_origins` other than `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginPattern {
    /// `https://app.example.com`, `http://localhost:3000`, or `null`: the same
    /// serialized origin (any case).
    Exact(String),
    /// `https://*.example.com[:8443]`: that scheme and port (none = the default),
    /// any host one or more labels under the domain. `*.example.com`: http or
    /// https, any port.
    Subdomains {
        scheme: Option<String>,
        /// `example.com`, lowercase.
        domain: String,
        port: Option<u16>,
    },
}

/// Why a preflight was refused (403, no CORS fields).
pub type Refusal = &'static str;

/// The methods a request may use without a preflight (Fetch: CORS-safelisted).
const SAFELISTED_METHODS: [&[u8]; 3] = [b"GET", b"HEAD", b"POST"];
/// `Vary` of a preflight answer, allowed or refused: it depends on all three
/// request fields.
pub const PREFLIGHT_VARY: &[u8] =
    b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The method a CORS preflight asks about (`Access-Control-Request-Method`) when the
/// request is one: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn preflight_method<'h>(method: &[u8], headers: &'h dyn HeaderLookup) -> Option<&'h [u8]> {
    if method != b"OPTIONS" {
        return None;
    }
    headers.get(b"origin")?;
    headers
        .get(b"access-control-request-method")
        .filter(|m| !m.is_empty())
}

/// Whether a response field is one of CORS's (`Access-Control-*`), which the gateway
/// answers itself on a route with `cors` (the upstream's are dropped).
pub fn is_cors_field(name: &[u8]) -> bool {
    const PREFIX: &[u8] = b"access-control-";
    name.len() > PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
}

impl CorsPolicy {
    /// Compiles a policy; the parts were checked by the configuration loader
    /// (`*` origins never with `credentials`, tokens only).
    pub fn new(
        origins: AllowOrigins,
        methods: AllowList,
        headers: AllowList,
        expose_headers: &[String],
        credentials: bool,
        max_age_s: Option<u64>,
    ) -> CorsPolicy {
        let methods_value = match &methods {
            AllowList::Only(list) => list.join(", ").into_bytes().into(),
            AllowList::Any => Box::default(),
        };
        CorsPolicy {
            origins,
            methods,
            headers,
            credentials,
            methods_value,
            expose_value: (!expose_headers.is_empty())
                .then(|| expose_headers.join(", ").into_bytes().into()),
            max_age_value: max_age_s.map(|s| s.to_string().into_bytes().into()),
        }
    }

    /// Whether `origin` (an `Origin` field value) is allowed.
    pub fn allows_origin(&self, origin: &[u8]) -> bool {
        match &self.origins {
            AllowOrigins::Any => true,
            AllowOrigins::Only(patterns) => patterns.iter().any(|p| p.matches(origin)),
        }
    }

    /// Answers a preflight from `origin` for `method` with the
    /// `Access-Control-Request-Headers` value `requested` (if any): the fields of
    /// the `200` answer, or why it is refused (`403`, no CORS fields).
    pub fn preflight(
        &self,
        origin: &[u8],
        method: &[u8],
        requested: Option<&[u8]>,
    ) -> Result<FieldList, Refusal> {
        if !self.allows_origin(origin) {
            return Err("origin not allowed");
        }
        let method_ok = match &self.methods {
            AllowList::Any => is_token(method),
            AllowList::Only(list) => {
                SAFELISTED_METHODS.contains(&method) || list.iter().any(|m| m.as_bytes() == method)
            }
        };
        if !method_ok {
            return Err("method not allowed");
        }
        let mut names = Vec::new();
        for name in requested.unwrap_or(b"").split(|&b| b == b',') {
            let name = name.trim_ascii();
            if name.is_empty() {
                continue;
            }
            let allowed = is_token(name)
                && match &self.headers {
                    AllowList::Any => true,
                    AllowList::Only(list) => {
                        list.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name))
                    }
                };
            if !allowed {
                return Err("request header not allowed");
            }
            names.push(name);
        }
        let mut fields = FieldList::new();
        self.push_allow_origin(origin, &mut fields);
        match &self.methods {
            AllowList::Any => fields.push(b"access-control-allow-methods", method),
            AllowList::Only(_) => fields.push(b"access-control-allow-methods", &self.methods_value),
        }
        if !names.is_empty() {
            let mut value = Vec::with_capacity(requested.map_or(0, <[u8]>::len));
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    value.extend_from_slice(b", ");
                }
                value.extend(name.iter().map(u8::to_ascii_lowercase));
            }
            fields.push(b"access-control-allow-headers", &value);
        }
        if let Some(age) = &self.max_age_value {
            fields.push(b"access-control-max-age", age);
        }
        fields.push(b"vary", PREFLIGHT_VARY);
        Ok(fields)
    }

    /// Appends the fields every response on the route carries to `out`: `Vary:
    /// Origin` (the response depends on it, for caches), and for an allowed `origin`
    /// `Access-Control-Allow-Origin`, `-Allow-Credentials` and `-Expose-Headers`.
    pub fn actual_fields(&self, origin: Option<&[u8]>, out: &mut FieldList) {
        out.push(b"vary", b"Origin");
        let Some(origin) = origin.filter(|o| self.allows_origin(o)) else {
            return;
        };
        self.push_allow_origin(origin, out);
        if let Some(expose) = &self.expose_value {
            out.push(b"access-control-expose-headers", expose);
        }
    }

    /// `Access-Control-Allow-Origin` (`*` for an any-origin policy without
    /// credentials, else the origin itself) and `-Allow-Credentials`.
    fn push_allow_origin(&self, origin: &[u8], out: &mut FieldList) {
        if self.origins == AllowOrigins::Any && !self.credentials {
            out.push(b"access-control-allow-origin", b"*");
        } else {
            out.push(b"access-control-allow-origin", origin);
        }
        if self.credentials {
            out.push(b"access-control-allow-credentials", b"true");
        }
    }
}

impl OriginPattern {
    /// Reads one `allow_origins` entry (not `*`): `null`, `scheme://host[:port]`,
    /// `scheme://*.domain[:port]` or `*.domain`. `Err` says why it is refused.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        let lower = text.to_ascii_lowercase();
        if lower == "null" {
            return Ok(OriginPattern::Exact(lower));
        }
        let (scheme, rest) = match lower.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, lower.as_str()),
        };
        if let Some(s) = scheme {
            let mut chars = s.chars();
            let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if !ok {
                return Err(format!("\"{text}\" has no valid scheme"));
            }
        }
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "\"{text}\": an origin is scheme://host[:port], without a path (no trailing /)"
            ));
        }
        let (host, port) = split_port(rest.as_bytes())
            .ok_or_else(|| format!("\"{text}\" has a port that is not a number from 1 to 65535"))?;
        let port = port.map(|p| parse_port(p).unwrap_or(0));
        if port == Some(0) {
            return Err(format!(
                "\"{text}\" has a port that is not a number from 1 to 65535"
            ));
        }
        let host = std::str::from_utf8(host).unwrap_or("");
        match host.strip_prefix("*.") {
            Some(domain) if is_host(domain.as_bytes()) && !domain.contains('[') => {
                if scheme.is_none() && port.is_some() {
                    return Err(format!(
                        "\"{text}\": give the scheme with a port (https://*.{domain}:PORT)"
                    ));
                }
                Ok(OriginPattern::Subdomains {
                    scheme: scheme.map(str::to_string),
                    domain: domain.to_string(),
                    port,
                })
            }
            _ if host.contains('*') => Err(format!(
                "\"{text}\": a wildcard is only allowed as the first label (*.example.com)"
            )),
            _ if scheme.is_none() => Err(format!(
                "\"{text}\" needs a scheme: write https://{text} (or *.domain for subdomains)"
            )),
            _ if is_host(host.as_bytes()) => Ok(OriginPattern::Exact(lower)),
            _ => Err(format!("\"{text}\" does not have a valid host")),
        }
    }

    /// Whether the `Origin` value `origin` matches.
    pub fn matches(&self, origin: &[u8]) -> bool {
        match self {
            OriginPattern::Exact(exact) => origin.eq_ignore_ascii_case(exact.as_bytes()),
            OriginPattern::Subdomains {
                scheme,
                domain,
                port,
            } => {
                let Some((s, rest)) = split_scheme(origin) else {
                    return false;
                };
                let scheme_ok = match scheme {
                    Some(want) => s.eq_ignore_ascii_case(want.as_bytes()),
                    None => s.eq_ignore_ascii_case(b"https") || s.eq_ignore_ascii_case(b"http"),
                };
                let Some((host, p)) = split_port(rest) else {
                    return false;
                };
                let port_ok = match (scheme, port) {
                    (None, _) => true,
                    (Some(_), None) => p.is_none(),
                    (Some(_), Some(want)) => p.and_then(parse_port) == Some(*want),
                };
                let d = domain.as_bytes();
                scheme_ok
                    && port_ok
                    && is_host(host)
                    && host.len() > d.len() + 1
                    && host[host.len() - d.len()..].eq_ignore_ascii_case(d)
                    && host[host.len() - d.len() - 1] == b'.'
            }
        }
    }
}

/// `scheme` and what follows `://`.
fn split_scheme(origin: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = origin.windows(3).position(|w| w == b"://")?;
    Some((&origin[..at], &origin[at + 3..]))
}

/// `host` and the digits of `:port`, if any; `None` when the port is not digits.
fn split_port(authority: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    // An IPv6 literal's colons are inside its brackets.
    let search_from = authority.iter().rposition(|&b| b == b']').unwrap_or(0);
    match authority[search_from..].iter().rposition(|&b| b == b':') {
        Some(i) => {
            let (host, port) = (
                &authority[..search_from + i],
                &authority[search_from + i + 1..],
            );
            if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some((host, Some(port)))
        }
        None => Some((authority, None)),
    }
}

/// The number of a port's digits, if it is one.
fn parse_port(digits: &[u8]) -> Option<u16> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A DNS name (labels of letters, digits, `-`, `_`), an IPv4 address, or a bracketed
/// IPv6 literal.
fn is_host(host: &[u8]) -> bool {
    if let Some(inner) = host.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]")) {
        return !inner.is_empty()
            && inner
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(b));
    }
    !host.is_empty()
        && host.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        })
}

/// An RFC 9110 token (methods, field names).
#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        let origins = if origins == ["*"] {
            AllowOrigins::Any
        } else {
            AllowOrigins::Only(
                origins
                    .iter()
                    .map(|o| OriginPattern::parse(o).unwrap())
                    .collect(),
            )
        };
        CorsPolicy::new(
            origins,
            AllowList::Only(vec!["PUT".into(), "DELETE".into()]),
            AllowList::Only(vec!["content-type".into(), "authorization".into()]),
            &["x-total".to_string()],
            credentials,
            Some(600),
        )
    }

    fn get<'a>(f: &'a FieldList, name: &str) -> Option<&'a str> {
        f.get(name.as_bytes())
            .map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn origin_patterns_parse_and_match() {
        let exact = OriginPattern::parse("https://App.example.com").unwrap();
        assert!(exact.matches(b"https://app.example.com"));
        assert!(!exact.matches(b"http://app.example.com"));
        assert!(!exact.matches(b"https://app.example.com:8443"));

        let any_scheme = OriginPattern::parse("*.example.com").unwrap();
        assert!(any_scheme.matches(b"https://a.example.com"));
        assert!(any_scheme.matches(b"http://a.b.example.com:3000"));
        assert!(!any_scheme.matches(b"https://example.com"));
        assert!(!any_scheme.matches(b"https://badexample.com"));
        assert!(!any_scheme.matches(b"https://evil.com/.example.com"));
        assert!(!any_scheme.matches(b"https://evil.com?.example.com"));
        assert!(!any_scheme.matches(b"ftp://a.example.com"));

        let https = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(https.matches(b"https://a.example.com"));
        assert!(!https.matches(b"http://a.example.com"));
        assert!(!https.matches(b"https://a.example.com:444"));
        let port = OriginPattern::parse("https://*.example.com:8443").unwrap();
        assert!(port.matches(b"https://a.example.com:8443"));
        assert!(!port.matches(b"https://a.example.com"));

        for bad in [
            "https://app.example.com/",
            "https://a.example.com/path",
            "app.example.com",
            "https://a.*.com",
            "https://x:99999",
            "*.example.com:443",
            "1https://x",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            OriginPattern::parse("null").unwrap(),
            OriginPattern::Exact("null".into())
        );
    }

    #[test]
    fn preflight_answers_with_the_policy() {
        let p = policy(&["https://app.test"], true);
        let f = p
            .preflight(
                b"https://app.test",
                b"PUT",
                Some(b"Content-Type, authorization"),
            )
            .unwrap();
        assert_eq!(
            get(&f, "access-control-allow-origin"),
            Some("https://app.test")
        );
        assert_eq!(get(&f, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&f, "access-control-allow-methods"), Some("PUT, DELETE"));
        assert_eq!(
            get(&f, "access-control-allow-headers"),
            Some("content-type, authorization")
        );
        assert_eq!(get(&f, "access-control-max-age"), Some("600"));
        assert!(get(&f, "vary").unwrap().starts_with("Origin"));
        // Safelisted methods need no listing.
        assert!(p.preflight(b"https://app.test", b"POST", None).is_ok());
        assert_eq!(
            p.preflight(b"https://evil.test", b"PUT", None).unwrap_err(),
            "origin not allowed"
        );
        assert_eq!(
            p.preflight(b"https://app.test", b"PATCH", None)
                .unwrap_err(),
            "method not allowed"
        );
        assert_eq!(
            p.preflight(b"https://app.test", b"PUT", Some(b"x-secret"))
                .unwrap_err(),
            "request header not allowed"
        );
    }

    #[test]
    fn any_origin_without_credentials_is_a_star() {
        let p = policy(&["*"], false);
        let mut f = FieldList::new();
        p.actual_fields(Some(b"https://whoever.test"), &mut f);
        assert_eq!(get(&f, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&f, "access-control-expose-headers"), Some("x-total"));
        assert_eq!(get(&f, "access-control-allow-credentials"), None);
    }

    #[test]
    fn actual_requests_get_vary_always_and_cors_fields_when_allowed() {
        let p = policy(&["https://*.app.test"], true);
        let mut f = FieldList::new();
        p.actual_fields(Some(b"https://x.app.test"), &mut f);
        assert_eq!(get(&f, "vary"), Some("Origin"));
        assert_eq!(
            get(&f, "access-control-allow-origin"),
            Some("https://x.app.test")
        );
        assert_eq!(get(&f, "access-control-allow-credentials"), Some("true"));
        let mut f = FieldList::new();
        p.actual_fields(Some(b"https://evil.test"), &mut f);
        assert_eq!(f.len(), 1);
        let mut f = FieldList::new();
        p.actual_fields(None, &mut f);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn preflights_are_recognized() {
        let mut h = FieldList::new();
        h.push(b"origin", b"https://a");
        assert_eq!(preflight_method(b"OPTIONS", &h), None);
        h.push(b"access-control-request-method", b"PUT");
        assert_eq!(preflight_method(b"OPTIONS", &h), Some(&b"PUT"[..]));
        assert_eq!(preflight_method(b"GET", &h), None);
        assert!(is_cors_field(b"Access-Control-Allow-Origin"));
        assert!(!is_cors_field(b"access-control-"));
    }
}
