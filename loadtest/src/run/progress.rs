//! The live progress line of `portico-load run`: once a second of the measured
//! window, on stdout when it is a terminal (never in a pipe or a file, and not
//! with `--quiet`), rewritten in place:
//!
//! `   3s    12345 req/s  p50 0.512 ms  p99 2.104 ms  errors: timeout 3, reset 1`
//!
//! elapsed seconds, the last second's responses, p50 and p99 of everything
//! measured so far, and errors so far by kind. The line is erased before the
//! report is printed.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::loops::Window;
use super::report;
use super::tally::{new_histogram, ErrorKind};
use super::worker::Progress;

/// Whether the progress line is shown: stdout is a terminal and `--quiet` is off.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stdout().is_terminal()
}

/// Prints the line each time every worker has reported its second, until the
/// workers are done (their senders dropped) or the window is long over.
pub fn show(rx: &Receiver<Progress>, threads: u64, window: Window) {
    let mut overall = new_histogram();
    let mut errors = [0u64; ErrorKind::ALL.len()];
    let mut second = 0u64;
    let (mut messages, mut responses) = (0u64, 0u64);
    let mut out = std::io::stdout();
    while let Ok(p) = rx
        .recv_timeout(window.end.saturating_duration_since(Instant::now()) + Duration::from_secs(2))
    {
        // Same fixed bounds: adding cannot fail.
        let _ = overall.add(&p.latency);
        for (total, n) in errors.iter_mut().zip(p.errors) {
            *total += n;
        }
        messages += 1;
        responses += p.responses;
        if messages == threads {
            second += 1;
            let _ = write!(
                out,
                "\r\x1b[K{}",
                line(second, responses, &overall, &errors)
            );
            let _ = out.flush();
            (messages, responses) = (0, 0);
        }
    }
    if second > 0 {
        let _ = write!(out, "\r\x1b[K");
        let _ = out.flush();
    }
}

/// One progress line (without the terminal's erase codes).
fn line(
    second: u64,
    per_second: u64,
    latency: &hdrhistogram::Histogram<u64>,
    errors: &[u64; ErrorKind::ALL.len()],
) -> String {
    let at = |q: f64| {
        if latency.is_empty() {
            "n/a".to_string()
        } else {
            report::ms(latency.value_at_quantile(q))
        }
    };
    let kinds: Vec<String> = ErrorKind::ALL
        .iter()
        .zip(errors)
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{} {n}", k.name()))
        .collect();
    format!(
        "{second:>4}s  {per_second:>8} req/s  p50 {}  p99 {}  errors: {}",
        at(0.5),
        at(0.99),
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_rate_percentiles_and_errors_by_kind() {
        let mut h = new_histogram();
        for us in [100, 200, 300, 400, 10_000] {
            h.record(us).unwrap();
        }
        let mut errors = [0; ErrorKind::ALL.len()];
        errors[ErrorKind::Timeout as usize] = 3;
        errors[ErrorKind::Reset as usize] = 1;
        let l = line(3, 12345, &h, &errors);
        assert_eq!(
            l,
            "   3s     12345 req/s  p50 0.300 ms  p99 10.007 ms  errors: timeout 3, reset 1"
        );
        let quiet = line(1, 0, &new_histogram(), &[0; ErrorKind::ALL.len()]);
        assert!(quiet.ends_with("p50 n/a  p99 n/a  errors: none"), "{quiet}");
    }
}
