//! Running the parts at once on the worker's one task, without threads or spawned
//! tasks: every unfinished future is polled when the task wakes, each output is
//! handed over as it arrives, and the caller can stop early. Futures still in the
//! slots when it stops are the caller's to drop, which cancels their I/O.

use std::future::{poll_fn, Future};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::Poll;

/// Polls the futures in `slots` together until all are done (`Continue`) or
/// `arrived` breaks (`Break`). A finished future's slot becomes `None` and its
/// output goes to `arrived(index, output)` at once.
pub async fn join_until<F: Future>(
    slots: &mut [Option<Pin<Box<F>>>],
    mut arrived: impl FnMut(usize, F::Output) -> ControlFlow<()>,
) -> ControlFlow<()> {
    poll_fn(|cx| {
        let mut pending = false;
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(future) = slot else { continue };
            match future.as_mut().poll(cx) {
                Poll::Ready(output) => {
                    *slot = None;
                    if arrived(i, output).is_break() {
                        return Poll::Ready(ControlFlow::Break(()));
                    }
                }
                Poll::Pending => pending = true,
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(ControlFlow::Continue(()))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn after(ms: u64) -> u64 {
        monoio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn outputs_arrive_in_completion_order_and_all_run_at_once() {
        block_on(async {
            let mut slots: Vec<_> = [60, 10, 30]
                .into_iter()
                .map(|ms| Some(Box::pin(after(ms))))
                .collect();
            let mut seen = Vec::new();
            let flow = join_until(&mut slots, |i, ms| {
                seen.push((i, ms));
                ControlFlow::Continue(())
            })
            .await;
            assert_eq!(flow, ControlFlow::Continue(()));
            // Together: one after the other would finish 0, 1, 2.
            assert_eq!(seen, [(1, 10), (2, 30), (0, 60)]);
        });
    }

    #[test]
    fn stopping_early_leaves_the_rest_in_their_slots() {
        block_on(async {
            let mut slots: Vec<_> = [50, 5]
                .into_iter()
                .map(|ms| Some(Box::pin(after(ms))))
                .collect();
            let flow = join_until(&mut slots, |_, _| ControlFlow::Break(())).await;
            assert_eq!(flow, ControlFlow::Break(()));
            assert!(slots[0].is_some() && slots[1].is_none());
        });
    }
}
