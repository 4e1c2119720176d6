//! A small, bounded load generator for tests: std threads, one keep-alive
//! connection each, pipelined batches sent on a fixed schedule (open loop: a
//! thread that falls behind sends at once until it is back on schedule), for a
//! fixed duration or request count. It records status counts overall, per key
//! and per 100 ms of the run, and the slowest response.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to send.
#[derive(Clone)]
pub struct LoadPlan {
    /// Gateways to spread the connections over (round robin).
    pub ports: Vec<u16>,
    /// Connections (one thread each).
    pub connections: usize,
    /// Requests per second over all connections; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// How long to send.
    pub duration: Duration,
    /// Stop after this many requests in total.
    pub total: Option<u64>,
    /// Requests written back to back before reading their responses.
    pub batch: usize,
    pub path: String,
    /// With keys, request `i` of connection `c` carries `key_header: keys[(i × connections + c) % len]`.
    pub key_header: String,
    pub keys: Vec<String>,
}

impl LoadPlan {
    pub fn new(ports: &[u16]) -> LoadPlan {
        LoadPlan {
            ports: ports.to_vec(),
            connections: 4,
            rate: None,
            duration: Duration::from_secs(1),
            total: None,
            batch: 8,
            path: "/".to_string(),
            key_header: "x-api-key".to_string(),
            keys: Vec::new(),
        }
    }
}

/// Width of one timeline bin.
pub const BIN: Duration = Duration::from_millis(100);

#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub sent: u64,
    pub ok: u64,
    pub limited: u64,
    pub other: u64,
    /// Connections that broke (and were reopened).
    pub errors: u64,
    /// `[ok, limited]` per key.
    pub per_key: Vec<[u64; 2]>,
    /// `[ok, limited]` per [`BIN`] since `started`, by response time.
    pub timeline: Vec<[u64; 2]>,
    pub max_latency: Duration,
    /// Seconds into the run when the slowest response arrived.
    pub max_latency_at: f64,
    /// Seconds from the first request sent to the last response read.
    pub elapsed: f64,
    pub started: Option<Instant>,
}

impl LoadResult {
    /// `[ok, limited]` of responses read between `from` and `to` seconds into the run.
    pub fn window(&self, from: f64, to: f64) -> [u64; 2] {
        let a = (from / BIN.as_secs_f64()).round() as usize;
        let b = (to / BIN.as_secs_f64()).round() as usize;
        let mut out = [0, 0];
        for bin in self.timeline.iter().take(b).skip(a) {
            out[0] += bin[0];
            out[1] += bin[1];
        }
        out
    }

    fn merge(&mut self, o: LoadResult) {
        self.sent += o.sent;
        self.ok += o.ok;
        self.limited += o.limited;
        self.other += o.other;
        self.errors += o.errors;
        if self.per_key.len() < o.per_key.len() {
            self.per_key.resize(o.per_key.len(), [0, 0]);
        }
        for (a, b) in self.per_key.iter_mut().zip(&o.per_key) {
            a[0] += b[0];
            a[1] += b[1];
        }
        if self.timeline.len() < o.timeline.len() {
            self.timeline.resize(o.timeline.len(), [0, 0]);
        }
        for (a, b) in self.timeline.iter_mut().zip(&o.timeline) {
            a[0] += b[0];
            a[1] += b[1];
        }
        if o.max_latency > self.max_latency {
            self.max_latency = o.max_latency;
            self.max_latency_at = o.max_latency_at;
        }
        self.elapsed = self.elapsed.max(o.elapsed);
    }
}

/// Runs `plan` to the end and returns what happened.
pub fn run(plan: &LoadPlan) -> LoadResult {
    let start = Instant::now() + Duration::from_millis(20);
    let plan = Arc::new(plan.clone());
    let threads: Vec<_> = (0..plan.connections)
        .map(|c| {
            let plan = plan.clone();
            std::thread::spawn(move || connection(&plan, c, start))
        })
        .collect();
    let mut total = LoadResult {
        per_key: vec![[0, 0]; plan.keys.len()],
        started: Some(start),
        ..LoadResult::default()
    };
    for t in threads {
        total.merge(t.join().expect("load thread"));
    }
    total
}

fn connection(plan: &LoadPlan, c: usize, start: Instant) -> LoadResult {
    let port = plan.ports[c % plan.ports.len()];
    let mut out = LoadResult {
        per_key: vec![[0, 0]; plan.keys.len()],
        ..LoadResult::default()
    };
    let per_conn_total = plan.total.map(|t| {
        let base = t / plan.connections as u64;
        base + u64::from((c as u64) < t % plan.connections as u64)
    });
    let interval = plan
        .rate
        .map(|r| Duration::from_secs_f64(plan.batch as f64 * plan.connections as f64 / r));
    let deadline = start + plan.duration;
    let mut stream = None;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut req = Vec::with_capacity(plan.batch * 128);
    let mut keys_of_batch = Vec::with_capacity(plan.batch);
    let mut i: u64 = 0;
    let mut batch_no: u32 = 0;
    // Each connection starts at its own offset within the first interval.
    let offset = interval.map_or(Duration::ZERO, |iv| iv * c as u32 / plan.connections as u32);
    std::thread::sleep(start.saturating_duration_since(Instant::now()));
    let first = Instant::now();
    let mut last = first;
    loop {
        let now = Instant::now();
        if now >= deadline || per_conn_total.is_some_and(|t| i >= t) {
            break;
        }
        if let Some(iv) = interval {
            let due = start + offset + iv * batch_no;
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        batch_no += 1;
        let n = match per_conn_total {
            Some(t) => (t - i).min(plan.batch as u64) as usize,
            None => plan.batch,
        };
        req.clear();
        keys_of_batch.clear();
        for _ in 0..n {
            req.extend_from_slice(b"GET ");
            req.extend_from_slice(plan.path.as_bytes());
            req.extend_from_slice(b" HTTP/1.1\r\nHost: load\r\n");
            if !plan.keys.is_empty() {
                let k = ((i as usize) * plan.connections + c) % plan.keys.len();
                keys_of_batch.push(k);
                req.extend_from_slice(plan.key_header.as_bytes());
                req.extend_from_slice(b": ");
                req.extend_from_slice(plan.keys[k].as_bytes());
                req.extend_from_slice(b"\r\n");
            }
            req.extend_from_slice(b"\r\n");
            i += 1;
        }
        let sent_at = Instant::now();
        if stream.is_none() {
            stream = TcpStream::connect(("127.0.0.1", port)).ok();
            if let Some(s) = &stream {
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            }
            buf.clear();
        }
        let Some(s) = stream.as_mut() else {
            out.errors += 1;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        out.sent += n as u64;
        if s.write_all(&req).is_err() {
            out.errors += 1;
            stream = None;
            continue;
        }
        for j in 0..n {
            let Some(status) = read_response(s, &mut buf) else {
                out.errors += 1;
                stream = None;
                break;
            };
            let at = Instant::now();
            last = at;
            if at - sent_at > out.max_latency {
                out.max_latency = at - sent_at;
                out.max_latency_at = at.saturating_duration_since(start).as_secs_f64();
            }
            let slot = match status {
                200..=299 => {
                    out.ok += 1;
                    Some(0)
                }
                429 => {
                    out.limited += 1;
                    Some(1)
                }
                _ => {
                    out.other += 1;
                    None
                }
            };
            if let Some(slot) = slot {
                if let Some(&k) = keys_of_batch.get(j) {
                    out.per_key[k][slot] += 1;
                }
                let bin = (at.saturating_duration_since(start).as_secs_f64() / BIN.as_secs_f64())
                    as usize;
                if out.timeline.len() <= bin {
                    out.timeline.resize(bin + 1, [0, 0]);
                }
                out.timeline[bin][slot] += 1;
            }
        }
    }
    out.elapsed = last.saturating_duration_since(first).as_secs_f64();
    out
}

/// Reads one response and returns its status; `buf` keeps bytes of the next ones.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    let mut tmp = [0u8; 32 * 1024];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = &buf[..end];
            let status: u16 = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
            let mut length = 0usize;
            for line in head.split(|&b| b == b'\n') {
                if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
                    length = std::str::from_utf8(&line[15..]).ok()?.trim().parse().ok()?;
                }
            }
            let total = end + 4 + length;
            while buf.len() < total {
                let n = s.read(&mut tmp).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            buf.drain(..total);
            return Some(status);
        }
        let n = s.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
