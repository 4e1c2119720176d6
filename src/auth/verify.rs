//! Verifying one token against a provider's current key set: header (with the
//! JOSE rules of `jose.rs`), algorithm allow-list, key choice by `kid`,
//! signature (jsonwebtoken over ring), and the claims (unique names, exp, nbf,
//! iss, aud, required claims, maximum lifetime).

use std::borrow::Cow;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm};
use serde_json::{Map, Value};

use super::jose;
use super::keys::KeySet;
use super::rejection::Rejection;
use super::settings::JwtProvider;

/// The claims of a verified token.
pub type Claims = Map<String, Value>;

/// How verification failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The token names a `kid` the key set does not have (a refetch may help).
    UnknownKid,
    Rejected(Rejection),
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure::Rejected(r)
    }
}

/// Verifies `token`; `now` is Unix seconds.
pub fn verify(
    token: &str,
    provider: &JwtProvider,
    keys: &KeySet,
    now: u64,
) -> Result<Claims, Failure> {
    jose::check_header(token)?;
    jose::check_claims(token)?;
    let header = match decode_header(token) {
        Ok(h) => h,
        Err(_) => return Err(header_failure(token).into()),
    };
    let alg = header.alg;
    if !provider.algorithms.contains(&alg) {
        return Err(Rejection::invalid("algorithm not allowed").into());
    }
    let kid = header.kid.as_deref();
    let mut last = None;
    for key in keys.candidates(kid, alg) {
        if key.family != alg.family() || !key.validation.algorithms.contains(&alg) {
            last = Some(Rejection::invalid("algorithm does not match the key"));
            continue;
        }
        match decode::<Claims>(token, &key.decoding, &key.validation) {
            Ok(data) => {
                check_extra(&data.claims, provider, now)?;
                return Ok(data.claims);
            }
            // Without a kid, another key of the family may be the one.
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) && kid.is_none() => {
                last = Some(Rejection::invalid("bad signature"));
            }
            Err(e) => return Err(map_error(e.kind()).into()),
        }
    }
    match (last, kid) {
        (Some(r), _) => Err(r.into()),
        (None, Some(_)) => Err(Failure::UnknownKid),
        (None, None) => Err(Rejection::invalid("no key for the token's algorithm").into()),
    }
}

/// Claims jsonwebtoken does not check: other required names and the lifetime cap.
fn check_extra(claims: &Claims, provider: &JwtProvider, now: u64) -> Result<(), Rejection> {
    for name in &provider.required_extra {
        if !claims.contains_key(name) {
            return Err(Rejection::InvalidToken(Cow::Owned(format!(
                "missing claim {name}"
            ))));
        }
    }
    if let Some(max) = provider.max_lifetime_s {
        let exp = claims.get("exp").and_then(Value::as_u64);
        let iat = claims.get("iat").and_then(Value::as_u64);
        let too_long = match (exp, iat) {
            (Some(exp), Some(iat)) => exp.saturating_sub(iat) > max,
            // Without iat: it may not stay valid longer than the cap from now.
            (Some(exp), None) => exp.saturating_sub(now) > max,
            (None, _) => true,
        };
        if too_long {
            return Err(Rejection::invalid("token lifetime exceeds the maximum"));
        }
    }
    Ok(())
}

/// A header jsonwebtoken refused: say "algorithm not allowed" for `alg: none` and
/// other unknown algorithms, "malformed token" for the rest.
fn header_failure(token: &str) -> Rejection {
    match jose::header_alg(token) {
        Some(a) if a.parse::<Algorithm>().is_err() => Rejection::invalid("algorithm not allowed"),
        _ => Rejection::invalid("malformed token"),
    }
}

fn map_error(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::InvalidSignature => Rejection::invalid("bad signature"),
        ErrorKind::ExpiredSignature => Rejection::invalid("token expired"),
        ErrorKind::ImmatureSignature => Rejection::invalid("token not yet valid"),
        ErrorKind::InvalidIssuer => Rejection::invalid("wrong issuer"),
        ErrorKind::InvalidAudience => Rejection::invalid("wrong audience"),
        ErrorKind::InvalidSubject => Rejection::invalid("wrong subject"),
        ErrorKind::MissingRequiredClaim(c) => {
            Rejection::InvalidToken(Cow::Owned(format!("missing claim {}", safe_name(c))))
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => Rejection::invalid("algorithm not allowed"),
        ErrorKind::InvalidKeyFormat => Rejection::invalid("algorithm does not match the key"),
        _ => Rejection::invalid("malformed token"),
    }
}

/// A claim name fit for a quoted-string (names come from the configuration).
fn safe_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_-.:".contains(*c))
        .collect()
}
