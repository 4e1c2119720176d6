//! A thread's monoio runtime (workers, the health prober): io_uring where the
//! kernel gives us a ring, epoll otherwise. The ring can be refused at start even
//! where io_uring exists (ENOMEM when the kernel finds no contiguous pages for it,
//! EPERM under a seccomp profile, a locked-memory limit on older kernels): the
//! thread then runs on epoll rather than not at all, and says so.

use std::io;

use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

/// A started runtime, by driver.
pub enum Runtime {
    /// io_uring with a timer.
    Uring(monoio::Runtime<TimeDriver<IoUringDriver>>),
    /// epoll with a timer; with the reason when io_uring was tried and refused.
    Epoll(monoio::Runtime<TimeDriver<LegacyDriver>>, Option<io::Error>),
}

/// Builds a runtime with a submission queue of `entries` (io_uring), falling back to
/// epoll when io_uring is unavailable (monoio's detection, which also honours
/// `MONOIO_FORCE_LEGACY_DRIVER`) or its ring cannot be set up.
///
/// Errors: only when epoll cannot start either (descriptor or memory exhaustion).
pub fn build(entries: u32) -> io::Result<Runtime> {
    let refused = if monoio::utils::detect_uring() {
        match RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .with_entries(entries)
            .build()
        {
            Ok(rt) => return Ok(Runtime::Uring(rt)),
            Err(e) => Some(e),
        }
    } else {
        None
    };
    let rt = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()?;
    Ok(Runtime::Epoll(rt, refused))
}
