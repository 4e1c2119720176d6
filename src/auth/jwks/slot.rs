//! The hand-over point between a provider's key source and the workers: the
//! current key set behind a generation number. The fetcher publishes; each worker
//! compares the generation on its tick and takes the new set, so nothing on the
//! request path touches it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::auth::keys::KeySet;

pub struct KeySetSlot {
    generation: AtomicU64,
    current: Mutex<Arc<KeySet>>,
    ready: AtomicBool,
    refetch_tx: Sender<()>,
    refetch_rx: Receiver<()>,
}

impl KeySetSlot {
    /// A slot holding `keys`; `ready` = false until the first remote fetch ends.
    pub fn new(keys: Arc<KeySet>, ready: bool) -> Self {
        // One pending request is enough: more would ask for the same refetch.
        let (refetch_tx, refetch_rx) = bounded(1);
        KeySetSlot {
            generation: AtomicU64::new(1),
            current: Mutex::new(keys),
            ready: AtomicBool::new(ready),
            refetch_tx,
            refetch_rx,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current set and its generation.
    pub fn current(&self) -> (u64, Arc<KeySet>) {
        let guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (self.generation(), guard.clone())
    }

    /// Replaces the key set; workers pick it up on their next tick.
    pub fn publish(&self, keys: Arc<KeySet>) {
        let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *guard = keys;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Asks the fetcher for an early refetch (a token named an unknown `kid`).
    /// Never blocks; a request already pending absorbs this one.
    pub fn ask_refetch(&self) {
        let _ = self.refetch_tx.try_send(());
    }

    /// The fetcher's end of the refetch requests.
    pub fn refetch_requests(&self) -> Receiver<()> {
        self.refetch_rx.clone()
    }
}
