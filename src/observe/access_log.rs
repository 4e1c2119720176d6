//! The access log: one line per request, buffered on the worker and written by a
//! side thread, so a slow disk or a blocked stdout never stalls a worker.
//!
//! Two formats (`[log] access_log_format`):
//!
//! - `text` (the default), space separated, the request line quoted and escaped:
//!   `time client "METHOD target HTTP/1.x" status bytes_sent duration_ms route upstream request_id attempts trace_id`
//!   with `time` in RFC 3339 UTC with milliseconds, `upstream` the endpoint last
//!   tried, `attempts` the upstream tries made (0 for the gateway's own answers)
//!   and `-` for what a request does not have, e.g.
//!   `2026-11-28T02:45:14.123Z 127.0.0.1 "GET /echo/x HTTP/1.1" 200 532 0.217 echo 127.0.0.1:9001 cbd3… 1 4bf9…`
//! - `json`: one object per line with the fields of docs/observability.md
//!   (`time`, `client`, `method`, `authority`, `path`, `protocol`, `status`,
//!   `bytes_in`, `bytes_out`, `duration_ms`, `route`, `upstream`, `endpoint`,
//!   `upstream_connect_ms`, `upstream_first_byte_ms`, `attempts`, `failure`,
//!   `request_id`, `trace_id`, `auth_subject`, `ratelimit_policy`, `ratelimit`);
//!   absent values are `null`.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::settings::AccessLogFormat;

/// Where access-log lines go (`[log] access_log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

/// What one access-log line says.
pub struct AccessRecord<'a> {
    pub client: IpAddr,
    pub method: &'a [u8],
    pub target: &'a [u8],
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub protocol: &'a str,
    /// The request's authority (absolute-form target, else `Host`), when valid.
    pub authority: Option<&'a [u8]>,
    pub status: u16,
    /// Request bytes read: the head and the body's payload.
    pub bytes_received: u64,
    /// Response bytes written, heads included.
    pub bytes_sent: u64,
    pub duration: Duration,
    /// The route taken (empty: none).
    pub route: &'a str,
    /// The upstream forwarded to, by name.
    pub upstream_name: Option<&'a str>,
    /// The endpoint last tried.
    pub upstream: Option<SocketAddr>,
    /// The kept try's new connection took this long (zero: a pooled one was used).
    pub upstream_connect: Option<Duration>,
    /// From the kept try's start to the upstream response head.
    pub upstream_first_byte: Option<Duration>,
    pub request_id: &'a str,
    /// The trace ID (32 hex digits), with `[tracing]`.
    pub trace_id: Option<&'a [u8]>,
    /// The verified caller's `sub` claim.
    pub auth_subject: Option<&'a str>,
    /// The rate-limit policy that decided (the refusing one, else the one with the
    /// least remaining) and whether it allowed the request.
    pub ratelimit: Option<(&'a str, bool)>,
    /// Upstream tries made (retries and the stale-connection replay included).
    pub attempts: u32,
    /// Where the upstream exchange failed (`connect`, `timeout`, ...), when it did.
    pub failure: Option<&'static str>,
}

/// Flush to the writer thread once this much is buffered (and on every tick).
const FLUSH_BYTES: usize = 32 * 1024;
/// Batches waiting for the writer; past this, batches are dropped and counted.
const QUEUE_BATCHES: usize = 256;

/// What the writer thread receives: batches of lines, then an explicit stop.
enum ToWriter {
    Batch(String),
    /// Write what came before, then end (the workers' buffers may outlive them).
    Stop,
}

/// A worker's access-log buffer.
pub struct AccessLogBuffer {
    format: AccessLogFormat,
    buf: RefCell<String>,
    tx: Sender<ToWriter>,
    /// Batches dropped because the writer was behind.
    dropped: Cell<u64>,
}

impl AccessLogBuffer {
    /// Adds the line of one request.
    pub fn record(&self, r: &AccessRecord<'_>) {
        let mut buf = self.buf.borrow_mut();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        match self.format {
            AccessLogFormat::Text => text_line(&mut buf, now, r),
            AccessLogFormat::Json => json_line(&mut buf, now, r),
        }
        if buf.len() >= FLUSH_BYTES {
            drop(buf);
            self.flush();
        }
    }

    /// Hands what is buffered to the writer thread; drops it if the writer is behind.
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut *buf, String::with_capacity(FLUSH_BYTES + 1024));
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send(ToWriter::Batch(batch))
        {
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    /// Batches dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

/// The side thread that writes batches to stdout or a file.
pub struct AccessLogWriter {
    tx: Sender<ToWriter>,
    format: AccessLogFormat,
    handle: std::thread::JoinHandle<()>,
}

impl AccessLogWriter {
    /// Starts the writer thread, or returns `None` when the log is off.
    pub fn start(
        target: &AccessLogTarget,
        format: AccessLogFormat,
    ) -> std::io::Result<Option<AccessLogWriter>> {
        let mut out: Box<dyn std::io::Write + Send> = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx): (Sender<ToWriter>, Receiver<ToWriter>) =
            crossbeam_channel::bounded(QUEUE_BATCHES);
        let handle = std::thread::Builder::new()
            .name("portico-access-log".into())
            .spawn(move || {
                for message in rx {
                    let ToWriter::Batch(batch) = message else {
                        return;
                    };
                    if out.write_all(batch.as_bytes()).is_err() {
                        continue;
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(Some(AccessLogWriter { tx, format, handle }))
    }

    /// A buffer for one worker.
    pub fn buffer(&self) -> AccessLogBuffer {
        AccessLogBuffer {
            format: self.format,
            buf: RefCell::new(String::with_capacity(FLUSH_BYTES + 1024)),
            tx: self.tx.clone(),
            dropped: Cell::new(0),
        }
    }

    /// Asks the writer to write every batch queued so far and end (after the
    /// workers flushed their buffers), without waiting past `deadline` for room in
    /// a full queue. Returns the thread to wait for. The writer does not wait for
    /// the workers' buffers to be dropped: a worker's unfinished tasks can hold
    /// one forever.
    pub fn stop(self, deadline: Instant) -> std::thread::JoinHandle<()> {
        let _ = self.tx.send_deadline(ToWriter::Stop, deadline);
        self.handle
    }
}

/// One `text` line.
fn text_line(buf: &mut String, now: Duration, r: &AccessRecord<'_>) {
    let upstream = r.upstream.map(|u| u.to_string());
    write_utc(buf, now);
    let _ = writeln!(
        buf,
        " {} \"{} {} {}\" {} {} {:.3} {} {} {} {} {}",
        r.client,
        String::from_utf8_lossy(r.method),
        String::from_utf8_lossy(r.target).escape_debug(),
        r.protocol,
        r.status,
        r.bytes_sent,
        millis(r.duration),
        if r.route.is_empty() { "-" } else { r.route },
        upstream.as_deref().unwrap_or("-"),
        r.request_id,
        r.attempts,
        r.trace_id
            .map_or(std::borrow::Cow::Borrowed("-"), String::from_utf8_lossy),
    );
}

/// One `json` line: the fields in a fixed order, `null` for what is absent.
fn json_line(buf: &mut String, now: Duration, r: &AccessRecord<'_>) {
    buf.push_str("{\"time\":\"");
    write_utc(buf, now);
    let _ = write!(buf, "\",\"client\":\"{}\",\"method\":", r.client);
    json_str(buf, Some(r.method));
    buf.push_str(",\"authority\":");
    json_str(buf, r.authority);
    buf.push_str(",\"path\":");
    json_str(buf, Some(r.target));
    let _ = write!(
        buf,
        ",\"protocol\":\"{}\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3},\"route\":",
        r.protocol,
        r.status,
        r.bytes_received,
        r.bytes_sent,
        millis(r.duration)
    );
    json_str(buf, (!r.route.is_empty()).then_some(r.route.as_bytes()));
    buf.push_str(",\"upstream\":");
    json_str(buf, r.upstream_name.map(str::as_bytes));
    buf.push_str(",\"endpoint\":");
    match r.upstream {
        Some(e) => {
            let _ = write!(buf, "\"{e}\"");
        }
        None => buf.push_str("null"),
    }
    for (key, value) in [
        ("upstream_connect_ms", r.upstream_connect),
        ("upstream_first_byte_ms", r.upstream_first_byte),
    ] {
        let _ = write!(buf, ",\"{key}\":");
        match value {
            Some(d) => {
                let _ = write!(buf, "{:.3}", millis(d));
            }
            None => buf.push_str("null"),
        }
    }
    let _ = write!(buf, ",\"attempts\":{},\"failure\":", r.attempts);
    json_str(buf, r.failure.map(str::as_bytes));
    buf.push_str(",\"request_id\":");
    json_str(buf, Some(r.request_id.as_bytes()));
    buf.push_str(",\"trace_id\":");
    json_str(buf, r.trace_id);
    buf.push_str(",\"auth_subject\":");
    json_str(buf, r.auth_subject.map(str::as_bytes));
    buf.push_str(",\"ratelimit_policy\":");
    json_str(buf, r.ratelimit.map(|(p, _)| p.as_bytes()));
    buf.push_str(",\"ratelimit\":");
    json_str(
        buf,
        r.ratelimit
            .map(|(_, allowed)| if allowed { &b"allowed"[..] } else { b"denied" }),
    );
    buf.push_str("}\n");
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A JSON string of `bytes` (invalid UTF-8 replaced), or `null`.
fn json_str(out: &mut String, bytes: Option<&[u8]>) {
    let Some(bytes) = bytes else {
        out.push_str("null");
        return;
    };
    out.push('"');
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC), as the access log writes it.
pub fn utc_timestamp(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    write_utc(&mut out, t.duration_since(UNIX_EPOCH).unwrap_or_default());
    out
}

/// Writes `since_epoch` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn write_utc(out: &mut String, since_epoch: Duration) {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        since_epoch.subsec_millis()
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamps() {
        let mut s = String::new();
        write_utc(&mut s, Duration::from_millis(0));
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        s.clear();
        write_utc(&mut s, Duration::from_millis(1_795_833_914_641));
        assert_eq!(s, "2026-11-28T02:45:14.641Z");
        s.clear();
        write_utc(&mut s, Duration::from_secs(951_782_400)); // a leap day
        assert_eq!(s, "2000-02-29T00:00:00.000Z");
    }

    fn record<'a>() -> AccessRecord<'a> {
        AccessRecord {
            client: "127.0.0.1".parse().unwrap(),
            method: b"GET",
            target: b"/a\"b\\c\x01\xff?q=1",
            authority: Some(b"api.example.com"),
            protocol: "HTTP/1.1",
            status: 200,
            bytes_received: 80,
            bytes_sent: 532,
            duration: Duration::from_micros(217),
            route: "echo",
            upstream_name: Some("echo"),
            upstream: Some("127.0.0.1:9001".parse().unwrap()),
            upstream_connect: Some(Duration::ZERO),
            upstream_first_byte: Some(Duration::from_micros(150)),
            request_id: "r1",
            trace_id: Some(b"0af7651916cd43dd8448eb211c80319c"),
            auth_subject: None,
            ratelimit: Some(("per-ip", true)),
            attempts: 1,
            failure: None,
        }
    }

    #[test]
    fn json_lines_parse_and_escape() {
        let mut s = String::new();
        json_line(&mut s, Duration::from_millis(1_795_833_914_641), &record());
        assert!(s.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["time"], "2026-11-28T02:45:14.641Z");
        assert_eq!(v["path"], "/a\"b\\c\u{1}\u{fffd}?q=1");
        assert_eq!(v["duration_ms"], 0.217);
        assert_eq!(v["upstream_connect_ms"], 0.0);
        assert_eq!(v["auth_subject"], serde_json::Value::Null);
        assert_eq!(v["ratelimit"], "allowed");
        assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn text_lines_end_with_the_trace_id() {
        let mut s = String::new();
        text_line(&mut s, Duration::ZERO, &record());
        assert!(
            s.ends_with(
                " 200 532 0.217 echo 127.0.0.1:9001 r1 1 0af7651916cd43dd8448eb211c80319c\n"
            ),
            "{s}"
        );
    }
}
