//! `h2_server`: the HTTP/2-on-monoio spike as a program, for measurements
//! (docs/http2.md). One thread, one monoio runtime (io_uring, epoll fallback).
//!
//! ```text
//! cargo run --release -p portico-load --example h2_server -- \
//!     --h2c 127.0.0.1:24001 [--tls 127.0.0.1:24002 --cert cert.pem --key key.pem] [--cpu 1]
//! curl --http2-prior-knowledge http://127.0.0.1:24001/
//! curl --http2-prior-knowledge http://127.0.0.1:24001/__stats    # the I/O counters
//! ```

use std::rc::Rc;
use std::sync::Arc;

use monoio::net::TcpListener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

mod server;

fn main() {
    if let Err(e) = run() {
        eprintln!("h2_server: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut h2c, mut tls, mut cert, mut key, mut cpu) = (None, None, None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--h2c" => h2c = Some(value),
            "--tls" => tls = Some(value),
            "--cert" => cert = Some(value),
            "--key" => key = Some(value),
            "--cpu" => cpu = Some(value.parse::<usize>().map_err(|e| format!("--cpu: {e}"))?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let config = match (&tls, cert, key) {
        (None, _, _) => None,
        (Some(_), Some(cert), Some(key)) => Some(tls_config(&cert, &key)?),
        (Some(_), _, _) => return Err("--tls needs --cert and --key".into()),
    };
    if let Some(cpu) = cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            return Err(format!("cannot pin to cpu {cpu}"));
        }
    }
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async move {
        let stats = Rc::new(server::Stats::default());
        let mut tasks = Vec::new();
        if let Some(addr) = h2c {
            let listener = listen(&addr, "h2c")?;
            tasks.push(monoio::spawn(server::serve_h2c(
                listener,
                Rc::clone(&stats),
            )));
        }
        if let (Some(addr), Some(config)) = (tls, config) {
            let listener = listen(&addr, "h2 over TLS")?;
            tasks.push(monoio::spawn(server::serve_tls(
                listener,
                config,
                Rc::clone(&stats),
            )));
        }
        if tasks.is_empty() {
            return Err("give --h2c ADDR and/or --tls ADDR".to_string());
        }
        for task in tasks {
            task.await;
        }
        Ok(())
    })
}

/// Binds `addr` and says so on stdout (the port, when `addr` asks for port 0).
fn listen(addr: &str, what: &str) -> Result<TcpListener, String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("{addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("{what} on {bound}");
    Ok(listener)
}

/// A rustls server config (ring) with ALPN h2, from PEM files.
fn tls_config(cert: &str, key: &str) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--cert {cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--key {key}: {e}"))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
