//! A provider's key source, as `[auth.jwt.NAME]` gives it: local key material
//! (JWKS file, PEM public keys, HMAC secret from a file or the environment) read now,
//! so `portico check` catches a bad key; or a remote JWKS URL checked for form and
//! handed to the fetcher. Secrets never appear in a problem message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::Problems;
use super::schema::{self, OneOrMany};
use crate::auth::jwks::{JwksUrl, KeySetSlot};
use crate::auth::keys::{self, KeyPolicy, KeySet};
use crate::auth::RemoteJwks;

/// Loads local keys now, or describes the remote JWKS for its fetcher.
pub(crate) fn key_source(
    s: &schema::JwtSection,
    policy: &KeyPolicy,
    base: &Path,
    p: &mut Problems<'_>,
) -> (Arc<KeySetSlot>, Option<RemoteJwks>) {
    let ready = |set: Arc<KeySet>| Arc::new(KeySetSlot::new(set, true));
    let empty = || ready(Arc::new(KeySet::default()));
    if let Some(f) = &s.jwks_file {
        let path = resolve(base, f.get_ref());
        let loaded = std::fs::read(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| keys::from_jwks(&text, policy));
        return match loaded {
            Ok(l) if !l.set.is_empty() => (ready(l.set), None),
            Ok(l) => {
                p.at(
                    f.span(),
                    format!(
                        "{} has no usable key ({})",
                        path.display(),
                        l.skipped.join("; ")
                    ),
                );
                (empty(), None)
            }
            Err(e) => {
                p.at(f.span(), e);
                (empty(), None)
            }
        };
    }
    if let Some(pem) = &s.public_key_pem {
        let items = match pem.get_ref() {
            OneOrMany::One(x) => vec![x.clone()],
            OneOrMany::Many(xs) => xs.clone(),
        };
        let mut texts = Vec::new();
        for item in items {
            if item.contains("-----BEGIN") {
                texts.push(item);
            } else {
                let path = resolve(base, &item);
                match std::fs::read_to_string(&path) {
                    Ok(t) => texts.push(t),
                    Err(e) => p.at(pem.span(), format!("cannot read {}: {e}", path.display())),
                }
            }
        }
        if texts.is_empty() {
            p.at(pem.span(), "public_key_pem names no key");
        }
        return match keys::from_pem(&texts, policy) {
            Ok(set) => (ready(set), None),
            Err(e) => {
                p.at(pem.span(), e);
                (empty(), None)
            }
        };
    }
    let secret = if let Some(f) = &s.hmac_secret_file {
        let path = resolve(base, f.get_ref());
        match std::fs::read(&path) {
            Ok(mut bytes) => {
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                Some((bytes, f.span()))
            }
            Err(e) => {
                p.at(f.span(), format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    } else if let Some(var) = &s.hmac_secret_env {
        match std::env::var_os(var.get_ref()) {
            Some(v) => Some((v.into_encoded_bytes(), var.span())),
            None => {
                p.at(
                    var.span(),
                    format!("environment variable {} is not set", var.get_ref()),
                );
                None
            }
        }
    } else {
        None
    };
    if let Some((bytes, span)) = secret {
        return match keys::from_hmac_secret(&bytes, policy) {
            Ok(set) => (ready(set), None),
            Err(e) => {
                p.at(span, e);
                (empty(), None)
            }
        };
    }
    let Some(url) = &s.jwks_url else {
        return (empty(), None);
    };
    let parsed = match JwksUrl::parse(url.get_ref()) {
        Ok(u) => u,
        Err(e) => {
            p.at(url.span(), format!("jwks_url \"{}\": {e}", url.get_ref()));
            return (empty(), None);
        }
    };
    let ca = s.jwks_ca.as_ref().map(|c| {
        if !parsed.https {
            p.at(c.span(), "jwks_ca is only used with an https jwks_url");
        }
        let path = resolve(base, c.get_ref());
        if let Err(e) = std::fs::metadata(&path) {
            p.at(c.span(), format!("cannot read {}: {e}", path.display()));
        }
        path
    });
    let refresh = *s.jwks_refresh_s.get_ref();
    if refresh == 0 {
        p.at(
            s.jwks_refresh_s.span(),
            "jwks_refresh_s must be greater than 0",
        );
    }
    let min_refetch = *s.jwks_min_refetch_s.get_ref();
    if min_refetch > refresh {
        p.at(
            s.jwks_min_refetch_s.span(),
            "jwks_min_refetch_s must not exceed jwks_refresh_s",
        );
    }
    let timeout = *s.jwks_timeout_ms.get_ref();
    if timeout == 0 {
        p.at(
            s.jwks_timeout_ms.span(),
            "jwks_timeout_ms must be greater than 0",
        );
    }
    let remote = RemoteJwks {
        url_text: url.get_ref().clone(),
        url: parsed,
        refresh: Duration::from_secs(refresh.max(1)),
        min_refetch: Duration::from_secs(min_refetch),
        timeout: Duration::from_millis(timeout.max(1)),
        ca,
        policy: policy.clone(),
    };
    (
        Arc::new(KeySetSlot::new(Arc::new(KeySet::default()), false)),
        Some(remote),
    )
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
