//! A jsonwebtoken `CryptoProvider` over `ring`: signature verification for every
//! JWS algorithm the gateway accepts, with no aws-lc-rs and no pure-Rust RSA.
//!
//! Each verifier first checks that the key belongs to the algorithm's family, so a
//! token cannot make an RSA public key act as an HMAC secret (algorithm confusion).
//! The gateway never signs, so the signer factory refuses.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::{digest, hmac, signature as sig};

/// The provider; install it with [`install`] before the first verification.
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: unsupported_components,
        rsa_pub_components_from_public_key: unsupported_components,
        ec_pub_components_from_private_key: unsupported_ec_components,
        ed_pub_components_from_private_key: unsupported_ed_components,
        compute_digest,
    },
};

/// Makes [`RING_PROVIDER`] jsonwebtoken's process-wide provider. Idempotent.
pub fn install() {
    // Err means a provider is already installed; in this process it can only be ours.
    let _ = RING_PROVIDER.install_default();
}

/// A verifier: the key in the form ring wants it, and the algorithm it serves.
struct RingVerifier {
    alg: Algorithm,
    key: VerifyKey,
}

enum VerifyKey {
    Hmac(hmac::Key),
    /// RSA as modulus and exponent (from a JWK).
    RsaComponents {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Anything ring parses from bytes: PKCS#1 RSA DER, an uncompressed EC point, or
    /// a raw Ed25519 public key.
    Bytes(Vec<u8>),
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if alg.family() != key.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let key = match (alg.family(), key.kind()) {
        (AlgorithmFamily::Hmac, DecodingKeyKind::SecretOrDer(secret)) => {
            let algorithm = match alg {
                Algorithm::HS384 => hmac::HMAC_SHA384,
                Algorithm::HS512 => hmac::HMAC_SHA512,
                _ => hmac::HMAC_SHA256,
            };
            VerifyKey::Hmac(hmac::Key::new(algorithm, secret))
        }
        (AlgorithmFamily::Hmac, DecodingKeyKind::RsaModulusExponent { .. }) => {
            return Err(ErrorKind::InvalidKeyFormat.into())
        }
        (_, DecodingKeyKind::RsaModulusExponent { n, e }) => VerifyKey::RsaComponents {
            n: n.clone(),
            e: e.clone(),
        },
        (_, DecodingKeyKind::SecretOrDer(bytes)) => VerifyKey::Bytes(bytes.clone()),
    };
    Ok(Box::new(RingVerifier { alg: *alg, key }))
}

impl RingVerifier {
    fn public_algorithm(&self) -> &'static dyn sig::VerificationAlgorithm {
        match self.alg {
            Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            // HMAC never reaches here; EdDSA means Ed25519 (RFC 8037).
            _ => &sig::ED25519,
        }
    }

    fn rsa_params(&self) -> &'static sig::RsaParameters {
        match self.alg {
            Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            _ => &sig::RSA_PKCS1_2048_8192_SHA256,
        }
    }
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let ok = match &self.key {
            VerifyKey::Hmac(key) => hmac::verify(key, msg, signature).is_ok(),
            VerifyKey::RsaComponents { n, e } => sig::RsaPublicKeyComponents { n, e }
                .verify(self.rsa_params(), msg, signature)
                .is_ok(),
            VerifyKey::Bytes(bytes) => sig::UnparsedPublicKey::new(self.public_algorithm(), bytes)
                .verify(msg, signature)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Err(Error::from(ErrorKind::Provider(
        "the gateway verifies tokens, it does not sign them".to_string(),
    )))
}

fn unsupported_components(_: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::Provider("not supported".to_string()).into())
}

fn unsupported_ec_components(_: &[u8], _: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::Provider("not supported".to_string()).into())
}

fn unsupported_ed_components(_: &[u8], _: &EllipticCurve) -> Result<Vec<u8>> {
    Err(ErrorKind::Provider("not supported".to_string()).into())
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::Provider("unknown hash".to_string()).into()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}
