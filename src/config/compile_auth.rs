//! Validation and compilation of `[auth.jwt.NAME]` providers and a route's `auth`:
//! algorithms, claim checks, token sources, identity headers. Keys are loaded by
//! `compile_auth_keys.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use jsonwebtoken::{Algorithm, AlgorithmFamily, Validation};
use toml::Spanned;

use super::error::Problems;
use super::schema::{self, RouteAuthSection};
use crate::auth::keys::KeyPolicy;
use crate::auth::{AuthSettings, JwtProvider, RouteAuth, TokenSource};

/// Claims jsonwebtoken itself checks for presence; other `require` names are
/// checked by the verifier.
const SPEC_CLAIMS: &[&str] = &["exp", "nbf", "iss", "aud", "sub"];

/// Headers a claim may never be written to: framing, routing, forwarding and
/// credentials the gateway or the client owns.
const FORBIDDEN_IDENTITY_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "authorization",
    "cookie",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

pub(crate) fn auth_settings(
    section: Option<schema::AuthSection>,
    config_file: &str,
    p: &mut Problems<'_>,
) -> AuthSettings {
    crate::auth::ring_provider::install();
    let base = Path::new(config_file)
        .parent()
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let mut settings = AuthSettings::default();
    let Some(section) = section else {
        return settings;
    };
    for (name, provider) in section.jwt {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.at(
                provider.span(),
                format!("provider name \"{name}\" may use letters, digits, - and _ only"),
            );
        }
        let span = provider.span();
        let built = jwt_provider(name, provider.into_inner(), span, &base, p);
        for (_, header) in &built.claims_to_headers {
            let h = header.as_bytes().to_vec();
            if !settings.identity_headers.contains(&h) {
                settings.identity_headers.push(h);
            }
        }
        settings.providers.push(built);
    }
    // A header that carries a token cannot also be an identity header (it would be
    // stripped before the token is read).
    for prov in &settings.providers {
        for source in &prov.token_from {
            if let TokenSource::Header(h) = source {
                if settings.identity_headers.contains(&h.as_bytes().to_vec())
                    || h.as_bytes().starts_with(crate::auth::RESERVED_PREFIX)
                {
                    p.at(0..0, format!("auth.jwt.{}: token_from header \"{h}\" is an identity header, which the gateway strips from every request", prov.name));
                }
            }
        }
    }
    settings
}

fn jwt_provider(
    name: String,
    s: schema::JwtSection,
    span: std::ops::Range<usize>,
    base: &Path,
    p: &mut Problems<'_>,
) -> JwtProvider {
    let sources = [
        s.jwks_file.as_ref().map(|v| v.span()),
        s.jwks_url.as_ref().map(|v| v.span()),
        s.public_key_pem.as_ref().map(|v| v.span()),
        s.hmac_secret_file.as_ref().map(|v| v.span()),
        s.hmac_secret_env.as_ref().map(|v| v.span()),
    ];
    let given: Vec<_> = sources.iter().flatten().collect();
    if given.is_empty() {
        p.at(span.clone(), format!("auth.jwt.{name} needs one key source: jwks_file, jwks_url, public_key_pem, hmac_secret_file or hmac_secret_env"));
    } else if given.len() > 1 {
        p.at(
            given[1].clone(),
            format!("auth.jwt.{name}: give one key source only"),
        );
    }
    let hmac = s.hmac_secret_file.is_some() || s.hmac_secret_env.is_some();
    let algorithms = algorithms(&name, &s.algorithms, hmac, p);

    let mut required: Vec<String> = match &s.require {
        Some(list) => list
            .iter()
            .filter_map(|c| {
                let v = c.get_ref();
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
                {
                    p.at(c.span(), format!("\"{v}\" is not a claim name"));
                    None
                } else {
                    Some(v.clone())
                }
            })
            .collect(),
        None => vec!["exp".to_string()],
    };
    let issuer = s.issuer.as_ref().map(|i| i.get_ref().clone());
    let audiences: Vec<String> = s.audiences.iter().map(|a| a.get_ref().clone()).collect();
    if issuer.is_some() && !required.iter().any(|r| r == "iss") {
        required.push("iss".to_string());
    }
    if !audiences.is_empty() && !required.iter().any(|r| r == "aud") {
        required.push("aud".to_string());
    }
    let leeway_s = *s.leeway_s.get_ref();
    if leeway_s > 3600 {
        p.at(s.leeway_s.span(), "leeway_s must be at most 3600");
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = leeway_s;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let spec: Vec<&String> = required
        .iter()
        .filter(|r| SPEC_CLAIMS.contains(&r.as_str()))
        .collect();
    validation.set_required_spec_claims(&spec);
    if let Some(iss) = &issuer {
        validation.set_issuer(&[iss]);
    }
    if audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&audiences);
    }
    let policy = KeyPolicy {
        algorithms: algorithms.clone(),
        validation,
    };
    let required_extra = required
        .iter()
        .filter(|r| !SPEC_CLAIMS.contains(&r.as_str()))
        .cloned()
        .collect();

    if let Some(m) = &s.max_lifetime_s {
        if *m.get_ref() == 0 {
            p.at(m.span(), "max_lifetime_s must be greater than 0");
        }
    }
    let (keys, remote) = super::compile_auth_keys::key_source(&s, &policy, base, p);

    let token_from = match &s.token_from {
        None => vec![TokenSource::Header("authorization".to_string())],
        Some(list) => {
            if list.is_empty() {
                p.at(
                    span.clone(),
                    format!("auth.jwt.{name}: token_from is empty"),
                );
            }
            list.iter()
                .filter_map(|t| {
                    let parsed = TokenSource::parse(t.get_ref());
                    if parsed.is_none() {
                        p.at(
                            t.span(),
                            format!(
                                "token_from \"{}\" must be header:NAME, query:NAME or cookie:NAME",
                                t.get_ref()
                            ),
                        );
                    }
                    parsed
                })
                .collect()
        }
    };
    let max_token_bytes = *s.max_token_bytes.get_ref();
    if !(64..=1 << 20).contains(&max_token_bytes) {
        p.at(
            s.max_token_bytes.span(),
            "max_token_bytes must be from 64 to 1048576",
        );
    }
    let claims_to_headers = claims_to_headers(&s.claims_to_headers, p);
    let realm = s
        .realm
        .as_ref()
        .map_or("portico".to_string(), |r| r.get_ref().clone());
    if realm
        .bytes()
        .any(|b| b == b'"' || b == b'\\' || !(b' '..=b'~').contains(&b))
    {
        if let Some(r) = &s.realm {
            p.at(
                r.span(),
                "realm must be printable ASCII without quotes or backslashes",
            );
        }
    }
    let cache_entries = *s.cache_entries.get_ref();
    if cache_entries > 1_000_000 {
        p.at(
            s.cache_entries.span(),
            "cache_entries must be at most 1000000",
        );
    }
    JwtProvider {
        name,
        challenge: format!("Bearer realm=\"{realm}\""),
        algorithms,
        leeway_s,
        max_lifetime_s: s.max_lifetime_s.as_ref().map(|m| *m.get_ref()),
        required_extra,
        token_from,
        max_token_bytes: max_token_bytes as usize,
        claims_to_headers,
        forward_token: s.forward_token,
        cache_entries: cache_entries as usize,
        keys,
        remote,
    }
}

fn algorithms(
    name: &str,
    list: &Option<Vec<Spanned<String>>>,
    hmac: bool,
    p: &mut Problems<'_>,
) -> Vec<Algorithm> {
    let Some(list) = list else {
        return vec![if hmac {
            Algorithm::HS256
        } else {
            Algorithm::RS256
        }];
    };
    let mut out = Vec::new();
    for a in list {
        match a.get_ref().parse::<Algorithm>() {
            Ok(alg) if hmac != (alg.family() == AlgorithmFamily::Hmac) => p.at(
                a.span(),
                if hmac {
                    format!("{} needs a public key, but auth.jwt.{name} has an HMAC secret", a.get_ref())
                } else {
                    format!("{} needs an HMAC secret, but auth.jwt.{name} has public keys", a.get_ref())
                },
            ),
            Ok(alg) if !out.contains(&alg) => out.push(alg),
            Ok(_) => {}
            Err(_) => p.at(
                a.span(),
                format!("\"{}\" is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512", a.get_ref()),
            ),
        }
    }
    if list.is_empty() {
        p.at(0..0, format!("auth.jwt.{name}: algorithms is empty"));
    }
    out
}

fn claims_to_headers(
    map: &BTreeMap<String, Spanned<String>>,
    p: &mut Problems<'_>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (claim, header) in map {
        let h = header.get_ref().to_ascii_lowercase();
        if claim.is_empty() {
            p.at(header.span(), "claim name must not be empty");
        }
        if !crate::http::is_token(h.as_bytes()) {
            p.at(
                header.span(),
                format!("\"{}\" is not a valid header name", header.get_ref()),
            );
        } else if FORBIDDEN_IDENTITY_HEADERS.contains(&h.as_str())
            || crate::http::is_hop_by_hop(h.as_bytes())
        {
            p.at(
                header.span(),
                format!("header \"{h}\" cannot carry a claim"),
            );
        } else if out.iter().any(|(_, x)| *x == h) {
            p.at(
                header.span(),
                format!("header \"{h}\" is given for two claims"),
            );
        }
        out.push((claim.clone(), h));
    }
    out
}

/// A route's `auth`, resolved against the providers.
pub(crate) fn route_auth(
    a: &Spanned<RouteAuthSection>,
    settings: &AuthSettings,
    p: &mut Problems<'_>,
) -> Option<RouteAuth> {
    let (name, optional, cors) = match a.get_ref() {
        RouteAuthSection::Provider(n) => (n, false, None),
        RouteAuthSection::Table(t) => (&t.provider, t.optional, t.cors_preflight.as_deref()),
    };
    let cors_preflight_bypass = match cors {
        None | Some("authenticate") => false,
        Some("bypass") => true,
        Some(other) => {
            p.at(
                a.span(),
                format!("cors_preflight \"{other}\" must be \"bypass\" or \"authenticate\""),
            );
            false
        }
    };
    match settings.providers.iter().position(|x| &x.name == name) {
        Some(provider) => Some(RouteAuth {
            provider,
            optional,
            cors_preflight_bypass,
        }),
        None => {
            p.at(
                a.span(),
                format!("auth names unknown provider \"{name}\" (define [auth.jwt.{name}])"),
            );
            None
        }
    }
}
