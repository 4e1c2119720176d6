//! A small JSON upstream for composition tests, on 127.0.0.1: each request gets what
//! the test's handler says (status, body, content type, delay, chunked framing, or
//! a hang until the gateway closes the connection). It records every request and
//! counts the hanging requests whose connection the gateway closed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the upstream read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The raw value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }
}

/// What the upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub delay: Duration,
    pub chunked: bool,
    /// Never answer; wait until the gateway closes the connection.
    pub hang: bool,
    /// More fields for the head, in order.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(body: &str) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            chunked: false,
            hang: false,
            headers: Vec::new(),
        }
    }

    pub fn text(body: &str) -> Reply {
        Reply {
            content_type: "text/plain",
            ..Reply::json(body)
        }
    }

    pub fn hang() -> Reply {
        Reply {
            hang: true,
            ..Reply::json("")
        }
    }

    pub fn status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Reply {
        self.delay = Duration::from_millis(ms);
        self
    }

    pub fn chunked(mut self) -> Reply {
        self.chunked = true;
        self
    }

    /// Adds a field to the head.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running JSON upstream; stopped when dropped.
pub struct JsonUpstream {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    hung_closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl JsonUpstream {
    /// Listens on a free port and answers every request with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> JsonUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handler: Arc<Handler> = Arc::new(handler);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let hung_closed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, h, s) = (requests.clone(), hung_closed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (handler, r, h) = (handler.clone(), r.clone(), h.clone());
                std::thread::spawn(move || serve(stream, &*handler, &r, &h));
            }
        });
        JsonUpstream {
            port,
            requests,
            hung_closed,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The requests read so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }

    /// Hanging requests whose connection the gateway has closed.
    pub fn hung_closed(&self) -> usize {
        self.hung_closed.load(Ordering::Relaxed)
    }
}

impl Drop for JsonUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one keep-alive connection until it closes.
fn serve(
    mut stream: TcpStream,
    handler: &Handler,
    requests: &Mutex<Vec<Request>>,
    hung_closed: &AtomicUsize,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buf) {
        requests.lock().expect("lock").push(request.clone());
        let reply = handler(&request);
        if reply.hang {
            // Wait for the other side to close; count it when it does.
            let mut byte = [0u8; 1];
            if matches!(stream.read(&mut byte), Ok(0)) {
                hung_closed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        std::thread::sleep(reply.delay);
        if stream.write_all(&response(&reply)).is_err() {
            return;
        }
    }
}

fn response(reply: &Reply) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} X\r\ncontent-type: {}\r\n",
        reply.status, reply.content_type
    )
    .into_bytes();
    for (name, value) in &reply.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if reply.chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        let (a, b) = reply.body.split_at(reply.body.len() / 2);
        for piece in [a, b] {
            if !piece.is_empty() {
                out.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(format!("content-length: {}\r\n\r\n", reply.body.len()).as_bytes());
        out.extend_from_slice(&reply.body);
    }
    out
}

/// Reads one request (head, then a `Content-Length` body) from `stream`.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}
