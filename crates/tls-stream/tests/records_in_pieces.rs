//! Records that arrive in pieces: a server (rustls' buffered API, on a thread) cuts
//! its records at 512 bytes and its writes at 100, so a handshake message spans
//! records that arrive over many reads (rustls keeps the first records while it
//! joins the message, and the stream must read beside them) and records end
//! mid-read everywhere. The client is the stream under test
//! (`TlsStream<UnbufferedClientConnection>`): handshake, 100 KiB each way, then
//! the server's close_notify as the end of the stream. TLS 1.2 and 1.3.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use portico_tls_stream::{AnyServerCertificate, TlsStream};
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, ServerConfig, ServerConnection};

const TOTAL: usize = 100 * 1024;

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn configs(
    version: &'static rustls::SupportedProtocolVersion,
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
    server.max_fragment_size = Some(512);
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(server), Arc::new(client))
}

/// A socket whose writes send at most 100 bytes, with a pause after each, so
/// the reader sees them one at a time.
struct Trickle(TcpStream);

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(&buf[..buf.len().min(100)])?;
        std::thread::sleep(Duration::from_micros(300));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The server: handshake, read `TOTAL` bytes, send them back, close_notify.
fn serve(listener: std::net::TcpListener, config: Arc<ServerConfig>) {
    let (socket, _) = listener.accept().expect("accept");
    socket.set_nodelay(true).expect("nodelay");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut io = Trickle(socket);
    let mut conn = ServerConnection::new(config).expect("conn");
    while conn.is_handshaking() {
        conn.complete_io(&mut io).expect("server handshake");
    }
    let mut received = Vec::with_capacity(TOTAL);
    let mut buf = vec![0u8; 16 * 1024];
    while received.len() < TOTAL {
        conn.complete_io(&mut io).expect("server read");
        loop {
            match conn.reader().read(&mut buf) {
                Ok(0) => panic!("the client closed early"),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("server read: {e}"),
            }
        }
    }
    let mut sent = 0;
    while sent < received.len() {
        // rustls takes up to its buffer limit; sending empties it.
        sent += conn.writer().write(&received[sent..]).expect("echo");
        while conn.wants_write() {
            conn.write_tls(&mut io).expect("server write");
        }
    }
    conn.send_close_notify();
    while conn.wants_write() {
        conn.write_tls(&mut io).expect("server write");
    }
}

fn run(version: &'static rustls::SupportedProtocolVersion, expected: ProtocolVersion) {
    let (server_config, client_config) = configs(version);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || serve(listener, server_config));

    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    let echoed = runtime.block_on(async move {
        let socket = monoio::net::TcpStream::connect_addr(addr)
            .await
            .expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let conn = UnbufferedClientConnection::new(client_config, name).expect("client");
        let mut tls = TlsStream::new(socket, conn);
        monoio::time::timeout(Duration::from_secs(20), tls.handshake())
            .await
            .expect("handshake in time")
            .expect("handshake");
        assert_eq!(tls.session().protocol_version(), Some(expected));
        assert_eq!(tls.session().alpn_protocol(), Some(&b"http/1.1"[..]));
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        let (res, _) = tls.write_all(data).await;
        res.expect("write");
        let mut echoed = Vec::with_capacity(TOTAL);
        loop {
            let (res, buf) = tls.read(Vec::with_capacity(3000)).await;
            match res.expect("read") {
                0 => break,
                _ => echoed.extend_from_slice(&buf),
            }
        }
        echoed
    });
    server.join().expect("server");
    assert_eq!(echoed.len(), TOTAL, "the echo ends with close_notify");
    assert!(
        echoed.iter().enumerate().all(|(i, b)| *b == pattern(i)),
        "the echo differs"
    );
}

#[test]
fn tls13_records_in_pieces() {
    run(&rustls::version::TLS13, ProtocolVersion::TLSv1_3);
}

#[test]
fn tls12_records_in_pieces() {
    run(&rustls::version::TLS12, ProtocolVersion::TLSv1_2);
}
