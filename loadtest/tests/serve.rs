//! Integration tests of `portico-load serve`: the real binary on 127.0.0.1, spoken to
//! with raw `std::net::TcpStream`s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `portico-load serve`; killed (by PID) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts the server on `127.0.0.1:0` with extra `args`, and waits for its
    /// "listening on ADDR" line.
    fn start(args: &[&str]) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_portico-load"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn portico-load");
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let stdout = server.child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        let rest = line
            .strip_prefix("portico-load serve listening on ")
            .unwrap_or_else(|| panic!("unexpected start line {line:?}"));
        let (addr, workers) = rest.split_once(' ').expect("workers");
        assert!(workers.starts_with("(workers "), "{line:?}");
        server.addr = addr.parse().expect("address");
        server
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// One request on a fresh connection.
    fn get(&self, target: &str) -> Response {
        let mut client = self.connect();
        client.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        client.response(false)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("valid JSON body")
    }
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read line");
        assert!(line.ends_with("\r\n"), "line not CRLF-terminated: {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    /// Reads one response; `head_request` means no body follows.
    fn response(&mut self, head_request: bool) -> Response {
        let status_line = self.line();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header colon");
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 100 || status == 204 || status == 304 {
            return response;
        }
        if response.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line(), 16).expect("chunk size");
                if size == 0 {
                    assert_eq!(self.line(), "", "no trailers expected");
                    break;
                }
                let start = response.body.len();
                response.body.resize(start + size, 0);
                self.reader.read_exact(&mut response.body[start..]).unwrap();
                assert_eq!(self.line(), "");
            }
        } else {
            let length: usize = response
                .header("content-length")
                .expect("content-length")
                .parse()
                .unwrap();
            response.body.resize(length, 0);
            self.reader.read_exact(&mut response.body).unwrap();
        }
        response
    }

    /// Asserts that the server closed the connection.
    fn assert_closed(&mut self) {
        let mut rest = Vec::new();
        let n = self.reader.read_to_end(&mut rest).unwrap_or(0);
        assert_eq!(n, 0, "unexpected bytes after close: {rest:?}");
    }
}

fn fnv1a64(data: &[u8]) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016x}")
}

/// Deterministic pseudo-random bytes (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn fixed_body_with_keep_alive() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    for _ in 0..3 {
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = client.response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.header("content-length"), Some("100"));
        assert_eq!(r.body, vec![b'x'; 100]);
    }

    let server = Server::start(&["--body-bytes", "7", "--workers", "2"]);
    assert_eq!(server.get("/any/path").body, b"xxxxxxx");
}

#[test]
fn head_has_length_but_no_body() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    client.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = client.response(true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("100")));
    client.send(b"HEAD /?bytes=5000000 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        client.response(true).header("content-length"),
        Some("5000000")
    );
    // The next response starts right after the heads: no stray body bytes.
    client.send(b"GET /?bytes=3 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.response(false).body, b"xxx");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    client.send(
        b"GET /?bytes=1 HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /?bytes=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          GET /?bytes=3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    for expected in [1, 2, 3] {
        let r = client.response(false);
        assert_eq!((r.status, r.body.len()), (200, expected));
    }
    client.assert_closed();
}

#[test]
fn echo_of_a_content_length_post() {
    let server = Server::start(&["--echo"]);
    let mut client = server.connect();
    client.send(
        b"POST /a/b?x=1&y=%20 HTTP/1.1\r\nHost: t\r\nX-Dup: one\r\nx-dup: two\r\n\
          X-Quote: say \"hi\"\\\r\nContent-Length: 11\r\n\r\nhello\nworld",
    );
    let r = client.response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let json = r.json();
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/a/b?x=1&y=%20");
    assert_eq!(
        json["headers"],
        serde_json::json!([
            ["Host", "t"],
            ["X-Dup", "one"],
            ["x-dup", "two"],
            ["X-Quote", "say \"hi\"\\"],
            ["Content-Length", "11"]
        ])
    );
    assert_eq!(json["body"], "hello\nworld");
    assert_eq!(json["body_bytes"], 11);
    assert_eq!(json["body_fnv1a64"], fnv1a64(b"hello\nworld"));

    // A GET on the same connection has an empty body.
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let json = client.response(false).json();
    assert_eq!(
        (json["body"].as_str(), json["body_bytes"].as_u64()),
        (Some(""), Some(0))
    );
    assert_eq!(json["body_fnv1a64"], fnv1a64(b""));
}

#[test]
fn echo_of_a_chunked_post_sent_in_pieces() {
    let server = Server::start(&["--echo"]);
    let mut client = server.connect();
    let pieces: [&[u8]; 6] = [
        b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhel",
        b"lo\r\n6;ext=1\r\n wor",
        b"ld\r\n0\r",
        b"\nTrailer: yes\r\n",
        b"\r\n",
    ];
    for piece in pieces {
        client.send(piece);
        std::thread::sleep(Duration::from_millis(20));
    }
    let json = client.response(false).json();
    assert_eq!(json["body"], "hello world");
    assert_eq!(json["body_bytes"], 11);
    assert_eq!(json["body_fnv1a64"], fnv1a64(b"hello world"));
    // The connection is still usable after the trailer.
    client.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.response(false).json()["path"], "/next");
}

#[test]
fn echo_streams_large_uploads_and_checksums_them() {
    let server = Server::start(&["--echo"]);
    let data = noise(50 * 1024 * 1024);

    // Content-Length with Expect: 100-continue.
    let mut client = server.connect();
    client.send(
        format!(
            "PUT /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .as_bytes(),
    );
    assert_eq!(client.response(false).status, 100);
    client.send(&data);
    let json = client.response(false).json();
    assert_eq!(json["body"], Value::Null);
    assert_eq!(json["body_bytes"], data.len());
    assert_eq!(json["body_fnv1a64"], fnv1a64(&data));

    // Chunked, crossing the 64 KiB echo limit part-way.
    let body = &data[..300_000];
    let mut request =
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in body.chunks(40_000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    client.send(&request);
    let json = client.response(false).json();
    assert_eq!(json["body"], Value::Null);
    assert_eq!(json["body_bytes"], body.len());
    assert_eq!(json["body_fnv1a64"], fnv1a64(body));
}

#[test]
fn query_overrides_size_framing_and_status() {
    let server = Server::start(&[]);
    let mut client = server.connect();

    client.send(b"GET /?bytes=3000001 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = client.response(false);
    assert_eq!(r.header("content-length"), Some("3000001"));
    assert!(r.body.len() == 3_000_001 && r.body.iter().all(|&b| b == b'x'));

    client.send(b"GET /?bytes=200000&chunked=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = client.response(false);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.body.len(), 200_000);

    client.send(b"GET /?chunked=1&bytes=0 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.response(false).body.len(), 0);

    client.send(b"GET /missing?status=404&bytes=4 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = client.response(false);
    assert_eq!((r.status, r.body.as_slice()), (404, &b"xxxx"[..]));

    client.send(b"GET /?status=204 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = client.response(false);
    assert_eq!((r.status, r.header("content-length")), (204, None));

    client.send(b"GET /?status=503 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = client.response(false);
    assert_eq!((r.status, r.body.len()), (503, 100));
}

#[test]
fn hits_counts_served_requests_but_not_itself() {
    let server = Server::start(&["--workers", "2"]);
    let hits = |server: &Server| server.get("/__hits").json()["requests"].as_u64();
    assert_eq!(hits(&server), Some(0));
    server.get("/");
    let mut client = server.connect();
    client.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    client.response(false);
    client.response(false);
    assert_eq!(hits(&server), Some(3));
    assert_eq!(hits(&server), Some(3));
}

#[test]
fn delays_from_flag_and_query() {
    let server = Server::start(&["--delay-ms", "200"]);
    let started = Instant::now();
    assert_eq!(server.get("/").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let server = Server::start(&[]);
    let started = Instant::now();
    assert_eq!(server.get("/?delay_ms=150").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn every_nth_request_stalls() {
    let server = Server::start(&["--stall-every", "3", "--stall-ms", "400"]);
    let mut client = server.connect();
    let mut took = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        client.response(false);
        took.push(started.elapsed());
    }
    assert!(took[2] >= Duration::from_millis(400), "{took:?}");
    assert!(took[0] < Duration::from_millis(400) && took[1] < Duration::from_millis(400));
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = client.response(false);
    assert_eq!(r.header("connection"), Some("close"));
    client.assert_closed();

    let mut client = server.connect();
    client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        client.response(false).header("connection"),
        Some("keep-alive")
    );
    client.send(b"GET /?chunked=1 HTTP/1.0\r\n\r\n");
    let r = client.response(false);
    // No chunked framing for an HTTP/1.0 client.
    assert_eq!(r.header("content-length"), Some("100"));
    client.assert_closed();
}

#[test]
fn malformed_requests_get_400_and_close() {
    let server = Server::start(&["--echo"]);
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        b"GET /?bytes=-1 HTTP/1.1\r\n\r\n",
    ] {
        let mut client = server.connect();
        client.send(bad);
        let r = client.response(false);
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(bad));
        assert_eq!(r.header("connection"), Some("close"));
        client.assert_closed();
    }

    // An oversized head is 431.
    let mut client = server.connect();
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000));
    client.send(big.as_bytes());
    assert_eq!(client.response(false).status, 431);

    // The server still serves.
    assert_eq!(server.get("/").status, 200);
}
