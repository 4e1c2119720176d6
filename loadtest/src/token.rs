//! `portico-load token`: prints an HS256 JSON Web Token (RFC 7519) for trying a
//! gateway's JWT routes — `scripts/demo` prints one this way. The secret comes
//! from a file (trailing newlines dropped, as the gateway's `hmac_secret_file`
//! reads it) or an environment variable; the claims are `sub`, `iat`, `exp` and,
//! when given, `iss`, `aud` and more string claims. Not a token service: keys for
//! production are the identity provider's.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::Args;
use serde_json::{json, Map, Value};

use crate::run::parse_duration;
use crate::Failure;

/// Options of `portico-load token`.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// File holding the HMAC secret (trailing newlines are not part of it).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "secret_env",
        required_unless_present = "secret_env"
    )]
    pub secret_file: Option<PathBuf>,

    /// Environment variable holding the HMAC secret.
    #[arg(long, value_name = "NAME")]
    pub secret_env: Option<String>,

    /// The `sub` claim: who the token says the caller is.
    #[arg(long, default_value = "demo-user")]
    pub sub: String,

    /// The `iss` claim.
    #[arg(long)]
    pub iss: Option<String>,

    /// The `aud` claim.
    #[arg(long)]
    pub aud: Option<String>,

    /// Lifetime: `exp` is this long after `iat` (now), e.g. 1h, 30m, 3600.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,

    /// Another string claim, NAME=VALUE (repeatable).
    #[arg(long = "claim", value_name = "NAME=VALUE", value_parser = parse_claim)]
    pub claims: Vec<(String, String)>,
}

pub fn run(args: TokenArgs) -> Result<(), Failure> {
    let secret = secret(&args).map_err(Failure::BadInput)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(args.sub));
    if let Some(iss) = &args.iss {
        claims.insert("iss".into(), json!(iss));
    }
    if let Some(aud) = &args.aud {
        claims.insert("aud".into(), json!(aud));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + args.ttl.as_secs().max(1)));
    for (name, value) in &args.claims {
        claims.insert(name.clone(), json!(value));
    }
    println!("{}", sign(&secret, &Value::Object(claims)));
    Ok(())
}

fn secret(args: &TokenArgs) -> Result<Vec<u8>, String> {
    let mut bytes = match (&args.secret_file, &args.secret_env) {
        (Some(path), _) => std::fs::read(path)
            .map_err(|e| format!("cannot read --secret-file {}: {e}", path.display()))?,
        (None, Some(name)) => std::env::var_os(name)
            .ok_or_else(|| format!("environment variable {name} is not set"))?
            .into_encoded_bytes(),
        (None, None) => return Err("give --secret-file or --secret-env".into()),
    };
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(bytes)
}

/// `header.claims.signature`, HS256.
fn sign(secret: &[u8], claims: &Value) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn parse_claim(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("want NAME=VALUE, not {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_signed_header_and_claims() {
        let token = sign(b"a secret of the demo", &json!({"sub": "a"}));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "a");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"a secret of the demo");
        let mac = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(ring::hmac::verify(&key, input.as_bytes(), &mac).is_ok());
        assert!(parse_claim("=x").is_err());
        assert_eq!(
            parse_claim("role=admin").unwrap(),
            ("role".into(), "admin".into())
        );
    }
}
