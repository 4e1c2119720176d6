//! JWT authentication through the real gateway to an echo upstream: every
//! rejection with its exact status and challenge (and the upstream's hit counter
//! proving nothing was forwarded), identity headers from claims, spoofed identity
//! headers stripped, remote JWKS rotation and outage, readiness, config checks.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::jwt::{self, b64, claims, header, hmac_sign, now, JwksServer, SigningKey};
use common::{Client, Gateway, Response, Upstream};
use serde_json::json;

/// A file in this test's scratch folder, written beside and renamed over: tests
/// running in parallel write the same names (`jwks-k1.json`), and a gateway
/// starting meanwhile must never read a file half written (seen as "the JWKS is
/// not JSON: EOF" in `malformed_json_is_refused`).
fn write_file(name: &str, text: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portico-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let thread =
        format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_alphanumeric(), "");
    let tmp = dir.join(format!("{name}.{thread}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// A gateway with `provider` as `[auth.jwt.main]` and routes:
/// `/api` (auth), `/public` (none), `/opt` (optional), `/cors` (preflight bypass).
fn gateway(up: &Upstream, provider: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
[[upstream]]
name = "app"
endpoints = ["{}"]
[auth.jwt.main]
issuer = "https://id.test/"
audiences = ["api"]
claims_to_headers = {{ sub = "x-user-id", scope = "x-scope" }}
{provider}
[[route]]
name = "api"
path_prefix = "/api"
upstream = "app"
auth = "main"
[[route]]
name = "opt"
path_prefix = "/opt"
upstream = "app"
auth = {{ provider = "main", optional = true }}
[[route]]
name = "cors"
path_prefix = "/cors"
upstream = "app"
auth = {{ provider = "main", cors_preflight = "bypass" }}
[[route]]
name = "public"
path_prefix = "/public"
upstream = "app"
"#,
        up.addr()
    ))
}

fn rsa_provider(kid: &str) -> String {
    let jwks = json!({"keys": [jwt::shared_rsa().jwk(kid)]});
    let path = write_file(&format!("jwks-{kid}.json"), jwks.to_string().as_bytes());
    format!(
        "algorithms = [\"RS256\"]\njwks_file = \"{}\"",
        path.display()
    )
}

fn get_with(c: &mut Client, path: &str, extra: &str) -> Response {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
    c.response().expect("a response")
}

fn bearer(c: &mut Client, path: &str, token: &str) -> Response {
    get_with(c, path, &format!("Authorization: Bearer {token}\r\n"))
}

/// Header values the upstream received under `name`.
fn seen(r: &Response, name: &str) -> Vec<String> {
    r.json()["headers"]
        .as_array()
        .expect("echo headers")
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}

/// Asserts a 401 `invalid_token` with `description`, and that nothing reached the upstream.
fn assert_invalid(gw: &Gateway, up: &Upstream, token: &str, description: &str) {
    let before = up.hits();
    let r = bearer(&mut gw.client(), "/api/x", token);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Bearer realm=\"portico\", error=\"invalid_token\", error_description=\"{description}\"").as_str()),
    );
    assert_eq!(r.json()["error"], description);
    assert_eq!(
        up.hits(),
        before,
        "a refused request must not reach the upstream"
    );
}

#[test]
fn valid_tokens_of_every_key_type_pass_with_identity_headers() {
    let up = Upstream::echo();
    let rsa = jwt::shared_rsa();
    let ec = SigningKey::p256();
    let ed = SigningKey::ed25519();
    let hs = SigningKey::hmac();
    let secret = write_file("hs.secret", &[hs.secret(), b"\n"].concat());
    let cases: Vec<(String, &SigningKey, &str, Option<&str>)> = vec![
        (rsa_provider("r1"), rsa, "RS256", Some("r1")),
        (
            format!(
                "algorithms = [\"RS256\", \"PS256\"]\njwks_file = \"{}\"",
                write_file(
                    "ps.json",
                    json!({"keys": [rsa.jwk("p1")]}).to_string().as_bytes()
                )
                .display()
            ),
            rsa,
            "PS256",
            Some("p1"),
        ),
        (
            format!(
                "algorithms = [\"ES256\"]\npublic_key_pem = '''{}'''",
                ec.public_pem()
            ),
            &ec,
            "ES256",
            None,
        ),
        (
            format!(
                "algorithms = [\"EdDSA\"]\npublic_key_pem = '''{}'''",
                ed.public_pem()
            ),
            &ed,
            "EdDSA",
            None,
        ),
        (
            format!(
                "algorithms = [\"HS256\"]\nhmac_secret_file = \"{}\"",
                secret.display()
            ),
            &hs,
            "HS256",
            None,
        ),
    ];
    for (provider, key, alg, kid) in cases {
        let gw = gateway(&up, &provider);
        let mut c = gw.client();
        let mut cl = claims("user-1");
        cl["scope"] = json!("read write");
        let token = key.sign(&header(alg, kid), &cl);
        let r = bearer(&mut c, "/api/x", &token);
        assert_eq!(r.status, 200, "{alg}: {}", r.text());
        assert_eq!(seen(&r, "x-user-id"), ["user-1"], "{alg}");
        assert_eq!(seen(&r, "x-scope"), ["read write"], "{alg}");
        assert_eq!(
            seen(&r, "authorization"),
            [format!("Bearer {token}")],
            "{alg}: forwarded by default"
        );
    }
}

#[test]
fn missing_token_is_401_with_a_bare_challenge() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let before = up.hits();
    let mut c = gw.client();
    for extra in ["", "Authorization: Basic dXNlcjpwYXNz\r\n"] {
        let r = get_with(&mut c, "/api/x", extra);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"portico\"")
        );
        assert!(r.header("x-request-id").is_some());
    }
    assert_eq!(up.hits(), before);
    assert_eq!(gw.stat("auth_rejected"), 2);
}

#[test]
fn alg_none_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let c = claims("u");
    let token = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(c.to_string().as_bytes())
    );
    assert_invalid(&gw, &up, &token, "algorithm not allowed");
    let with_kid = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","kid":"k1"}"#),
        b64(c.to_string().as_bytes())
    );
    assert_invalid(&gw, &up, &with_kid, "algorithm not allowed");
}

#[test]
fn algorithm_outside_the_allow_list_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    // Right key, right signature, but RS384 is not in algorithms = ["RS256"].
    let token = jwt::shared_rsa().sign(&header("RS384", Some("k1")), &claims("u"));
    assert_invalid(&gw, &up, &token, "algorithm not allowed");
}

#[test]
fn rs256_to_hs256_confusion_is_refused() {
    let up = Upstream::echo();
    let rsa = jwt::shared_rsa();
    let pem = rsa.public_pem();
    let gw = gateway(
        &up,
        &format!("algorithms = [\"RS256\"]\npublic_key_pem = '''{pem}'''"),
    );
    // Sign HS256 with the public key (PEM text, and the JWK's modulus) as the secret.
    for secret in [
        pem.as_bytes().to_vec(),
        rsa.jwk("x")["n"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let input = format!(
            "{}.{}",
            b64(header("HS256", None).to_string().as_bytes()),
            b64(claims("admin").to_string().as_bytes())
        );
        let token = format!(
            "{input}.{}",
            b64(&hmac_sign("HS256", &secret, input.as_bytes()))
        );
        assert_invalid(&gw, &up, &token, "algorithm not allowed");
    }
    // And the configuration cannot allow the mix in the first place.
    let out = check(&format!(
        "[auth.jwt.main]\nalgorithms = [\"RS256\", \"HS256\"]\npublic_key_pem = '''{pem}'''\n"
    ));
    assert!(out.contains("HS256 needs an HMAC secret"), "{out}");
}

#[test]
fn unknown_kid_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let token = jwt::shared_rsa().sign(&header("RS256", Some("other")), &claims("u"));
    assert_invalid(&gw, &up, &token, "unknown key id");
}

#[test]
fn bad_signature_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let token = jwt::shared_rsa().sign(&header("RS256", Some("k1")), &claims("alice"));
    // Same header and signature, a different payload.
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("admin").to_string().as_bytes()),
        parts[2]
    );
    assert_invalid(&gw, &up, &forged, "bad signature");
    // A token signed by another RSA key under the same kid.
    let other = SigningKey::rsa();
    let wrong = other.sign(&header("RS256", Some("k1")), &claims("u"));
    assert_invalid(&gw, &up, &wrong, "bad signature");
}

/// A token from the shared RSA key (kid "k1") with `edit` applied to good claims.
fn rsa_token(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut c = claims("u");
    edit(&mut c);
    jwt::shared_rsa().sign(&header("RS256", Some("k1")), &c)
}

#[test]
fn expired_token_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    // Past the 60 s leeway: refused; within it: accepted.
    let expired = rsa_token(|c| c["exp"] = json!(now() - 121));
    assert_invalid(&gw, &up, &expired, "token expired");
    let in_leeway = rsa_token(|c| c["exp"] = json!(now() - 10));
    assert_eq!(bearer(&mut gw.client(), "/api/x", &in_leeway).status, 200);
    // exp is required by default.
    let no_exp = rsa_token(|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert_invalid(&gw, &up, &no_exp, "missing claim exp");
}

#[test]
fn token_not_yet_valid_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let future = rsa_token(|c| c["nbf"] = json!(now() + 600));
    assert_invalid(&gw, &up, &future, "token not yet valid");
    let in_leeway = rsa_token(|c| c["nbf"] = json!(now() + 30));
    assert_eq!(bearer(&mut gw.client(), "/api/x", &in_leeway).status, 200);
}

#[test]
fn wrong_issuer_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let wrong = rsa_token(|c| c["iss"] = json!("https://evil.test/"));
    assert_invalid(&gw, &up, &wrong, "wrong issuer");
    let missing = rsa_token(|c| {
        c.as_object_mut().unwrap().remove("iss");
    });
    assert_invalid(&gw, &up, &missing, "missing claim iss");
}

#[test]
fn wrong_audience_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let wrong = rsa_token(|c| c["aud"] = json!(["other", "another"]));
    assert_invalid(&gw, &up, &wrong, "wrong audience");
    let missing = rsa_token(|c| {
        c.as_object_mut().unwrap().remove("aud");
    });
    assert_invalid(&gw, &up, &missing, "missing claim aud");
    // One matching audience in a list is enough.
    let listed = rsa_token(|c| c["aud"] = json!(["other", "api"]));
    assert_eq!(bearer(&mut gw.client(), "/api/x", &listed).status, 200);
}

#[test]
fn lifetime_over_the_maximum_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(
        &up,
        &format!(
            "{}
max_lifetime_s = 600
require = [\"exp\", \"jti\"]",
            rsa_provider("k1")
        ),
    );
    let long = rsa_token(|c| {
        c["exp"] = json!(now() + 7200);
        c["jti"] = json!("1");
    });
    assert_invalid(&gw, &up, &long, "token lifetime exceeds the maximum");
    let no_jti = rsa_token(|_| {});
    assert_invalid(&gw, &up, &no_jti, "missing claim jti");
}

#[test]
fn malformed_base64_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let h = b64(header("RS256", Some("k1")).to_string().as_bytes());
    let c = b64(claims("u").to_string().as_bytes());
    for token in [
        format!("%%%.{c}.c2ln"), // header not base64url
        format!("{h}.{c}"),      // two parts
        format!("{h}.{c}.c2ln.extra"),
        "not-a-jwt".to_string(),
    ] {
        assert_invalid(&gw, &up, &token, "malformed token");
    }
    // Correctly signed over a payload that is not base64url: the signature passes,
    // the payload is still refused.
    let token = jwt::shared_rsa().sign_input("RS256", &format!("{h}.%%%notbase64"));
    assert_invalid(&gw, &up, &token, "malformed token");
}

#[test]
fn malformed_json_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let h = b64(header("RS256", Some("k1")).to_string().as_bytes());
    let c = b64(claims("u").to_string().as_bytes());
    assert_invalid(
        &gw,
        &up,
        &format!("{}.{c}.c2ln", b64(b"{not json")),
        "malformed token",
    );
    for payload in [b64(b"[not json"), b64(b"42")] {
        let token = jwt::shared_rsa().sign_input("RS256", &format!("{h}.{payload}"));
        assert_invalid(&gw, &up, &token, "malformed token");
    }
}

#[test]
fn oversized_token_is_refused_before_any_work() {
    let up = Upstream::echo();
    let gw = gateway(
        &up,
        &format!("{}\nmax_token_bytes = 1024", rsa_provider("k1")),
    );
    let mut c = claims("u");
    c["pad"] = json!("x".repeat(1200));
    let token = jwt::shared_rsa().sign(&header("RS256", Some("k1")), &c);
    assert_invalid(&gw, &up, &token, "token too large");
    // The default limit (8 KiB) applies without the key.
    let gw = gateway(&up, &rsa_provider("k1"));
    c["pad"] = json!("x".repeat(9000));
    let token = jwt::shared_rsa().sign(&header("RS256", Some("k1")), &c);
    assert_invalid(&gw, &up, &token, "token too large");
}

#[test]
fn two_different_tokens_in_one_request_are_refused() {
    let up = Upstream::echo();
    let gw = gateway(
        &up,
        &format!(
            "{}\ntoken_from = [\"header:authorization\", \"query:access_token\", \"cookie:at\"]",
            rsa_provider("k1")
        ),
    );
    let key = jwt::shared_rsa();
    let t1 = key.sign(&header("RS256", Some("k1")), &claims("alice"));
    let t2 = key.sign(&header("RS256", Some("k1")), &claims("mallory"));
    let before = up.hits();
    let mut c = gw.client();
    for (path, extra) in [
        (
            format!("/api/x?access_token={t2}"),
            format!("Authorization: Bearer {t1}\r\n"),
        ),
        (
            "/api/x".to_string(),
            format!("Authorization: Bearer {t1}\r\nAuthorization: Bearer {t2}\r\n"),
        ),
        (
            "/api/x".to_string(),
            format!("Authorization: Bearer {t1}\r\nCookie: at={t2}\r\n"),
        ),
    ] {
        let r = get_with(&mut c, &path, &extra);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"portico\", error=\"invalid_request\", error_description=\"more than one token in the request\"")
        );
    }
    assert_eq!(up.hits(), before);
    // The same token in two places is one token; the query and cookie sources work alone.
    let r = get_with(
        &mut c,
        &format!("/api/x?access_token={t1}"),
        &format!("Authorization: Bearer {t1}\r\n"),
    );
    assert_eq!(r.status, 200);
    let r = get_with(&mut c, "/api/x", &format!("Cookie: a=1; at={t1}\r\n"));
    assert_eq!(
        (r.status, seen(&r, "x-user-id")),
        (200, vec!["alice".to_string()])
    );
}

#[test]
fn spoofed_identity_headers_are_stripped_on_every_route() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let token = jwt::shared_rsa().sign(&header("RS256", Some("k1")), &claims("alice"));
    let mut c = gw.client();
    let spoof = "X-User-Id: admin\r\nx-user-id: root\r\nX-Scope: all\r\nX-Portico-Role: admin\r\n";
    // Auth route: only the verified value arrives. (The token has no scope claim.)
    let r = get_with(
        &mut c,
        "/api/x",
        &format!("{spoof}Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(seen(&r, "x-user-id"), ["alice"]);
    assert!(seen(&r, "x-scope").is_empty());
    assert!(seen(&r, "x-portico-role").is_empty());
    // Route without auth: nothing of it arrives.
    let r = get_with(&mut c, "/public/x", spoof);
    assert_eq!(r.status, 200);
    for h in ["x-user-id", "x-scope", "x-portico-role"] {
        assert!(seen(&r, h).is_empty(), "{h} reached the upstream");
    }
    // Optional auth without a token: anonymous, still stripped.
    let r = get_with(&mut c, "/opt/x", spoof);
    assert_eq!(r.status, 200);
    assert!(seen(&r, "x-user-id").is_empty());
    // Even with no [auth] at all the reserved prefix is stripped (and headers
    // cannot be used to pick a route either: the stripped header matches nothing).
    let plain = Gateway::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:{{port}}\"]\nworkers = 1\n[log]\naccess_log = \"off\"\n[[upstream]]\nname = \"a\"\nendpoints = [\"{}\"]\n[[route]]\nname = \"a\"\nupstream = \"a\"\n",
        up.addr()
    ));
    let r = get_with(
        &mut plain.client(),
        "/",
        "X-Portico-User: admin\r\nX-Other: kept\r\n",
    );
    assert!(seen(&r, "x-portico-user").is_empty());
    assert_eq!(seen(&r, "x-other"), ["kept"]);
}

#[test]
fn optional_auth_lets_anonymous_in_but_not_bad_tokens() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let mut c = gw.client();
    assert_eq!(get_with(&mut c, "/opt/x", "").status, 200);
    let before = up.hits();
    let r = bearer(&mut c, "/opt/x", "garbage");
    assert_eq!(r.status, 401);
    assert_eq!(up.hits(), before);
    let token = jwt::shared_rsa().sign(&header("RS256", Some("k1")), &claims("bob"));
    let r = bearer(&mut c, "/opt/x", &token);
    assert_eq!(seen(&r, "x-user-id"), ["bob"]);
}

#[test]
fn cors_preflight_bypasses_auth_only_where_the_route_says_so() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let mut c = gw.client();
    let preflight = |c: &mut Client, path: &str| {
        c.send(format!("OPTIONS {path} HTTP/1.1\r\nHost: t\r\nOrigin: https://app.test\r\nAccess-Control-Request-Method: POST\r\n\r\n").as_bytes());
        c.response().unwrap()
    };
    assert_eq!(preflight(&mut c, "/cors/x").status, 200);
    assert_eq!(preflight(&mut c, "/api/x").status, 401);
    // An OPTIONS that is not a preflight is authenticated.
    c.send(b"OPTIONS /cors/x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().unwrap().status, 401);
    assert_eq!(get_with(&mut c, "/cors/x", "").status, 401);
}

#[test]
fn forward_token_false_strips_the_token() {
    let up = Upstream::echo();
    let gw = gateway(&up, &format!("{}\nforward_token = false\ntoken_from = [\"header:authorization\", \"cookie:at\", \"query:access_token\"]", rsa_provider("k1")));
    let token = jwt::shared_rsa().sign(&header("RS256", Some("k1")), &claims("carol"));
    let mut c = gw.client();
    let r = bearer(&mut c, "/api/x?a=1", &token);
    assert_eq!(r.status, 200);
    assert!(seen(&r, "authorization").is_empty());
    assert_eq!(seen(&r, "x-user-id"), ["carol"]);
    let r = get_with(
        &mut c,
        "/api/x",
        &format!("Cookie: a=1; at={token}; b=2\r\n"),
    );
    assert_eq!(seen(&r, "cookie"), ["a=1; b=2"]);
    let r = get_with(&mut c, &format!("/api/x?a=1&access_token={token}&b=2"), "");
    assert_eq!(r.json()["path"], "/api/x?a=1&b=2");
}

#[test]
fn a_reused_token_is_verified_once_per_worker() {
    let up = Upstream::echo();
    let gw = gateway(&up, &rsa_provider("k1"));
    let token = jwt::shared_rsa().sign(&header("RS256", Some("k1")), &claims("dave"));
    let mut c = gw.client();
    for _ in 0..5 {
        let r = bearer(&mut c, "/api/x", &token);
        assert_eq!(seen(&r, "x-user-id"), ["dave"]);
    }
    assert_eq!(gw.stat("auth_verified"), 1);
    assert_eq!(gw.stat("auth_cache_hits"), 4);
}

fn remote_gateway(up: &Upstream, jwks: &JwksServer, extra: &str) -> Gateway {
    gateway(
        up,
        &format!("algorithms = [\"RS256\", \"ES256\"]\njwks_url = \"{}\"\njwks_min_refetch_s = 1\n{extra}", jwks.url()),
    )
}

/// Retries `f` until it is true or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ready_status(gw: &Gateway) -> u16 {
    Client::connect(gw.admin_port).get("/ready").status
}

#[test]
fn jwks_rotation_is_picked_up_without_a_restart() {
    let up = Upstream::echo();
    let old = jwt::shared_rsa();
    let new = SigningKey::p256();
    let jwks = JwksServer::start(json!({"keys": [old.jwk("old")]}));
    let gw = remote_gateway(&up, &jwks, "");
    assert!(eventually(Duration::from_secs(5), || ready_status(&gw) == 200));
    let old_token = old.sign(&header("RS256", Some("old")), &claims("u-old"));
    assert_eq!(bearer(&mut gw.client(), "/api/x", &old_token).status, 200);

    // The identity provider retires the old key and serves a new one.
    jwks.set(json!({"keys": [new.jwk("new")]}));
    let new_token = new.sign(&header("ES256", Some("new")), &claims("u-new"));
    let fetches = jwks.hits();
    let ok = eventually(Duration::from_secs(5), || {
        let r = bearer(&mut gw.client(), "/api/x", &new_token);
        r.status == 200 && seen(&r, "x-user-id") == ["u-new"]
    });
    assert!(ok, "a token with the new kid was never accepted");
    assert!(
        jwks.hits() > fetches,
        "the unknown kid made the gateway refetch"
    );
    // The old kid is gone: its token (cached before) is refused now.
    let r = bearer(&mut gw.client(), "/api/x", &old_token);
    assert_eq!(r.status, 401);
}

#[test]
fn unknown_kid_floods_cost_at_most_one_fetch_per_cooldown() {
    let up = Upstream::echo();
    let key = jwt::shared_rsa();
    let jwks = JwksServer::start(json!({"keys": [key.jwk("k1")]}));
    let gw = gateway(
        &up,
        &format!(
            "algorithms = [\"RS256\"]\njwks_url = \"{}\"\njwks_min_refetch_s = 30",
            jwks.url()
        ),
    );
    assert!(eventually(Duration::from_secs(5), || ready_status(&gw) == 200));
    let before = jwks.hits();
    let mut c = gw.client();
    for i in 0..50 {
        let t = key.sign(&header("RS256", Some(&format!("random-{i}"))), &claims("u"));
        assert_eq!(bearer(&mut c, "/api/x", &t).status, 401);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        jwks.hits() - before <= 1,
        "{} fetches",
        jwks.hits() - before
    );
}

#[test]
fn jwks_down_keeps_the_last_good_keys() {
    let up = Upstream::echo();
    let key = jwt::shared_rsa();
    let jwks = JwksServer::start(json!({"keys": [key.jwk("k1")]}));
    let gw = remote_gateway(&up, &jwks, "jwks_refresh_s = 1");
    assert!(eventually(Duration::from_secs(5), || ready_status(&gw) == 200));
    assert_eq!(
        bearer(
            &mut gw.client(),
            "/api/x",
            &key.sign(&header("RS256", Some("k1")), &claims("a"))
        )
        .status,
        200
    );
    jwks.set_down(true);
    let hits = jwks.hits();
    // Refreshes fail now (the server answers 503)...
    assert!(eventually(Duration::from_secs(5), || jwks.hits() >= hits + 2));
    // ...and a fresh token (not in the cache) still verifies with the last good keys.
    let mut cl = claims("b");
    cl["jti"] = json!("fresh");
    let r = bearer(
        &mut gw.client(),
        "/api/x",
        &key.sign(&header("RS256", Some("k1")), &cl),
    );
    assert_eq!(
        (r.status, seen(&r, "x-user-id")),
        (200, vec!["b".to_string()])
    );
    assert_eq!(ready_status(&gw), 200);
}

#[test]
fn jwks_over_https_with_a_configured_ca() {
    let up = Upstream::echo();
    let key = SigningKey::ed25519();
    let (jwks, ca_pem) = JwksServer::start_tls(json!({"keys": [key.jwk("e1")]}));
    let ca = write_file("jwks-ca.pem", ca_pem.as_bytes());
    let gw = gateway(
        &up,
        &format!(
            "algorithms = [\"EdDSA\"]\njwks_url = \"{}\"\njwks_ca = \"{}\"",
            jwks.url(),
            ca.display()
        ),
    );
    assert!(eventually(Duration::from_secs(5), || ready_status(&gw) == 200));
    let r = bearer(
        &mut gw.client(),
        "/api/x",
        &key.sign(&header("EdDSA", Some("e1")), &claims("tls-user")),
    );
    assert_eq!(
        (r.status, seen(&r, "x-user-id")),
        (200, vec!["tls-user".to_string()])
    );
    // Without the CA the certificate is not trusted: no keys, so 503 (and never 200).
    let other = JwksServer::start_tls(json!({"keys": [key.jwk("e1")]})).0;
    let gw = gateway(
        &up,
        &format!("algorithms = [\"EdDSA\"]\njwks_url = \"{}\"", other.url()),
    );
    assert!(eventually(Duration::from_secs(5), || ready_status(&gw) == 200));
    let r = bearer(
        &mut gw.client(),
        "/api/x",
        &key.sign(&header("EdDSA", Some("e1")), &claims("x")),
    );
    assert_eq!(r.status, 503);
}

#[test]
fn cache_control_max_age_brings_the_refresh_forward() {
    let up = Upstream::echo();
    let key = jwt::shared_rsa();
    let jwks = JwksServer::start(json!({"keys": [key.jwk("k1")]}));
    jwks.set_cache_control("public, max-age=1");
    // The refresh interval alone would wait 600 s.
    let gw = remote_gateway(&up, &jwks, "jwks_refresh_s = 600");
    assert!(eventually(Duration::from_secs(5), || ready_status(&gw) == 200));
    let first = jwks.hits();
    assert!(
        eventually(Duration::from_secs(5), || jwks.hits() >= first + 2),
        "max-age=1 was not honoured"
    );
}

#[test]
fn not_ready_until_the_first_jwks_fetch_ends() {
    let up = Upstream::echo();
    let key = jwt::shared_rsa();
    let jwks = JwksServer::start(json!({"keys": [key.jwk("k1")]}));
    jwks.set_delay(Duration::from_millis(1500));
    let gw = remote_gateway(&up, &jwks, "");
    // The data port accepts (kernel backlog) a moment before the workers report
    // serving; until then /ready says "starting".
    let mut r = Client::connect(gw.admin_port).get("/ready");
    assert!(eventually(Duration::from_secs(5), || {
        r = Client::connect(gw.admin_port).get("/ready");
        r.text().trim() != "starting"
    }));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("waiting for the JWKS of main"),
        "{}",
        r.text()
    );
    // Before the keys arrive an auth route answers 503, not a misleading 401.
    let token = key.sign(&header("RS256", Some("k1")), &claims("a"));
    let early = bearer(&mut gw.client(), "/api/x", &token);
    assert_eq!(early.status, 503);
    assert!(eventually(Duration::from_secs(5), || {
        r = Client::connect(gw.admin_port).get("/ready");
        r.status == 200
    }));
    assert_eq!(bearer(&mut gw.client(), "/api/x", &token).status, 200);
}

/// `portico check` on `text` (with a minimal server and route); its stderr.
fn check(text: &str) -> String {
    let checked = common::procs::portico_check(
        "check.toml",
        &format!("{text}\n[[route]]\nname = \"r\"\npath = \"/\"\nrespond = {{ status = 200 }}\n"),
    );
    checked.stderr + &checked.stdout
}

#[test]
fn check_reports_auth_mistakes_and_never_prints_a_secret() {
    let secret = "short-secret-value";
    let path = write_file("short.secret", secret.as_bytes());
    let out = check(&format!(
        "[auth.jwt.main]\nhmac_secret_file = \"{}\"\n",
        path.display()
    ));
    assert!(out.contains("at least 32 are required"), "{out}");
    assert!(!out.contains(secret), "the secret was printed: {out}");
    let out = check("[auth.jwt.main]\nissuer = \"x\"\n");
    assert!(out.contains("needs one key source"), "{out}");
    let out = check("[auth.jwt.main]\njwks_url = \"ftp://x\"\nalgorithms = [\"RS256\", \"XX999\"]\nclaims_to_headers = { sub = \"host\" }\n");
    assert!(out.contains("must start with http:// or https://"), "{out}");
    assert!(out.contains("\"XX999\" is not one of"), "{out}");
    assert!(
        out.contains("header \"host\" cannot carry a claim"),
        "{out}"
    );
    let out = check(
        "[auth.jwt.main]\nhmac_secret_env = \"PORTICO_TEST_UNSET_VARIABLE\"\nwrong_key = 1\n",
    );
    assert!(out.contains("wrong_key"), "{out}");
    let out = check(
        "[[route]]\nname = \"x\"\npath = \"/x\"\nrespond = { status = 200 }\nauth = \"nope\"\n",
    );
    assert!(out.contains("unknown provider \"nope\""), "{out}");
    std::env::set_var("PORTICO_TEST_SECRET", "s".repeat(40));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["check", "--config", write_file("env.toml", b"[auth.jwt.main]\nhmac_secret_env = \"PORTICO_TEST_SECRET\"\n[[route]]\nname = \"r\"\npath = \"/\"\nrespond = { status = 200 }\nauth = \"main\"\n").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&"s".repeat(40)));
}
