//! What a worker tells the control thread about itself, beside its counters:
//! which configuration version it serves, that it is alive (its tick), the
//! listening sockets it holds, and why its last install failed in part. Written by
//! the worker on its tick, read by the control thread; never on the request path.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// One worker's status, shared with the control thread.
#[derive(Default)]
pub struct WorkerStatus {
    installed: AtomicU64,
    ticks: AtomicU64,
    /// Each listening socket the worker accepts on: its address, the worker's
    /// descriptor number, and a duplicate held here.
    listening: Mutex<Vec<(SocketAddr, RawFd, OwnedFd)>>,
    install_error: Mutex<Option<String>>,
    /// A version whose install panicked (the worker serves on what it had), and why.
    failed: Mutex<Option<(u64, String)>>,
}

impl WorkerStatus {
    /// The version of the generation new connections on the worker pin.
    pub fn installed(&self) -> u64 {
        self.installed.load(Ordering::Acquire)
    }

    /// The worker now serves `version`; `error` says what part of it failed to
    /// install (a listener that could not be bound, a TLS context), if any.
    pub fn set_installed(&self, version: u64, error: Option<String>) {
        *lock(&self.install_error) = error;
        self.installed.store(version, Ordering::Release);
    }

    /// Installing `version` panicked: the worker serves on the version it had.
    pub fn set_failed(&self, version: u64, why: String) {
        *lock(&self.failed) = Some((version, why));
    }

    /// Why installing `version` panicked, if it did.
    pub fn failed(&self, version: u64) -> Option<String> {
        lock(&self.failed)
            .as_ref()
            .filter(|(v, _)| *v == version)
            .map(|(_, why)| why.clone())
    }

    /// What failed when the current version was installed.
    pub fn install_error(&self) -> Option<String> {
        lock(&self.install_error).clone()
    }

    /// Ticks so far: a worker whose count stops moving is stuck.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    pub fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    /// The worker accepts on `socket` at `addr`. A duplicate of the descriptor is
    /// kept here (it is what [`shut_down_listeners`](Self::shut_down_listeners)
    /// acts on, and a duplicate's number can never belong to another socket).
    pub fn listening(&self, addr: SocketAddr, socket: &impl AsFd) -> std::io::Result<()> {
        let dup = socket.as_fd().try_clone_to_owned()?;
        let fd = socket.as_fd().as_raw_fd();
        lock(&self.listening).push((addr, fd, dup));
        Ok(())
    }

    /// The worker closes its socket with descriptor `fd`: the duplicate goes too
    /// (a socket listens until its last descriptor is closed).
    pub fn closing(&self, fd: RawFd) {
        lock(&self.listening).retain(|(_, f, _)| *f != fd);
    }

    /// The listening sockets of a worker that died: its runtime may be gone
    /// without closing them, and the kernel would go on queueing connections on
    /// them. Each is shut down, which takes it out of its address's `SO_REUSEPORT`
    /// group (new connections go to the other workers' sockets) and resets what
    /// waits in its queue, and its duplicate closed. Returns the addresses.
    pub fn shut_down_listeners(&self) -> Vec<SocketAddr> {
        let mut listening = lock(&self.listening);
        for (_, _, dup) in listening.iter() {
            // SAFETY: shutdown(2) on a descriptor owned here; no memory is touched.
            unsafe {
                libc::shutdown(dup.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
        listening.drain(..).map(|(a, _, _)| a).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned one is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
