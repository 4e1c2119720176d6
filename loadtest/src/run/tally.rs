//! What a run counts: latencies (HdrHistogram, µs), status codes, errors by kind, TLS
//! handshakes, and how well the open-loop schedule was kept. One `Tally` per worker thread, written
//! without locks, merged at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, three significant digits, from 1 µs to an
/// hour (longer values are recorded as an hour). Fixed bounds: recording never resizes
/// and histograms of different workers always add up.
pub const SIGFIG: u8 = 3;
const HIGHEST_US: u64 = 3_600_000_000;

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connection could not be opened (refused, unreachable, timed out).
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The connection was reset or closed before a complete response (over HTTP/2
    /// also: the server reset the stream, or its GOAWAY dropped the request).
    Reset,
    /// The response was not valid HTTP: an HTTP/1.x response that does not parse, or
    /// an HTTP/2 protocol error found in the server's frames.
    Parse,
    /// The TLS handshake failed: a certificate not accepted, no common version or
    /// cipher, an alert, or the connection closed during it.
    Tls,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Parse,
        ErrorKind::Tls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Parse => "parse",
            ErrorKind::Tls => "tls",
        }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds (1 ≤ 2 × 1, sigfig ≤ 5): this cannot fail.
    Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG)
        .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"))
}

/// One completed TLS handshake.
#[derive(Debug, Clone, Copy)]
pub struct Handshake {
    /// From the TCP connection being open to the handshake being done.
    pub took: Duration,
    pub resumed: bool,
    pub tls13: bool,
}

/// The TLS handshakes of measured requests (those that opened their connection).
#[derive(Debug, Clone)]
pub struct Handshakes {
    /// Handshake times, µs; its count is the number of handshakes.
    pub latency: Histogram<u64>,
    pub resumed: u64,
    pub tls13: u64,
}

impl Default for Handshakes {
    fn default() -> Self {
        Handshakes {
            latency: new_histogram(),
            resumed: 0,
            tls13: 0,
        }
    }
}

impl Handshakes {
    pub fn count(&self) -> u64 {
        self.latency.len()
    }

    fn record(&mut self, h: Handshake) {
        self.latency.saturating_record(micros(h.took));
        self.resumed += u64::from(h.resumed);
        self.tls13 += u64::from(h.tls13);
    }

    fn merge(&mut self, other: &Handshakes) {
        // Same fixed bounds: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.resumed += other.resumed;
        self.tls13 += other.tls13;
    }
}

/// Everything one worker (or, merged, the whole run) measured.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Response latencies of measured requests, µs.
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    /// Indexed like `ErrorKind::ALL`.
    pub errors: [u64; 5],
    pub handshakes: Handshakes,
    /// Open loop: requests whose intended time came while their connection was still
    /// busy with the previous one (the wait is in their latency).
    pub sent_late_busy: u64,
    /// Open loop: how late idle connections sent (the tool's own lag), µs.
    pub send_lag: Histogram<u64>,
    /// Open loop: measured requests that never left because the run ended first.
    pub unsent: u64,
    /// CPU time of each worker thread over the measured window.
    pub cpu: Vec<Duration>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency: new_histogram(),
            statuses: BTreeMap::new(),
            errors: [0; 5],
            handshakes: Handshakes::default(),
            sent_late_busy: 0,
            send_lag: new_histogram(),
            unsent: 0,
            cpu: Vec::new(),
        }
    }
}

impl Tally {
    pub fn record_response(&mut self, status: u16, latency: Duration) {
        self.latency.saturating_record(micros(latency));
        *self.statuses.entry(status).or_insert(0) += 1;
    }

    pub fn record_error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    pub fn record_handshake(&mut self, h: Handshake) {
        self.handshakes.record(h);
    }

    pub fn record_send_lag(&mut self, lag: Duration) {
        self.send_lag.saturating_record(micros(lag));
    }

    /// Responses received (any status).
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn error_count(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize]
    }

    pub fn merge(&mut self, other: Tally) {
        // Both have the same fixed bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.send_lag.add(&other.send_lag);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_insert(0) += n;
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.handshakes.merge(&other.handshakes);
        self.sent_late_busy += other.sent_late_busy;
        self.unsent += other.unsent;
        self.cpu.extend(other.cpu);
    }
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_workers() {
        let mut a = Tally::default();
        a.record_response(200, Duration::from_micros(100));
        a.record_error(ErrorKind::Reset);
        let mut b = Tally::default();
        b.record_response(200, Duration::from_micros(300));
        b.record_response(429, Duration::from_micros(50));
        b.record_error(ErrorKind::Reset);
        b.cpu.push(Duration::from_millis(5));
        a.merge(b);
        assert_eq!(a.responses(), 3);
        assert_eq!(a.statuses.get(&200), Some(&2));
        assert_eq!(a.error_count(ErrorKind::Reset), 2);
        assert_eq!(a.latency.max(), 300);
        assert_eq!(a.cpu.len(), 1);
        let mut c = Tally::default();
        c.record_handshake(Handshake {
            took: Duration::from_micros(800),
            resumed: true,
            tls13: true,
        });
        c.record_error(ErrorKind::Tls);
        a.merge(c);
        assert_eq!(a.handshakes.count(), 1);
        assert_eq!((a.handshakes.resumed, a.handshakes.tls13), (1, 1));
        assert_eq!(a.error_count(ErrorKind::Tls), 1);
        // Long latencies are kept, not clamped to a small default range.
        a.record_response(200, Duration::from_millis(300));
        assert!(a.latency.max() >= 300_000);
    }
}
