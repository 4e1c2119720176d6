//! A worker's finished spans, handed to the exporter thread in batches (when
//! `export_batch_spans` are buffered, and on every tick) over a bounded queue: a
//! full queue drops the batch and counts its spans, so a slow or absent
//! collector never stalls a worker.

use std::cell::RefCell;

use crossbeam_channel::Sender;

use crate::observe::Counters;

use super::record::SpanRecord;

/// What the exporter thread receives.
pub(super) enum ToExporter {
    /// A worker's finished spans.
    Spans(Vec<SpanRecord>),
    /// Export what is held, by this deadline at the latest, and end.
    Stop(std::time::Instant),
}

/// One worker's span buffer.
pub struct SpanBuffer {
    spans: RefCell<Vec<SpanRecord>>,
    tx: Sender<ToExporter>,
    batch: usize,
}

impl SpanBuffer {
    pub(super) fn new(tx: Sender<ToExporter>, batch: usize) -> Self {
        SpanBuffer {
            spans: RefCell::new(Vec::new()),
            tx,
            batch: batch.max(1),
        }
    }

    /// Adds the spans of one request; hands the buffer over once it holds a batch.
    pub fn push(&self, spans: Vec<SpanRecord>, counters: &Counters) {
        let full = {
            let mut buf = self.spans.borrow_mut();
            buf.extend(spans);
            buf.len() >= self.batch
        };
        if full {
            self.flush(counters);
        }
    }

    /// Hands what is buffered to the exporter; drops it (counted in
    /// `trace_spans_dropped`) when the queue is full or the exporter is gone.
    pub fn flush(&self, counters: &Counters) {
        let batch = std::mem::take(&mut *self.spans.borrow_mut());
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        if self.tx.try_send(ToExporter::Spans(batch)).is_err() {
            let dropped = &counters.trace_spans_dropped;
            dropped.set(dropped.get() + n);
        }
    }
}
