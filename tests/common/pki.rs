//! Test certificates: a CA made with rcgen, ECDSA P-256 leaves signed by it, and RSA
//! leaves from the openssl command (ring cannot generate RSA keys).

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and key written to files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named `name`, with its files under a fresh folder.
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "portico-pki-{}-{name}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Portico test CA {name}"));
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            dir,
            ca,
            issuer: Issuer::new(params, key),
        }
    }

    /// An ECDSA P-256 server certificate for `names` (the first is the CN).
    pub fn server(&self, stem: &str, names: &[&str]) -> Leaf {
        self.leaf(stem, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, stem: &str, cn: &str) -> Leaf {
        self.leaf(stem, &[cn], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, stem: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Portico Tests");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }

    /// A self-signed RSA 2048 server certificate made by openssl.
    pub fn rsa_self_signed(&self, stem: &str, name: &str) -> Leaf {
        let leaf = Leaf {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        };
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .arg("-keyout")
            .arg(&leaf.key)
            .arg("-out")
            .arg(&leaf.cert)
            .args([
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                &format!("subjectAltName=DNS:{name}"),
            ])
            .output()
            .expect("openssl runs");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        leaf
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The subject line openssl s_client shows for the certificate a server sends.
pub fn served_subject(port: u16, servername: Option<&str>) -> String {
    let mut cmd = Command::new("sh");
    let sni = match servername {
        Some(n) => format!("-servername {n}"),
        None => "-noservername".to_string(),
    };
    cmd.arg("-c").arg(format!(
        "openssl s_client -connect 127.0.0.1:{port} {sni} </dev/null 2>/dev/null | openssl x509 -noout -subject 2>/dev/null"
    ));
    let out = cmd.output().expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
