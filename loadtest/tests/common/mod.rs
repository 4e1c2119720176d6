//! Helpers shared by the integration tests of `portico-load` (each test file is its
//! own crate and uses what it needs).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_portico-load");

/// A scratch directory with a test CA (`ca.pem`) and a server certificate it signed
/// for `localhost` and `127.0.0.1` (`server.pem`, `server.key`); removed when dropped.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("portico-load-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");

        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "portico-load test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir
            .join(file)
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `portico-load ARGS` to the end.
pub fn portico_load(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run portico-load")
}

/// `portico-load run ARGS --json JSON`: asserts that it succeeded and returns the JSON
/// document and the report printed on stdout (which it also shows, for test logs).
pub fn run_json(json: &str, args: &[&str]) -> (Value, String) {
    let out = portico_load(&[&["run"], args, &["--json", json]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "portico-load run {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    let text = std::fs::read_to_string(json).expect("the --json file");
    (serde_json::from_str(&text).expect("valid JSON"), stdout)
}

/// `portico-load ARGS` must stop as bad input: exit status 2, nothing on stdout, and one
/// line on stderr, `portico-load: …`, that contains `expected`.
pub fn assert_bad_input(args: &[&str], expected: &str) {
    let out = portico_load(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: one line, got {stderr:?}"
    );
    assert!(stderr.starts_with("portico-load: "), "{stderr}");
    assert!(
        stderr.contains(expected),
        "{args:?}: {stderr:?} lacks {expected:?}"
    );
    assert!(out.stdout.is_empty(), "{args:?}");
}

/// The unsigned number at `pointer` in `v`; panics (naming it) if there is none.
pub fn count(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} in {v}"))
}

/// A running `portico-load serve` on a free port of 127.0.0.1, killed by PID when
/// dropped.
pub struct Upstream {
    child: Child,
    pub addr: SocketAddr,
    scheme: &'static str,
}

impl Upstream {
    /// `portico-load serve ARGS` over plain HTTP.
    pub fn start(args: &[&str]) -> Upstream {
        Upstream::spawn(args, "http")
    }

    /// `portico-load serve --tls` with `pki`'s server certificate, and `args`.
    pub fn start_tls(pki: &Pki, args: &[&str]) -> Upstream {
        let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
        let tls = ["--tls", "--cert", &cert, "--key", &key];
        Upstream::spawn(&[&tls[..], args].concat(), "https")
    }

    fn spawn(args: &[&str], scheme: &'static str) -> Upstream {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn portico-load serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        assert!(
            (scheme == "https") == line.ends_with(", https)\n"),
            "{line:?}"
        );
        let addr = line
            .strip_prefix("portico-load serve listening on ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected start line {line:?}"));
        Upstream {
            child,
            addr,
            scheme,
        }
    }

    /// `http[s]://ADDR` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
