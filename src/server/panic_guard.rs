//! A panic while serving one connection ends that connection, not the worker.
//!
//! monoio does not catch panics in tasks: one escaping a connection's future
//! would unwind through the runtime and end the worker thread with every
//! connection on it. [`Guarded`] polls a connection's future inside
//! `catch_unwind`; when the future panics it is dropped (its sockets close, the
//! client sees the connection end), the panic is counted in `worker_panics` and
//! logged with its message, and the task ends normally.
//!
//! Unwind safety: the state a connection shares with others lives in `Cell`s and
//! `RefCell`s of its worker, and a `RefCell` borrowed when the panic happened is
//! released as the unwinding drops its guard, so the worker is left consistent
//! enough to go on (at worst a half-updated counter or bucket of one key).
//! A worker that dies anyway (a panic outside any connection) is restarted by the
//! control thread (`worker_set.rs`).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future that turns a panic of `inner` into `Err(message)`.
pub struct Guarded<F> {
    inner: Option<F>,
}

/// Wraps `inner` so that a panic while polling it is caught.
pub fn guard<F: Future>(inner: F) -> Guarded<F> {
    Guarded { inner: Some(inner) }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is never moved out while pinned: it is only polled in
        // place, or dropped in place (set to `None`).
        let this = unsafe { self.get_unchecked_mut() };
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err("polled after it ended".to_string()));
        };
        // SAFETY: as above; `this` is pinned, so is its field.
        let pinned = unsafe { Pin::new_unchecked(inner) };
        match catch_unwind(AssertUnwindSafe(|| pinned.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => {
                this.inner = None;
                Poll::Ready(Ok(v))
            }
            Err(payload) => {
                // Drop what is left of the future (closing its sockets); a panic
                // while dropping it is caught too.
                let _ = catch_unwind(AssertUnwindSafe(|| this.inner = None));
                Poll::Ready(Err(panic_message(payload.as_ref())))
            }
        }
    }
}

/// The message a panic was raised with (`panic!("...")`), or a placeholder.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_the_future_becomes_an_error_and_the_thread_goes_on() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        let caught = rt.block_on(async {
            let task = monoio::spawn(guard(async {
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
                panic!("boom in a connection");
            }));
            task.await
        });
        assert_eq!(caught.err().as_deref(), Some("boom in a connection"));
        let fine = rt.block_on(guard(async { 7 }));
        assert_eq!(fine, Ok(7));
    }
}
