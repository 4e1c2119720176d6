//! The JOSE rules jsonwebtoken leaves to its caller, so that a token means one
//! thing to the gateway and to every service that reads it after it:
//!
//! - `crit` (RFC 7515 §4.1.11): the gateway implements no extension, so a token
//!   that names any critical header parameter is invalid, whatever it names.
//! - `b64` (RFC 7797): only its default, `true`, is accepted; with `false` the
//!   payload is not base64url and another reader would verify other bytes.
//! - `zip` and `enc` are JWE parameters: a JWS carrying them is refused.
//! - `jku`, `x5u`, `jwk` and `x5c` are never fetched nor trusted: keys come only
//!   from the configuration (files, PEM, secrets, the configured JWKS URL). A
//!   token signed with a key it carries itself fails the signature check.
//! - `alg: none` (any case) is no algorithm jsonwebtoken knows: refused.
//! - Duplicate member names, in the header or the claims, at any depth, are
//!   refused (RFC 7515 §5.2, RFC 7519 §4): JSON parsers disagree on which copy
//!   wins, so `{"sub":"alice","sub":"admin"}` would name two callers.
//! - Registered claims have their RFC 7519 types: `iss`, `sub` and `jti` are
//!   strings, `aud` a string or an array of strings, `exp`, `nbf` and `iat`
//!   whole numbers of seconds. jsonwebtoken accepts an `iss` array when one of
//!   its members matches, which a service reading `iss` as a string would not.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::rejection::Rejection;

/// Checks the protected header of the compact JWS `token` (its first segment).
pub fn check_header(token: &str) -> Result<(), Rejection> {
    let segment = token.split('.').next().unwrap_or("");
    let json = base64url_decode(segment).ok_or(Rejection::invalid("malformed token"))?;
    check_unique_members(&json)?;
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&json) else {
        return Err(Rejection::invalid("malformed token"));
    };
    if header.contains_key("crit") {
        return Err(Rejection::invalid("unsupported critical header parameter"));
    }
    if header.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
        return Err(Rejection::invalid("unencoded payload (b64) not supported"));
    }
    if header.contains_key("zip") || header.contains_key("enc") {
        return Err(Rejection::invalid(
            "encrypted or compressed token not supported",
        ));
    }
    Ok(())
}

/// Checks the claims (second segment) of the compact JWS `token`: no duplicate
/// member names, registered claims of their types. Run before the signature is
/// checked, so every reader of a refused token is told the same reason.
pub fn check_claims(token: &str) -> Result<(), Rejection> {
    let segment = token.split('.').nth(1).unwrap_or("");
    let json = base64url_decode(segment).ok_or(Rejection::invalid("malformed token"))?;
    check_unique_members(&json)?;
    match serde_json::from_slice::<Value>(&json) {
        Ok(Value::Object(claims)) => check_registered_claims(&claims),
        _ => Err(Rejection::invalid("malformed token")),
    }
}

/// Checks the types of the registered claims of verified `claims` (see the
/// module doc).
pub fn check_registered_claims(claims: &Map<String, Value>) -> Result<(), Rejection> {
    let string = |name: &str| claims.get(name).is_none_or(Value::is_string);
    let seconds = |name: &str| claims.get(name).is_none_or(|v| v.as_u64().is_some());
    let audience = match claims.get("aud") {
        None | Some(Value::String(_)) => true,
        Some(Value::Array(list)) => list.iter().all(Value::is_string),
        Some(_) => false,
    };
    let ok = string("iss")
        && string("sub")
        && string("jti")
        && audience
        && seconds("exp")
        && seconds("nbf")
        && seconds("iat");
    if !ok {
        return Err(Rejection::invalid("registered claim of the wrong type"));
    }
    Ok(())
}

/// The value of the header's `alg`, if the header is JSON at all (for messages).
pub(super) fn header_alg(token: &str) -> Option<String> {
    let json = base64url_decode(token.split('.').next()?)?;
    let header: Value = serde_json::from_slice(&json).ok()?;
    header.get("alg")?.as_str().map(str::to_string)
}

/// Refuses JSON with two members of one name in any object.
fn check_unique_members(json: &[u8]) -> Result<(), Rejection> {
    let mut de = serde_json::Deserializer::from_slice(json);
    match UniqueMembers::deserialize(&mut de).and_then(|_| de.end()) {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().starts_with(DUPLICATE) => {
            Err(Rejection::invalid("duplicate member name in token"))
        }
        Err(_) => Err(Rejection::invalid("malformed token")),
    }
}

const DUPLICATE: &str = "duplicate member";

/// A JSON value walked only to find duplicate member names.
struct UniqueMembers;

impl<'de> Deserialize<'de> for UniqueMembers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueMembersVisitor)
    }
}

struct UniqueMembersVisitor;

impl<'de> Visitor<'de> for UniqueMembersVisitor {
    type Value = UniqueMembers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_unit<E: de::Error>(self) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueMembers, A::Error> {
        while seq.next_element::<UniqueMembers>()?.is_some() {}
        Ok(UniqueMembers)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMembers, A::Error> {
        // Names compared after unescaping: `"sub"` and `"s\u0075b"` are one name.
        let mut seen = BTreeSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name) {
                return Err(de::Error::custom(DUPLICATE));
            }
            map.next_value::<UniqueMembers>()?;
        }
        Ok(UniqueMembers)
    }
}

/// Unpadded base64url, as in JWS, canonical only: no padding, no other byte, no
/// length that leaves 6 bits, no non-zero bits after the last byte.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    fn header_error(header: &str) -> Option<String> {
        check_header(&token(header, "{}"))
            .err()
            .map(|r| r.message().to_string())
    }

    #[test]
    fn plain_headers_pass() {
        assert_eq!(header_error(r#"{"alg":"HS256","typ":"JWT"}"#), None);
        assert_eq!(
            header_error(r#"{"alg":"RS256","kid":"k1","b64":true}"#),
            None
        );
        // Keys a token carries are ignored, not refused: verification never uses them.
        assert_eq!(
            header_error(
                r#"{"alg":"RS256","jku":"http://127.0.0.1/k","x5u":"http://x","jwk":{"kty":"oct"}}"#
            ),
            None
        );
    }

    #[test]
    fn header_traps_are_refused() {
        let cases = [
            (
                r#"{"alg":"HS256","crit":["urn:example:pop"],"urn:example:pop":1}"#,
                "unsupported critical header parameter",
            ),
            (
                r#"{"alg":"HS256","crit":[]}"#,
                "unsupported critical header parameter",
            ),
            (
                r#"{"alg":"HS256","crit":["exp"]}"#,
                "unsupported critical header parameter",
            ),
            (
                r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
                "unsupported critical header parameter",
            ),
            (
                r#"{"alg":"HS256","b64":false}"#,
                "unencoded payload (b64) not supported",
            ),
            (
                r#"{"alg":"HS256","b64":"false"}"#,
                "unencoded payload (b64) not supported",
            ),
            (
                r#"{"alg":"HS256","zip":"DEF"}"#,
                "encrypted or compressed token not supported",
            ),
            (
                r#"{"alg":"HS256","enc":"A128GCM"}"#,
                "encrypted or compressed token not supported",
            ),
            (
                r#"{"alg":"HS256","alg":"none"}"#,
                "duplicate member name in token",
            ),
            (
                r#"{"alg":"HS256","\u0061lg":"none"}"#,
                "duplicate member name in token",
            ),
            (
                r#"{"alg":"HS256","jwk":{"k":"a","k":"b"}}"#,
                "duplicate member name in token",
            ),
            (r#"["alg"]"#, "malformed token"),
            (r#"{"alg":"HS256"} x"#, "malformed token"),
            (r#"{"alg":"HS256""#, "malformed token"),
        ];
        for (header, want) in cases {
            assert_eq!(header_error(header).as_deref(), Some(want), "{header}");
        }
    }

    #[test]
    fn duplicate_claims_are_refused() {
        let ok = token(
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"alice","a":{"sub":"x"},"l":[{"k":1},{"k":2}]}"#,
        );
        assert_eq!(check_claims(&ok), Ok(()));
        for claims in [
            r#"{"sub":"alice","sub":"admin"}"#,
            r#"{"sub":"alice","s\u0075b":"admin"}"#,
            r#"{"roles":[{"r":"a","r":"b"}]}"#,
        ] {
            let t = token(r#"{"alg":"HS256"}"#, claims);
            assert_eq!(
                check_claims(&t),
                Err(Rejection::invalid("duplicate member name in token")),
                "{claims}"
            );
        }
    }

    #[test]
    fn registered_claims_have_their_types() {
        let check = |json: &str| {
            let claims: Map<String, Value> = serde_json::from_str(json).unwrap();
            check_registered_claims(&claims).is_ok()
        };
        assert!(check(
            r#"{"iss":"a","sub":"b","aud":["x","y"],"exp":1,"nbf":0,"iat":1,"jti":"j","x":[1]}"#
        ));
        assert!(check(r#"{"aud":"x"}"#));
        for bad in [
            r#"{"iss":["https://id.example.com/","evil"]}"#,
            r#"{"sub":1}"#,
            r#"{"sub":{"id":"admin"}}"#,
            r#"{"aud":[1]}"#,
            r#"{"aud":{"a":1}}"#,
            r#"{"exp":"99999999999"}"#,
            r#"{"exp":1.5}"#,
            r#"{"iat":-1}"#,
            r#"{"nbf":null}"#,
        ] {
            assert!(!check(bad), "{bad}");
        }
    }

    #[test]
    fn base64url_is_canonical() {
        assert_eq!(base64url_decode("YQ"), Some(b"a".to_vec()));
        assert_eq!(base64url_decode("YR"), None, "non-zero trailing bits");
        assert_eq!(base64url_decode("YQ=="), None, "padding");
        assert_eq!(base64url_decode("Y"), None);
        assert_eq!(base64url_decode("Y+Q"), None);
        assert_eq!(base64url_decode(""), Some(Vec::new()));
    }
}
