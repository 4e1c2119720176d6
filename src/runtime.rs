//! A thread's monoio runtime (workers, the health prober), on the driver
//! `[server.runtime] driver` asks for. With `"auto"`, io_uring where the kernel gives
//! us a ring, epoll otherwise: the ring can be refused at start even where io_uring
//! exists (ENOMEM when the kernel finds no contiguous pages for it, EPERM under a
//! seccomp profile or `kernel.io_uring_disabled`, a locked-memory limit on kernels
//! before 5.12), and the thread then runs on epoll rather than not at all, and says so.

use std::io;

use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use crate::config::{Driver, RuntimeSettings};

/// A started runtime, by driver.
pub enum Runtime {
    /// io_uring with a timer.
    Uring(monoio::Runtime<TimeDriver<IoUringDriver>>),
    /// epoll with a timer; with the reason when io_uring was tried and refused.
    Epoll(monoio::Runtime<TimeDriver<LegacyDriver>>, Option<io::Error>),
}

/// Builds a runtime per `settings`: `ring_entries` submission queue entries and, with
/// `sqpoll_idle`, a kernel submission-polling thread (io_uring_setup(2),
/// IORING_SETUP_SQPOLL). `Driver::Auto` falls back to epoll when io_uring is
/// unavailable (monoio's detection, which also honours `MONOIO_FORCE_LEGACY_DRIVER`)
/// or its ring cannot be set up.
///
/// Errors: `Driver::IoUring` when the ring is refused (the kernel's error); epoll
/// failing too (descriptor or memory exhaustion).
pub fn build(settings: &RuntimeSettings) -> io::Result<Runtime> {
    let refused = match settings.driver {
        Driver::Epoll => None,
        Driver::IoUring => return uring(settings).map(Runtime::Uring),
        Driver::Auto if !monoio::utils::detect_uring() => None,
        Driver::Auto => match uring(settings) {
            Ok(rt) => return Ok(Runtime::Uring(rt)),
            Err(e) => Some(e),
        },
    };
    let rt = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()?;
    Ok(Runtime::Epoll(rt, refused))
}

/// The runtime of a side thread (the health prober): a small ring, no SQPOLL.
pub fn build_small() -> io::Result<Runtime> {
    build(&RuntimeSettings {
        ring_entries: 256,
        ..RuntimeSettings::default()
    })
}

fn uring(settings: &RuntimeSettings) -> io::Result<monoio::Runtime<TimeDriver<IoUringDriver>>> {
    let mut urb = io_uring::IoUring::builder();
    if let Some(idle) = settings.sqpoll_idle {
        urb.setup_sqpoll(u32::try_from(idle.as_millis()).unwrap_or(u32::MAX));
    }
    RuntimeBuilder::<IoUringDriver>::new()
        .uring_builder(urb)
        .enable_timer()
        .with_entries(settings.ring_entries)
        .build()
}
