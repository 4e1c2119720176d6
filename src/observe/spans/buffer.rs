//! A worker's finished spans, already encoded (`record.rs`), handed to the exporter
//! thread in batches (before a request's spans would take the batch past
//! `export_batch_spans`, and on every tick) over a bounded queue: a full queue drops
//! the batch and counts its spans, so a slow or absent collector never stalls a
//! worker.

use std::cell::RefCell;

use crate::observe::handoff::Sender;

use crate::observe::{Counters, TraceContext};

use super::record::{write_request_spans, RequestFacts, SpanLabels};

/// Bytes kept per span of a batch when its buffer is made (a server span is about
/// 330 bytes, a client span 300; longer ones grow the buffer).
const SPAN_BYTES: usize = 400;

/// What the exporter thread receives.
pub(super) enum ToExporter {
    Spans(SpanBatch),
    /// Export what is held by this deadline, then end.
    Stop(std::time::Instant),
}

/// Encoded spans: entries of OTLP `ScopeSpans.spans`, one after the other.
#[derive(Default)]
pub(super) struct SpanBatch {
    pub bytes: Vec<u8>,
    /// How many spans `bytes` holds.
    pub spans: usize,
}

/// A worker's buffer of finished spans.
pub struct SpanBuffer {
    pending: RefCell<SpanBatch>,
    tx: Sender<ToExporter>,
    /// Spans per hand-over (`export_batch_spans`); one request's spans are never
    /// split, so a batch holds more only when one request has more.
    batch: usize,
}

impl SpanBuffer {
    pub(super) fn new(tx: Sender<ToExporter>, batch: usize) -> Self {
        SpanBuffer {
            pending: RefCell::new(SpanBatch::default()),
            tx,
            batch: batch.max(1),
        }
    }

    /// Encodes the spans of one finished, sampled request (see
    /// [`write_request_spans`]), first handing on what is buffered when they would
    /// not fit in the batch.
    pub fn push_request(
        &self,
        trace: &TraceContext,
        facts: &RequestFacts<'_>,
        labels: &impl SpanLabels,
        counters: &Counters,
    ) {
        let coming = 1 + trace.tries.len();
        let held = self.pending.borrow().spans;
        if held > 0 && held + coming > self.batch {
            self.flush(counters);
        }
        let mut pending = self.pending.borrow_mut();
        if pending.bytes.capacity() == 0 {
            // A proxied request's two spans take about 630 bytes: room for a full
            // batch, so that it is not moved while it fills.
            pending.bytes.reserve(self.batch.min(4096) * SPAN_BYTES);
        }
        let SpanBatch { bytes, spans } = &mut *pending;
        *spans += write_request_spans(bytes, trace, facts, labels);
    }

    /// Hands the buffered spans to the exporter; when its queue is full they are
    /// dropped and counted (`trace_spans_dropped`).
    pub fn flush(&self, counters: &Counters) {
        let batch = std::mem::take(&mut *self.pending.borrow_mut());
        if batch.spans == 0 {
            return;
        }
        let n = batch.spans as u64;
        if self.tx.try_send(ToExporter::Spans(batch)).is_err() {
            let dropped = &counters.trace_spans_dropped;
            dropped.set(dropped.get() + n);
        }
    }
}
