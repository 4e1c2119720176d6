//! Key sets: the verification keys of one provider at one moment, immutable once
//! built. Built from a JWKS document, PEM public keys or an HMAC secret; each key
//! carries the `Validation` it is used with, so verifying allocates nothing for it.

use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};

/// One verification key.
pub struct Key {
    pub kid: Option<String>,
    pub family: AlgorithmFamily,
    pub decoding: DecodingKey,
    /// The provider's checks, with `algorithms` narrowed to those this key may verify.
    pub validation: Validation,
}

/// The keys a provider verifies with right now.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys a token may be verified with: the one named by `kid`, and keys that
    /// have no `kid` of their own (PEM keys, HMAC secrets) of the algorithm's family.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys
            .iter()
            .filter(move |k| match (kid, k.kid.as_deref()) {
                (Some(wanted), Some(have)) => wanted == have,
                _ => k.family == alg.family(),
            })
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// What a provider allows, for narrowing each key's `Validation`.
#[derive(Clone, PartialEq)]
pub struct KeyPolicy {
    pub algorithms: Vec<Algorithm>,
    pub validation: Validation,
}

impl KeyPolicy {
    fn key(
        &self,
        kid: Option<String>,
        decoding: DecodingKey,
        only: Option<Algorithm>,
    ) -> Option<Key> {
        let family = decoding.family();
        let algorithms: Vec<Algorithm> = self
            .algorithms
            .iter()
            .copied()
            .filter(|a| a.family() == family && only.is_none_or(|o| o == *a))
            .collect();
        if algorithms.is_empty() {
            return None;
        }
        let mut validation = self.validation.clone();
        validation.algorithms = algorithms;
        Some(Key {
            kid,
            family,
            decoding,
            validation,
        })
    }
}

/// The result of reading a key document: the usable keys and what was skipped, and why.
pub struct Loaded {
    pub set: Arc<KeySet>,
    pub skipped: Vec<String>,
}

/// Parses a JWKS document (`{"keys": [...]}`). Keys that are not for signatures,
/// are symmetric (`oct`: a published JWKS holds public keys only), or fit no allowed
/// algorithm are skipped and named in `skipped`.
pub fn from_jwks(text: &[u8], policy: &KeyPolicy) -> Result<Loaded, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let Some(list) = doc.get("keys").and_then(|k| k.as_array()) else {
        return Err("the JWKS has no \"keys\" array".to_string());
    };
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        let jwk: Jwk = match serde_json::from_value(raw.clone()) {
            Ok(j) => j,
            Err(e) => {
                skipped.push(format!("key {i}: not a JWK this gateway reads ({e})"));
                continue;
            }
        };
        let name = jwk
            .common
            .key_id
            .clone()
            .map_or_else(|| format!("key {i}"), |k| format!("key \"{k}\""));
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            skipped.push(format!("{name}: \"use\" is not \"sig\""));
            continue;
        }
        if matches!(
            jwk.algorithm,
            AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
        ) {
            skipped.push(format!("{name}: key type not accepted in a JWKS"));
            continue;
        }
        let only = match jwk.common.key_algorithm {
            None => None,
            Some(a) => match Algorithm::try_from(a) {
                Ok(a) => Some(a),
                Err(_) => {
                    skipped.push(format!("{name}: \"alg\" is not a signature algorithm"));
                    continue;
                }
            },
        };
        let decoding = match DecodingKey::from_jwk(&jwk) {
            Ok(d) => d,
            Err(_) => {
                skipped.push(format!("{name}: malformed key parameters"));
                continue;
            }
        };
        match policy.key(jwk.common.key_id.clone(), decoding, only) {
            Some(k) => keys.push(k),
            None => skipped.push(format!("{name}: fits none of the allowed algorithms")),
        }
    }
    Ok(Loaded {
        set: Arc::new(KeySet { keys }),
        skipped,
    })
}

/// Parses PEM public keys (`BEGIN PUBLIC KEY` for RSA, EC or Ed25519, or
/// `BEGIN RSA PUBLIC KEY`). Such keys have no `kid`.
pub fn from_pem(pems: &[String], policy: &KeyPolicy) -> Result<Arc<KeySet>, String> {
    let mut keys = Vec::new();
    for (i, pem) in pems.iter().enumerate() {
        let bytes = pem.as_bytes();
        let decoding = DecodingKey::from_rsa_pem(bytes)
            .or_else(|_| DecodingKey::from_ec_pem(bytes))
            .or_else(|_| DecodingKey::from_ed_pem(bytes))
            .map_err(|_| {
                format!(
                    "public key {} is not an RSA, EC or Ed25519 public key in PEM",
                    i + 1
                )
            })?;
        match policy.key(None, decoding, None) {
            Some(k) => keys.push(k),
            None => {
                return Err(format!(
                    "public key {} fits none of the allowed algorithms",
                    i + 1
                ))
            }
        }
    }
    Ok(Arc::new(KeySet { keys }))
}

/// Shortest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least the hash size;
/// HS256's is the smallest).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// An HMAC secret as a one-key set.
pub fn from_hmac_secret(secret: &[u8], policy: &KeyPolicy) -> Result<Arc<KeySet>, String> {
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(format!(
            "the HMAC secret is {} bytes; at least {MIN_HMAC_SECRET_BYTES} are required",
            secret.len()
        ));
    }
    match policy.key(None, DecodingKey::from_secret(secret), None) {
        Some(k) => Ok(Arc::new(KeySet { keys: vec![k] })),
        None => Err("an HMAC secret needs an HS256, HS384 or HS512 algorithm".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(algs: &[Algorithm]) -> KeyPolicy {
        KeyPolicy {
            algorithms: algs.to_vec(),
            validation: Validation::new(Algorithm::RS256),
        }
    }

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn jwks_keeps_signature_keys_that_fit_the_allow_list() {
        let doc = format!(
            r#"{{"keys": [
                {{"kty": "OKP", "crv": "Ed25519", "kid": "ok", "x": "{ED_X}"}},
                {{"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": "{ED_X}"}},
                {{"kty": "oct", "kid": "secret", "k": "c2VjcmV0"}},
                {{"kty": "OKP", "crv": "Ed25519", "kid": "pinned", "alg": "RS256", "x": "{ED_X}"}},
                {{"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"}},
                {{"kty": "weird", "kid": "w"}}
            ]}}"#
        );
        let loaded = from_jwks(doc.as_bytes(), &policy(&[Algorithm::EdDSA])).unwrap();
        let kids: Vec<_> = loaded
            .set
            .keys
            .iter()
            .map(|k| k.kid.clone().unwrap())
            .collect();
        assert_eq!(kids, ["ok"]);
        assert_eq!(loaded.skipped.len(), 5, "{:?}", loaded.skipped);
        assert!(from_jwks(b"{}", &policy(&[Algorithm::EdDSA])).is_err());
        assert!(from_jwks(b"not json", &policy(&[Algorithm::EdDSA])).is_err());
    }

    #[test]
    fn keys_without_kid_serve_any_kid_of_their_family() {
        let set = from_hmac_secret(&[7u8; 32], &policy(&[Algorithm::HS256])).unwrap();
        assert_eq!(set.candidates(Some("any"), Algorithm::HS256).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 0);
        assert!(from_hmac_secret(&[7u8; 31], &policy(&[Algorithm::HS256])).is_err());
        assert!(from_hmac_secret(&[7u8; 32], &policy(&[Algorithm::RS256])).is_err());
    }
}
