//! A worker thread: pinned, one monoio runtime (io_uring, epoll fallback), driving its
//! share of the connections (HTTP/1.1: `http1.rs`, HTTP/2: `http2.rs`). It shares nothing with the other workers while the run
//! lasts: its `Tally` is its own, sent back whole when the run ends, and live progress
//! goes to the main thread as one small message a second.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use monoio::{FusionRuntime, RuntimeBuilder};

use super::loops::Window;
use super::options::{Plan, Protocol};
use super::requests::{Http2Requests, RequestSet};
use super::tally::{new_histogram, Tally};
use super::{http1, http2};

/// One second of one worker's measured responses, for the live progress line.
pub struct Progress {
    pub responses: u64,
    /// Errors by kind (indexed like `ErrorKind::ALL`).
    pub errors: [u64; 5],
    pub latency: Histogram<u64>,
}

/// This thread's copy of the run's requests, shared by its connections.
enum Requests {
    Http1(Rc<RequestSet>),
    Http2(Rc<Http2Requests>),
}

/// Starts worker `index`; it returns its tally, or why it could not run.
pub fn spawn(
    index: u64,
    plan: Arc<Plan>,
    window: Window,
    progress: Option<Sender<Progress>>,
) -> Result<JoinHandle<Result<Tally, String>>, String> {
    thread::Builder::new()
        .name(format!("load-{index}"))
        .spawn(move || run_worker(index, &plan, window, progress))
        .map_err(|e| format!("cannot start worker thread {index}: {e}"))
}

fn run_worker(
    index: u64,
    plan: &Plan,
    window: Window,
    progress: Option<Sender<Progress>>,
) -> Result<Tally, String> {
    if let Some(cpus) = &plan.cpus {
        let cpu = cpus.for_worker(index as usize);
        if !crate::cpus::pin_current_thread(cpu) {
            return Err(format!("cannot pin worker {index} to cpu {cpu}"));
        }
    }
    let mut runtime = RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("worker {index}: cannot build the runtime: {e}"))?;
    if index == 0 && matches!(runtime, FusionRuntime::Legacy(_)) {
        eprintln!("portico-load: io_uring unavailable, using epoll");
    }
    // The connections hold an `Rc<Plan>`: a private copy (TLS session cache
    // included), so nothing is shared across threads while requests are in flight.
    let local = Rc::new(plan.for_worker());
    let connections = plan.connections_of(index);
    runtime.block_on(async move {
        let tally = Rc::new(RefCell::new(Tally::default()));
        let clock = monoio::spawn(thread_cpu_over(window));
        if let Some(sender) = progress {
            monoio::spawn(report_progress(Rc::clone(&tally), window, sender));
        }
        let requests = match &local.protocol {
            Protocol::Http1(requests) => Requests::Http1(Rc::new(requests.clone())),
            Protocol::Http2 { requests, .. } => Requests::Http2(Rc::new(requests.clone())),
        };
        let tasks: Vec<_> = connections
            .map(|i| {
                let (plan, tally) = (Rc::clone(&local), Rc::clone(&tally));
                match &requests {
                    Requests::Http1(r) => {
                        monoio::spawn(http1::drive(plan, Rc::clone(r), window, i, tally))
                    }
                    Requests::Http2(r) => {
                        monoio::spawn(http2::drive(plan, Rc::clone(r), window, i, tally))
                    }
                }
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let cpu = clock.await;
        let mut tally = tally.replace(Tally::default());
        tally.cpu.push(cpu);
        Ok(tally)
    })
}

/// CPU time this thread uses over the measured window.
async fn thread_cpu_over(window: Window) -> Duration {
    sleep_until(window.measure_from).await;
    let before = thread_cpu_time();
    sleep_until(window.end).await;
    thread_cpu_time().saturating_sub(before)
}

/// Each second of the measured window, sends what the connections recorded since the
/// last report. The connections record every response in the tally; this task diffs
/// it (latency histogram included) against the previous second's copy.
async fn report_progress(tally: Rc<RefCell<Tally>>, window: Window, sender: Sender<Progress>) {
    sleep_until(window.measure_from).await;
    let mut seen = Tally::default();
    let mut next = window.measure_from;
    while next < window.end {
        next += Duration::from_secs(1);
        sleep_until(next.min(window.end)).await;
        let now = tally.borrow().clone();
        let mut latency = now.latency.clone();
        if latency.subtract(&seen.latency).is_err() {
            latency = new_histogram();
        }
        let message = Progress {
            responses: now.responses() - seen.responses(),
            errors: std::array::from_fn(|i| now.errors[i] - seen.errors[i]),
            latency,
        };
        if sender.send(message).is_err() {
            return;
        }
        seen = now;
    }
}

async fn sleep_until(t: Instant) {
    monoio::time::sleep_until(monoio::time::Instant::from_std(t)).await;
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
