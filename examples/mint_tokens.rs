//! Mints signed JWTs and the JWKS that verifies them, for benchmarks
//! (loadtest/bench/auth-cost) and manual tries.
//!
//!     cargo run --release --example mint_tokens -- RS256 10000 /tmp/tokens
//!
//! Writes `DIR/jwks.json` (kid "bench") and `DIR/tokens.txt`, one token per line,
//! each for a different `sub` (so none is a cache hit for another), issuer
//! `https://bench.test/`, audience `api`, valid for an hour. Algorithms: RS256
//! (RSA 2048 made by `openssl genpkey`) and ES256 (P-256 made by ring).

use std::io::Write;
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::json;

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [alg, count, dir] = args.as_slice() else {
        eprintln!("usage: mint_tokens RS256|ES256 COUNT DIR");
        return ExitCode::FAILURE;
    };
    let Ok(count) = count.parse::<usize>() else {
        eprintln!("COUNT must be a number");
        return ExitCode::FAILURE;
    };
    match mint(alg, count, std::path::Path::new(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mint_tokens: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Signs a JWS signing input.
type Signer = Box<dyn Fn(&[u8]) -> Vec<u8>>;

fn mint(alg: &str, count: usize, dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let rng = SystemRandom::new();
    let (jwk, sign): (serde_json::Value, Signer) = match alg {
        "RS256" => {
            let path = dir.join("rsa.der");
            let out = Command::new("openssl")
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
                .map_err(|e| format!("openssl: {e}"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).to_string());
            }
            let der = std::fs::read(&path).map_err(|e| e.to_string())?;
            let key = RsaKeyPair::from_der(&der).map_err(|e| e.to_string())?;
            let p = sig::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
            let jwk = json!({"kty": "RSA", "kid": "bench", "alg": "RS256", "n": b64(&p.n), "e": b64(&p.e)});
            let sign = move |m: &[u8]| {
                let mut out = vec![0; key.public().modulus_len()];
                let _ = key.sign(&sig::RSA_PKCS1_SHA256, &SystemRandom::new(), m, &mut out);
                out
            };
            (jwk, Box::new(sign))
        }
        "ES256" => {
            let a = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
            let doc = EcdsaKeyPair::generate_pkcs8(a, &rng).map_err(|e| e.to_string())?;
            let key = EcdsaKeyPair::from_pkcs8(a, doc.as_ref(), &rng).map_err(|e| e.to_string())?;
            let pt = key.public_key().as_ref().to_vec();
            let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256",
                "x": b64(&pt[1..33]), "y": b64(&pt[33..65])});
            let sign = move |m: &[u8]| {
                key.sign(&SystemRandom::new(), m)
                    .map(|s| s.as_ref().to_vec())
                    .unwrap_or_default()
            };
            (jwk, Box::new(sign))
        }
        other => return Err(format!("algorithm {other} is not RS256 or ES256")),
    };
    std::fs::write(dir.join("jwks.json"), json!({"keys": [jwk]}).to_string())
        .map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = b64(json!({"alg": alg, "typ": "JWT", "kid": "bench"})
        .to_string()
        .as_bytes());
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(dir.join("tokens.txt")).map_err(|e| e.to_string())?,
    );
    for i in 0..count {
        let claims = json!({"iss": "https://bench.test/", "aud": "api", "sub": format!("user-{i}"),
            "iat": now, "exp": now + 3600});
        let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let s = sign(input.as_bytes());
        writeln!(out, "{input}.{}", b64(&s)).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}
