//! When requests leave and how they are timed, whatever carries them: a `Lane` carries
//! one request at a time — an HTTP/1.1 connection (`http1.rs`) or one stream slot of
//! an HTTP/2 connection (`http2.rs`) — and `drive` sends on it until the window ends,
//! in closed loop (the next request when the last answer arrived) or in open loop (at
//! fixed intended times, coordinated omission corrected: `schedule.rs`).
//!
//! A run has `connections × streams` lanes. Lane `j` of `L` sends the requests whose
//! sequence numbers are `j, j + L, j + 2L, …` (the sequence number picks the URL and
//! the header-file line), so round robin is exact over the run whatever the protocol.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::options::Plan;
use super::schedule::{self, Schedule, EARLY};
use super::tally::{ErrorKind, Handshake, Tally};

/// After a failed connect or TLS handshake in closed loop, wait this long before the
/// next attempt.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// The measured part of a run, shared by all lanes of all workers.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When the schedule (and the warm-up) begins.
    pub start: Instant,
    /// Requests sent (open loop: meant to be sent) from here on are measured.
    pub measure_from: Instant,
    /// No new request starts from here on (in open loop: none meant for a later
    /// time; those held back by a stall get `--timeout` more to leave).
    pub end: Instant,
}

impl Window {
    fn measures(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }
}

/// A finished exchange: the final (non-1xx) status of a whole response.
pub struct Answer {
    pub status: u16,
}

/// Something that carries one request at a time.
pub trait Lane {
    /// Sends request number `sequence` and reads its whole response, by `deadline`
    /// (else `ErrorKind::Timeout`), opening a connection first if needed.
    async fn exchange(&mut self, sequence: u64, deadline: Instant) -> Result<Answer, ErrorKind>;

    /// The TLS handshake of the connection the last exchange opened, if it opened one.
    fn take_opened(&mut self) -> Option<Handshake>;
}

/// Sends on `lane`, lane number `index` (global) of `plan.lanes()`, until the window
/// ends, recording measured requests in `tally`.
pub async fn drive<L: Lane>(
    lane: &mut L,
    plan: &Plan,
    index: u64,
    window: Window,
    tally: &RefCell<Tally>,
) {
    match plan.rate {
        Some(rate) => {
            let schedule = Schedule::new(window.start, index, plan.lanes(), rate);
            open_loop(lane, plan, schedule, window, tally).await
        }
        None => closed_loop(lane, plan, index, window, tally).await,
    }
}

/// The wrk model: the next request leaves when the last answer arrived.
async fn closed_loop<L: Lane>(
    lane: &mut L,
    plan: &Plan,
    first: u64,
    window: Window,
    tally: &RefCell<Tally>,
) {
    let mut sequence = first;
    sleep_until(window.start).await;
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            return;
        }
        let result = lane.exchange(sequence, sent + plan.timeout).await;
        let done = Instant::now();
        let opened = lane.take_opened();
        if window.measures(sent) {
            record(tally, &result, done - sent, opened);
        }
        if matches!(result, Err(ErrorKind::Connect | ErrorKind::Tls)) {
            monoio::time::sleep(CONNECT_BACKOFF).await;
        }
        sequence += plan.lanes();
    }
}

/// The wrk2 model: request k leaves at its intended time, or as soon as the lane is
/// free if that time has passed, and is timed from the intended time.
///
/// Requests meant for the window that are still held back when it ends (behind a
/// stall) are sent for up to `--timeout` more: cutting them off would drop exactly the
/// slow tail the open loop exists to see. What is left after that is counted as never
/// sent.
async fn open_loop<L: Lane>(
    lane: &mut L,
    plan: &Plan,
    mut schedule: Schedule,
    window: Window,
    tally: &RefCell<Tally>,
) {
    let give_up = window.end + plan.timeout;
    loop {
        let intended = schedule.intended();
        if intended >= window.end {
            return;
        }
        let ready = Instant::now();
        if ready >= give_up {
            // Stopped while behind: what was meant for the window never left.
            let unsent = schedule.remaining_before(window.end)
                - schedule.remaining_before(window.measure_from);
            tally.borrow_mut().unsent += unsent;
            return;
        }
        if ready + EARLY < intended {
            sleep_until(intended - EARLY).await;
        }
        let sent = Instant::now();
        let measured = window.measures(intended);
        if measured {
            let mut t = tally.borrow_mut();
            if ready > intended {
                t.sent_late_busy += 1;
            } else {
                t.record_send_lag(sent.saturating_duration_since(intended));
            }
        }
        let result = lane
            .exchange(schedule.sequence(), sent + plan.timeout)
            .await;
        let done = Instant::now();
        let opened = lane.take_opened();
        if measured {
            record(
                tally,
                &result,
                done - schedule::latency_start(intended, sent),
                opened,
            );
        }
        schedule.advance();
    }
}

fn record(
    tally: &RefCell<Tally>,
    result: &Result<Answer, ErrorKind>,
    latency: Duration,
    opened: Option<Handshake>,
) {
    let mut t = tally.borrow_mut();
    if let Some(handshake) = opened {
        t.record_handshake(handshake);
    }
    match result {
        Ok(answer) => t.record_response(answer.status, latency),
        Err(kind) => t.record_error(*kind),
    }
}

pub async fn sleep_until(t: Instant) {
    monoio::time::sleep_until(monoio::time::Instant::from_std(t)).await;
}
