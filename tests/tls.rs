//! TLS at the door and on the way out, with real handshakes: curl and openssl
//! s_client as clients, rustls for a connection kept open across a reload, nginx as an
//! HTTPS upstream. Certificates are made per test (rcgen; openssl for RSA).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;

use common::pki::{path_str, served_subject, Leaf, Pki};
use common::{Gateway, Upstream};

/// `curl` against the gateway; returns (status, body). `extra` are more curl args.
fn curl(port: u16, name: &str, path: &str, ca: &Path, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
        .arg("--cacert")
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{name}:{port}:127.0.0.1"))
        .args(extra)
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn tls_listener(cert_entries: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:{{port2}}"]
workers = 1
[admin]
listen = "127.0.0.1:{{admin}}"
[[server.tls]]
listen = "127.0.0.1:{{port}}"
{extra}
{cert_entries}
[log]
access_log = "off"
"#
    )
}

fn cert_entry(name: &str, sni: &[&str], leaf: &Leaf) -> String {
    let sni: Vec<String> = sni.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[[server.tls.cert]]\nname = \"{name}\"\nsni = [{}]\ncert = \"{}\"\nkey = \"{}\"\n",
        sni.join(", "),
        leaf.cert.display(),
        leaf.key.display()
    )
}

/// A gateway with a TLS listener for api.example.com (leaf `leaf` of a fresh test
/// PKI named `pki_name`) whose one route answers 200 "ok"; the PKI holds the files.
fn ok_gateway(pki_name: &str, leaf: &str) -> (Pki, Gateway) {
    let pki = Pki::new(pki_name);
    let cert = pki.server(leaf, &["api.example.com"]);
    let gw = Gateway::start(
        &(tls_listener(&cert_entry("api", &["api.example.com"], &cert), "")
            + "[[route]]\nname = \"r\"\nrespond = { status = 200, body = \"ok\" }\n"),
    );
    (pki, gw)
}

fn echo_route(up: &Upstream) -> String {
    format!("[[upstream]]\nname = \"echo\"\nendpoints = [\"{}\"]\n[[route]]\nname = \"echo\"\nupstream = \"echo\"\n", up.addr())
}

fn forwarded_header(body: &str, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["headers"].as_array()?.iter().find_map(|p| {
        if p[0].as_str()?.eq_ignore_ascii_case(name) {
            Some(p[1].as_str()?.to_string())
        } else {
            None
        }
    })
}

#[test]
fn tls_1_2_and_1_3_carry_requests_marked_https() {
    let pki = Pki::new("versions");
    let api = pki.server("api", &["api.example.com"]);
    let up = Upstream::echo();
    let gw = Gateway::start(
        &(tls_listener(&cert_entry("api", &["api.example.com"], &api), "") + &echo_route(&up)),
    );
    for (version, args) in [
        ("1.2", ["--tlsv1.2", "--tls-max", "1.2"]),
        ("1.3", ["--tlsv1.3", "--tls-max", "1.3"]),
    ] {
        let (status, body) = curl(gw.port, "api.example.com", "/v", &pki.ca, &args);
        assert_eq!(status, 200, "TLS {version}: {body}");
        assert_eq!(
            forwarded_header(&body, "x-forwarded-proto").as_deref(),
            Some("https"),
            "{body}"
        );
    }
}

#[test]
fn sni_chooses_the_certificate_and_no_sni_gets_the_default() {
    let pki = Pki::new("sni");
    let api = pki.server("api", &["api.example.com"]);
    let wild = pki.server("wild", &["*.shop.example.com"]);
    let rsa = pki.rsa_self_signed("rsa", "legacy.example.com");
    let certs = cert_entry("api", &["api.example.com"], &api)
        + &cert_entry("wild", &["*.shop.example.com"], &wild)
        + &cert_entry("rsa", &["legacy.example.com"], &rsa);
    let gw = Gateway::start(
        &(tls_listener(&certs, "default_cert = \"api\"")
            + "[[route]]\nname = \"r\"\nrespond = { status = 200 }\n"),
    );
    assert!(served_subject(gw.port, Some("api.example.com")).contains("CN = api.example.com"));
    assert!(
        served_subject(gw.port, Some("eu.shop.example.com")).contains("CN = *.shop.example.com")
    );
    assert!(served_subject(gw.port, Some("legacy.example.com")).contains("CN = legacy.example.com"));
    assert!(
        served_subject(gw.port, None).contains("CN = api.example.com"),
        "no SNI gets the default"
    );
    // An RSA certificate serves real requests too.
    let (status, _) = curl(gw.port, "legacy.example.com", "/", &rsa.cert, &[]);
    assert_eq!(status, 200);
}

#[test]
fn without_a_default_certificate_a_client_without_sni_is_refused() {
    let pki = Pki::new("nodefault");
    let api = pki.server("api", &["api.example.com"]);
    let gw = Gateway::start(
        &(tls_listener(&cert_entry("api", &["api.example.com"], &api), "")
            + "[[route]]\nname = \"r\"\nrespond = { status = 200 }\n"),
    );
    assert_eq!(served_subject(gw.port, None), "", "the handshake must fail");
    assert!(served_subject(gw.port, Some("api.example.com")).contains("api.example.com"));
    assert!(gw.stat("tls_handshake_failures") >= 1);
}

#[test]
fn min_version_1_3_refuses_tls_1_2_clients() {
    let pki = Pki::new("min13");
    let api = pki.server("api", &["api.example.com"]);
    let gw = Gateway::start(
        &(tls_listener(
            &cert_entry("api", &["api.example.com"], &api),
            "min_version = \"1.3\"",
        ) + "[[route]]\nname = \"r\"\nrespond = { status = 200 }\n"),
    );
    let (status, _) = curl(
        gw.port,
        "api.example.com",
        "/",
        &pki.ca,
        &["--tlsv1.2", "--tls-max", "1.2"],
    );
    assert_eq!(status, 0, "a TLS 1.2-only client must not get through");
    let (status, _) = curl(gw.port, "api.example.com", "/", &pki.ca, &["--tlsv1.3"]);
    assert_eq!(status, 200);
}

#[test]
fn mtls_requires_a_client_certificate_and_forwards_its_subject() {
    let pki = Pki::new("mtls");
    let api = pki.server("api", &["api.example.com"]);
    let client = pki.client("client", "client-7");
    let up = Upstream::echo();
    let extra = format!(
        "client_ca = \"{}\"\nclient_subject_header = \"x-client-subject\"",
        pki.ca.display()
    );
    let gw = Gateway::start(
        &(tls_listener(&cert_entry("api", &["api.example.com"], &api), &extra) + &echo_route(&up)),
    );
    let (status, _) = curl(gw.port, "api.example.com", "/", &pki.ca, &[]);
    assert_eq!(status, 0, "no client certificate: refused");
    let (status, body) = curl(
        gw.port,
        "api.example.com",
        "/",
        &pki.ca,
        &[
            "--cert",
            path_str(&client.cert),
            "--key",
            path_str(&client.key),
            "-H",
            "X-Client-Subject: CN=forged",
        ],
    );
    assert_eq!(status, 200, "{body}");
    let subject = forwarded_header(&body, "x-client-subject").expect("subject forwarded");
    assert!(subject.contains("CN=client-7"), "{subject}");
    assert!(
        !body.contains("forged"),
        "a client-supplied subject must be stripped: {body}"
    );
    // The plaintext listener strips the header too.
    let mut c = common::Client::connect(gw.port2);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Client-Subject: CN=forged\r\n\r\n");
    let r = c.response().unwrap();
    assert!(!r.text().contains("forged"), "{}", r.text());
}

#[test]
fn an_idle_tls_connection_releases_its_buffers_and_still_serves() {
    let (pki, gw) = ok_gateway("idle", "idle");
    let mut c = KeptConnection::open(gw.port, &pki.ca, "api.example.com");
    assert_eq!(c.get(), (200, "ok".to_string()));
    // Past the 1 s hot window the read is cancelled and the ciphertext buffers freed;
    // the next request wakes the connection through a readiness wait.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(c.get(), (200, "ok".to_string()));
    }
}

#[test]
fn idle_tls_connections_keep_no_ciphertext_buffers() {
    const CONNECTIONS: usize = 400;
    let (pki, gw) = ok_gateway("idle-memory", "idle");
    // Warm up (session caches, lazily made state), then the baseline.
    for _ in 0..3 {
        assert_eq!(
            KeptConnection::open(gw.port, &pki.ca, "api.example.com").get(),
            (200, "ok".to_string())
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    let before = gw.proc.rss_kib();
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut c = KeptConnection::open(gw.port, &pki.ca, "api.example.com");
        assert_eq!(c.get(), (200, "ok".to_string()));
        conns.push(c);
    }
    // Past the hot window (1 s) and jemalloc's decay of the freed buffers (1 s).
    std::thread::sleep(Duration::from_millis(3500));
    let during = gw.proc.rss_kib();
    let per_conn = during.saturating_sub(before) * 1024 / CONNECTIONS as u64;
    eprintln!(
        "RSS {before} KiB, {during} KiB with {CONNECTIONS} idle TLS connections: {per_conn} B each"
    );
    // An idle TLS connection keeps rustls' session state (keys) and no buffer: about
    // 5 KiB each in this debug build (docs/http.md, "Idle connections"). The bound is
    // issue 9's goal, 8 KiB: rustls' buffered API, which kept a 4 KiB record buffer,
    // measured 8.2-9.7 KiB here; an 18 KiB ciphertext window kept would be far above.
    assert!(
        per_conn <= 8 * 1024,
        "{per_conn} bytes per idle TLS connection ({before} KiB -> {during} KiB for {CONNECTIONS})"
    );
    drop(conns);
}

#[test]
fn redirect_to_https_applies_to_plaintext_only() {
    let pki = Pki::new("redirect");
    let api = pki.server("api", &["api.example.com"]);
    let gw = Gateway::start(
        &(tls_listener(&cert_entry("api", &["api.example.com"], &api), "")
            .replace("workers = 1", "workers = 1\nredirect_to_https = true")
            + "[[route]]\nname = \"r\"\nrespond = { status = 200, body = \"secure\" }\n"),
    );
    let mut c = common::Client::connect(gw.port2);
    c.send(b"GET /a?b=1 HTTP/1.1\r\nHost: api.example.com:8080\r\n\r\n");
    let r = c.response().unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://api.example.com/a?b=1"));
    let (status, body) = curl(gw.port, "api.example.com", "/", &pki.ca, &[]);
    assert_eq!((status, body.as_str()), (200, "secure"));
}

/// A rustls client connection that stays open, to see what an old connection keeps.
struct KeptConnection {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl KeptConnection {
    fn open(port: u16, ca: &Path, name: &'static str) -> KeptConnection {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(ca).unwrap();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let conn =
            rustls::ClientConnection::new(Arc::new(config), name.try_into().unwrap()).unwrap();
        let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        KeptConnection {
            stream: rustls::StreamOwned::new(conn, sock),
        }
    }

    fn get(&mut self) -> (u16, String) {
        self.stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut tmp).unwrap();
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&tmp[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= len {
                    let status = head[9..12].parse().unwrap();
                    return (status, body[..len].to_string());
                }
            }
        }
    }

    fn served_cn(&mut self) -> String {
        if self.stream.conn.is_handshaking() {
            self.stream.conn.complete_io(&mut self.stream.sock).unwrap();
        }
        let der = &self.stream.conn.peer_certificates().unwrap()[0];
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        cn
    }
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn certificates_reload_on_sighup_and_on_file_change_and_bad_ones_are_refused() {
    let pki = Pki::new("reload");
    let live = pki.server("live", &["api.example.com", "v1.example.com"]);
    let gw = Gateway::start(
        &(tls_listener(&cert_entry("api", &["api.example.com"], &live), "")
            + "[reload]\ncanary_ms = 200\n"
            + "[[route]]\nname = \"r\"\nrespond = { status = 200, body = \"ok\" }\n"),
    );
    let mut old = KeptConnection::open(gw.port, &pki.ca, "api.example.com");
    assert_eq!(old.get(), (200, "ok".to_string()));
    assert_eq!(old.served_cn(), "api.example.com");

    // Replace the files and send SIGHUP: a new connection sees the new certificate.
    let next = pki.server("next", &["api.example.com"]);
    let rotated = pki.server("rotated", &["rotated.example.com", "api.example.com"]);
    std::fs::copy(&rotated.cert, &live.cert).unwrap();
    std::fs::copy(&rotated.key, &live.key).unwrap();
    gw.proc.signal(libc::SIGHUP);
    wait_for("the rotated certificate", Duration::from_secs(5), || {
        KeptConnection::open(gw.port, &pki.ca, "api.example.com").served_cn()
            == "rotated.example.com"
    });
    // The old connection keeps working on what it negotiated.
    assert_eq!(old.get(), (200, "ok".to_string()));
    assert_eq!(old.served_cn(), "api.example.com");

    // A key that does not belong to the certificate is refused; the rotated one serves on.
    std::fs::copy(&next.cert, &live.cert).unwrap();
    std::fs::copy(stray_key(&pki), &live.key).unwrap();
    gw.proc.signal(libc::SIGHUP);
    wait_for("the refusal in the log", Duration::from_secs(5), || {
        gw.proc.stderr_text().contains("reload refused (SIGHUP)")
    });
    let mut fresh = KeptConnection::open(gw.port, &pki.ca, "api.example.com");
    assert_eq!(fresh.get(), (200, "ok".to_string()));
    assert_eq!(fresh.served_cn(), "rotated.example.com");

    // Writing a matching pair is picked up without a signal.
    std::fs::copy(&next.key, &live.key).unwrap();
    wait_for("the file-change reload", Duration::from_secs(6), || {
        KeptConnection::open(gw.port, &pki.ca, "api.example.com").served_cn() == "api.example.com"
            && gw.proc.stderr_text().contains("certificate files changed")
    });
}

/// A key that belongs to no certificate in use.
fn stray_key(pki: &Pki) -> std::path::PathBuf {
    pki.server("stray", &["stray.example.com"]).key
}

#[test]
fn check_refuses_a_key_that_does_not_match_its_certificate() {
    let pki = Pki::new("mismatch");
    let a = pki.server("a", &["a.example.com"]);
    let b = pki.server("b", &["b.example.com"]);
    let bad = Leaf {
        cert: a.cert.clone(),
        key: b.key.clone(),
    };
    let path = pki.dir.join("bad.toml");
    std::fs::write(
        &path,
        tls_listener(&cert_entry("a", &["a.example.com"], &bad), "")
            .replace("{port}", "1")
            .replace("{port2}", "2")
            .replace("{admin}", "3")
            + "[[route]]\nname = \"r\"\nrespond = { status = 200 }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["check", "--config", path_str(&path)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not belong to the certificate"), "{err}");
    assert!(err.contains("bad.toml:10:1:"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// nginx serving HTTPS on a free port, optionally requiring client certificates.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(server: &Leaf, client_ca: Option<&Path>) -> Nginx {
        let port = common::free_port();
        let dir = server.cert.parent().unwrap().join(format!("nginx-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let verify = match client_ca {
            Some(ca) => format!(
                "ssl_client_certificate {}; ssl_verify_client on;",
                ca.display()
            ),
            None => String::new(),
        };
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; error_log {d}/error.log; pid {d}/nginx.pid;\n\
             events {{}}\n\
             http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
               server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key}; {verify}\n\
                 location / {{ return 200 \"nginx tls [$ssl_client_s_dn]\"; }} }} }}\n",
            d = dir.display(),
            cert = server.cert.display(),
            key = server.key.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        assert!(
            common::procs::wait_for_port(port, Duration::from_secs(10)),
            "nginx did not listen"
        );
        Nginx { child, port }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn upstream_tls_gateway(nginx_port: u16, tls: &str) -> Gateway {
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
name = "secure"
endpoints = ["127.0.0.1:{nginx_port}"]
tls = {{ {tls} }}
[[route]]
name = "secure"
upstream = "secure"
"#
    ))
}

#[test]
fn upstream_tls_verifies_the_service_and_reuses_connections() {
    if !Path::new("/usr/sbin/nginx").exists() {
        eprintln!("skipped: nginx is not installed (scripts/test installs it)");
        return;
    }
    let pki = Pki::new("upstream");
    let service = pki.server("service", &["service.internal"]);
    let nginx = Nginx::start(&service, None);
    let gw = upstream_tls_gateway(
        nginx.port,
        &format!("sni = \"service.internal\", ca = \"{}\"", pki.ca.display()),
    );
    let mut c = gw.client();
    for _ in 0..5 {
        let r = c.get("/");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().starts_with("nginx tls"));
    }
    assert_eq!(
        gw.stat("upstream_connects"),
        1,
        "the TLS connection is pooled"
    );

    // A CA that did not sign the service's certificate: 502, never a downgrade.
    let other = Pki::new("other");
    let gw = upstream_tls_gateway(
        nginx.port,
        &format!(
            "sni = \"service.internal\", ca = \"{}\"",
            other.ca.display()
        ),
    );
    let r = gw.client().get("/");
    assert_eq!(r.status, 502);
    assert!(
        r.json()["error"].as_str().unwrap().contains("TLS"),
        "{}",
        r.text()
    );
    // The right CA but the wrong name.
    let gw = upstream_tls_gateway(
        nginx.port,
        &format!("sni = \"other.internal\", ca = \"{}\"", pki.ca.display()),
    );
    assert_eq!(gw.client().get("/").status, 502);
}

#[test]
fn upstream_mtls_presents_the_configured_client_certificate() {
    if !Path::new("/usr/sbin/nginx").exists() {
        eprintln!("skipped: nginx is not installed (scripts/test installs it)");
        return;
    }
    let pki = Pki::new("upmtls");
    let service = pki.server("service", &["service.internal"]);
    let gateway_cert = pki.client("gateway", "portico-gateway");
    let nginx = Nginx::start(&service, Some(&pki.ca));
    // Without a client certificate nginx refuses the request.
    let gw = upstream_tls_gateway(
        nginx.port,
        &format!("sni = \"service.internal\", ca = \"{}\"", pki.ca.display()),
    );
    assert_eq!(gw.client().get("/").status, 400);
    let gw = upstream_tls_gateway(
        nginx.port,
        &format!(
            "sni = \"service.internal\", ca = \"{}\", client_cert = \"{}\", client_key = \"{}\"",
            pki.ca.display(),
            gateway_cert.cert.display(),
            gateway_cert.key.display()
        ),
    );
    let r = gw.client().get("/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("CN=portico-gateway"), "{}", r.text());
}

/// `openssl s_client` with a saved session: "New" or "Reused".
fn handshake_kind(port: u16, version: &str, session: &Path, save: bool) -> String {
    let flag = if save { "-sess_out" } else { "-sess_in" };
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' | openssl s_client -connect 127.0.0.1:{port} -servername api.example.com {version} {flag} {} -ign_eof 2>/dev/null | grep -E '^(New|Reused),'",
            session.display()
        ))
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn sessions_resume_with_tickets_on_any_worker() {
    let pki = Pki::new("resume");
    let api = pki.server("api", &["api.example.com"]);
    let gw = Gateway::start(
        &(tls_listener(&cert_entry("api", &["api.example.com"], &api), "")
            .replace("workers = 1", "workers = 2")
            + "[[route]]\nname = \"r\"\nrespond = { status = 200 }\n"),
    );
    for version in ["-tls1_2", "-tls1_3"] {
        let session = pki.dir.join(format!("session{version}"));
        assert!(handshake_kind(gw.port, version, &session, true).starts_with("New,"));
        // Connections land on either worker; ticket keys are shared, so all resume.
        for _ in 0..4 {
            let kind = handshake_kind(gw.port, version, &session, false);
            assert!(kind.starts_with("Reused,"), "{version}: {kind}");
        }
    }
}

#[test]
fn a_spoofed_subject_header_cannot_steer_routing() {
    let pki = Pki::new("steer");
    let api = pki.server("api", &["api.example.com"]);
    let extra = format!(
        "client_ca = \"{}\"\nclient_subject_header = \"x-client-subject\"",
        pki.ca.display()
    );
    let gw = Gateway::start(
        &(tls_listener(&cert_entry("api", &["api.example.com"], &api), &extra)
            + "[[route]]\nname = \"certified\"\nheaders = { \"x-client-subject\" = \"*\" }\nrespond = { status = 200, body = \"certified\" }\n\
               [[route]]\nname = \"anyone\"\nrespond = { status = 200, body = \"anyone\" }\n"),
    );
    let mut c = common::Client::connect(gw.port2);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Client-Subject: CN=forged\r\n\r\n");
    assert_eq!(c.response().unwrap().text(), "anyone");
}

/// A rustls client configuration that trusts `ca`, for `versions`.
fn client_config(
    ca: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A TLS 1.3 client may send its first requests right behind its Finished: here
/// two pipelined requests leave in the same write as the Finished, so the gateway
/// reads them with it, during its handshake. Both are answered, the session
/// tickets come after the handshake, and `Connection: close` ends the stream with
/// a close_notify.
#[test]
fn requests_sent_with_the_finished_are_answered() {
    let (pki, gw) = ok_gateway("finished", "api");
    let config = client_config(&pki.ca, &[&rustls::version::TLS13]);
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), "api.example.com".try_into().unwrap())
            .unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Up to the server's Finished: the client's own Finished is then queued, unsent.
    while conn.is_handshaking() {
        while conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        }
        assert!(
            conn.read_tls(&mut sock).unwrap() > 0,
            "closed in the handshake"
        );
        conn.process_new_packets().unwrap();
    }
    conn.writer()
        .write_all(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight).unwrap();
    }
    sock.write_all(&flight).unwrap();

    let mut text = Vec::new();
    let clean_close = loop {
        let eof = conn.read_tls(&mut sock).unwrap() == 0;
        conn.process_new_packets().unwrap();
        let mut buf = [0u8; 4096];
        let ended = loop {
            match conn.reader().read(&mut buf) {
                Ok(0) => break Some(true),
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Some(false),
                Err(e) => panic!("reading the answers: {e}"),
            }
        };
        match ended {
            Some(clean) => break clean,
            None if eof => break false,
            None => {}
        }
    };
    let text = String::from_utf8_lossy(&text).to_string();
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(
        conn.tls13_tickets_received() > 0,
        "no session ticket came after the handshake"
    );
    assert!(clean_close, "the stream ended without a close_notify");
}

/// A TLS 1.2 client that asks to renegotiate (openssl s_client's `R`) is refused
/// with a no_renegotiation alert at once, not left waiting for a ServerHello.
#[test]
fn a_tls_1_2_renegotiation_is_refused() {
    let (_pki, gw) = ok_gateway("renegotiate", "api");
    let mut client = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-servername", "api.example.com"])
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", gw.port))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    // Read after the handshake: a line starting with R renegotiates. stdin stays
    // open, so s_client ends on the refusal, or is killed at the deadline.
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"R\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = client.kill();
    let out = client.wait_with_output().unwrap();
    drop(stdin);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("RENEGOTIATING"), "{text}");
    assert!(text.contains("no renegotiation"), "{text}");
}
