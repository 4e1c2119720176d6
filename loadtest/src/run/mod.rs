//! `portico-load run`: the load generator.
//!
//! Thread-per-core like the gateway: `--threads` pinned workers (`worker.rs`), each a
//! monoio runtime driving its share of the `-c` keep-alive connections — HTTP/1.1
//! (`http1.rs`) or, with `--http2`, HTTP/2 with `--streams` requests in flight on each
//! (`http2.rs`); opened by `dial.rs`, over TLS for https URLs (`tls.rs`). Each
//! request-carrying lane runs in closed loop or, with `--rate`, open loop at fixed
//! intended times (`loops.rs`, `schedule.rs`). Each worker counts into its own `Tally`
//! (`tally.rs`); the main thread prints a live line each second on a TTY, merges the
//! tallies at the end and writes the report, JSON and `.hgrm` (`report.rs`,
//! `crate::hgrm`).
//!
//! The run, in order:
//! 1. check the options, read the files, resolve the URLs, connect once (and, for
//!    https, make one handshake; for HTTP/2, exchange one PING) (`options.rs`);
//! 2. start the workers on one shared clock: warm-up, then the measured window;
//! 3. each second on a TTY, print the rate and p99 so far;
//! 4. merge, report, write the files.

use std::fs;
use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod dial;
mod http1;
mod http2;
mod loops;
mod options;
mod report;
mod requests;
mod response;
mod schedule;
mod tally;
mod target;
mod tls;
mod worker;

pub use options::RunArgs;

use crate::Failure;
use loops::Window;
use options::Plan;
use report::Report;
use tally::{new_histogram, Tally};

/// Workers start this long after the plan is ready, so that all of them are running
/// when the schedule begins.
const START_DELAY: Duration = Duration::from_millis(50);

pub fn run(args: RunArgs) -> Result<(), Failure> {
    let plan = Arc::new(Plan::from_args(args).map_err(Failure::BadInput)?);

    let start = Instant::now() + START_DELAY;
    let measure_from = start + plan.warmup;
    let window = Window {
        start,
        measure_from,
        end: measure_from + plan.duration,
    };
    let live = std::io::stderr().is_terminal();
    let (progress_tx, progress_rx) = mpsc::channel();
    let mut workers = Vec::new();
    for index in 0..plan.threads {
        let sender = live.then(|| progress_tx.clone());
        workers.push(
            worker::spawn(index, Arc::clone(&plan), window, sender).map_err(Failure::Failed)?,
        );
    }
    drop(progress_tx);
    if live {
        show_progress(&progress_rx, plan.threads, window);
    }

    let mut tally = Tally::default();
    for handle in workers {
        let worker_tally = handle
            .join()
            .map_err(|_| Failure::Failed("a worker thread panicked".into()))?
            .map_err(Failure::Failed)?;
        tally.merge(worker_tally);
    }

    let report = Report::new(&plan, &tally);
    print!("{}", report.text());
    if let Some(path) = &plan.json {
        let text = serde_json::to_string_pretty(&report.json())
            .map_err(|e| Failure::Failed(format!("cannot encode JSON: {e}")))?;
        fs::write(path, text + "\n")
            .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    if let Some(path) = &plan.hgrm {
        fs::write(path, crate::hgrm::write(&tally.latency, 1000.0))
            .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// One line on stderr each second of the measured window: elapsed time, the last
/// second's rate, p99 so far, errors so far. Each worker sends one message a second.
fn show_progress(rx: &mpsc::Receiver<worker::Progress>, threads: u64, window: Window) {
    let mut overall = new_histogram();
    let mut errors = 0u64;
    let mut second = 0u64;
    let mut this_second = (0u64, 0u64); // (messages, responses)
    let mut stderr = std::io::stderr();
    while let Ok(p) = rx
        .recv_timeout(window.end.saturating_duration_since(Instant::now()) + Duration::from_secs(2))
    {
        let _ = overall.add(&p.latency);
        errors += p.errors;
        this_second.0 += 1;
        this_second.1 += p.responses;
        if this_second.0 == threads {
            second += 1;
            let p99 = if overall.is_empty() {
                "n/a".to_string()
            } else {
                report::ms(overall.value_at_quantile(0.99))
            };
            let _ = write!(
                stderr,
                "\r\x1b[K  {second:>4}s  {:>10} req/s  p99 so far {p99}  errors {errors}",
                this_second.1
            );
            let _ = stderr.flush();
            this_second = (0, 0);
        }
    }
    let _ = writeln!(stderr);
}
