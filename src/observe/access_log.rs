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
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::handoff::{self, Sender};

use super::settings::AccessLogFormat;
use crate::text::{self, AddrText};

/// Where access-log lines go (`[log] access_log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

/// What one access-log line says.
pub struct AccessRecord<'a> {
    /// The client's IP address as text.
    pub client: &'a [u8],
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
    pub upstream: Option<AddrText>,
    /// The kept try's new connection took this long (zero: a pooled one was used).
    pub upstream_connect: Option<Duration>,
    /// From the kept try's start to the upstream response head.
    pub upstream_first_byte: Option<Duration>,
    /// The request's ID: 1–64 bytes of `[A-Za-z0-9._:-]` (as `RequestId` keeps
    /// them), written without a JSON check.
    pub request_id: &'a [u8],
    /// The trace ID (32 lowercase hex digits), with `[tracing]`.
    pub trace_id: Option<&'a [u8; 32]>,
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
/// 1 MiB rather than 256 or 64 KiB: the writer's `write(2)` into the page cache
/// cost 2.1% of a logged request's samples with 64 KiB writes and 1.35% with
/// 256 KiB, and the writer thread 0.21–0.25 CPU-µs per request with 256 KiB
/// against 0.17–0.18 with 1 MiB (ext4, kernel 6.18; docs/benchmarks.md §10).
const FLUSH_BYTES: usize = 1024 * 1024;
/// Batches waiting for the writer (16 MiB in all); past this, batches are dropped
/// and counted.
const QUEUE_BATCHES: usize = 16;

/// What the writer thread receives: batches of lines, then an explicit stop.
enum ToWriter {
    Batch(Vec<u8>),
    /// Write what came before, then end (the workers' buffers may outlive them).
    Stop,
}

/// A worker's access-log buffer.
pub struct AccessLogBuffer {
    format: AccessLogFormat,
    buf: RefCell<Vec<u8>>,
    clock: UtcClock,
    tx: Sender<ToWriter>,
    /// Batches dropped because the writer was behind.
    dropped: Cell<u64>,
}

impl AccessLogBuffer {
    /// Adds the line of one request, `r`, stamped `now` (time since the Unix
    /// epoch); hands the buffer to the writer once it holds 1 MiB.
    pub fn record(&self, r: &AccessRecord<'_>, now: Duration) {
        let mut buf = self.buf.borrow_mut();
        match self.format {
            AccessLogFormat::Text => text_line(&mut buf, &self.clock, now, r),
            AccessLogFormat::Json => json_line(&mut buf, &self.clock, now, r),
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
        let batch = std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_BYTES + 1024));
        if self.tx.try_send(ToWriter::Batch(batch)).is_err() {
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
        let (tx, rx) = handoff::bounded::<ToWriter>(QUEUE_BATCHES);
        let handle = std::thread::Builder::new()
            .name("portico-access-log".into())
            .spawn(move || {
                while let Some(message) = rx.recv() {
                    let ToWriter::Batch(batch) = message else {
                        return;
                    };
                    if out.write_all(&batch).is_err() {
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
            buf: RefCell::new(Vec::with_capacity(FLUSH_BYTES + 1024)),
            clock: UtcClock::default(),
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

// The lines are written byte by byte rather than with `write!`: the formatting
// machinery (and `Display` for addresses) was most of a JSON line's cost.

/// One `text` line.
fn text_line(buf: &mut Vec<u8>, clock: &UtcClock, now: Duration, r: &AccessRecord<'_>) {
    clock.push(buf, now);
    buf.push(b' ');
    buf.extend_from_slice(r.client);
    buf.extend_from_slice(b" \"");
    buf.extend_from_slice(String::from_utf8_lossy(r.method).as_bytes());
    buf.push(b' ');
    push_escaped_debug(buf, r.target);
    buf.push(b' ');
    buf.extend_from_slice(r.protocol.as_bytes());
    buf.extend_from_slice(b"\" ");
    text::push_u64(buf, u64::from(r.status));
    buf.push(b' ');
    text::push_u64(buf, r.bytes_sent);
    buf.push(b' ');
    text::push_millis(buf, r.duration);
    buf.push(b' ');
    buf.extend_from_slice(if r.route.is_empty() { "-" } else { r.route }.as_bytes());
    buf.push(b' ');
    match r.upstream {
        Some(u) => buf.extend_from_slice(u.as_bytes()),
        None => buf.push(b'-'),
    }
    buf.push(b' ');
    buf.extend_from_slice(r.request_id);
    buf.push(b' ');
    text::push_u64(buf, u64::from(r.attempts));
    buf.push(b' ');
    match r.trace_id {
        Some(id) => buf.extend_from_slice(id),
        None => buf.push(b'-'),
    }
    buf.push(b'\n');
}

/// The request target as `str::escape_debug` writes it (quotes, backslashes and
/// control characters escaped; invalid UTF-8 replaced): copied as is when it needs
/// none of that, the usual case.
fn push_escaped_debug(buf: &mut Vec<u8>, target: &[u8]) {
    if target
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\'' | b'\\'))
    {
        buf.extend_from_slice(target);
    } else {
        use std::io::Write as _;
        let _ = write!(buf, "{}", String::from_utf8_lossy(target).escape_debug());
    }
}

/// One `json` line: the fields in a fixed order, `null` for what is absent.
fn json_line(buf: &mut Vec<u8>, clock: &UtcClock, now: Duration, r: &AccessRecord<'_>) {
    buf.extend_from_slice(b"{\"time\":\"");
    clock.push(buf, now);
    buf.extend_from_slice(b"\",\"client\":\"");
    buf.extend_from_slice(r.client);
    buf.extend_from_slice(b"\",\"method\":");
    json_str(buf, Some(r.method));
    buf.extend_from_slice(b",\"authority\":");
    json_str(buf, r.authority);
    buf.extend_from_slice(b",\"path\":");
    json_str(buf, Some(r.target));
    buf.extend_from_slice(b",\"protocol\":\"");
    buf.extend_from_slice(r.protocol.as_bytes());
    buf.extend_from_slice(b"\",\"status\":");
    text::push_u64(buf, u64::from(r.status));
    buf.extend_from_slice(b",\"bytes_in\":");
    text::push_u64(buf, r.bytes_received);
    buf.extend_from_slice(b",\"bytes_out\":");
    text::push_u64(buf, r.bytes_sent);
    buf.extend_from_slice(b",\"duration_ms\":");
    text::push_millis(buf, r.duration);
    buf.extend_from_slice(b",\"route\":");
    json_str(buf, (!r.route.is_empty()).then_some(r.route.as_bytes()));
    buf.extend_from_slice(b",\"upstream\":");
    json_str(buf, r.upstream_name.map(str::as_bytes));
    buf.extend_from_slice(b",\"endpoint\":");
    match r.upstream {
        Some(e) => {
            buf.push(b'"');
            buf.extend_from_slice(e.as_bytes());
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
    for (key, value) in [
        (&b",\"upstream_connect_ms\":"[..], r.upstream_connect),
        (b",\"upstream_first_byte_ms\":", r.upstream_first_byte),
    ] {
        buf.extend_from_slice(key);
        match value {
            Some(d) => text::push_millis(buf, d),
            None => buf.extend_from_slice(b"null"),
        }
    }
    buf.extend_from_slice(b",\"attempts\":");
    text::push_u64(buf, u64::from(r.attempts));
    buf.extend_from_slice(b",\"failure\":");
    json_str(buf, r.failure.map(str::as_bytes));
    // The request and trace IDs need no escapes (see their fields).
    debug_assert!(json_plain(r.request_id));
    buf.extend_from_slice(b",\"request_id\":\"");
    buf.extend_from_slice(r.request_id);
    match r.trace_id {
        Some(id) => {
            // The request ID's closing quote, the key, the ID and its quotes: one copy.
            const KEY: &[u8] = b"\",\"trace_id\":\"";
            let mut field = [b'"'; KEY.len() + 32 + 1];
            field[..KEY.len()].copy_from_slice(KEY);
            field[KEY.len()..KEY.len() + 32].copy_from_slice(id);
            buf.extend_from_slice(&field);
        }
        None => buf.extend_from_slice(b"\",\"trace_id\":null"),
    }
    if r.auth_subject.is_none() && r.ratelimit.is_none() {
        // The usual ending without auth or limits: one copy.
        buf.extend_from_slice(
            b",\"auth_subject\":null,\"ratelimit_policy\":null,\"ratelimit\":null}\n",
        );
        return;
    }
    buf.extend_from_slice(b",\"auth_subject\":");
    json_str(buf, r.auth_subject.map(str::as_bytes));
    buf.extend_from_slice(b",\"ratelimit_policy\":");
    json_str(buf, r.ratelimit.map(|(p, _)| p.as_bytes()));
    buf.extend_from_slice(b",\"ratelimit\":");
    json_str(
        buf,
        r.ratelimit
            .map(|(_, allowed)| if allowed { &b"allowed"[..] } else { b"denied" }),
    );
    buf.extend_from_slice(b"}\n");
}

/// A JSON string of `bytes` (invalid UTF-8 replaced), or `null` (RFC 8259 §7).
/// Inlined: a line writes a dozen, and the usual cases (absent; printable ASCII
/// with nothing to escape, copied as is) are a few instructions each.
#[inline(always)]
fn json_str(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    let Some(bytes) = bytes else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'"');
    if json_plain(bytes) {
        out.extend_from_slice(bytes);
    } else {
        json_escaped(out, bytes);
    }
    out.push(b'"');
}

/// `bytes` escaped for a JSON string, invalid UTF-8 replaced.
#[cold]
#[inline(never)]
fn json_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let n = c as usize;
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&[HEX[n >> 4], HEX[n & 0xf]]);
            }
            c => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// Whether every byte of `bytes` is printable ASCII (0x20–0x7e) other than `"`
/// and `\\`: what a JSON string holds without escapes. Eight bytes at a time
/// (the "has less than" and "has zero byte" word tests of Bit Twiddling Hacks):
/// a byte-at-a-time test was most of a log line's cost.
#[inline(always)]
fn json_plain(bytes: &[u8]) -> bool {
    text::every_word(bytes, word_plain)
}

/// Whether all eight bytes of `x` are printable ASCII other than `"` and `\\`.
#[inline(always)]
fn word_plain(x: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTE: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASH: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    let del_or_high = ((x & !HIGH).wrapping_add(ONES)) | x;
    let special = has_zero(x ^ QUOTE) | has_zero(x ^ BACKSLASH);
    (control | del_or_high | special) & HIGH == 0
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC), as the access log writes it.
pub fn utc_timestamp(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(24);
    UtcClock::default().push(&mut out, t.duration_since(UNIX_EPOCH).unwrap_or_default());
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes times as `YYYY-MM-DDTHH:MM:SS.mmmZ`, keeping the text of the last second
/// it wrote (a worker's lines mostly share their second: only the milliseconds
/// change).
#[derive(Default)]
struct UtcClock {
    /// The second since the epoch whose `YYYY-MM-DDTHH:MM:SS.` is in `text`
    /// (`None`: none yet).
    second: Cell<Option<u64>>,
    text: Cell<[u8; 20]>,
}

impl UtcClock {
    fn push(&self, out: &mut Vec<u8>, since_epoch: Duration) {
        let secs = since_epoch.as_secs();
        if self.second.get() != Some(secs) {
            self.second.set(Some(secs));
            self.text.set(second_text(secs));
        }
        out.extend_from_slice(&self.text.get());
        let [a, b, c] = text::three_digits(since_epoch.subsec_millis() as usize);
        out.extend_from_slice(&[a, b, c, b'Z']);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of the second `secs` since the epoch.
fn second_text(secs: u64) -> [u8; 20] {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut text = [0u8; 20];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    let _ = write!(
        cursor,
        "{:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.",
        y.clamp(0, 9999),
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
    );
    text
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
    fn plain_json_bytes_are_found_in_every_position() {
        let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
        for len in (1..=18).chain([23, 24, 25]) {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(json_plain(&bytes), plain(b), "byte {b:#x} at {at} of {len}");
                }
            }
        }
        assert!(json_plain(b""));
    }

    #[test]
    fn utc_timestamps() {
        let clock = UtcClock::default();
        let at = |d: Duration| {
            let mut s = Vec::new();
            clock.push(&mut s, d);
            String::from_utf8(s).unwrap()
        };
        assert_eq!(at(Duration::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            at(Duration::from_millis(1_795_833_914_641)),
            "2026-11-28T02:45:14.641Z"
        );
        // The same second again (its text is kept), then the next one.
        assert_eq!(
            at(Duration::from_millis(1_795_833_914_007)),
            "2026-11-28T02:45:14.007Z"
        );
        assert_eq!(
            at(Duration::from_millis(1_795_833_915_000)),
            "2026-11-28T02:45:15.000Z"
        );
        // A leap day.
        assert_eq!(
            at(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    fn record<'a>() -> AccessRecord<'a> {
        AccessRecord {
            client: b"127.0.0.1",
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
            upstream: Some(AddrText::new("127.0.0.1:9001".parse().unwrap())),
            upstream_connect: Some(Duration::ZERO),
            upstream_first_byte: Some(Duration::from_micros(150)),
            request_id: b"r1",
            trace_id: Some(b"0af7651916cd43dd8448eb211c80319c"),
            auth_subject: None,
            ratelimit: Some(("per-ip", true)),
            attempts: 1,
            failure: None,
        }
    }

    #[test]
    fn json_lines_parse_and_escape() {
        let mut s = Vec::new();
        let clock = UtcClock::default();
        json_line(
            &mut s,
            &clock,
            Duration::from_millis(1_795_833_914_641),
            &record(),
        );
        let s = String::from_utf8(s).unwrap();
        assert!(s.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["time"], "2026-11-28T02:45:14.641Z");
        assert_eq!(v["path"], "/a\"b\\c\u{1}\u{fffd}?q=1");
        assert_eq!(v["duration_ms"], 0.217);
        assert_eq!(v["upstream_connect_ms"], 0.0);
        assert_eq!(v["auth_subject"], serde_json::Value::Null);
        assert_eq!(v["ratelimit"], "allowed");
        assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(v["request_id"], "r1");

        // Without a trace: `null`, and the line still parses.
        let mut s = Vec::new();
        let untraced = AccessRecord {
            trace_id: None,
            request_id: b"client-id_1.2:3",
            ..record()
        };
        json_line(&mut s, &clock, Duration::ZERO, &untraced);
        let v: serde_json::Value = serde_json::from_slice(&s).unwrap();
        assert_eq!(v["trace_id"], serde_json::Value::Null);
        assert_eq!(v["request_id"], "client-id_1.2:3");
        assert_eq!(v["auth_subject"], serde_json::Value::Null);
    }

    #[test]
    fn text_lines_escape_the_target_as_escape_debug_does() {
        for target in [
            &b"/plain?q=1"[..],
            b"/a\"b",
            b"/it's",
            b"/t\tab\x01",
            b"/\xff\xfe",
        ] {
            let mut s = Vec::new();
            push_escaped_debug(&mut s, target);
            let expected = String::from_utf8_lossy(target).escape_debug().to_string();
            assert_eq!(String::from_utf8(s).unwrap(), expected);
        }
    }

    #[test]
    fn text_lines_end_with_the_trace_id() {
        let mut s = Vec::new();
        text_line(&mut s, &UtcClock::default(), Duration::ZERO, &record());
        let s = String::from_utf8(s).unwrap();
        assert!(
            s.ends_with(
                " 200 532 0.217 echo 127.0.0.1:9001 r1 1 0af7651916cd43dd8448eb211c80319c\n"
            ),
            "{s}"
        );
    }
}
