//! A small OTLP/HTTP trace receiver for tests: accepts `POST /v1/traces` with a
//! protobuf `ExportTraceServiceRequest` (decoded with the prost types generated
//! from the official opentelemetry-proto definitions, `portico-otlp-proto`), keeps
//! the spans, and answers 200 with an empty `ExportTraceServiceResponse` — after a
//! delay, when told to be slow.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portico_otlp_proto::{any_value, ExportTraceServiceRequest, KeyValue, Message, Span};

/// A span as received, with the `service.name` of its resource.
#[derive(Clone, Debug)]
pub struct Received {
    pub service: String,
    pub span: Span,
}

impl Received {
    /// A string or integer attribute, as text.
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
}

fn attr(list: &[KeyValue], key: &str) -> Option<String> {
    let v = list
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    match v {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[derive(Default)]
struct State {
    spans: Mutex<Vec<Received>>,
    requests: AtomicUsize,
    /// Requests that were not a valid OTLP/HTTP protobuf POST to /v1/traces.
    bad: AtomicUsize,
    delay: Mutex<Duration>,
}

/// A running receiver on 127.0.0.1.
pub struct OtlpReceiver {
    pub port: u16,
    state: Arc<State>,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(State::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        OtlpReceiver { port, state }
    }

    /// The `otlp_endpoint` to configure.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers wait this long from now on.
    pub fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    pub fn spans(&self) -> Vec<Received> {
        self.state.spans.lock().unwrap().clone()
    }

    /// Export requests received (answered or not).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests that were not valid OTLP/HTTP protobuf trace exports.
    pub fn bad_requests(&self) -> usize {
        self.state.bad.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for at least `n` spans; returns what arrived.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= n || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Serves one connection: requests one after another (keep-alive).
fn serve(mut stream: TcpStream, state: &State) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_until_head(&mut stream, &mut buf) else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);
        state.requests.fetch_add(1, Ordering::SeqCst);
        let ok_head = head.starts_with("POST /v1/traces HTTP/1.1\r\n")
            && head
                .to_ascii_lowercase()
                .contains("\r\ncontent-type: application/x-protobuf\r\n");
        match ExportTraceServiceRequest::decode(body.as_slice()) {
            Ok(req) if ok_head => {
                let mut spans = state.spans.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .as_ref()
                        .and_then(|r| attr(&r.attributes, "service.name"))
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for span in ss.spans {
                            spans.push(Received {
                                service: service.clone(),
                                span,
                            });
                        }
                    }
                }
            }
            _ => {
                state.bad.fetch_add(1, Ordering::SeqCst);
            }
        }
        let delay = *state.delay.lock().unwrap();
        std::thread::sleep(delay);
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(answer).is_err() {
            return;
        }
    }
}

/// Reads until `buf` holds a whole head; returns where the body starts.
fn read_until_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
