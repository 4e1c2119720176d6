//! The access log: one line per request, buffered on the worker and written by a
//! side thread, so a slow disk or a blocked stdout never stalls a worker.
//!
//! Line format (space separated; the request line is quoted and escaped):
//! `time client "METHOD target HTTP/1.x" status bytes_sent duration_ms route upstream request_id attempts`
//! with `time` in RFC 3339 UTC with milliseconds and `attempts` the upstream tries
//! made (0 for the gateway's own answers), e.g.
//! `2026-11-28T02:45:14.123Z 127.0.0.1 "GET /echo/x HTTP/1.1" 200 532 0.217 echo 127.0.0.1:9001 cbd3… 1`

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

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
    pub status: u16,
    pub bytes_sent: u64,
    pub duration: Duration,
    pub route: &'a str,
    pub upstream: Option<SocketAddr>,
    pub request_id: &'a str,
    /// Upstream tries made (retries and the stale-connection replay included).
    pub attempts: u32,
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
    buf: RefCell<String>,
    tx: Sender<ToWriter>,
    /// Batches dropped because the writer was behind.
    dropped: Cell<u64>,
}

impl AccessLogBuffer {
    pub fn record(&self, r: &AccessRecord<'_>) {
        let mut buf = self.buf.borrow_mut();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let upstream = r.upstream.map(|u| u.to_string());
        write_utc(&mut buf, now);
        let _ = writeln!(
            buf,
            " {} \"{} {} {}\" {} {} {:.3} {} {} {} {}",
            r.client,
            String::from_utf8_lossy(r.method),
            String::from_utf8_lossy(r.target).escape_debug(),
            r.protocol,
            r.status,
            r.bytes_sent,
            r.duration.as_secs_f64() * 1000.0,
            if r.route.is_empty() { "-" } else { r.route },
            upstream.as_deref().unwrap_or("-"),
            r.request_id,
            r.attempts,
        );
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
    handle: std::thread::JoinHandle<()>,
}

impl AccessLogWriter {
    /// Starts the writer thread, or returns `None` when the log is off.
    pub fn start(target: &AccessLogTarget) -> std::io::Result<Option<AccessLogWriter>> {
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
        Ok(Some(AccessLogWriter { tx, handle }))
    }

    /// A buffer for one worker.
    pub fn buffer(&self) -> AccessLogBuffer {
        AccessLogBuffer {
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
}
