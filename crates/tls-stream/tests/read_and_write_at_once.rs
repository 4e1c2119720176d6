//! A read and a write in flight on one `TlsStream` at once (what monoio-compat's
//! `StreamWrapper` does under HTTP/2): when the read path has a record to send while
//! a write is stuck half-way in the socket, the record must go after the write, not
//! into the middle of it.
//!
//! The server writes 4 MiB through a `StreamWrapper` over a small send buffer while
//! a read waits. The client reads a little, then sends a record the server cannot
//! decrypt: the server's read path queues a fatal alert while its write is blocked.
//! The client then reads everything: every byte it decrypts must be the pattern, and
//! the stream must end with the server's alert, not with a record the client cannot
//! decode (the alert's bytes spliced into a half-written record).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use monoio_compat::StreamWrapper;
use portico_tls_stream::{AnyServerCertificate, TlsStream};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::UnbufferedServerConnection;
use rustls::{ClientConfig, ClientConnection, ServerConfig};

const TOTAL: usize = 4 << 20;

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn set_buffer(fd: i32, option: i32, bytes: i32) {
    // SAFETY: setsockopt with a valid descriptor and a pointer to a local int.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        );
    }
}

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// The server: handshake, then a write of `TOTAL` pattern bytes and a read, at once.
fn serve(listener: std::net::TcpListener, config: Arc<ServerConfig>) {
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener).expect("listener");
        let (socket, _) = listener.accept().await.expect("accept");
        set_buffer(socket.as_raw_fd(), libc::SO_SNDBUF, 4096);
        let mut tls = TlsStream::new(
            socket,
            UnbufferedServerConnection::new(config).expect("conn"),
        );
        tls.handshake().await.expect("handshake");
        let io = std::rc::Rc::new(std::cell::RefCell::new(StreamWrapper::new(tls)));
        // The read waits for input while the write runs: both are in flight, as
        // under h2, whose connection task polls its reader and writer in one task.
        let reader = {
            let io = io.clone();
            std::future::poll_fn(move |cx| {
                let mut buf = [0u8; 1024];
                let mut read = tokio::io::ReadBuf::new(&mut buf);
                let mut io = io.borrow_mut();
                tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut *io), cx, &mut read)
            })
        };
        let writer = {
            let io = io.clone();
            async move {
                let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
                let mut sent = 0;
                while sent < data.len() {
                    let n = std::future::poll_fn(|cx| {
                        let mut io = io.borrow_mut();
                        tokio::io::AsyncWrite::poll_write(
                            std::pin::Pin::new(&mut *io),
                            cx,
                            &data[sent..],
                        )
                    })
                    .await;
                    match n {
                        Ok(n) => sent += n,
                        Err(_) => return,
                    }
                }
                let _ = std::future::poll_fn(|cx| {
                    let mut io = io.borrow_mut();
                    tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut *io), cx)
                })
                .await;
            }
        };
        let reading = monoio::spawn(reader);
        writer.await;
        let _ = monoio::time::timeout(Duration::from_secs(2), reading).await;
    });
}

#[test]
fn a_read_path_record_waits_for_the_write_in_flight() {
    let (server_config, client_config) = configs();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || serve(listener, server_config));

    let mut socket = TcpStream::connect(addr).expect("connect");
    set_buffer(socket.as_raw_fd(), libc::SO_RCVBUF, 4096);
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = ClientConnection::new(client_config, name).expect("client");
    while tls.is_handshaking() {
        tls.complete_io(&mut socket).expect("client handshake");
    }

    let mut received = 0usize;
    let mut plain = vec![0u8; 64 * 1024];
    let mut read_some = |tls: &mut ClientConnection,
                         socket: &mut TcpStream,
                         received: &mut usize|
     -> Result<bool, rustls::Error> {
        // End of stream, or nothing for the read timeout: the end.
        match tls.read_tls(socket) {
            Ok(0) | Err(_) => return Ok(false),
            Ok(_) => {}
        }
        tls.process_new_packets()?;
        loop {
            match tls.reader().read(&mut plain) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    for (i, b) in plain[..n].iter().enumerate() {
                        assert_eq!(*b, pattern(*received + i), "byte {} differs", *received + i);
                    }
                    *received += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(_) => return Ok(false),
            }
        }
    };
    // Read a little, so the server's write is under way and stuck on the small
    // buffers; then a record it cannot decrypt.
    while received < 64 * 1024 {
        assert!(
            read_some(&mut tls, &mut socket, &mut received).expect("clean records"),
            "the server ended early"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut bogus = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    bogus.extend_from_slice(&[0u8; 0x40]);
    socket.write_all(&bogus).expect("send a bad record");
    std::thread::sleep(Duration::from_millis(300));

    let ending = loop {
        match read_some(&mut tls, &mut socket, &mut received) {
            Ok(true) => continue,
            Ok(false) => break None,
            Err(e) => break Some(e),
        }
    };
    let _ = server.join();
    match ending {
        Some(rustls::Error::AlertReceived(_)) => {}
        other => panic!(
            "after {received} clean bytes the stream ended with {other:?}, not the server's alert"
        ),
    }
    assert!(
        received > 64 * 1024,
        "the write went on after the bad record"
    );
}
