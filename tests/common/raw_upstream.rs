//! Raw-socket upstreams for tests about exactly what reaches a service and what a
//! misbehaving service does to the gateway:
//! - [`RawUpstream`] records every request's bytes as received (head, body
//!   framing, trailers) and answers each with bytes the test chose, well-formed or
//!   not, then closes (one request per connection, connections in parallel);
//! - [`Scripted`] runs one script per accepted connection, in order, for
//!   keep-alive scenarios (late bytes, a close without an answer).
//!
//! Both read requests with [`read_request`], which frames them independently of
//! the gateway's codec.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the upstream answers to one request (its exact bytes).
pub type Answer = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// A listener on 127.0.0.1 that serves one request per connection.
pub struct RawUpstream {
    pub port: u16,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<Mutex<usize>>,
}

/// `200 OK` with body `ok` and `Connection: close`.
pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

impl RawUpstream {
    /// Answers every request with `OK`.
    pub fn ok() -> RawUpstream {
        RawUpstream::answering(|_| OK.to_vec())
    }

    /// Answers every request with `answer(request bytes)`.
    pub fn answering(answer: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let answer: Answer = Arc::new(answer);
        let (r, c) = (requests.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                *c.lock().unwrap() += 1;
                let (r, answer) = (r.clone(), answer.clone());
                std::thread::spawn(move || serve(stream, &r, &answer));
            }
        });
        RawUpstream {
            port,
            requests,
            connections,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every complete request received so far, in order, as bytes.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }

    /// The only request received; panics unless there was exactly one.
    pub fn only_request(&self) -> Vec<u8> {
        let all = self.requests();
        assert_eq!(
            all.len(),
            1,
            "requests: {:?}",
            all.iter()
                .map(|r| String::from_utf8_lossy(r).to_string())
                .collect::<Vec<_>>()
        );
        all.into_iter().next().unwrap()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

fn serve(mut stream: TcpStream, requests: &Mutex<Vec<Vec<u8>>>, answer: &Answer) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if let Some(request) = read_request(&mut stream) {
        requests.lock().unwrap().push(request.clone());
        let _ = stream.write_all(&answer(&request));
    }
}

/// What one scripted connection does with the stream it was accepted on; it
/// reports the requests it reads on the sender ([`read_and_report`]).
pub type Script = Box<dyn FnOnce(TcpStream, &mpsc::Sender<Vec<u8>>) + Send>;

/// An upstream that runs one script per accepted connection, in order, on one
/// thread, and collects every request the scripts report.
pub struct Scripted {
    pub port: u16,
    requests: mpsc::Receiver<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
}

impl Scripted {
    pub fn start(scripts: Vec<Script>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, requests) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for script in scripts {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                script(stream, &tx);
            }
        });
        Scripted {
            port,
            requests,
            thread: Some(thread),
        }
    }

    /// The requests reported so far, waiting up to `wait` for more.
    pub fn requests(&self, wait: Duration) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(r) = self.requests.recv_timeout(wait) {
            out.push(String::from_utf8_lossy(&r).into_owned());
        }
        out
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        // Unblock a script waiting in accept by connecting once.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request from `s` ([`read_request`]) and reports it on `tx`.
pub fn read_and_report(s: &mut TcpStream, tx: &mpsc::Sender<Vec<u8>>) -> Option<Vec<u8>> {
    let request = read_request(s)?;
    let _ = tx.send(request.clone());
    Some(request)
}

/// Reads one whole request ([`request_end`]) from `s`; `None` when the stream
/// ends or times out first. Bytes after the request are dropped.
pub fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(end) = request_end(&buf) {
            buf.truncate(end);
            return Some(buf);
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// Where the first request in `buf` ends, if it is all there: its head, then a
/// `Content-Length` body or a chunked body up to the empty line after the last
/// chunk and any trailers. Deliberately independent of the gateway's codec.
pub fn request_end(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
            .map(str::trim)
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut at = head_end;
        loop {
            let line_end = at + find(&buf[at..], b"\r\n")?;
            let line = String::from_utf8_lossy(&buf[at..line_end]).to_string();
            let size_text = line.split([';', ' ', '\t']).next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // Trailer lines up to the empty one.
                loop {
                    let end = at + find(&buf[at..], b"\r\n")?;
                    let empty = end == at;
                    at = end + 2;
                    if empty {
                        return Some(at);
                    }
                }
            }
            at += size + 2;
            if at > buf.len() {
                return None;
            }
        }
    }
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + length).then_some(head_end + length)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The header lines of a raw request or response, names lowercased.
pub fn head_lines(raw: &[u8]) -> Vec<(String, String)> {
    let end = find(raw, b"\r\n\r\n").unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end])
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// What follows the head of a raw message.
pub fn body_of(raw: &[u8]) -> &[u8] {
    find(raw, b"\r\n\r\n").map_or(&raw[raw.len()..], |i| &raw[i + 4..])
}
