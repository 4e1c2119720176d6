//! The HTTP/2-on-monoio spike for the gateway (docs/http2.md), proved with real
//! clients: the `h2` crate's server over monoio-compat (loadtest/examples/h2_server/
//! server.rs) on a plain TCP stream answers curl `--http2-prior-knowledge` and h2load,
//! and on Portico's TlsStream answers curl `--http2` (ALPN h2); each stream runs in its
//! own `monoio::spawn`ed task, concurrently with the others of its connection; and an
//! h2 client connection on one monoio thread carries the requests of many tasks at
//! once, several per write. No tokio runtime exists in this process.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Command, Output};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use monoio::net::TcpListener;
use monoio_compat::StreamWrapper;
use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

#[path = "../examples/h2_server/server.rs"]
mod server;

/// The spike server on its own thread (one monoio runtime), h2c and TLS listeners on
/// free ports of 127.0.0.1; it lives as long as the test process. Returns the two
/// addresses and the PEM of the certificate it serves (for curl --cacert).
fn start_server() -> (SocketAddr, SocketAddr, String) {
    let key = KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = cert.pem();
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = Arc::new(config);

    let (plain, tls) = (bind(), bind());
    let addrs = (plain.local_addr().unwrap(), tls.local_addr().unwrap());
    thread::spawn(move || {
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("a monoio runtime");
        runtime.block_on(async move {
            let stats = Rc::new(server::Stats::default());
            let plain = TcpListener::from_std(plain).unwrap();
            let tls = TcpListener::from_std(tls).unwrap();
            monoio::spawn(server::serve_tls(tls, config, Rc::clone(&stats)));
            server::serve_h2c(plain, stats).await;
        })
    });
    (addrs.0, addrs.1, pem)
}

fn bind() -> StdListener {
    let listener = StdListener::bind("127.0.0.1:0").expect("a free port");
    listener.set_nonblocking(true).unwrap();
    listener
}

fn curl(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `conn C stream S active A` lines → (C, S, A).
fn answers(out: &Output) -> Vec<(u64, u64, u64)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            match f[..] {
                ["conn", c, "stream", s, "active", a] => {
                    Some((c.parse().ok()?, s.parse().ok()?, a.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

fn stats(addr: SocketAddr) -> serde_json::Value {
    let out = curl(&["--http2-prior-knowledge", &format!("http://{addr}/__stats")]);
    serde_json::from_slice(&out.stdout).expect("stats JSON")
}

/// curl with prior knowledge: HTTP/2 on a plain monoio TcpStream, a POST body read
/// by the stream's task. (One request per curl: Debian's curl 7.88 fails to reuse an
/// h2c prior-knowledge connection, against nginx too — "Error in the HTTP2 framing
/// layer"; h2load below puts many streams on one connection.)
#[test]
fn h2c_server_on_monoio_answers_curl_with_prior_knowledge() {
    let (plain, _, _) = start_server();
    let url = format!("http://{plain}/");
    for data in ["", "a body"] {
        let mut args = vec!["--http2-prior-knowledge", "-w", "%{http_version}\n", &url];
        if !data.is_empty() {
            args.extend(["--data", data]);
        }
        let out = curl(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.ends_with("\n2\n"), "{text}");
        let got = answers(&out);
        assert_eq!(got.len(), 1, "{text}");
        assert_eq!(got[0].1, 1, "stream 1: {text}");
    }
    assert_eq!(stats(plain)["streams"], 3);
}

/// curl --http2 over TLS (ALPN h2 on Portico's TlsStream), 10 transfers in parallel:
/// one connection, 10 streams, their handlers (each its own task, waiting 200 ms)
/// all running at once.
#[test]
fn tls_server_runs_each_stream_in_its_own_task() {
    let (plain, tls, pem) = start_server();
    let dir = std::env::temp_dir().join(format!("portico-h2-spike-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("cert.pem");
    std::fs::write(&ca, pem).unwrap();
    let url = format!("https://localhost:{}/?delay_ms=200", tls.port());
    let resolve = format!("localhost:{}:127.0.0.1", tls.port());
    let mut args = vec![
        "--http2",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
        "--parallel",
        "--parallel-max",
        "10",
    ];
    for _ in 0..10 {
        args.push(&url);
    }
    let out = curl(&args);
    let _ = std::fs::remove_dir_all(&dir);
    let got = answers(&out);
    assert_eq!(got.len(), 10, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        got.iter().all(|a| a.0 == got[0].0),
        "one connection: {got:?}"
    );
    let mut streams: Vec<u64> = got.iter().map(|a| a.1).collect();
    streams.sort();
    streams.dedup();
    assert_eq!(streams.len(), 10, "10 streams: {got:?}");
    assert_eq!(stats(plain)["most_active"], 10, "all 10 handlers at once");
}

/// h2load, one connection with 10 concurrent streams of 50 ms each, 200 requests:
/// all succeed, and the server had 10 handler tasks running at once.
#[test]
fn h2c_server_serves_h2load_streams_concurrently() {
    let (plain, _, _) = start_server();
    let out = Command::new("h2load")
        .args(["-c", "1", "-m", "10", "-n", "200"])
        .arg(format!("http://{plain}/?delay_ms=50"))
        .output()
        .expect("h2load runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("200 succeeded, 0 failed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = stats(plain);
    assert_eq!(s["most_active"], 10, "{s}");
    assert_eq!(s["connections"], 2, "h2load's and the stats request's: {s}");
}

/// The gateway's upstream side: one h2 client connection on one monoio thread, 32
/// tasks sending 20 requests each through clones of its `SendRequest`. Every request
/// is answered, and requests queued in the same event-loop turn leave together: far
/// fewer writes than requests.
#[test]
fn one_client_connection_carries_many_tasks_requests() {
    let (plain, _, _) = start_server();
    const TASKS: u64 = 32;
    const EACH: u64 = 20;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("a monoio runtime");
        let result = runtime.block_on(async move {
            let socket = monoio::net::TcpStream::connect(plain).await.unwrap();
            socket.set_nodelay(true).unwrap();
            let counts = Rc::new(server::Stats::default());
            let io = StreamWrapper::new(server::Counted {
                inner: socket,
                stats: Rc::clone(&counts),
            });
            let (send, connection) = h2::client::handshake(io).await.unwrap();
            let driver = monoio::spawn(connection);
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let mut send = send.clone();
                    monoio::spawn(async move {
                        let mut ok = 0u64;
                        for i in 0..EACH {
                            let request = Request::get(format!("http://{plain}/t{t}/{i}"))
                                .body(())
                                .unwrap();
                            send = send.ready().await.unwrap();
                            let (response, _) = send.send_request(request, true).unwrap();
                            let response = response.await.unwrap();
                            let mut body = response.into_body();
                            while let Some(chunk) = body.data().await {
                                let chunk: Bytes = chunk.unwrap();
                                let _ = body.flow_control().release_capacity(chunk.len());
                            }
                            ok += 1;
                        }
                        ok
                    })
                })
                .collect();
            let mut answered = 0;
            for task in tasks {
                answered += task.await;
            }
            drop(send);
            let _ = monoio::time::timeout(Duration::from_secs(1), driver).await;
            (answered, counts.writes.get(), counts.reads.get())
        });
        let _ = tx.send(result);
    });
    let (answered, writes, reads) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the client finished");
    eprintln!(
        "{answered} requests from {TASKS} tasks on one connection: {writes} writes, {reads} reads"
    );
    assert_eq!(answered, TASKS * EACH);
    assert!(
        writes * 4 <= answered,
        "{writes} writes for {answered} requests"
    );
}
