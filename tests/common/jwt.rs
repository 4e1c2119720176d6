//! Test keys and tokens: RSA 2048 (made by `openssl`, which ring cannot do), P-256,
//! Ed25519 and HMAC (made by ring), JWS signing of any header and claims, and a
//! tiny std::net JWKS server whose keys, availability and delay a test controls.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of one kind.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Hmac(Vec<u8>),
}

impl SigningKey {
    /// A fresh RSA 2048 key (openssl genpkey).
    pub fn rsa() -> SigningKey {
        let dir = std::env::temp_dir().join(format!("portico-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = dir.join(format!("rsa-{}.der", N.fetch_add(1, Ordering::Relaxed)));
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
            .expect("openssl runs (apt-get install openssl)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = std::fs::read(&path).unwrap();
        // `-outform DER` writes PKCS#1 RSAPrivateKey.
        SigningKey::Rsa(RsaKeyPair::from_der(&der).unwrap())
    }

    pub fn p256() -> SigningKey {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        SigningKey::Ec(EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).unwrap())
    }

    pub fn ed25519() -> SigningKey {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        SigningKey::Ed(Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap())
    }

    pub fn hmac() -> SigningKey {
        let mut secret = vec![0u8; 48];
        ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut secret).unwrap();
        // Printable, so it can sit in a file or an environment variable.
        SigningKey::Hmac(b64(&secret).into_bytes())
    }

    /// The public key as a JWK with `kid` (not for HMAC).
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            SigningKey::Rsa(k) => {
                let p = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&p.n), "e": b64(&p.e)})
            }
            SigningKey::Ec(k) => {
                let pt = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&pt[1..33]), "y": b64(&pt[33..65])})
            }
            SigningKey::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(k.public_key().as_ref())})
            }
            SigningKey::Hmac(_) => panic!("no JWK for an HMAC secret"),
        }
    }

    /// The public key as `BEGIN PUBLIC KEY` PEM (SPKI).
    pub fn public_pem(&self) -> String {
        let der: Vec<u8> = match self {
            SigningKey::Rsa(k) => spki(&hex("300d06092a864886f70d0101010500"), k.public().as_ref()),
            SigningKey::Ec(k) => spki(
                &hex("301306072a8648ce3d020106082a8648ce3d030107"),
                k.public_key().as_ref(),
            ),
            SigningKey::Ed(k) => spki(&hex("300506032b6570"), k.public_key().as_ref()),
            SigningKey::Hmac(_) => panic!("no PEM for an HMAC secret"),
        };
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    pub fn secret(&self) -> &[u8] {
        match self {
            SigningKey::Hmac(s) => s,
            _ => panic!("not an HMAC key"),
        }
    }

    /// Signs `header.claims` with `alg` and returns the compact JWS.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let alg = header["alg"].as_str().unwrap_or("none");
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        self.sign_input(alg, &input)
    }

    /// Signs any `header.payload` text as given (for malformed but signed tokens).
    pub fn sign_input(&self, alg: &str, input: &str) -> String {
        let rng = SystemRandom::new();
        let sig = match self {
            SigningKey::Rsa(k) => {
                let padding: &dyn signature::RsaEncoding = match alg {
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0u8; k.public().modulus_len()];
                k.sign(padding, &rng, input.as_bytes(), &mut out).unwrap();
                out
            }
            SigningKey::Ec(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            SigningKey::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            SigningKey::Hmac(s) => hmac_sign(alg, s, input.as_bytes()),
        };
        format!("{input}.{}", b64(&sig))
    }
}

/// An HMAC signature with any secret (the algorithm-confusion attack uses a public key).
pub fn hmac_sign(alg: &str, secret: &[u8], msg: &[u8]) -> Vec<u8> {
    let a = match alg {
        "HS384" => ring::hmac::HMAC_SHA384,
        "HS512" => ring::hmac::HMAC_SHA512,
        _ => ring::hmac::HMAC_SHA256,
    };
    ring::hmac::sign(&ring::hmac::Key::new(a, secret), msg)
        .as_ref()
        .to_vec()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn der_len(n: usize) -> Vec<u8> {
    if n < 128 {
        vec![n as u8]
    } else if n < 256 {
        vec![0x81, n as u8]
    } else {
        vec![0x82, (n >> 8) as u8, n as u8]
    }
}

/// SubjectPublicKeyInfo: SEQUENCE { algorithm, BIT STRING key }.
fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = vec![0x03];
    bits.extend(der_len(key.len() + 1));
    bits.push(0);
    bits.extend_from_slice(key);
    let mut inner = algorithm.to_vec();
    inner.extend(bits);
    let mut out = vec![0x30];
    out.extend(der_len(inner.len()));
    out.extend(inner);
    out
}

/// The standard claims of a good token for issuer `iss` and audience `api`.
pub fn claims(sub: &str) -> Value {
    let t = now();
    json!({"iss": "https://id.test/", "aud": "api", "sub": sub, "iat": t, "exp": t + 300})
}

pub fn header(alg: &str, kid: Option<&str>) -> Value {
    match kid {
        Some(k) => json!({"alg": alg, "typ": "JWT", "kid": k}),
        None => json!({"alg": alg, "typ": "JWT"}),
    }
}

/// A JWKS server on 127.0.0.1: serves `/jwks.json` with the current document.
#[derive(Clone)]
pub struct JwksServer {
    pub port: u16,
    body: Arc<Mutex<String>>,
    down: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<AtomicUsize>,
    cache_control: Arc<Mutex<Option<String>>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl JwksServer {
    pub fn start(jwks: Value) -> JwksServer {
        Self::start_with(jwks, None)
    }

    /// Serves https for `localhost` with a fresh self-signed certificate; returns
    /// the server and the certificate's PEM (the CA a client must trust).
    pub fn start_tls(jwks: Value) -> (JwksServer, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = ck.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        (
            Self::start_with(jwks, Some(Arc::new(config))),
            ck.cert.pem(),
        )
    }

    fn start_with(jwks: Value, tls: Option<Arc<rustls::ServerConfig>>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = JwksServer {
            port,
            body: Arc::new(Mutex::new(jwks.to_string())),
            down: Arc::new(AtomicBool::new(false)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            hits: Arc::new(AtomicUsize::new(0)),
            cache_control: Arc::new(Mutex::new(None)),
            tls,
        };
        let s = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || match &s.tls {
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                            return;
                        };
                        let mut tls = rustls::StreamOwned::new(conn, stream);
                        s.answer(&mut tls);
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                    }
                    None => {
                        let mut stream = stream;
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        s.answer(&mut stream);
                    }
                });
            }
        });
        server
    }

    fn answer<S: Read + Write>(&self, stream: &mut S) {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        self.hits.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst)));
        let resp = if self.down.load(Ordering::SeqCst) {
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_string()
        } else {
            let body = self.body.lock().unwrap().clone();
            let cc = match self.cache_control.lock().unwrap().as_deref() {
                Some(v) => format!("cache-control: {v}\r\n"),
                None => String::new(),
            };
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{cc}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let _ = stream.write_all(resp.as_bytes());
    }

    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}/jwks.json", self.port),
            None => format!("http://127.0.0.1:{}/jwks.json", self.port),
        }
    }

    /// A `Cache-Control` header on the answers from now on.
    pub fn set_cache_control(&self, value: &str) {
        *self.cache_control.lock().unwrap() = Some(value.to_string());
    }

    pub fn set(&self, jwks: Value) {
        *self.body.lock().unwrap() = jwks.to_string();
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A shared RSA key per test binary (openssl takes a moment per key).
pub fn shared_rsa() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(SigningKey::rsa)
}
