//! The span exporter: one side thread that takes the workers' batches of finished
//! spans from a bounded queue and POSTs them to the collector as OTLP/HTTP
//! protobuf, `export_batch_spans` at a time or every `export_interval_ms`. A POST
//! that fails (no connection, a timeout, a non-2xx answer) loses its spans, counted
//! (`trace_spans_failed`, `trace_export_failures`); nothing is retried, so a
//! collector that is down costs a connect attempt per interval and a counter.
//! While a POST is in flight the queue fills, and workers drop what does not fit
//! (`trace_spans_dropped`): no worker ever waits for the collector. At shutdown a
//! stop message, queued after the workers' last batches, makes it export what it
//! holds within the stop deadline and end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::observe::handoff::{self, Receiver, RecvTimeoutError, Sender};

use crate::observe::{Counters, OtlpEndpoint, PublishedCounters, TracingSettings};

use super::buffer::{SpanBatch, SpanBuffer, ToExporter};
use super::collector::CollectorClient;
use super::otlp;

/// The running exporter thread.
pub struct SpanExporter {
    tx: Sender<ToExporter>,
    batch: usize,
    handle: JoinHandle<()>,
    /// The exporter's counters (`trace_spans_exported`, `trace_spans_failed`,
    /// `trace_exports`, `trace_export_failures`), summed into `/stats` and `/metrics`.
    pub counters: Arc<PublishedCounters>,
}

impl SpanExporter {
    /// Starts the exporter for `settings`, or returns `None` when there is no
    /// `otlp_endpoint`.
    pub fn start(settings: &TracingSettings) -> std::io::Result<Option<SpanExporter>> {
        let Some(endpoint) = settings.otlp.clone() else {
            return Ok(None);
        };
        let batch = settings.batch_spans.max(1);
        let batches = settings.queue_spans.div_ceil(batch).max(1);
        let (tx, rx) = handoff::bounded(batches);
        let counters = Arc::new(PublishedCounters::default());
        let published = counters.clone();
        let run = Run {
            rx,
            client: CollectorClient::new(endpoint.clone()),
            endpoint,
            service_name: settings.service_name.clone(),
            batch,
            interval: settings.export_interval,
            timeout: settings.export_timeout,
            counters: Counters::default(),
            published,
        };
        let handle = std::thread::Builder::new()
            .name("portico-spans".into())
            .spawn(move || run.run())?;
        Ok(Some(SpanExporter {
            tx,
            batch,
            handle,
            counters,
        }))
    }

    /// A span buffer for one worker.
    pub fn buffer(&self) -> SpanBuffer {
        SpanBuffer::new(self.tx.clone(), self.batch)
    }

    /// After the workers flushed their buffers: asks the exporter to export what
    /// it holds and end, all by `deadline` (each POST's timeout is cut to it; once
    /// one fails the rest is dropped, counted). Does not wait past `deadline` for
    /// room in a full queue. Returns the thread to wait for.
    pub fn stop(self, deadline: Instant) -> JoinHandle<()> {
        let _ = self.tx.send_deadline(ToExporter::Stop(deadline), deadline);
        self.handle
    }
}

/// The exporter thread's state.
struct Run {
    rx: Receiver<ToExporter>,
    client: CollectorClient,
    endpoint: OtlpEndpoint,
    service_name: String,
    batch: usize,
    interval: Duration,
    timeout: Duration,
    counters: Counters,
    published: Arc<PublishedCounters>,
}

impl Run {
    fn run(mut self) {
        // Batches as the workers handed them over, and how many spans they hold.
        let mut pending: VecDeque<SpanBatch> = VecDeque::new();
        let mut held = 0usize;
        // When the oldest pending span arrived: it waits at most `interval`.
        let mut oldest: Option<Instant> = None;
        let mut reported_down = false;
        // Set by the stop message: export what is left by then.
        let mut stop_by: Option<Instant> = None;
        loop {
            let wait = oldest.map_or(self.interval, |t| {
                (t + self.interval).saturating_duration_since(Instant::now())
            });
            let ended = match self.rx.recv_timeout(wait) {
                Ok(ToExporter::Spans(batch)) => {
                    oldest.get_or_insert_with(Instant::now);
                    held += batch.spans;
                    pending.push_back(batch);
                    false
                }
                Ok(ToExporter::Stop(deadline)) => {
                    stop_by = Some(deadline);
                    true
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let due = oldest.is_some_and(|t| t.elapsed() >= self.interval);
            while held >= self.batch || (held > 0 && (due || ended)) {
                // Whole worker batches, up to `batch` spans (at least one batch).
                let mut take = 0;
                let mut spans = 0;
                for b in &pending {
                    if take > 0 && spans + b.spans > self.batch {
                        break;
                    }
                    take += 1;
                    spans += b.spans;
                }
                let export: Vec<SpanBatch> = pending.drain(..take).collect();
                held -= spans;
                let timeout = match stop_by {
                    Some(by) => self
                        .timeout
                        .min(by.saturating_duration_since(Instant::now())),
                    None => self.timeout,
                };
                let ok = !timeout.is_zero() && self.export(&export, spans, timeout);
                if !ok && timeout.is_zero() {
                    let lost = &self.counters.trace_spans_failed;
                    lost.set(lost.get() + spans as u64);
                }
                if ok == reported_down {
                    reported_down = !ok;
                    if ok {
                        tracing::info!(
                            "span export to {}:{} works again",
                            self.endpoint.host,
                            self.endpoint.port
                        );
                    }
                }
                if ended && !ok {
                    // Stopping, and the collector does not answer: what is left is
                    // lost now rather than holding up the process's exit.
                    let lost = &self.counters.trace_spans_failed;
                    lost.set(lost.get() + held as u64);
                    pending.clear();
                    held = 0;
                }
            }
            if held == 0 {
                oldest = None;
            }
            self.counters.publish(&self.published);
            if ended {
                return;
            }
        }
    }

    /// POSTs the `spans` spans of `batches` as one export request within `timeout`;
    /// false when they were lost.
    fn export(&mut self, batches: &[SpanBatch], spans: usize, timeout: Duration) -> bool {
        let head = otlp::encode_head(batches, &self.service_name);
        let mut body: Vec<&[u8]> = Vec::with_capacity(1 + batches.len());
        body.push(&head);
        body.extend(batches.iter().map(|b| b.bytes.as_slice()));
        let n = spans as u64;
        let bump = |c: &std::cell::Cell<u64>, by: u64| c.set(c.get() + by);
        match self.client.post(otlp::CONTENT_TYPE, &body, timeout) {
            Ok(answer) if (200..300).contains(&answer.status) => {
                let rejected = otlp::rejected_spans(&answer.body).min(n);
                bump(&self.counters.trace_exports, 1);
                bump(&self.counters.trace_spans_exported, n - rejected);
                bump(&self.counters.trace_spans_failed, rejected);
                true
            }
            failed => {
                bump(&self.counters.trace_export_failures, 1);
                bump(&self.counters.trace_spans_failed, n);
                let why = match failed {
                    Ok(answer) => format!("status {}", answer.status),
                    Err(e) => e,
                };
                tracing::debug!("span export failed ({n} spans lost): {why}");
                false
            }
        }
    }
}
