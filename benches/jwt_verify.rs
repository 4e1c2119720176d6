//! JWT verification micro benchmark: the cost a cache miss pays per token
//! (jsonwebtoken decode + claim checks over the ring provider) for RS256, PS256,
//! ES256, EdDSA and HS256, and what a cache hit pays instead (SHA-256 of the
//! token). Std only; prints `name: N ns/op` (best of 15 runs).
//!
//!     cargo bench --bench jwt_verify          (needs `openssl` for the RSA key)

use std::hint::black_box;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, Algorithm, Validation};
use portico::auth::keys::{from_jwks, KeyPolicy};
use portico::auth::ring_provider;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Map, Value};

fn b64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | (u32::from(x) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn main() {
    ring_provider::install();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = json!({"iss": "https://id.test/", "aud": "api", "sub": "user-1", "iat": now, "exp": now + 600, "scope": "read write"});
    let rng = SystemRandom::new();

    let rsa = {
        let path = std::env::temp_dir().join(format!("portico-bench-{}.der", std::process::id()));
        let ok = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
                "-out",
            ])
            .arg(&path)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "openssl genpkey failed");
        let der = std::fs::read(&path).expect("key file");
        let _ = std::fs::remove_file(&path);
        RsaKeyPair::from_der(&der).expect("RSA key")
    };
    let ec_alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
    let ec = EcdsaKeyPair::from_pkcs8(
        ec_alg,
        EcdsaKeyPair::generate_pkcs8(ec_alg, &rng)
            .expect("p256")
            .as_ref(),
        &rng,
    )
    .expect("p256");
    let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).expect("ed").as_ref())
        .expect("ed");
    let secret = b"an hmac secret of at least thirty-two bytes".to_vec();

    let rsa_pub = sig::RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public());
    let pt = ec.public_key().as_ref();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": b64(&rsa_pub.n), "e": b64(&rsa_pub.e)},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&pt[1..33]), "y": b64(&pt[33..65])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(ed.public_key().as_ref())},
    ]});
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&["https://id.test/"]);
    validation.set_audience(&["api"]);
    let policy = KeyPolicy {
        algorithms: vec![
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::HS256,
        ],
        validation: validation.clone(),
    };
    let set = from_jwks(jwks.to_string().as_bytes(), &policy)
        .expect("jwks")
        .set;
    let hs_set = portico::auth::keys::from_hmac_secret(&secret, &policy).expect("hmac");

    let token = |alg: &str, kid: &str, sign: &dyn Fn(&[u8]) -> Vec<u8>| {
        let input = format!(
            "{}.{}",
            b64(json!({"alg": alg, "kid": kid}).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let s = sign(input.as_bytes());
        format!("{input}.{}", b64(&s))
    };
    let rsa = &rsa;
    let rsa_sign = |pad: &'static dyn sig::RsaEncoding| {
        move |m: &[u8]| {
            let mut out = vec![0; rsa.public().modulus_len()];
            rsa.sign(pad, &SystemRandom::new(), m, &mut out)
                .expect("sign");
            out
        }
    };
    let cases: Vec<(&str, String, usize)> = vec![
        (
            "RS256",
            token("RS256", "rsa", &rsa_sign(&sig::RSA_PKCS1_SHA256)),
            0,
        ),
        (
            "PS256",
            token("PS256", "rsa", &rsa_sign(&sig::RSA_PSS_SHA256)),
            0,
        ),
        (
            "ES256",
            token("ES256", "ec", &|m| {
                ec.sign(&SystemRandom::new(), m)
                    .expect("sign")
                    .as_ref()
                    .to_vec()
            }),
            1,
        ),
        (
            "EdDSA",
            token("EdDSA", "ed", &|m| ed.sign(m).as_ref().to_vec()),
            2,
        ),
        (
            "HS256",
            token("HS256", "", &|m| {
                ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret), m)
                    .as_ref()
                    .to_vec()
            }),
            99,
        ),
    ];
    for (name, tok, index) in &cases {
        let key = if *index == 99 {
            &hs_set.keys[0]
        } else {
            &set.keys[*index]
        };
        let iters = if name.starts_with('H') { 20_000 } else { 500 };
        let ns = best_of(15, iters, || {
            let data = decode::<Map<String, Value>>(
                black_box(tok.as_str()),
                &key.decoding,
                &key.validation,
            );
            assert!(data.is_ok(), "{name}: {data:?}");
        });
        println!("verify {name} ({} byte token): {ns:.0} ns/op", tok.len());
    }
    let tok = &cases[0].1;
    let ns = best_of(15, 200_000, || {
        black_box(ring::digest::digest(
            &ring::digest::SHA256,
            black_box(tok.as_bytes()),
        ));
    });
    println!(
        "cache key: SHA-256 of a {} byte token: {ns:.0} ns/op",
        tok.len()
    );
}

fn best_of(runs: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::MAX, f64::min)
}
